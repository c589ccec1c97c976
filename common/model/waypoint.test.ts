import t from 'tap'
import { convertGateway } from './convert/gateway.js'
import { meshResources } from './mesh-resources.js'
import { applyBatch, emptySnapshot, type Change } from './snapshot.js'
import { isWaypointPod, podWaypoint, serviceWaypoint, waypointIndex } from './waypoint.js'
import type { Pod, Service } from './workload.js'

const ns = (name: string, labels: Record<string, string> = {}): Change => ({ type: 'upsert', resource: { kind: 'Namespace', value: { name, labels } } })
const gateway = (
  namespace: string,
  name: string,
  labels: Record<string, string> = {},
  listener: Record<string, unknown> = {},
  className = 'istio-waypoint',
): Change => ({
  type: 'upsert',
  resource: {
    kind: 'Gateway',
    namespace,
    name,
    object: {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { namespace, name, labels },
      spec: { gatewayClassName: className, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE', ...listener }] },
    },
  },
})
const service = (namespace: string, name: string, vip: string, labels: Record<string, string> = {}): Service => ({
  namespace,
  name,
  clusterIPs: vip ? [vip] : [],
  ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', appProtocol: '' }],
  labels,
})
const svc = (s: Service): Change => ({ type: 'upsert', resource: { kind: 'Service', value: s } })
const pod = (namespace: string, name: string, labels: Record<string, string> = {}): Pod => ({
  uid: `uid-${name}`,
  namespace,
  name,
  nodeName: 'n1',
  podIP: '198.19.4.9',
  podIPs: ['198.19.4.9'],
  serviceAccount: name,
  labels,
  annotations: {},
  hostNetwork: false,
  phase: 'Running',
  containerIDs: [],
})

const snapshot = applyBatch(emptySnapshot(), [
  ns('shop', { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' }),
  ns('bank', { 'istio.io/dataplane-mode': 'ambient', team: 'money' }),
  ns('other', { 'istio.io/use-waypoint': 'missing' }),
  gateway('shop', 'waypoint'),
  gateway('shop', 'pods', { 'istio.io/waypoint-for': 'workload' }),
  gateway(
    'shop',
    'everything',
    { 'istio.io/waypoint-for': 'all' },
    { allowedRoutes: { namespaces: { from: 'Selector', selector: { matchLabels: { team: 'money' } } } } },
  ),
  gateway('shop', 'ingress', {}, {}, 'istio'),
  svc(service('shop', 'waypoint', '198.18.100.1')),
  svc(service('shop', 'pods', '198.18.100.2')),
  svc(service('shop', 'everything', '198.18.100.3')),
])
const index = waypointIndex(snapshot)
const address = (vip: string) => ({ destination: { kind: 'address', network: '', address: vip }, hboneMtlsPort: 15008 })

t.test('gateways: only istio-waypoint is ours; waypoint-for and the listener are read', async (t) => {
  t.same([...index.gateways.keys()].sort(), ['shop/everything', 'shop/pods', 'shop/waypoint'])
  t.equal(index.gateways.get('shop/waypoint')!.for, 'service', 'service is the default')
  t.same(index.gateways.get('shop/everything')!.allowedNamespaces, { from: 'Selector', matchLabels: { team: 'money' } })
  const bad = (labels: Record<string, string>, listener: Record<string, unknown>) => {
    const r = convertGateway({
      kind: 'Gateway',
      metadata: { namespace: 'shop', name: 'w', labels },
      spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE', ...listener }] },
    })
    return r.kind === 'invalid' ? `${r.error.field}: ${r.error.message}` : r.kind
  }
  t.match(bad({ 'istio.io/waypoint-for': 'pods' }, {}), /^metadata.labels\["istio.io\/waypoint-for"\]: .*"pods" must be service, workload, all or none/)
  t.match(bad({}, { protocol: 'HTTP' }), /^spec.listeners\[0\].protocol: .*"HTTP" must be HBONE/)
  t.match(bad({}, { port: 70000 }), /^spec.listeners\[0\].port: .*70000 is not a port/)
  t.match(bad({}, { allowedRoutes: { namespaces: { from: 'Some' } } }), /from: .*"Some" must be Same, All or Selector/)
  const noMesh = convertGateway({ kind: 'Gateway', metadata: { namespace: 'shop', name: 'w' }, spec: { gatewayClassName: 'istio-waypoint', listeners: [] } })
  t.equal(noMesh.kind, 'waypoint')
  t.match(noMesh.kind === 'waypoint' && noMesh.warnings[0]!.message, /no listener named "mesh"/)
})

t.test('services: own label, then the namespace; none opts out; waypoint-for must take service traffic', async (t) => {
  t.same(
    serviceWaypoint(snapshot, index, service('shop', 'web', '198.18.100.10')),
    { kind: 'bound', gateway: index.gateways.get('shop/waypoint'), address: address('198.18.100.1') },
    'namespace label',
  )
  t.same(serviceWaypoint(snapshot, index, service('shop', 'api', '198.18.100.11', { 'istio.io/use-waypoint': 'everything' })), {
    kind: 'bound',
    gateway: index.gateways.get('shop/everything'),
    address: address('198.18.100.3'),
  })
  t.same(serviceWaypoint(snapshot, index, service('shop', 'db', '198.18.100.12', { 'istio.io/use-waypoint': 'none' })), { kind: 'none' }, 'opted out')
  t.match(serviceWaypoint(snapshot, index, service('shop', 'x', '198.18.100.13', { 'istio.io/use-waypoint': 'pods' })), {
    kind: 'problem',
    problem: { object: 'Service shop/x', waypoint: 'shop/pods', message: /is for workload traffic .* not service traffic/ },
  })
  t.match(serviceWaypoint(snapshot, index, service('other', 'y', '198.18.100.14')), {
    kind: 'problem',
    problem: { object: 'Namespace other', waypoint: 'other/missing', message: /no Gateway other\/missing of class istio-waypoint/ },
  })
  t.same(serviceWaypoint(snapshot, index, service('bank', 'z', '198.18.100.15')), { kind: 'none' }, 'no label anywhere')
})

t.test('across namespaces only where the listener allows it', async (t) => {
  const cross = (namespace: string, name: string) =>
    serviceWaypoint(snapshot, index, service(namespace, 'c', '198.18.100.20', { 'istio.io/use-waypoint': name, 'istio.io/use-waypoint-namespace': 'shop' }))
  t.same(
    cross('bank', 'everything'),
    { kind: 'bound', gateway: index.gateways.get('shop/everything'), address: address('198.18.100.3') },
    'selector matches bank',
  )
  t.match(cross('bank', 'waypoint'), { kind: 'problem', problem: { message: /does not allow namespace bank/ } }, 'Same by default')
  t.match(cross('other', 'everything'), { kind: 'problem', problem: { message: /does not allow namespace other/ } }, 'selector does not match')
})

t.test('pods: workload or all waypoints only; a waypoint pod never has one', async (t) => {
  t.match(podWaypoint(snapshot, index, pod('shop', 'web')), { kind: 'problem', problem: { object: 'Namespace shop', message: /is for service traffic/ } })
  t.same(podWaypoint(snapshot, index, pod('shop', 'web', { 'istio.io/use-waypoint': 'pods' })), {
    kind: 'bound',
    gateway: index.gateways.get('shop/pods'),
    address: address('198.18.100.2'),
  })
  const waypointPod = pod('shop', 'waypoint-0', { 'gateway.networking.k8s.io/gateway-name': 'everything', 'istio.io/use-waypoint': 'everything' })
  t.ok(isWaypointPod(index, waypointPod))
  t.same(podWaypoint(snapshot, index, waypointPod), { kind: 'none' })
  t.notOk(isWaypointPod(index, pod('bank', 'x', { 'gateway.networking.k8s.io/gateway-name': 'everything' })), 'the gateway is in another namespace')
})

t.test('a waypoint without its service yet is reported, not guessed', async (t) => {
  const next = applyBatch(snapshot, [gateway('shop', 'fresh'), svc(service('shop', 'fresh', ''))])
  t.match(serviceWaypoint(next, waypointIndex(next), service('shop', 'q', '198.18.100.30', { 'istio.io/use-waypoint': 'fresh' })), {
    kind: 'problem',
    problem: { message: /has no Service with a cluster IP yet/ },
  })
})

t.test('mesh resources carry the waypoint of each service and workload, and the problems', async (t) => {
  const full = applyBatch(snapshot, [
    svc(service('shop', 'web', '198.18.100.10')),
    { type: 'upsert', resource: { kind: 'Pod', value: pod('shop', 'web-0', { 'istio.io/use-waypoint': 'pods' }) } },
  ])
  const r = meshResources(full, { trustDomain: 'cluster.local', rootNamespace: 'istio-system', clusterDomain: 'cluster.local', localNetns: new Map() })
  t.same(r.services.find((s) => s.name === 'web')!.waypoint, address('198.18.100.1'))
  t.equal(r.services.find((s) => s.name === 'waypoint')!.waypoint, null, "a waypoint's own service does not go through a waypoint")
  t.same(r.workloads.find((w) => w.name === 'web-0')!.waypoint, address('198.18.100.2'))
  t.same(r.waypoints.problems, [], 'every binding honoured')
  t.same([...r.waypoints.gateways.keys()].sort(), ['shop/everything', 'shop/pods', 'shop/waypoint'])
})
