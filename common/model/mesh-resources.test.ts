import t from 'tap'
import { PolicyStore } from '../policy/policy-store.js'
import { meshResources } from './mesh-resources.js'
import { applyBatch, emptySnapshot, type Change } from './snapshot.js'
import type { Pod, Workload } from './workload.js'

type Obj = Record<string, unknown>
const ROOT = 'istio-system'

function pod(namespace: string, name: string, ip: string, labels: Record<string, string>, extra: Partial<Pod> = {}): Change {
  const value: Pod = {
    uid: `uid-${name}`,
    namespace,
    name,
    nodeName: 'n1',
    podIP: ip,
    podIPs: [ip],
    serviceAccount: name,
    labels,
    annotations: {},
    hostNetwork: false,
    phase: 'Running',
    containerIDs: [],
    ...extra,
  }
  return { type: 'upsert', resource: { kind: 'Pod', value } }
}
const ns = (name: string, labels: Record<string, string> = {}): Change => ({ type: 'upsert', resource: { kind: 'Namespace', value: { name, labels } } })
const policy = (kind: 'AuthorizationPolicy' | 'PeerAuthentication', namespace: string, name: string, spec: Obj): Change => ({
  type: 'upsert',
  resource: { kind, namespace, name, object: { apiVersion: 'security.istio.io/v1', kind, metadata: { namespace, name }, spec } },
})

const ambient = { 'istio.io/dataplane-mode': 'ambient' }
const snapshot = applyBatch(emptySnapshot(), [
  ns('shop', ambient),
  ns('bank', ambient),
  ns('legacy'),
  ns(ROOT),
  pod('shop', 'web', '198.19.1.1', { app: 'web', tier: 'front' }),
  pod('shop', 'api', '198.19.1.2', { app: 'api', version: 'v2' }),
  pod('shop', 'db', '198.19.1.3', { app: 'db' }, { nodeName: 'n2' }),
  pod('bank', 'ledger', '198.19.1.4', { app: 'ledger' }),
  pod('bank', 'audit', '198.19.1.5', { app: 'audit' }),
  pod('legacy', 'old', '198.19.1.6', { app: 'old' }),
  pod('shop', 'out', '198.19.1.7', { app: 'out', 'istio.io/dataplane-mode': 'none' }),
  pod('shop', 'host', '198.18.0.1', {}, { hostNetwork: true }),
  pod('shop', 'done', '198.19.1.8', {}, { phase: 'Succeeded' }),
  policy('AuthorizationPolicy', 'shop', 'web-from-api', {
    selector: { matchLabels: { app: 'web' } },
    rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/api'] } }] }],
  }),
  policy('AuthorizationPolicy', 'shop', 'deny-legacy', {
    action: 'DENY',
    rules: [{ from: [{ source: { notPrincipals: ['*'] } }], to: [{ operation: { ports: ['9090'] } }] }],
  }),
  policy('AuthorizationPolicy', ROOT, 'global-deny-bad', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['bad'] } }] }] }),
  policy('AuthorizationPolicy', ROOT, 'root-selector-db', {
    selector: { matchLabels: { app: 'db' } },
    rules: [{ from: [{ source: { namespaces: ['shop'] } }] }],
  }),
  policy('AuthorizationPolicy', 'bank', 'ledger-dry', { selector: { matchLabels: { app: 'ledger' } }, rules: [{ to: [{ operation: { ports: ['1'] } }] }] }),
  policy('PeerAuthentication', ROOT, 'mesh', { mtls: { mode: 'STRICT' } }),
  policy('PeerAuthentication', 'bank', 'bank-permissive', { mtls: { mode: 'PERMISSIVE' } }),
  policy('PeerAuthentication', 'bank', 'audit-ports', {
    selector: { matchLabels: { app: 'audit' } },
    mtls: { mode: 'STRICT' },
    portLevelMtls: { '8080': { mode: 'PERMISSIVE' } },
  }),
  policy('PeerAuthentication', 'shop', 'api-port', { selector: { matchLabels: { app: 'api' } }, portLevelMtls: { '7070': { mode: 'PERMISSIVE' } } }),
])

const resources = meshResources(snapshot, {
  trustDomain: 'cluster.local',
  rootNamespace: ROOT,
  clusterDomain: 'cluster.local',
  localNetns: new Map([['uid-web', '/proc/10/ns/net']]),
})

t.test('every pod with an IP is a workload; enrollment sets the tunnel protocol; netns only for local enrolled pods', async (t) => {
  const byName = new Map(resources.workloads.map((w) => [w.name, w]))
  t.same([...byName.keys()].sort(), ['api', 'audit', 'db', 'ledger', 'old', 'out', 'web'], 'not hostNetwork, not finished pods')
  t.match(byName.get('web'), {
    uid: 'Kubernetes//Pod/shop/web',
    tunnelProtocol: 'HBONE',
    netnsPath: '/proc/10/ns/net',
    canonicalName: 'web',
    canonicalRevision: 'latest',
    status: 'HEALTHY',
    labels: {},
  })
  t.match(byName.get('api'), { canonicalRevision: 'v2' })
  t.equal(byName.get('db')!.tunnelProtocol, 'HBONE', 'a remote pod of an ambient namespace is reached in HBONE')
  t.equal(byName.get('db')!.netnsPath, undefined)
  t.equal(byName.get('old')!.tunnelProtocol, 'NONE')
  t.equal(byName.get('out')!.tunnelProtocol, 'NONE', 'opted out')
  t.same(byName.get('web')!.authorizationPolicies, ['shop/web-from-api', 'istio-system/istio_converted_static_strict'])
  t.same(byName.get('db')!.authorizationPolicies, ['istio-system/root-selector-db', 'istio-system/istio_converted_static_strict'])
  t.same(byName.get('ledger')!.authorizationPolicies, ['bank/ledger-dry'], 'namespace PERMISSIVE: no mTLS policy')
  t.same(byName.get('audit')!.authorizationPolicies, ['bank/converted_peer_authentication_audit-ports'])
  t.same(byName.get('api')!.authorizationPolicies, ['shop/converted_peer_authentication_api-port'])
  const names = resources.authorizations.map((a) => `${a.namespace}/${a.name}`).sort()
  t.same(names, [
    'bank/converted_peer_authentication_audit-ports',
    'bank/ledger-dry',
    'istio-system/global-deny-bad',
    'istio-system/istio_converted_static_strict',
    'istio-system/root-selector-db',
    'shop/converted_peer_authentication_api-port',
    'shop/deny-legacy',
    'shop/web-from-api',
  ])
})

t.test('ztunnel decides the same from the streamed form as from the manifests', async (t) => {
  const local = new PolicyStore(ROOT)
  local.replaceAll([...snapshot.authorizationPolicies, ...snapshot.peerAuthentications])
  const streamed = new PolicyStore(ROOT)
  streamed.replaceAuthorizations(resources.authorizations)
  const podsByName = new Map([...snapshot.pods.values()].map((p) => [p.name, p]))
  const peers = [
    null,
    'spiffe://cluster.local/ns/shop/sa/api',
    'spiffe://cluster.local/ns/shop/sa/web',
    'spiffe://cluster.local/ns/bad/sa/x',
    'spiffe://cluster.local/ns/bank/sa/ledger',
  ]
  let compared = 0
  let denied = 0
  for (const streamedWorkload of resources.workloads) {
    const pod = podsByName.get(streamedWorkload.name)!
    const withLabels: Workload = { ...streamedWorkload, labels: pod.labels, authorizationPolicies: null }
    for (const peerIdentity of peers) {
      for (const port of [80, 1, 7070, 8080, 9090]) {
        const conn = { peerIdentity, sourceIp: '198.19.9.9', destinationIp: streamedWorkload.ips[0]!, destinationPort: port }
        const a = local.evaluate({ ...conn, destination: withLabels })
        const b = streamed.evaluate({ ...conn, destination: streamedWorkload })
        t.equal(b.allowed, a.allowed, `${streamedWorkload.name}:${port} from ${peerIdentity ?? 'plaintext'}: ${a.reason} / ${b.reason}`)
        t.equal(b.mtls.mode, a.mtls.mode, `${streamedWorkload.name}:${port} mTLS mode`)
        compared += 1
        if (!a.allowed) denied += 1
      }
    }
  }
  t.equal(compared, 7 * 5 * 5)
  t.ok(denied > 20 && denied < compared - 20, `a mix of decisions (${denied} denied of ${compared})`)
})

t.test('policy problems are reported, not streamed', async (t) => {
  const bad = applyBatch(snapshot, [policy('AuthorizationPolicy', 'shop', 'broken', { action: 'SOMETIMES' })])
  const r = meshResources(bad, { trustDomain: 'cluster.local', rootNamespace: ROOT, clusterDomain: 'cluster.local', localNetns: new Map() })
  t.match(r.policies.invalid, [{ policy: 'shop/broken', field: 'spec.action' }])
  t.notOk(r.authorizations.some((a) => a.name === 'broken'))
  t.equal(r.authorizations.length, resources.authorizations.length)
})

t.test('IPv4 addresses only; readiness from the EndpointSlice; services on workloads', async (t) => {
  const snap = applyBatch(snapshot, [
    pod('shop', 'dual', '198.19.1.9', { app: 'dual' }, { podIPs: ['198.19.1.9', 'fd00::9'] }),
    pod('shop', 'v6only', 'fd00::10', {}, { podIPs: ['fd00::10'] }),
    {
      type: 'upsert',
      resource: {
        kind: 'Service',
        value: {
          namespace: 'shop',
          name: 'web',
          clusterIPs: ['10.96.0.10'],
          ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP', appProtocol: '' }],
          labels: {},
        },
      },
    },
    {
      type: 'upsert',
      resource: {
        kind: 'EndpointSlice',
        value: {
          namespace: 'shop',
          name: 'web-1',
          serviceName: 'web',
          addressType: 'IPv4',
          ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
          endpoints: [
            { addresses: ['198.19.1.1'], ready: true, nodeName: 'n1', targetRef: { kind: 'Pod', namespace: 'shop', name: 'web', uid: 'uid-web' } },
            { addresses: ['198.19.1.2'], ready: false, nodeName: 'n1', targetRef: { kind: 'Pod', namespace: 'shop', name: 'api', uid: 'uid-api' } },
          ],
        },
      },
    },
  ])
  const r = meshResources(snap, { trustDomain: 'cluster.local', rootNamespace: ROOT, clusterDomain: 'cluster.local', localNetns: new Map() })
  const by = new Map(r.workloads.map((w) => [w.name, w]))
  t.same(by.get('dual')!.ips, ['198.19.1.9'], 'the IPv6 address of a dual-stack pod is left out')
  t.notOk(by.has('v6only'), 'an IPv6-only pod is not a workload ztunnel can serve')
  t.equal(by.get('web')!.status, 'HEALTHY')
  t.equal(by.get('api')!.status, 'UNHEALTHY', 'not ready in the EndpointSlice')
  t.same(
    by.get('web')!.services,
    { 'shop/web.shop.svc.cluster.local': [{ servicePort: 80, targetPort: 8080 }] },
    'a named target port resolved through the slice',
  )
  t.match(r.services, [{ name: 'web', hostname: 'web.shop.svc.cluster.local', addresses: [{ address: '10.96.0.10' }] }])
})
