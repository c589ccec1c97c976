// The node agent's reaction times (issue: node agent), on the testbed with real
// `ambient agent`, `ambient ztunnel` and `ambient ca` processes fed by a manifests
// folder, in one run:
// 1. label -> first captured connection: a client pod connects to a server every
//    5 ms; the namespace label is written; the time until the datapath's
//    connect_redirected counter first moves (polled every ms from the pins). Repeated
//    --rounds times (label, measure, unlabel, wait). A round with no capture within
//    20 s is a stall: its agent and ztunnel logs are kept, it is counted, and the
//    rounds go on; the summary gives p50/p99/max and the stalls.
// 2. reconcile for N pods on one node (--pods 100,1000, or none): the namespace of N
//    running pods is labelled; the time until the agent reports all N captured, when
//    ztunnel had listeners in the first and last pod and the agent captured them
//    (from their logs), the reconcile passes (the agent's histogram), the CPU
//    seconds the agent and ztunnel used meanwhile; then unlabelled until ztunnel
//    released every pod. --repeat cycles on one testbed (building 1,000 pods takes
//    minutes). Then the agent is killed and restarted (adoption: a pass with
//    nothing to change).
//   node --import tsx bench/agent.ts [--rounds 5] [--pods 100,1000] [--repeat 3] [--cpu-prof DIR]
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { parseArgs } from 'node:util'
import { join } from 'node:path'
import { Datapath } from '../datapath/datapath.js'
import { DEFAULT_DELIVERY_MARK, DEFAULT_HBONE_PORT, DEFAULT_PROXY_MARK } from '../datapath/abi.js'
import { BPF_OBJECTS_DIR, REPO_ROOT } from '../common/paths.js'
import { AgentCluster, type ProcessHandle } from '../testbed/agent-cluster.js'
import { startServer } from '../testbed/pod-clients.js'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    pods: { type: 'string', default: '100,1000' },
    repeat: { type: 'string', default: '3' },
    // V8 CPU profiles of the processes the bench starts (CA, agent, ztunnel), written to DIR when they exit.
    'cpu-prof': { type: 'string' },
  },
})
if (values['cpu-prof']) {
  // Node 20 refuses --cpu-prof in NODE_OPTIONS: a preloaded module profiles each child instead.
  process.env['AMBIENT_BENCH_CPU_PROF_DIR'] = values['cpu-prof']
  process.env['NODE_OPTIONS'] = `${process.env['NODE_OPTIONS'] ?? ''} --import=${join(REPO_ROOT, 'bench', 'tools', 'cpu-profile.mjs')}`.trim()
}
const repeat = Number(values.repeat)
if (!Number.isInteger(repeat) || repeat < 1 || repeat > 20) throw new Error(`--repeat ${values.repeat}: 1-20`)
const rounds = Number(values.rounds)
const sizes = values.pods === '' || values.pods === 'none' ? [] : values.pods!.split(',').map(Number)
if (!Number.isInteger(rounds) || rounds < 0 || rounds > 1000) throw new Error(`--rounds ${values.rounds}: 0-1000`)
if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 1000)) throw new Error(`--pods ${values.pods}: each 1-1000, or none`)
const STALL_MS = 20_000

const LABEL = 'istio.io/dataplane-mode'
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!

interface LabelRounds {
  /** ms from label to the first redirected connect, per round that captured. */
  readonly samples: number[]
  /** Rounds with no capture within STALL_MS, with the folder holding their logs. */
  readonly stalls: { readonly round: number; readonly dump: string }[]
  /** Rounds in which sk_lookup dropped a SYN for want of a listener (a pod captured before ztunnel listened in it). */
  readonly droppedSynRounds: number
  /** Rounds slower than SLOW_MS, with where their logs are (the first few). */
  readonly slow: { readonly round: number; readonly ms: number; readonly dump: string | null }[]
}

const SLOW_MS = 1000
const SLOW_DUMPS = 3

function dumpRound(cluster: AgentCluster, datapath: Datapath, prefix: string): string {
  const dump = mkdtempSync(join(tmpdir(), prefix))
  writeFileSync(join(dump, 'agent.log'), cluster.agents.get('n1')!.logs())
  writeFileSync(join(dump, 'ztunnel.log'), cluster.ztunnels.get('n1')!.logs())
  writeFileSync(join(dump, 'datapath.json'), JSON.stringify(datapathState(datapath), null, 2))
  return dump
}

async function labelToCapture(): Promise<LabelRounds> {
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
      '--quiet',
    ])
    const samples: number[] = []
    const stalls: { round: number; dump: string }[] = []
    const slow: { round: number; ms: number; dump: string | null }[] = []
    let droppedSynRounds = 0
    try {
      for (let i = 0; i < rounds; i++) {
        const counters = datapath.counters()
        const before = counters.connect_redirected
        const dropsBefore = counters.sk_lookup_no_listener
        const t0 = process.hrtime.bigint()
        cluster.setNamespaceLabel('shop', LABEL, 'ambient')
        const deadline = Date.now() + STALL_MS
        let stalled = false
        while (datapath.counters().connect_redirected === before) {
          if (Date.now() > deadline) {
            stalled = true
            break
          }
          await new Promise((r) => setTimeout(r, 1))
        }
        const ms = Number(process.hrtime.bigint() - t0) / 1e6
        if (stalled) {
          const dump = dumpRound(cluster, datapath, 'bench-agent-stall-')
          writeFileSync(join(dump, 'status.json'), JSON.stringify(await cluster.status('n1'), null, 2))
          console.error(`stalled at round ${i + 1} (label at ${Date.now() - STALL_MS}); agent and ztunnel logs, agent status and the datapath in ${dump}`)
          stalls.push({ round: i + 1, dump })
        } else {
          samples.push(ms)
          if (ms > SLOW_MS) slow.push({ round: i + 1, ms, dump: slow.length < SLOW_DUMPS ? dumpRound(cluster, datapath, 'bench-agent-slow-') : null })
        }
        if (datapath.counters().sk_lookup_no_listener !== dropsBefore) droppedSynRounds++
        if ((i + 1) % 50 === 0)
          console.error(`round ${i + 1}/${rounds}: p50 ${pct(samples, 50).toFixed(1)} ms, max ${Math.max(...samples).toFixed(1)} ms, ${stalls.length} stalls`)
        cluster.setNamespaceLabel('shop', LABEL, null)
        await cluster.until('released', async () => (await cluster.status('n1')).pods.length === 0, 60_000)
        await new Promise((r) => setTimeout(r, 300))
      }
    } finally {
      client.kill('SIGTERM')
      datapath.close()
    }
    return { samples, stalls, droppedSynRounds, slow }
  } finally {
    await cluster.stop()
  }
}

/** What the pinned maps hold, for a stall's dump (bigints as strings). */
function datapathState(datapath: Datapath): unknown {
  return {
    enrolled: datapath.enrolledPods().map((p) => ({ ...p, netnsCookie: String(p.netnsCookie) })),
    occupancy: datapath.occupancy(),
    counters: Object.fromEntries(Object.entries(datapath.counters()).map(([k, v]) => [k, String(v)])),
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

/** CPU seconds (user + system) a process used so far, from /proc. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return NaN
  }
}

/** Times (ms since `since`) of the log lines of `handle` with this msg. */
function logTimes(handle: ProcessHandle, msg: string, since: number): number[] {
  const times: number[] = []
  for (const line of handle.logs().split('\n')) {
    if (!line.includes(`"msg":"${msg}"`)) continue
    const time = Number(/"time":(\d+)/.exec(line)?.[1])
    if (time >= since) times.push(time - since)
  }
  return times
}

/** The log lines of `handle` with this msg since `since`, parsed. */
function logLines(handle: ProcessHandle, msg: string, since: number): Record<string, unknown>[] {
  return handle
    .logs()
    .split('\n')
    .filter((line) => line.includes(`"msg":"${msg}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => (line['time'] as number) >= since)
}

/** Has the process write its CPU profile so far (bench/tools/cpu-profile.mjs on SIGUSR2) and waits for the file. */
async function profileSoFar(handle: ProcessHandle, dir: string): Promise<void> {
  const pid = handle.child.pid!
  const written = (): boolean => readdirSync(dir).some((f) => f.endsWith(`-${pid}-1.cpuprofile`))
  handle.child.kill('SIGUSR2')
  const deadline = Date.now() + 30_000
  while (!written() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
  await new Promise((r) => setTimeout(r, 500)) // the write may still be under way
}

interface Cycle {
  readonly labelToAllCapturedMs: number
  /** When ztunnel had opened the first and last pod's listeners, and the agent captured the first and last pod. */
  readonly ztunnelListeningMs: readonly [number, number]
  readonly agentCapturedMs: readonly [number, number]
  /** When ztunnel applied workloads from the agent (ms since the label). */
  readonly ztunnelWorkloadsAppliedMs: readonly number[]
  /** The agent's passes that captured or released pods: when they ended and their phases (ms). */
  readonly agentPassPhases: readonly Record<string, unknown>[]
  readonly passes: number
  readonly passMs: number
  readonly agentCpuS: number
  readonly ztunnelCpuS: number
  readonly unlabelToAllReleasedMs: number
}

async function reconcile(n: number): Promise<Record<string, unknown>> {
  const pods = Array.from({ length: n }, (_, i) => ({ name: `p${i}`, namespace: 'bulk', node: 'n1', serviceAccount: `sa${i % 10}` }))
  const built = Date.now()
  const cluster = await AgentCluster.start({ name: 'bench-reconcile', nodes: ['n1'], namespaces: { bulk: {} }, pods, readyTimeoutMs: 120_000 })
  const setupS = (Date.now() - built) / 1000
  try {
    const agent = (): ProcessHandle => cluster.agents.get('n1')!
    const ztunnel = (): ProcessHandle => cluster.ztunnels.get('n1')!
    const captured = async (): Promise<number> => (await cluster.status('n1')).pods.filter((p) => p.state === 'captured').length
    const cycles: Cycle[] = []
    for (let i = 0; i < repeat; i++) {
      const h0 = histogram(await cluster.metrics(agent(), 'status'))
      const cpu0 = [cpuSeconds(agent().child.pid), cpuSeconds(ztunnel().child.pid)]
      const t0 = Date.now()
      cluster.setNamespaceLabel('bulk', LABEL, 'ambient')
      await cluster.until(`${n} pods captured`, async () => (await captured()) === n, 600_000)
      const enrollMs = Date.now() - t0
      const cpu1 = [cpuSeconds(agent().child.pid), cpuSeconds(ztunnel().child.pid)]
      const h1 = histogram(await cluster.metrics(agent(), 'status'))
      const listening = logTimes(ztunnel(), 'workload captured', t0)
      const capturedAt = logTimes(agent(), 'pod captured', t0)
      const t1 = Date.now()
      cluster.setNamespaceLabel('bulk', LABEL, null)
      await cluster.until(`${n} pods released`, async () => (await cluster.status('n1')).pods.length === 0, 600_000)
      await cluster.until('ztunnel released them', () => logTimes(ztunnel(), 'workload released', t1).length >= n, 600_000)
      const cycle: Cycle = {
        labelToAllCapturedMs: enrollMs,
        ztunnelListeningMs: [Math.min(...listening), Math.max(...listening)],
        agentCapturedMs: [Math.min(...capturedAt), Math.max(...capturedAt)],
        ztunnelWorkloadsAppliedMs: logTimes(ztunnel(), 'workloads from the agent applied', t0),
        agentPassPhases: logLines(agent(), 'reconciled', t0)
          .filter((l) => (l['time'] as number) <= t0 + enrollMs)
          .map((l) => ({ atMs: (l['time'] as number) - t0, captured: l['captured'], ...(l['phasesMs'] as object) })),
        passes: h1.count - h0.count,
        passMs: Math.round((h1.sum - h0.sum) * 1000),
        agentCpuS: Number((cpu1[0]! - cpu0[0]!).toFixed(2)),
        ztunnelCpuS: Number((cpu1[1]! - cpu0[1]!).toFixed(2)),
        unlabelToAllReleasedMs: Date.now() - t1,
      }
      cycles.push(cycle)
      console.error(`reconcile ${n} pods, cycle ${i + 1}/${repeat} (load ${loadavg()[0]!.toFixed(2)}): ${JSON.stringify(cycle)}`)
    }
    // An agent restart with every pod captured: the adoption pass has nothing to change.
    cluster.setNamespaceLabel('bulk', LABEL, 'ambient')
    await cluster.until(`${n} pods captured`, async () => (await captured()) === n, 600_000)
    if (values['cpu-prof']) await profileSoFar(agent(), values['cpu-prof']) // SIGKILL writes no profile
    await cluster.kill(agent())
    const t2 = Date.now()
    await cluster.startAgent('n1')
    await cluster.until('adopted', async () => (await captured()) === n, 600_000)
    const restartMs = Date.now() - t2
    const h2 = histogram(await cluster.metrics(agent(), 'status'))
    const all = cycles.map((c) => c.labelToAllCapturedMs)
    return {
      pods: n,
      testbedSetupS: setupS,
      labelToAllCapturedMs: all,
      labelToAllCapturedMedianMs: pct(all, 50),
      cycles,
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

if (rounds > 0) {
  const { samples, stalls, droppedSynRounds, slow } = await labelToCapture()
  const shown = (p: number): string => (samples.length > 0 ? pct(samples, p).toFixed(1) : '-')
  console.log(
    JSON.stringify({
      rounds,
      captured: samples.length,
      stalls: stalls.length,
      p50Ms: shown(50),
      p90Ms: shown(90),
      p99Ms: shown(99),
      maxMs: Math.max(...samples).toFixed(1),
      droppedSynRounds,
      slowRounds: slow.map((s) => ({ round: s.round, ms: Math.round(s.ms), dump: s.dump })),
    }),
  )
  console.log(
    `label -> first captured connection (${rounds} rounds): p50 ${shown(50)} ms, p90 ${shown(90)} ms, p99 ${shown(99)} ms, max ${Math.max(...samples).toFixed(1)} ms; ${stalls.length} stalls (no capture within ${STALL_MS / 1000} s); ${slow.length} rounds over ${SLOW_MS} ms; ${droppedSynRounds} rounds with a SYN dropped for want of a listener${stalls.map((s) => `\n  stall at round ${s.round}: ${s.dump}`).join('')}`,
  )
}
for (const n of sizes) {
  const r = await reconcile(n)
  console.log(JSON.stringify(r))
  console.log(
    `reconcile ${n} pods: label -> all captured ${(r['labelToAllCapturedMs'] as number[]).join(', ')} ms (median ${r['labelToAllCapturedMedianMs']}); agent restart -> adopted ${r['restartToAdoptedMs']} ms (adoption pass ${(r['adoptionPassMs'] as number).toFixed(1)} ms)`,
  )
}
