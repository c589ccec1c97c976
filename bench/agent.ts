// The node agent's reaction times (issue: node agent), on the testbed with real
// `ambient agent`, `ambient ztunnel` and `ambient ca` processes fed by a manifests
// folder, in one run:
// 1. label -> first captured connection: a client pod connects to a server every
//    5 ms; the namespace label is written; the time until the datapath's
//    connect_redirected counter first moves (polled every ms from the pins). Repeated
//    --rounds times (label, measure, unlabel, wait).
// 2. reconcile for N pods on one node (--pods 100,1000): the namespace of N running
//    pods is labelled; the time until the agent reports all N captured, and the
//    reconcile pass durations from its histogram; then the agent is killed and
//    restarted (adoption: a pass with nothing to change).
//   node --import tsx bench/agent.ts [--rounds 5] [--pods 100,1000]
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { parseArgs } from 'node:util'
import { join } from 'node:path'
import { Datapath } from '../datapath/datapath.js'
import { DEFAULT_DELIVERY_MARK, DEFAULT_HBONE_PORT, DEFAULT_PROXY_MARK } from '../datapath/abi.js'
import { BPF_OBJECTS_DIR, REPO_ROOT } from '../common/paths.js'
import { AgentCluster } from '../testbed/agent-cluster.js'
import { startServer } from '../testbed/pod-clients.js'

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, pods: { type: 'string', default: '100,1000' } } })
const rounds = Number(values.rounds)
const sizes = values.pods!.split(',').map(Number)
if (!Number.isInteger(rounds) || rounds < 0 || rounds > 50) throw new Error(`--rounds ${values.rounds}: 0-50`)
if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 1000)) throw new Error(`--pods ${values.pods}: each 1-1000`)

const LABEL = 'istio.io/dataplane-mode'
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!

async function labelToCapture(): Promise<number[]> {
  const cluster = await AgentCluster.start({
    name: 'bench-label',
    nodes: ['n1'],
    namespaces: { shop: {} },
    pods: [
      { name: 'client', namespace: 'shop', node: 'n1', serviceAccount: 'client' },
      { name: 'server', namespace: 'shop', node: 'n1', serviceAccount: 'server' },
    ],
  })
  try {
    await startServer(cluster.tb, cluster.pod('server'), 8080)
    const datapath = Datapath.open({
      pinRoot: cluster.pinRoot('n1'),
      objectsDir: BPF_OBJECTS_DIR,
      proxyMark: DEFAULT_PROXY_MARK,
      deliveryMark: DEFAULT_DELIVERY_MARK,
      hbonePort: DEFAULT_HBONE_PORT,
    })
    const client = cluster.tb.spawnNode(cluster.pod('client'), join(REPO_ROOT, 'testbed', 'fixtures', 'tcp-client.ts'), [
      'connect',
      '--to',
      `${cluster.pod('server').ip}:8080`,
      '--count',
      String(rounds * 2000),
      '--interval-ms',
      '5',
      '--timeout-ms',
      String(rounds * 30_000),
    ])
    const samples: number[] = []
    try {
      for (let i = 0; i < rounds; i++) {
        const before = datapath.counters().connect_redirected
        const t0 = process.hrtime.bigint()
        cluster.setNamespaceLabel('shop', LABEL, 'ambient')
        const deadline = Date.now() + 20_000
        while (datapath.counters().connect_redirected === before) {
          if (Date.now() > deadline) {
            const dump = mkdtempSync(join(tmpdir(), 'bench-agent-stall-'))
            writeFileSync(join(dump, 'agent.log'), cluster.agents.get('n1')!.logs())
            writeFileSync(join(dump, 'ztunnel.log'), cluster.ztunnels.get('n1')!.logs())
            writeFileSync(join(dump, 'status.json'), JSON.stringify(await cluster.status('n1'), null, 2))
            console.error(`stalled at round ${i + 1}; t0 ${Date.now() - 20_000}; agent and ztunnel logs and the agent status in ${dump}`)
            throw new Error('no captured connection within 20 s of the label')
          }
          await new Promise((r) => setTimeout(r, 1))
        }
        samples.push(Number(process.hrtime.bigint() - t0) / 1e6)
        cluster.setNamespaceLabel('shop', LABEL, null)
        await cluster.until('released', async () => (await cluster.status('n1')).pods.length === 0)
        await new Promise((r) => setTimeout(r, 300))
      }
    } finally {
      client.kill('SIGTERM')
      datapath.close()
    }
    return samples
  } finally {
    await cluster.stop()
  }
}

function histogram(metrics: string): { count: number; sum: number } {
  const value = (name: string): number =>
    Number(
      metrics
        .split('\n')
        .find((l) => l.startsWith(name + ' '))
        ?.split(' ')[1] ?? NaN,
    )
  return { count: value('ambient_agent_reconcile_duration_seconds_count'), sum: value('ambient_agent_reconcile_duration_seconds_sum') }
}

async function reconcile(n: number): Promise<Record<string, number>> {
  const pods = Array.from({ length: n }, (_, i) => ({ name: `p${i}`, namespace: 'bulk', node: 'n1', serviceAccount: `sa${i % 10}` }))
  const built = Date.now()
  const cluster = await AgentCluster.start({ name: 'bench-reconcile', nodes: ['n1'], namespaces: { bulk: {} }, pods })
  const setupS = (Date.now() - built) / 1000
  try {
    const agent = () => cluster.agents.get('n1')!
    const h0 = histogram(await cluster.metrics(agent(), 'status'))
    const t0 = Date.now()
    cluster.setNamespaceLabel('bulk', LABEL, 'ambient')
    await cluster.until(`${n} pods captured`, async () => (await cluster.status('n1')).pods.filter((p) => p.state === 'captured').length === n, 600_000)
    const enrollMs = Date.now() - t0
    const h1 = histogram(await cluster.metrics(agent(), 'status'))
    await cluster.kill(agent())
    const t1 = Date.now()
    await cluster.startAgent('n1')
    await cluster.until('adopted', async () => (await cluster.status('n1')).pods.filter((p) => p.state === 'captured').length === n, 600_000)
    const restartMs = Date.now() - t1
    const h2 = histogram(await cluster.metrics(agent(), 'status'))
    return {
      pods: n,
      testbedSetupS: setupS,
      labelToAllCapturedMs: enrollMs,
      passesForLabel: h1.count - h0.count,
      passSecondsForLabel: h1.sum - h0.sum,
      restartToAdoptedMs: restartMs,
      adoptionPassMs: (h2.sum / h2.count) * 1000,
    }
  } catch (err) {
    const tail = (text: string): string => text.trim().split('\n').slice(-15).join('\n')
    console.error(
      `reconcile ${n} failed: ${(err as Error).message}\nagent:\n${tail(cluster.agents.get('n1')!.logs())}\nztunnel:\n${tail(cluster.ztunnels.get('n1')!.logs())}`,
    )
    throw err
  } finally {
    await cluster.stop()
  }
}

const label = rounds > 0 ? await labelToCapture() : []
if (rounds > 0)
  console.log(
    `label -> first captured connection (${rounds} rounds): p50 ${pct(label, 50).toFixed(1)} ms, max ${Math.max(...label).toFixed(1)} ms  [${label.map((x) => x.toFixed(1)).join(', ')}]`,
  )
for (const n of sizes) {
  const r = await reconcile(n)
  console.log(JSON.stringify(r))
  console.log(
    `reconcile ${n} pods: label -> all captured ${r['labelToAllCapturedMs']} ms (${r['passesForLabel']} passes, ${(r['passSecondsForLabel']! * 1000).toFixed(0)} ms in passes); agent restart -> adopted ${r['restartToAdoptedMs']} ms (adoption pass ${r['adoptionPassMs']!.toFixed(1)} ms)`,
  )
}
