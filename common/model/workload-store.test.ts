import t from 'tap'
import type { Workload } from './workload.js'
import { WorkloadStore } from './workload-store.js'

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
  node: 'n1',
  canonicalName: name,
  canonicalRevision: 'latest',
  workloadType: 'POD',
  workloadName: name,
  services: { 'shop/web.shop.svc.cluster.local': [{ servicePort: 80, targetPort: 8080 }] },
  authorizationPolicies: [],
  status: 'HEALTHY',
  clusterId: 'Kubernetes',
  labels: {},
  ...extra,
})

t.test('a service VIP resolves to a healthy workload on its target port', async (t) => {
  const store = new WorkloadStore()
  store.replaceAll([
    workload('w1', '198.19.4.1'),
    workload('w2', '198.19.4.2'),
    workload('sick', '198.19.4.3', { status: 'UNHEALTHY' }),
    workload('other', '198.19.4.4', { services: {} }),
  ])
  store.replaceServices([
    {
      name: 'web',
      namespace: 'shop',
      hostname: 'web.shop.svc.cluster.local',
      addresses: [{ network: '', address: '10.96.0.10' }],
      ports: [{ servicePort: 80, targetPort: 8080 }],
      subjectAltNames: [],
      waypoint: null,
    },
  ])
  const picked = new Set<string>()
  for (const r of [0, 0.49, 0.5, 0.99]) {
    const e = store.pickServiceEndpoint('10.96.0.10', 80, () => r)
    t.equal(e?.port, 8080)
    picked.add(e!.workload.name)
  }
  t.same([...picked].sort(), ['w1', 'w2'], 'only healthy endpoints of the service')
  t.equal(store.pickServiceEndpoint('10.96.0.10', 81), null, 'a port the service does not have')
  t.ok(store.isServiceVip('10.96.0.10'))
  t.equal(store.pickServiceEndpoint('198.19.4.1', 80), null, 'a pod IP is not a VIP')
  t.notOk(store.isServiceVip('198.19.4.1'))
})

t.test('a bad workload is rejected alone, naming the field', async (t) => {
  const store = new WorkloadStore()
  const r = store.replaceAll([workload('good', '198.19.4.1'), workload('bad', 'nope')])
  t.equal(r.applied, 1)
  t.match(r.rejected, [{ uid: 'Kubernetes//Pod/shop/bad', error: /workloadIps entry "nope"/ }])
  t.equal(store.findByIp('198.19.4.1')?.name, 'good')
})
