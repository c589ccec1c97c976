// Upgrading ztunnel without refusing or resetting a connection (--handoff-socket):
// a new ztunnel started next to the running one takes over its pods' listening
// sockets; the old one stops accepting, lets its open connections finish and
// exits. Across the upgrade of the server's node (inbound HBONE) and of the
// client's node (outbound), long-lived connections keep echoing and a connection
// loop sees no failure. Then SIGTERM drains: an open connection goes on until its
// client closes it, and ztunnel exits then, before the deadline.
// Run on both HBONE engines (AMBIENT_HBONE_ENGINE=node for Node's TLS and HTTP/2).
import t from 'tap'
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { AgentCluster, type ProcessHandle } from '../../testbed/agent-cluster.js'
import { connectMany, holdConnection, startServer } from '../../testbed/pod-clients.js'
import { REPO_ROOT } from '../../common/paths.js'

const DRAIN = '20s'
const cluster = await AgentCluster.start({
  name: 'handoff',
  nodes: ['n1', 'n2'],
  namespaces: { shop: { 'istio.io/dataplane-mode': 'ambient' } },
  pods: [
    { name: 'a', namespace: 'shop', node: 'n1', serviceAccount: 'client' },
    { name: 'b', namespace: 'shop', node: 'n2', serviceAccount: 'web' },
  ],
})
const predecessors: ProcessHandle[] = [] // out of cluster.ztunnels once replaced: stopped here if a test fails
t.teardown(async () => {
  for (const p of predecessors) await cluster.kill(p)
  await cluster.stop()
})
await startServer(cluster.tb, cluster.pod('b'), 8080)
const to = `${cluster.pod('b').ip}:8080`
const handoffSocket = (node: string): string => join(cluster.workDir, `ztunnel-${node}.sock`)
const flags = (node: string): string[] => ['--handoff-socket', handoffSocket(node), '--drain-timeout', DRAIN]

// The ztunnels the cluster started have no handoff socket: replace them before anything is enrolled.
for (const node of ['n1', 'n2']) {
  await cluster.kill(cluster.ztunnels.get(node)!)
  await cluster.startZtunnel(node, flags(node))
}
const captured = async (node: string): Promise<number> => (await cluster.status(node)).pods.filter((p) => p.state === 'captured').length
await cluster.until('a and b captured', async () => (await captured('n1')) === 1 && (await captured('n2')) === 1, 30_000)
await cluster.until('a reaches b', async () => (await connectMany(cluster.tb, cluster.pod('a'), to, { count: 1, concurrency: 1 })).ok === 1)

/** A connection loop from a to b: one connection every 5 ms, up to `count`; resolves with what it saw. */
function connectionLoop(count: number): { child: ChildProcess; result: Promise<{ ok: number; failed: number; errors: Record<string, number> }> } {
  const child = cluster.tb.spawnNode(cluster.pod('a'), join(REPO_ROOT, 'testbed', 'fixtures', 'tcp-client.ts'), [
    'connect',
    '--to',
    to,
    '--count',
    String(count),
    '--interval-ms',
    '5',
    '--timeout-ms',
    '60000',
    '--quiet',
  ])
  let out = ''
  child.stdout?.on('data', (d) => (out += d))
  const result = new Promise<{ ok: number; failed: number; errors: Record<string, number> }>((resolve, reject) =>
    child.once('exit', () => {
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? ''))
      } catch {
        reject(new Error(`the connection loop printed no result: ${out}`))
      }
    }),
  )
  return { child, result }
}

function exited(handle: ProcessHandle, timeoutMs: number): Promise<{ code: number | null; ms: number }> {
  const started = Date.now()
  if (handle.child.exitCode !== null) return Promise.resolve({ code: handle.child.exitCode, ms: 0 })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the old ztunnel did not exit within ${timeoutMs} ms:\n${handle.logs().slice(-3000)}`)), timeoutMs)
    handle.child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, ms: Date.now() - started })
    })
  })
}

for (const node of ['n2', 'n1']) {
  t.test(`upgrading ztunnel on ${node}: nothing refused, nothing reset, the old one drains and exits`, async (t) => {
    const old = cluster.ztunnels.get(node)!
    predecessors.push(old)
    const held = [await holdConnection(cluster.tb, cluster.pod('a'), to), await holdConnection(cluster.tb, cluster.pod('a'), to)]
    const loop = connectionLoop(1500)
    await new Promise((r) => setTimeout(r, 500)) // the loop runs before, during and after the takeover
    const upgraded = await cluster.startZtunnel(node, flags(node))
    t.match(upgraded.logs(), /"msg":"taking over the pods of the running ztunnel"/, 'the new ztunnel took the sockets over')
    await cluster.until('the old ztunnel says it handed over', () => old.logs().includes('"msg":"handed over to the new ztunnel: draining"'))
    t.equal(old.child.exitCode, null, 'the old ztunnel still runs: its connections are open')
    const { ok, failed, errors } = await loop.result
    t.equal(failed, 0, `no connection of the loop failed across the upgrade: ${JSON.stringify(errors)}`)
    t.equal(ok, 1500)
    for (const h of held) {
      const { sent, echoed } = await h.stop()
      t.ok(sent > 10, `the long-lived connection kept sending (${sent} lines)`)
      t.equal(echoed, sent, 'and every line came back: not reset')
    }
    const { code, ms } = await exited(old, 15_000)
    t.equal(code, 0, 'the old ztunnel exits cleanly once its connections ended')
    t.ok(ms < 15_000, `well before the ${DRAIN} drain deadline (${ms} ms after the clients closed)`)
    t.match(old.logs(), /"msg":"drained: every connection ended"/)
    const after = await connectMany(cluster.tb, cluster.pod('a'), to, { count: 20, concurrency: 2 })
    t.equal(after.ok, 20, `the new ztunnel serves new connections: ${JSON.stringify(after.errors)}`)
  })
}

t.test('SIGTERM drains: an open connection goes on until its client ends it, then ztunnel exits', async (t) => {
  const z = cluster.ztunnels.get('n2')!
  const held = await holdConnection(cluster.tb, cluster.pod('a'), to)
  await new Promise((r) => setTimeout(r, 300))
  z.child.kill('SIGTERM')
  await new Promise((r) => setTimeout(r, 1500))
  t.equal(z.child.exitCode, null, 'still running while the connection is open')
  const { sent, echoed } = await held.stop()
  t.ok(sent > 20, `the connection kept sending through the drain (${sent} lines)`)
  t.equal(echoed, sent, 'nothing lost, no reset')
  const { code } = await exited(z, 10_000)
  t.equal(code, 0)
  t.match(z.logs(), /"msg":"drained: every connection ended"/)
})
