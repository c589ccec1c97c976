// The node agent against a Kubernetes API server (the fake in test/fakes, which
// lists, watches from a resourceVersion, sends bookmarks, answers 410 Gone and
// can drop streams or answer slowly): labelling a namespace enrolls its pods, the
// agent patches the redirection annotation onto them, traffic becomes mTLS;
// dropped watches and expired resourceVersions are survived; unlabelling and the
// opt-out un-enroll; deleting a pod removes its entries; one agent (the Lease
// holder) writes policy status.
import t from 'tap'
import { REDIRECTION_ANNOTATION } from '../../common/model/enrollment.js'
import { AgentCluster } from '../../testbed/agent-cluster.js'
import { connectMany, startServer } from '../../testbed/pod-clients.js'

const cluster = await AgentCluster.start({
  name: 'agentkube',
  kube: true,
  nodes: ['n1', 'n2'],
  namespaces: { shop: {}, 'istio-system': {} },
  pods: [
    { name: 'a', namespace: 'shop', node: 'n1', serviceAccount: 'client' },
    { name: 'c', namespace: 'shop', node: 'n1', serviceAccount: 'other' },
    { name: 'b', namespace: 'shop', node: 'n2', serviceAccount: 'web', labels: { app: 'web' } },
  ],
  policies: [
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { namespace: 'shop', name: 'web-l4' },
      spec: { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { namespaces: ['shop'] } }] }] },
    },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { namespace: 'shop', name: 'web-http' },
      spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['bad'] } }], to: [{ operation: { paths: ['/admin'] } }] }] },
    },
  ],
})
t.teardown(() => cluster.stop())
const fake = cluster.fake!
await startServer(cluster.tb, cluster.pod('b'), 8080)
const b = cluster.pod('b')

const captured = async (node: string): Promise<string[]> =>
  (await cluster.status(node)).pods
    .filter((p) => p.state === 'captured')
    .map((p) => `${p.namespace}/${p.name}`)
    .sort()
const annotation = (name: string): unknown =>
  (fake.get('Pod', 'shop', name)?.['metadata'] as { annotations?: Record<string, string> } | undefined)?.annotations?.[REDIRECTION_ANNOTATION]
const sum = (text: string, name: string, match: readonly string[]): number =>
  text
    .split('\n')
    .filter((l) => l.startsWith(name + '{') && match.every((m) => l.includes(m)))
    .reduce((s, l) => s + Number(l.split(' ').pop()), 0)
const mtlsIntoB = async (from: string): Promise<number> =>
  sum(await cluster.metrics(cluster.ztunnels.get('n2')!, 'metrics'), 'istio_tcp_connections_opened_total', [
    'reporter="destination"',
    'connection_security_policy="mutual_tls"',
    `source_workload="${from}"`,
  ])

t.test('labelling the namespace enrolls its pods, annotates them in the API, and a -> b is mTLS', async (t) => {
  t.same(await captured('n1'), [])
  t.equal(annotation('a'), undefined)
  cluster.setNamespaceLabel('shop', 'istio.io/dataplane-mode', 'ambient')
  await cluster.until('captured on both nodes', async () => (await captured('n1')).join() === 'shop/a,shop/c' && (await captured('n2')).join() === 'shop/b')
  await cluster.until('annotations patched', () => annotation('a') === 'enabled' && annotation('b') === 'enabled' && annotation('c') === 'enabled')
  const r = await connectMany(cluster.tb, cluster.pod('a'), `${b.ip}:8080`, { count: 10, concurrency: 2 })
  t.equal(r.ok, 10, JSON.stringify(r.errors))
  await cluster.until('10 mTLS connections into b', async () => (await mtlsIntoB('a')) === 10)
})

t.test('dropped watches and 410 Gone are survived; the opt-out still applies', async (t) => {
  t.ok(fake.dropWatches() > 0, 'the agents had watches open')
  await cluster.until('watches reopened', () => fake.activeWatches() >= 14)
  fake.compactHistory() // every open watch gets 410 Gone; resuming from before it gets 410 too: relist
  cluster.setPodLabel('shop', 'c', 'istio.io/dataplane-mode', 'none')
  await cluster.until('c released after the watches came back', async () => (await captured('n1')).join() === 'shop/a', 20_000)
  await cluster.until('annotation removed from c', () => annotation('c') === undefined)
  t.equal(annotation('a'), 'enabled')
  await cluster.until(
    'watch restarts counted',
    async () => sum(await cluster.metrics(cluster.agents.get('n1')!, 'status'), 'ambient_agent_watch_restarts_total', []) >= 14,
  )
  t.pass('dropped and expired watches of every kind are counted in ambient_agent_watch_restarts_total')
})

t.test('a slow API server delays, never loses, a change; deleting a pod removes its entries', async (t) => {
  fake.setLatency(300)
  cluster.remove('Pod', 'shop', 'c')
  cluster.setNamespaceLabel('shop', 'istio.io/dataplane-mode', null)
  await cluster.until('nothing captured', async () => (await captured('n1')).length === 0 && (await captured('n2')).length === 0, 20_000)
  fake.setLatency(0)
  const n1 = await cluster.status('n1')
  t.equal(n1.datapath!.maps.find((m) => m.name === 'ambient_pods')!.entries, 0)
  t.equal(n1.datapath!.maps.find((m) => m.name === 'ambient_inbound')!.entries, 0)
  await cluster.until('annotation removed from a', () => annotation('a') === undefined)
  const before = await mtlsIntoB('a')
  const r = await connectMany(cluster.tb, cluster.pod('a'), `${b.ip}:8080`, { count: 3, concurrency: 1 })
  t.equal(r.ok, 3)
  t.equal(await mtlsIntoB('a'), before, 'plaintext once un-enrolled')
})

t.test('policies carry a ZtunnelAccepted condition in the cluster, naming what ztunnel cannot apply', async (t) => {
  const condition = (name: string): Record<string, unknown> | undefined =>
    ((fake.get('AuthorizationPolicy', 'shop', name)?.['status'] as { conditions?: Record<string, unknown>[] } | undefined)?.conditions ?? []).find(
      (c) => c['type'] === 'ZtunnelAccepted',
    )
  await cluster.until('conditions written', () => condition('web-l4') !== undefined && condition('web-http') !== undefined)
  t.match(condition('web-l4'), { status: 'True', reason: 'Accepted' })
  t.match(condition('web-http'), { status: 'False', reason: 'UnsupportedValue', message: /spec\.rules\[0\]\.to\[0\]\.operation\.paths/ })
  cluster.put('AuthorizationPolicy', {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { namespace: 'shop', name: 'broken' },
    spec: { action: 'SOMETIMES' },
  } as never)
  await cluster.until('the malformed policy is marked Invalid', () => condition('broken')?.['reason'] === 'Invalid')
  t.match(condition('broken'), { status: 'False', message: /spec\.action/ })
  t.match(condition('web-l4'), { status: 'True' }, 'the others are untouched')
  // One writer: the agent that holds the policy-status Lease; the other only computes.
  const holder = (fake.get('Lease', 'istio-system', 'ambient-policy-status')?.['spec'] as { holderIdentity?: string } | undefined)?.holderIdentity
  t.ok(holder === 'n1' || holder === 'n2', `one agent holds the lease (${holder})`)
  const writers = ['n1', 'n2'].filter((n) => /"msg":"policy status written"/.test(cluster.agents.get(n)!.logs()))
  t.same(writers, [holder], 'only the lease holder wrote policy status')
})
