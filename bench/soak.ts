// Soak: --connections (default 10,000) concurrent connections from pod `client`
// (node n1) to pod `server` (node n2) through both ztunnels of a testbed
// AgentCluster (real agent, ztunnel and CA processes, HBONE on the default
// engine), held for --minutes (default 10) while AuthorizationPolicies change
// every --policy-every seconds (never denying the client: every connection must
// survive the re-evaluation) and workload certificates rotate (ztunnels run with
// --cert-ttl, renewed at half-life). Each connection sends --chunk bytes every
// --interval-ms whose content is a function of (connection, offset) and checks
// every echoed byte (test/fuzz/fixtures/echo-check.ts). Every --sample-every
// seconds it samples each ztunnel's and agent's RSS and open fds from /proc.
// Prints the samples and a summary against the goals: RSS growth < 5% and no fd
// growth from the baseline (taken once every connection is open and a warmup has
// passed), 0 bytes lost, 0 connections closed early.
//
// File descriptors: every process on the path holds about one fd per connection
// (the client, ztunnel n1's accepted sockets, ztunnel n2's delivery sockets, the
// server). Node raises its soft RLIMIT_NOFILE to the hard limit at start, and
// children inherit the limit; when the hard limit is below connections + 2048,
// this bench re-executes itself under `prlimit --nofile=N:N` (needs root, as the
// testbed does) so that every process it starts inherits the higher limit.
//
// Traffic stays inside the testbed's namespaces (198.18.0.0/15); bounded by
// --connections (at most 20,000) and --minutes (at most 120).
//
//   node --import tsx bench/soak.ts [--minutes 10] [--connections 10000] [--chunk 256] [--interval-ms 2000]
//        [--policy-every 30] [--cert-ttl 2m] [--sample-every 10] [--warmup 60]
import { spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { AgentCluster, type ProcessHandle } from '../testbed/agent-cluster.js'
import { connectMany, startServer } from '../testbed/pod-clients.js'
import type { EchoStatus } from '../test/fuzz/fixtures/echo-check.js'

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    connections: { type: 'string', default: '10000' },
    chunk: { type: 'string', default: '256' },
    'interval-ms': { type: 'string', default: '2000' },
    'policy-every': { type: 'string', default: '30' },
    'cert-ttl': { type: 'string', default: '2m' },
    'sample-every': { type: 'string', default: '10' },
    warmup: { type: 'string', default: '60' },
  },
})
const minutes = Number(values.minutes)
const connections = Number(values.connections)
const policyEverySec = Number(values['policy-every'])
const sampleEverySec = Number(values['sample-every'])
const warmupSec = Number(values.warmup)
if (!(minutes > 0 && minutes <= 120) || !(Number.isInteger(connections) && connections >= 1 && connections <= 20_000)) {
  console.error('--minutes must be in (0, 120] and --connections in 1-20000')
  process.exit(2)
}

// ---- file descriptors: make sure every process can hold one per connection ----
const NEEDED_FDS = connections + 2048
function nofile(): { soft: number; hard: number } {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'))!
  const [soft, hard] = line
    .replace('Max open files', '')
    .trim()
    .split(/\s+/)
    .map((v) => (v === 'unlimited' ? Infinity : Number(v)))
  return { soft: soft!, hard: hard! }
}
const limits = nofile()
if (limits.hard < NEEDED_FDS) {
  if (process.argv.includes('--fd-limit-raised')) {
    console.error(`RLIMIT_NOFILE hard limit is ${limits.hard} even after prlimit; ${NEEDED_FDS} are needed`)
    process.exit(2)
  }
  console.log(`RLIMIT_NOFILE hard limit ${limits.hard} < ${NEEDED_FDS}: re-executing under prlimit --nofile=${NEEDED_FDS}:${NEEDED_FDS}`)
  const r = spawnSync(
    'prlimit',
    [`--nofile=${NEEDED_FDS}:${NEEDED_FDS}`, '--', process.execPath, ...process.execArgv, ...process.argv.slice(1), '--fd-limit-raised'],
    {
      stdio: 'inherit',
    },
  )
  process.exit(r.status ?? 1)
}

const policy = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: 'shop' },
  spec,
})
const CLIENT_PRINCIPAL = 'cluster.local/ns/shop/sa/client'
const allow = (ports: string[]) =>
  policy('server-allow-client', {
    selector: { matchLabels: { app: 'server' } },
    action: 'ALLOW',
    rules: [{ from: [{ source: { principals: [CLIENT_PRINCIPAL] } }], to: [{ operation: { ports } }] }],
  })
const denyOther = policy('server-deny-other', {
  selector: { matchLabels: { app: 'server' } },
  action: 'DENY',
  rules: [{ from: [{ source: { principals: ['cluster.local/ns/other/sa/intruder'] } }] }],
})

console.log(
  `soak: ${connections} connections for ${minutes} min, ${values.chunk} B every ${values['interval-ms']} ms each, policy change every ${policyEverySec} s, workload cert ttl ${values['cert-ttl']} (RLIMIT_NOFILE ${limits.soft}/${limits.hard})`,
)
const cluster = await AgentCluster.start({
  name: 'soak',
  nodes: ['n1', 'n2'],
  namespaces: { shop: { 'istio.io/dataplane-mode': 'ambient' } },
  pods: [
    { name: 'client', namespace: 'shop', node: 'n1', serviceAccount: 'client', labels: { app: 'client' } },
    { name: 'server', namespace: 'shop', node: 'n2', serviceAccount: 'server', labels: { app: 'server' } },
  ],
  policies: [allow(['8080'])],
  ztunnelArgs: ['--cert-ttl', values['cert-ttl']!],
})
let echo: ChildProcess | null = null
const stop = async (): Promise<void> => {
  echo?.kill('SIGKILL')
  await cluster.stop()
}
process.once('SIGINT', () => void stop().then(() => process.exit(130)))

interface Sample {
  readonly t: number
  readonly rssMb: Record<string, number>
  readonly fds: Record<string, number>
  readonly echo: EchoStatus | null
}

/** The process a handle runs (the sh wrapper execs it, so it is the same pid). */
function proc(handle: ProcessHandle): { rssMb: number; fds: number } {
  const pid = handle.child.pid!
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN)
  return { rssMb: Math.round(rssKb / 102.4) / 10, fds: readdirSync(`/proc/${pid}/fd`).length }
}

/** The serial numbers of a ztunnel's workload certificates (its /config_dump): a new one is a renewal. */
async function certificateSerials(node: string): Promise<string[]> {
  const admin = cluster.ztunnels.get(node)!.ready['admin'] as { port: number }
  const dump = (await (await fetch(`http://127.0.0.1:${admin.port}/config_dump`)).json()) as { certificates: { serialNumber: string }[] }
  return dump.certificates.map((c) => c.serialNumber)
}

try {
  const client = cluster.pod('client')
  const server = cluster.pod('server')
  await startServer(cluster.tb, server, 8080)
  await cluster.until(
    'both pods captured',
    async () => {
      const [s1, s2] = [await cluster.status('n1'), await cluster.status('n2')]
      return s1.pods.some((p) => p.name === 'client' && p.state === 'captured') && s2.pods.some((p) => p.name === 'server' && p.state === 'captured')
    },
    60_000,
  )
  const probe = await connectMany(cluster.tb, client, `${server.ip}:8080`, { count: 5, concurrency: 1 })
  if (probe.ok !== 5) throw new Error(`the mesh does not carry client -> server: ${JSON.stringify(probe.errors)}`)

  const seconds = Math.round(minutes * 60)
  echo = cluster.tb.spawnNode(client, join(import.meta.dirname, '..', 'test', 'fuzz', 'fixtures', 'echo-check.ts'), [
    '--to',
    `${server.ip}:8080`,
    '--connections',
    String(connections),
    '--open-concurrency',
    '250',
    '--chunk',
    values.chunk!,
    '--interval-ms',
    values['interval-ms']!,
    '--seconds',
    String(seconds + 600), // stopped by SIGTERM below; this only bounds a bench that died
    '--report-ms',
    '2000',
  ])
  let latest: EchoStatus | null = null
  let final: EchoStatus | null = null
  let ready = false
  let buffer = ''
  echo.stderr?.on('data', (d) => process.stderr.write(d))
  echo.stdout?.on('data', (d) => {
    buffer += d
    const lines = buffer.split('\n')
    buffer = lines.pop()!
    for (const line of lines) {
      const s = JSON.parse(line) as EchoStatus & { ready?: boolean; done?: boolean }
      if (s.ready) ready = true
      if (s.done) final = s
      latest = s
    }
  })
  const echoExit = new Promise<void>((r) => echo!.once('exit', () => r()))
  const rampStart = Date.now()
  while (!ready) {
    if (echo.exitCode !== null) throw new Error('echo-check exited during the ramp')
    if (Date.now() - rampStart > 600_000) throw new Error(`${connections} connections not open after 10 min: ${JSON.stringify(latest)}`)
    await new Promise((r) => setTimeout(r, 500))
  }
  console.log(`ramp: ${connections} connections opened in ${((Date.now() - rampStart) / 1000).toFixed(1)} s: ${JSON.stringify(latest)}`)

  const watched: Record<string, ProcessHandle> = {
    'ztunnel-n1': cluster.ztunnels.get('n1')!,
    'ztunnel-n2': cluster.ztunnels.get('n2')!,
    'agent-n1': cluster.agents.get('n1')!,
    'agent-n2': cluster.agents.get('n2')!,
  }
  const samples: Sample[] = []
  const sample = (t: number): Sample => {
    const rssMb: Record<string, number> = {}
    const fds: Record<string, number> = {}
    for (const [name, h] of Object.entries(watched)) {
      const p = proc(h)
      rssMb[name] = p.rssMb
      fds[name] = p.fds
    }
    const s = { t, rssMb, fds, echo: latest }
    samples.push(s)
    console.log(
      `t=${String(t).padStart(4)}s rss MB ${JSON.stringify(rssMb)} fds ${JSON.stringify(fds)} open ${latest?.open} sent ${latest?.sent} verified ${latest?.verified} closedEarly ${latest?.closedEarly}`,
    )
    return s
  }

  const started = Date.now()
  const elapsed = (): number => Math.round((Date.now() - started) / 1000)
  let policyChanges = 0
  const serials = { n1: new Set<string>(), n2: new Set<string>() }
  let nextPolicy = policyEverySec
  let nextSample = 0
  let baseline: Sample | null = null
  while (elapsed() < seconds) {
    const t = elapsed()
    if (t >= nextSample) {
      const s = sample(t)
      if (baseline === null && t >= Math.min(warmupSec, seconds / 4)) baseline = s
      nextSample += sampleEverySec
      for (const node of ['n1', 'n2'] as const) for (const serial of await certificateSerials(node)) serials[node].add(serial)
    }
    if (t >= nextPolicy) {
      // Alternate: an unrelated DENY policy appears/disappears, the ALLOW policy gains/loses a port.
      if (policyChanges % 2 === 0) cluster.put('AuthorizationPolicy', denyOther)
      else cluster.remove('AuthorizationPolicy', 'shop', 'server-deny-other')
      cluster.put('AuthorizationPolicy', allow(policyChanges % 4 < 2 ? ['8080', '9090'] : ['8080']))
      policyChanges++
      nextPolicy += policyEverySec
    }
    if (echo.exitCode !== null) throw new Error('echo-check exited early')
    await new Promise((r) => setTimeout(r, 250))
  }
  const last = sample(elapsed())
  baseline ??= samples[0]!
  echo.kill('SIGTERM')
  await Promise.race([echoExit, new Promise((r) => setTimeout(r, 20_000))])
  const result = final as EchoStatus | null
  if (result === null) throw new Error('echo-check printed no final result')

  const after = samples.filter((s) => s.t >= baseline.t)
  const summary: Record<string, unknown> = {}
  const verdicts: string[] = []
  for (const name of Object.keys(watched)) {
    const rss = after.map((s) => s.rssMb[name]!)
    const fds = after.map((s) => s.fds[name]!)
    const growth = (last.rssMb[name]! - baseline.rssMb[name]!) / baseline.rssMb[name]!
    summary[name] = {
      rssMb: { baseline: baseline.rssMb[name], end: last.rssMb[name], max: Math.max(...rss), growthPct: Math.round(growth * 1000) / 10 },
      fds: { baseline: baseline.fds[name], end: last.fds[name], min: Math.min(...fds), max: Math.max(...fds) },
    }
    if (name.startsWith('ztunnel')) {
      verdicts.push(`${name} RSS growth ${(growth * 100).toFixed(1)}% (goal < 5%): ${growth < 0.05 ? 'met' : 'NOT met'}`)
      const fdGrowth = last.fds[name]! - baseline.fds[name]!
      verdicts.push(
        `${name} fds ${baseline.fds[name]} -> ${last.fds[name]} (max ${Math.max(...fds)}; goal: no growth): ${fdGrowth <= 0 ? 'met' : `NOT met (+${fdGrowth})`}`,
      )
    }
  }
  verdicts.push(
    `bytes lost ${result.lost} of ${result.sent} sent, ${result.mismatches} mismatches (goal 0): ${result.lost === 0 && result.mismatches === 0 ? 'met' : 'NOT met'}`,
  )
  verdicts.push(
    `connections closed early ${result.closedEarly} of ${result.opened} (goal 0): ${result.closedEarly === 0 && result.opened === connections ? 'met' : 'NOT met'}`,
  )
  // One identity per node here (client on n1, server on n2): every serial after the first is a renewal.
  const rotations = { n1: serials.n1.size - 1, n2: serials.n2.size - 1 }
  console.log(
    JSON.stringify({ minutes, connections, baselineAt: baseline.t, policyChanges, certRotationsSeen: rotations, echo: result, processes: summary }, null, 2),
  )
  for (const v of verdicts) console.log(v)
  console.log(`policy changes: ${policyChanges}; workload certificate renewals seen (new serials in /config_dump): n1 ${rotations.n1}, n2 ${rotations.n2}`)
} finally {
  await stop()
}
