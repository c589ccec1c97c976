import t from 'tap'
import type { IdentityManager } from '../../common/identity/manager.js'
import { silentLogger } from '../../common/log.js'
import { WorkloadStore } from '../../common/model/workload-store.js'
import type { GatewayAddress, MeshService, Workload } from '../../common/model/workload.js'
import { ZtunnelMetrics } from '../metrics.js'
import { Outbound } from './outbound.js'

const waypointAt = (vip: string): GatewayAddress => ({ destination: { kind: 'address', network: '', address: vip }, hboneMtlsPort: 15008 })

const workload = (name: string, ip: string, extra: Partial<Workload> = {}): Workload => ({
  uid: `Kubernetes//Pod/shop/${name}`,
  name,
  namespace: 'shop',
  ips: [ip],
  network: '',
  tunnelProtocol: 'HBONE',
  trustDomain: 'cluster.local',
  serviceAccount: name,
  waypoint: null,
  node: 'n2',
  canonicalName: name,
  canonicalRevision: 'latest',
  workloadType: 'POD',
  workloadName: name,
  services: {},
  authorizationPolicies: [],
  status: 'HEALTHY',
  clusterId: 'Kubernetes',
  labels: {},
  ...extra,
})
const service = (name: string, vip: string, port: number, waypoint: GatewayAddress | null): MeshService => ({
  name,
  namespace: 'shop',
  hostname: `${name}.shop.svc.cluster.local`,
  addresses: [{ network: '', address: vip }],
  ports: [{ servicePort: port, targetPort: port === 15008 ? 15008 : 8080 }],
  subjectAltNames: [],
  waypoint,
})
const member = (svc: string, port: number, target: number) => ({ [`shop/${svc}.shop.svc.cluster.local`]: [{ servicePort: port, targetPort: target }] })

const store = new WorkloadStore()
store.replaceAll([
  workload('web', '198.19.8.1', { services: member('web', 80, 8080) }),
  workload('pinned', '198.19.8.2', { waypoint: waypointAt('198.18.100.1') }),
  workload('legacy', '198.19.8.3', { tunnelProtocol: 'NONE', services: member('old', 80, 8080) }),
  workload('waypoint-0', '198.19.8.9', { tunnelProtocol: 'NONE', services: member('waypoint', 15008, 15008) }),
])
store.replaceServices([
  service('waypoint', '198.18.100.1', 15008, null),
  service('web', '198.18.100.10', 80, waypointAt('198.18.100.1')),
  service('plain', '198.18.100.11', 80, null),
  service('old', '198.18.100.12', 80, null),
  service('broken', '198.18.100.13', 80, waypointAt('198.18.100.99')),
])
const outbound = new Outbound({
  store,
  identities: {} as IdentityManager,
  metrics: new ZtunnelMetrics({ defaultMetrics: false }),
  proxyMark: 0x539,
  hbonePort: 15008,
  localPod: () => undefined,
  log: silentLogger(),
})
t.teardown(() => outbound.stop())

t.test('a service with a waypoint: HBONE to a waypoint workload, the authority as dialed', async (t) => {
  const r = outbound.route({ ip: '198.18.100.10', port: 80 })
  t.match(r, { kind: 'hbone', nextHop: { ip: '198.19.8.9', port: 15008 }, authority: { ip: '198.18.100.10', port: 80 }, service: { name: 'web' } })
  t.equal(r.destination?.name, 'waypoint-0', 'the tunnel ends at the waypoint (its identity is checked)')
})

t.test('a workload waypoint applies to traffic addressed to the pod IP only', async (t) => {
  t.match(outbound.route({ ip: '198.19.8.2', port: 9000 }), {
    kind: 'hbone',
    nextHop: { ip: '198.19.8.9', port: 15008 },
    authority: { ip: '198.19.8.2', port: 9000 },
  })
  t.match(outbound.route({ ip: '198.19.8.1', port: 8080 }), {
    kind: 'hbone',
    nextHop: { ip: '198.19.8.1', port: 15008 },
    authority: { ip: '198.19.8.1', port: 8080 },
    service: undefined,
  })
})

t.test('without a waypoint: the endpoint, HBONE or plain as the workload is; unknown VIPs stay plain', async (t) => {
  t.match(outbound.route({ ip: '198.18.100.12', port: 80 }), { kind: 'tcp', target: { ip: '198.19.8.3', port: 8080 }, service: { name: 'old' } })
  t.match(outbound.route({ ip: '198.18.100.11', port: 80 }), { kind: 'tcp', target: { ip: '198.18.100.11', port: 80 }, destination: undefined })
  t.match(outbound.route({ ip: '203.0.113.5', port: 443 }), { kind: 'tcp', target: { ip: '203.0.113.5', port: 443 } })
})

t.test('a waypoint with nothing healthy behind it refuses the connection, it never bypasses', async (t) => {
  t.throws(() => outbound.route({ ip: '198.18.100.13', port: 80 }), {
    code: 'AMBIENT_ERR_HBONE_UNKNOWN_DESTINATION',
    message: /198.18.100.13:80 \(its waypoint 198.18.100.99 has no healthy workload\)/,
  })
})
