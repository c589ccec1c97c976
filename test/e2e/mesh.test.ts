// Two nodes, two ztunnels, real mutual TLS: pod a (node 1) talks to pod b (node 2)
// through both ztunnels in an HBONE tunnel; what crosses between the nodes is TLS
// records only; b sees a's address; each side holds its own SPIFFE identity; the
// TCP metrics carry Istio's labels and agree on the bytes.
import t from 'tap'
import { join } from 'node:path'
import { MeshCluster } from '../../testbed/cluster.js'
import { captureBetweenNodes, TLS_APPLICATION_DATA } from '../../testbed/capture.js'
import { connectMany, startServer, waitFor } from '../../testbed/pod-clients.js'

const cluster = await MeshCluster.start({
  name: 'mesh',
  nodes: [
    {
      name: 'n1',
      pods: [
        { name: 'a', namespace: 'shop', serviceAccount: 'client', enrolled: true },
        { name: 'legacy', namespace: 'legacy', serviceAccount: 'default', enrolled: false },
      ],
    },
    { name: 'n2', pods: [{ name: 'b', namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' }, enrolled: true }] },
  ],
})
t.teardown(() => cluster.stop())
await startServer(cluster.tb, cluster.pod('b'), 8080)
const a = cluster.pod('a')
const b = cluster.pod('b')

function captureMesh(name: string, traffic: () => Promise<void>): Promise<Buffer> {
  return captureBetweenNodes(cluster.tb.node('n2').netnsPath, join(cluster.workDir, `${name}.pcap`), traffic)
}

t.test('pod to pod across nodes is mutual TLS on the wire, and b sees a', async (t) => {
  let result: Awaited<ReturnType<typeof connectMany>> | undefined
  const pcap = await captureMesh('mesh', async () => {
    result = await connectMany(cluster.tb, a, `${b.ip}:8080`, { count: 20, concurrency: 5 })
  })
  t.equal(result!.ok, 20, `all connections echoed (errors ${JSON.stringify(result!.errors)})`)
  t.ok(
    result!.connections.every((c) => c.serverSawRemoteIp === a.ip),
    "b sees a's own address",
  )
  t.ok(
    result!.connections.every((c) => c.peer === `${b.ip}:8080`),
    'a sees b as its peer',
  )
  t.ok(pcap.length > 1000, `traffic was captured between the nodes (${pcap.length} bytes)`)
  t.equal(pcap.indexOf('ping-'), -1, 'no plaintext payload between the nodes')
  t.equal(pcap.indexOf('"remote"'), -1, "no plaintext of the server's greeting either")
  t.ok(pcap.indexOf(TLS_APPLICATION_DATA) >= 0, 'TLS 1.3 application-data records cross between the nodes')
})

t.test('the same capture sees plaintext from a legacy pod (the check can fail)', async (t) => {
  const pcap = await captureMesh('legacy', async () => {
    const result = await connectMany(cluster.tb, cluster.pod('legacy'), `${b.ip}:8080`, { count: 10, concurrency: 1 })
    t.equal(result.ok, 10, 'a legacy pod still reaches the enrolled pod (PERMISSIVE)')
  })
  t.ok(pcap.indexOf('ping-') >= 0, 'plaintext payload is visible when it is not tunnelled')
})

t.test('each ztunnel holds its own workload identity; metrics agree on bytes', async (t) => {
  const dump = async (node: string) =>
    (await fetch(`http://127.0.0.1:${cluster.ztunnels.get(node)!.admin.port}/config_dump`)).json() as Promise<{
      certificates: { identity: string }[]
      localPods: { identity: string }[]
    }>
  const n1 = await dump('n1')
  const n2 = await dump('n2')
  t.same(
    n1.localPods.map((p) => p.identity),
    [cluster.identity('a')],
  )
  t.same(
    n2.localPods.map((p) => p.identity),
    [cluster.identity('b')],
  )
  t.ok(
    n1.certificates.some((c) => c.identity === cluster.identity('a')),
    "node 1 holds a's certificate",
  )
  t.ok(
    n2.certificates.some((c) => c.identity === cluster.identity('b')),
    "node 2 holds b's certificate",
  )
  t.notOk(JSON.stringify([n1, n2]).includes('PRIVATE KEY'), 'no private key in /config_dump')

  const metrics = async (node: string) => (await fetch(`http://127.0.0.1:${cluster.ztunnels.get(node)!.metrics.port}/metrics`)).text()
  const sum = (text: string, name: string, match: string[]) =>
    text
      .split('\n')
      .filter((l) => l.startsWith(name + '{') && match.every((m) => l.includes(m)))
      .reduce((s, l) => s + Number(l.split(' ').pop()), 0)
  const mtls = ['connection_security_policy="mutual_tls"', `source_principal="${cluster.identity('a')}"`, `destination_principal="${cluster.identity('b')}"`]
  await waitFor(async () => sum(await metrics('n2'), 'istio_tcp_connections_closed_total', mtls) >= 20, 'destination ztunnel counted the closed connections')
  const src = await metrics('n1')
  const dst = await metrics('n2')
  t.equal(sum(src, 'istio_tcp_connections_opened_total', ['reporter="source"', ...mtls]), 20, 'source ztunnel: 20 opened')
  t.equal(
    sum(dst, 'istio_tcp_connections_opened_total', [
      'reporter="destination"',
      ...mtls,
      'destination_workload="b"',
      'destination_app="web"',
      'source_workload="a"',
    ]),
    20,
    'destination ztunnel: 20 opened, labelled',
  )
  const sentSrc = sum(src, 'istio_tcp_received_bytes_total', mtls)
  const sentDst = sum(dst, 'istio_tcp_received_bytes_total', mtls)
  t.ok(sentSrc > 0 && Math.abs(sentSrc - sentDst) <= sentSrc * 0.01, `bytes a→b agree within 1% (source ${sentSrc}, destination ${sentDst})`)
  const backSrc = sum(src, 'istio_tcp_sent_bytes_total', mtls)
  const backDst = sum(dst, 'istio_tcp_sent_bytes_total', mtls)
  t.ok(backSrc > 0 && Math.abs(backSrc - backDst) <= backSrc * 0.01, `bytes b→a agree within 1% (source ${backSrc}, destination ${backDst})`)
})
