// The node agent from a manifests folder, as a node runs it: `ambient agent` and
// `ambient ztunnel` per node, `ambient ca`. Labelling a namespace enrolls its pods
// and their traffic becomes mTLS; opt-out, unlabel and delete un-enroll and remove
// map entries; a malformed object is named and changes nothing else; killing the
// agent mid-traffic drops nothing and what changed meanwhile is applied when it is
// back; a ztunnel restart fails enrolled pods closed, then serves them again.
import t from 'tap'
import { AgentCluster } from '../../testbed/agent-cluster.js'
import { connectMany, holdConnection, startServer } from '../../testbed/pod-clients.js'

const cluster = await AgentCluster.start({
  name: 'agent',
  nodes: ['n1', 'n2'],
  namespaces: { shop: {}, legacy: {}, 'istio-system': {} },
  pods: [
    { name: 'a', namespace: 'shop', node: 'n1', serviceAccount: 'client', labels: { app: 'client' } },
    { name: 'c', namespace: 'shop', node: 'n1', serviceAccount: 'other' },
    { name: 'old', namespace: 'legacy', node: 'n1' },
    { name: 'b', namespace: 'shop', node: 'n2', serviceAccount: 'web', labels: { app: 'web' } },
  ],
})
t.teardown(() => cluster.stop())
for (const name of ['a', 'b', 'c', 'old']) await startServer(cluster.tb, cluster.pod(name), 8080)
const b = cluster.pod('b')

const captured = async (node: string): Promise<string[]> =>
  (await cluster.status(node)).pods
    .filter((p) => p.state === 'captured')
    .map((p) => `${p.namespace}/${p.name}`)
    .sort()
const mapEntries = async (node: string, map: string): Promise<number> => (await cluster.status(node)).datapath!.maps.find((m) => m.name === map)!.entries
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
    'destination_workload="b"',
  ])

t.test('before the label: nothing is enrolled and a reaches b in plaintext', async (t) => {
  t.same(await captured('n1'), [])
  t.same(await captured('n2'), [])
  const r = await connectMany(cluster.tb, cluster.pod('a'), `${b.ip}:8080`, { count: 5, concurrency: 1 })
  t.equal(r.ok, 5, JSON.stringify(r.errors))
  t.equal(await mtlsIntoB('a'), 0, 'no mTLS connection into b')
  t.equal(await mapEntries('n1', 'ambient_pods'), 0)
})

t.test('labelling the namespace enrolls its pods on both nodes and a -> b becomes mTLS', async (t) => {
  cluster.setNamespaceLabel('shop', 'istio.io/dataplane-mode', 'ambient')
  await cluster.until('shop pods captured', async () => (await captured('n1')).join() === 'shop/a,shop/c' && (await captured('n2')).join() === 'shop/b')
  const n1 = await cluster.status('n1')
  const a = n1.pods.find((p) => p.name === 'a')!
  t.equal(a.identity, 'spiffe://cluster.local/ns/shop/sa/client')
  t.match(a.netnsPath, /^\/proc\/\d+\/ns\/net$/, "netns found through the pod's cgroup and sandbox")
  t.equal(await mapEntries('n1', 'ambient_pods'), 2)
  const r = await connectMany(cluster.tb, cluster.pod('a'), `${b.ip}:8080`, { count: 10, concurrency: 2 })
  t.equal(r.ok, 10, JSON.stringify(r.errors))
  t.ok(
    r.connections.every((c) => c.serverSawRemoteIp === cluster.pod('a').ip),
    "b sees a's address",
  )
  await cluster.until('ztunnel on n2 counted 10 mTLS connections from a', async () => (await mtlsIntoB('a')) === 10)
  const legacy = await connectMany(cluster.tb, cluster.pod('old'), `${b.ip}:8080`, { count: 3, concurrency: 1 })
  t.equal(legacy.ok, 3, 'a legacy pod still reaches b (PERMISSIVE)')
  t.match(cluster.agents.get('n1')!.logs(), /"pod captured"/)
})

t.test('the pod opt-out label un-enrolls one running pod; deleting a pod removes its entries', async (t) => {
  cluster.setPodLabel('shop', 'c', 'istio.io/dataplane-mode', 'none')
  await cluster.until('c released', async () => (await captured('n1')).join() === 'shop/a')
  t.equal(await mapEntries('n1', 'ambient_pods'), 1)
  t.equal(await mapEntries('n1', 'ambient_inbound'), 1)
  const r = await connectMany(cluster.tb, cluster.pod('c'), `${b.ip}:8080`, { count: 3, concurrency: 1 })
  t.equal(r.ok, 3)
  t.equal(await mtlsIntoB('c'), 0, 'the opted-out pod talks plaintext')
})

t.test('a malformed object is reported by name and field; everything else keeps working', async (t) => {
  cluster.put('Pod', {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'broken', namespace: 'shop', uid: '00000000-0000-4000-8000-000000000001' },
    spec: { nodeName: 'n1' },
    status: { phase: 'Running', podIP: 'not-an-ip' },
  })
  await cluster.until('rejection reported', async () =>
    (await cluster.status('n1')).rejectedObjects.some((m) => m.includes('shop/broken') && m.includes('status.podIP')),
  )
  const before = await mtlsIntoB('a')
  const r = await connectMany(cluster.tb, cluster.pod('a'), `${b.ip}:8080`, { count: 5, concurrency: 1 })
  t.equal(r.ok, 5)
  await cluster.until('still mTLS', async () => (await mtlsIntoB('a')) === before + 5)
  t.same(await captured('n1'), ['shop/a'])
  cluster.remove('Pod', 'shop', 'broken')
  await cluster.until('rejection cleared', async () => (await cluster.status('n1')).rejectedObjects.length === 0)
})

t.test('a selector policy added for running pods is enforced at once, and its removal too', async (t) => {
  const held = await holdConnection(cluster.tb, cluster.pod('a'), `${b.ip}:8080`)
  cluster.put('AuthorizationPolicy', {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { namespace: 'shop', name: 'web-deny-client' },
    spec: { action: 'DENY', selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/client'] } }] }] },
  } as never)
  const ended = await held.ended(15_000)
  t.ok(ended.sent > 0, `the open connection from a was closed by the new policy (${JSON.stringify(ended)})`)
  const denied = await connectMany(cluster.tb, cluster.pod('a'), `${b.ip}:8080`, { count: 3, concurrency: 1 })
  t.equal(denied.ok, 0, `new connections from a are denied (${JSON.stringify(denied.errors)})`)
  t.match(cluster.ztunnels.get('n2')!.logs(), /"policy":"shop\/web-deny-client".*"connection denied by policy"/)
  cluster.remove('AuthorizationPolicy', 'shop', 'web-deny-client')
  await cluster.until('allowed again', async () => (await connectMany(cluster.tb, cluster.pod('a'), `${b.ip}:8080`, { count: 1, concurrency: 1 })).ok === 1)
})

t.test('killing the agent mid-traffic drops nothing; changes made meanwhile apply when it returns', async (t) => {
  const held = await holdConnection(cluster.tb, cluster.pod('a'), `${b.ip}:8080`)
  await cluster.kill(cluster.agents.get('n1')!)
  // While the agent is down: c opts back in; the connection keeps flowing.
  cluster.setPodLabel('shop', 'c', 'istio.io/dataplane-mode', null)
  await new Promise((r) => setTimeout(r, 1000))
  const during = await connectMany(cluster.tb, cluster.pod('a'), `${b.ip}:8080`, { count: 5, concurrency: 1 })
  t.equal(during.ok, 5, 'enrolled pods keep working without the agent (the datapath stays pinned)')
  await cluster.startAgent('n1')
  await cluster.until('c enrolled again after the restart', async () => (await captured('n1')).join() === 'shop/a,shop/c')
  t.equal(await mapEntries('n1', 'ambient_pods'), 2)
  const result = await held.stop()
  t.ok(result.sent > 0 && result.echoed === result.sent, `the held connection never dropped (sent ${result.sent}, echoed ${result.echoed})`)
})

t.test('ztunnel restart: enrolled pods fail closed while it is down, and recover', async (t) => {
  await cluster.kill(cluster.ztunnels.get('n1')!)
  const down = await connectMany(cluster.tb, cluster.pod('a'), `${b.ip}:8080`, { count: 3, concurrency: 1 })
  t.equal(down.ok, 0, `no connection bypasses the mesh while ztunnel is down (errors ${JSON.stringify(down.errors)})`)
  const legacy = await connectMany(cluster.tb, cluster.pod('old'), `${b.ip}:8080`, { count: 2, concurrency: 1 })
  t.equal(legacy.ok, 2, 'pods outside the mesh are not affected')
  await cluster.startZtunnel('n1')
  await cluster.until('a reaches b again', async () => (await connectMany(cluster.tb, cluster.pod('a'), `${b.ip}:8080`, { count: 1, concurrency: 1 })).ok === 1)
  const before = await mtlsIntoB('a')
  const r = await connectMany(cluster.tb, cluster.pod('a'), `${b.ip}:8080`, { count: 5, concurrency: 1 })
  t.equal(r.ok, 5)
  await cluster.until('in mTLS', async () => (await mtlsIntoB('a')) === before + 5)
})

t.test('removing the namespace label un-enrolls everything; deleting a pod removes its entries', async (t) => {
  cluster.remove('Pod', 'shop', 'c')
  await cluster.until('c gone', async () => (await captured('n1')).join() === 'shop/a')
  t.equal(await mapEntries('n1', 'ambient_pods'), 1)
  cluster.setNamespaceLabel('shop', 'istio.io/dataplane-mode', null)
  await cluster.until('nothing captured', async () => (await captured('n1')).length === 0 && (await captured('n2')).length === 0)
  t.equal(await mapEntries('n1', 'ambient_pods'), 0)
  t.equal(await mapEntries('n1', 'ambient_inbound'), 0)
  t.equal(await mapEntries('n2', 'ambient_pods'), 0)
  const before = await mtlsIntoB('a')
  const r = await connectMany(cluster.tb, cluster.pod('a'), `${b.ip}:8080`, { count: 3, concurrency: 1 })
  t.equal(r.ok, 3)
  t.equal(await mtlsIntoB('a'), before, 'plaintext again')
})

t.test('`ambient status` shows the table and the JSON', async (t) => {
  cluster.setNamespaceLabel('shop', 'istio.io/dataplane-mode', 'ambient')
  await cluster.until('a captured', async () => (await captured('n1')).join() === 'shop/a')
  const table = await cluster.tb.execHost(process.execPath, [`${process.cwd()}/bin/ambient.js`, 'status', '--agent', cluster.statusAddress('n1')])
  t.equal(table.code, 0, table.stderr)
  t.match(table.stdout, /node n1: agent ready/)
  t.match(table.stdout, /ztunnel: connected/)
  t.match(
    table.stdout,
    new RegExp(
      `shop\\s+a\\s+${cluster.pod('a').ip.replaceAll('.', '\\.')}\\s+spiffe://cluster.local/ns/shop/sa/client\\s+/proc/\\d+/ns/net\\s+\\d+\\s+captured`,
    ),
  )
  t.match(table.stdout, /ambient_pods\s+1\s+\d+/)
  const json = await cluster.tb.execHost(process.execPath, [`${process.cwd()}/bin/ambient.js`, 'status', '--agent', cluster.statusAddress('n1'), '--json'])
  t.equal(json.code, 0)
  const parsed = JSON.parse(json.stdout) as { pods: { name: string; state: string }[] }
  t.same(
    parsed.pods.map((p) => [p.name, p.state]),
    [['a', 'captured']],
  )
  const down = await cluster.tb.execHost(process.execPath, [`${process.cwd()}/bin/ambient.js`, 'status', '--agent', '127.0.0.1:1'])
  t.equal(down.code, 1)
  t.match(down.stderr, /cannot reach the agent at 127\.0\.0\.1:1/)
  const metrics = await cluster.metrics(cluster.agents.get('n1')!, 'status')
  t.match(metrics, /ambient_agent_enrolled_pods 1/)
  t.match(metrics, /ambient_datapath_map_entries\{map="ambient_pods"\} 1/)
  t.match(metrics, /ambient_agent_reconcile_duration_seconds_count \d+/)
  t.match(metrics, /ambient_agent_xds_clients 1/)
})
