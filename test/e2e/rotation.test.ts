// Workload certificates from `ambient ca` over gRPC, renewed at half-life by each
// ztunnel: a connection opened with the first certificates keeps flowing past
// their expiry and new connections get renewed ones. (Node authorization at the
// CA is covered by ca/server.test.ts.)
import t from 'tap'
import { MeshCluster } from '../../testbed/cluster.js'
import { connectMany, holdConnection, startServer } from '../../testbed/pod-clients.js'

const cluster = await MeshCluster.start({
  name: 'rotation',
  ca: { certTtl: '6s' },
  nodes: [
    { name: 'n1', pods: [{ name: 'a', namespace: 'shop', serviceAccount: 'client', enrolled: true }] },
    { name: 'n2', pods: [{ name: 'b', namespace: 'shop', serviceAccount: 'web', enrolled: true }] },
  ],
})
t.teardown(() => cluster.stop())
await startServer(cluster.tb, cluster.pod('b'), 8080)
const target = `${cluster.pod('b').ip}:8080`

interface Dump {
  certificates: { identity: string; serialNumber: string; notAfter: string }[]
}
const certificateOf = async (node: string, identity: string) =>
  ((await (await fetch(`http://127.0.0.1:${cluster.ztunnels.get(node)!.admin.port}/config_dump`)).json()) as Dump).certificates.find(
    (c) => c.identity === identity,
  )

/** b's certificate on n2 once its serial differs from `before`'s (10 s at most). */
async function renewedAfter(before: { serialNumber: string } | undefined): Promise<{ serialNumber: string } | undefined> {
  const deadline = Date.now() + 10_000
  let after = before
  while (after?.serialNumber === before?.serialNumber && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200))
    after = await certificateOf('n2', cluster.identity('b'))
  }
  return after
}

t.test('a long-lived connection survives renewals and the expiry of its first certificate', async (t) => {
  const first = await certificateOf('n2', cluster.identity('b'))
  t.ok(first?.serialNumber, 'node 2 holds a certificate for b from the CA')
  const held = await holdConnection(cluster.tb, cluster.pod('a'), target)
  // 6 s certificates renew at about 3 s; wait past the first one's expiry.
  const until = new Date(first!.notAfter).getTime() + 1500
  await new Promise((r) => setTimeout(r, Math.max(0, until - Date.now())))
  const renewed = await certificateOf('n2', cluster.identity('b'))
  t.not(renewed?.serialNumber, first!.serialNumber, 'b got a new certificate')
  t.ok(new Date(renewed!.notAfter).getTime() > Date.now(), 'which is still valid')
  const fresh = await connectMany(cluster.tb, cluster.pod('a'), target, { count: 5, concurrency: 1 })
  t.equal(fresh.ok, 5, `new connections work with renewed certificates (${JSON.stringify(fresh.errors)})`)
  const result = await held.stop()
  t.ok(result.sent > 20 && result.sent === result.echoed, `the old connection kept flowing (${result.echoed} lines echoed)`)
  const metrics = await (await fetch(`http://127.0.0.1:${cluster.ztunnels.get('n2')!.metrics.port}/metrics`)).text()
  const expiry = new RegExp(`^ambient_ztunnel_certificate_expiry_seconds\\{identity="${cluster.identity('b')}"\\} (\\d+)`, 'm').exec(metrics)
  t.ok(expiry && Number(expiry[1]) >= Math.floor(new Date(renewed!.notAfter).getTime() / 1000) - 6, `the expiry metric follows the renewal (${expiry?.[1]})`)
  t.match(
    cluster.ztunnels.get('n2')!.logs(),
    /"identity":"spiffe:\/\/cluster.local\/ns\/shop\/sa\/web".*"reason":"renewed".*"msg":"workload certificate rotated"/,
    'ztunnel logged the rotation',
  )
})

t.test('a trust bundle published with an extra root is picked up by each ztunnel; traffic goes on', async (t) => {
  const { createRootCa } = await import('../../common/identity/pki.js')
  const { readFileSync, writeFileSync } = await import('node:fs')
  const { join } = await import('node:path')
  const extra = createRootCa({ commonName: 'next root' }).certPem
  for (const node of ['n1', 'n2']) {
    const path = join(cluster.workDir, `node-${node}`, 'root-cert.pem')
    writeFileSync(path, readFileSync(path, 'utf8') + extra)
  }
  const deadline = Date.now() + 10_000
  const replaced = (): boolean => ['n1', 'n2'].every((n) => /"roots":2,"msg":"trust bundle replaced"/.test(cluster.ztunnels.get(n)!.logs()))
  while (!replaced() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
  t.ok(replaced(), 'both ztunnels applied the two-root bundle')
  const before = await certificateOf('n2', cluster.identity('b'))
  const after = await renewedAfter(before)
  t.not(after?.serialNumber, before?.serialNumber, 'a renewal went through the CA channel rebuilt with the new bundle')
  const r = await connectMany(cluster.tb, cluster.pod('a'), target, { count: 5, concurrency: 1 })
  t.equal(r.ok, 5, `new connections work under the new bundle (${JSON.stringify(r.errors)})`)
})

t.test('a node certificate re-issued into --node-cert-dir is picked up without a restart; renewals go on', async (t) => {
  const { join } = await import('node:path')
  const { readFileSync } = await import('node:fs')
  const dir = join(cluster.workDir, 'node-n2')
  const before = readFileSync(join(dir, 'node-cert.pem'), 'utf8')
  const cli = join(import.meta.dirname, '..', '..', 'bin', 'ambient.js')
  const issued = await cluster.tb.execHost(process.execPath, [cli, 'ca', '--cacerts', join(cluster.workDir, 'ca'), 'node-cert', '--node', 'n2', '--out', dir])
  t.equal(issued.code, 0, issued.stderr)
  t.not(readFileSync(join(dir, 'node-cert.pem'), 'utf8'), before, 'a new node certificate is on disk')
  const logs = (): string => cluster.ztunnels.get('n2')!.logs()
  const deadline = Date.now() + 10_000
  while (!/"msg":"node certificate replaced"/.test(logs()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
  t.match(logs(), /"expires":"[^"]+","msg":"node certificate replaced"/, 'ztunnel on n2 applied it')
  const current = await certificateOf('n2', cluster.identity('b'))
  const after = await renewedAfter(current)
  t.not(after?.serialNumber, current?.serialNumber, 'a renewal went through the CA channel rebuilt with the new node certificate')
  const r = await connectMany(cluster.tb, cluster.pod('a'), target, { count: 5, concurrency: 1 })
  t.equal(r.ok, 5, `new connections work (${JSON.stringify(r.errors)})`)
})
