// ztunnel issue numbers, one run on the testbed, pod to pod across two nodes:
// direct (no mesh), ambient on each HBONE engine (both pods enrolled: HBONE mutual
// TLS between the two ztunnels, restarted with --hbone-engine node, then native,
// every round) and stunnel4 (the C peer: a TLS client in the client pod, a TLS
// server in the server pod, mutual certificates). For each: iperf3 throughput with
// one and with four streams (--seconds), proxy CPU seconds per GB, 64-byte
// request/response p50/p99 over one connection and new-connection p50/p99 and rate,
// measured with a C client (bench/tools/bench-client.c, no Node in the client) and,
// as before, with the Node tools; cpuUsPerRt and cpuUsPerConn are both proxies' CPU
// per round trip and per new connection of the C client. Latencies follow --warmup
// unmeasured round trips and connections on the same path, throughput an unmeasured
// --warmup-seconds iperf3 run. --rounds rounds; printed: medians and [min..max].
//   node --import tsx bench/mesh-vs-stunnel.ts [--rounds 3] [--seconds 5] [--connections 1000] [--warmup 1000] [--warmup-seconds 2]
import { readFileSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { ChildProcess } from 'node:child_process'
import { MeshCluster } from '../testbed/cluster.js'
import { startServer } from '../testbed/pod-clients.js'
import { createRootCa, issueWorkloadCertificate } from '../common/identity/pki.js'
import type { TestPod } from '../testbed/testbed.js'
import { REPO_ROOT } from '../common/paths.js'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '1000' },
    warmup: { type: 'string', default: '1000' },
    'warmup-seconds': { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
  },
})
const seconds = Number(values.seconds)
const rounds = Number(values.rounds)

const cluster = await MeshCluster.start({
  name: 'bench-mesh',
  nodes: [
    {
      name: 'n1',
      pods: [
        { name: 'mc', namespace: 'bench', serviceAccount: 'client', enrolled: true },
        { name: 'dc', namespace: 'plain', serviceAccount: 'default', enrolled: false },
        { name: 'sc', namespace: 'plain', serviceAccount: 'default', enrolled: false },
      ],
    },
    {
      name: 'n2',
      pods: [
        { name: 'ms', namespace: 'bench', serviceAccount: 'server', enrolled: true },
        { name: 'ds', namespace: 'plain', serviceAccount: 'default', enrolled: false },
        { name: 'ss', namespace: 'plain', serviceAccount: 'default', enrolled: false },
      ],
    },
  ],
})
const tb = cluster.tb
const daemons: ChildProcess[] = []

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime + stime, clock ticks at 100 Hz
}

async function run(pod: TestPod, cmd: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const r = await tb.exec(pod, cmd, args, { timeoutMs })
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${pod.name} failed (${r.code}): ${r.stderr.slice(-500)}`)
  return r.stdout
}

const cClient = join(REPO_ROOT, 'build', 'bench', 'bench-client')
execFileSync('cc', ['-O2', '-Wall', '-o', cClient, join(import.meta.dirname, 'tools', 'bench-client.c')])

async function nodeTool(client: TestPod, tool: string, args: string[], timeoutMs = 300_000): Promise<Record<string, number>> {
  const out = await run(client, process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'tools', tool), ...args], timeoutMs)
  return JSON.parse(out.trim().split('\n').pop()!) as Record<string, number>
}

async function cTool(client: TestPod, mode: 'rr' | 'connect', target: string, count: number, warmup: number): Promise<Record<string, number>> {
  const [ip, port] = target.split(':')
  return JSON.parse((await run(client, cClient, [mode, ip!, port!, String(count), String(warmup)], 300_000)).trim()) as Record<string, number>
}

async function iperf(client: TestPod, target: [string, number], secs: number | string, parallel: number): Promise<{ bytes: number; mibps: number }> {
  const r = JSON.parse(await run(client, 'iperf3', ['-c', target[0], '-p', String(target[1]), '-t', String(secs), '-P', String(parallel), '-J']))
  return { bytes: r.end.sum_received.bytes as number, mibps: r.end.sum_received.bits_per_second / 8 / 1048576 }
}

async function measure(client: TestPod, iperfTarget: [string, number], echoTarget: string, proxies: () => number[]): Promise<Record<string, number>> {
  const warmup = Number(values.warmup)
  const connections = Number(values.connections)
  if (Number(values['warmup-seconds']) > 0) await iperf(client, iperfTarget, values['warmup-seconds']!, 1)
  // Whole-process CPU (exited threads included: stunnel runs a thread per connection), 10 ms ticks.
  const proxyCpu = (): number => proxies().reduce((s, pid) => s + cpuSeconds(pid), 0)
  let cpu = proxyCpu()
  const single = await iperf(client, iperfTarget, seconds, 1)
  const cpuPerGB = proxies().length ? (proxyCpu() - cpu) / (single.bytes / 1e9) : 0
  const parallel = await iperf(client, iperfTarget, seconds, 4)
  const rrCount = 2000
  const rrNode = await nodeTool(client, 'rr-latency.ts', ['--to', echoTarget, '--count', String(rrCount), '--warmup', String(warmup)])
  cpu = proxyCpu()
  const rrC = await cTool(client, 'rr', echoTarget, rrCount, warmup)
  const cpuRr = proxyCpu() - cpu
  const connNode = await nodeTool(client, 'connect-latency.ts', ['--to', echoTarget, '--count', String(connections), '--warmup', String(warmup)])
  cpu = proxyCpu()
  const connC = await cTool(client, 'connect', echoTarget, connections, warmup)
  const cpuConn = proxyCpu() - cpu
  return {
    throughputMiBps: single.mibps,
    throughput4MiBps: parallel.mibps,
    cpuSecondsPerGB: cpuPerGB,
    rrP50Us: rrC.p50Us!,
    rrP99Us: rrC.p99Us!,
    rrNodeP50Us: rrNode.p50Us!,
    rrNodeP99Us: rrNode.p99Us!,
    connectP50Us: connC.firstByteP50Us!,
    connectP99Us: connC.firstByteP99Us!,
    connectNodeP50Us: connNode.firstByteP50Us!,
    connRate: connC.rate!,
    connFailed: connC.failed! + connNode.failed! + connNode.warmupFailed!,
    // Both proxies' CPU per round trip and per connection of the C client (warm-up included: it takes the same path).
    cpuUsPerRt: (cpuRr * 1e6) / (rrCount + warmup),
    cpuUsPerConn: (cpuConn * 1e6) / (connections + warmup),
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
const fmt = (x: number): string => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(2))

try {
  for (const name of ['ds', 'ms', 'ss']) {
    daemons.push(tb.spawnInPod(tb.pod(name), 'iperf3', ['-s', '-p', '5201']))
    await startServer(tb, tb.pod(name), 8080)
  }
  // stunnel: mutual TLS 1.3 with ECDSA certificates from the same kind of CA.
  const ca = createRootCa({ commonName: 'stunnel bench root' })
  const dir = cluster.workDir
  writeFileSync(join(dir, 'st-ca.pem'), ca.certPem)
  for (const side of ['client', 'server']) {
    const c = issueWorkloadCertificate({ spiffeId: `spiffe://cluster.local/ns/plain/sa/${side}`, ca, ttlMs: 3600_000 })
    writeFileSync(join(dir, `st-${side}.pem`), c.certPem + c.keyPem, { mode: 0o600 })
  }
  const conf = (side: string, services: string): string =>
    `foreground = yes\npid =\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\nTIMEOUTclose = 0\n${services}`
  const ss = tb.pod('ss')
  writeFileSync(
    join(dir, 'st-server.conf'),
    conf(
      'server',
      [5201, 8080]
        .map(
          (p) =>
            `[s${p}]\naccept = ${ss.ip}:${p + 10000}\nconnect = 127.0.0.1:${p}\ncert = ${dir}/st-server.pem\nCAfile = ${dir}/st-ca.pem\nverifyChain = yes\nsslVersionMin = TLSv1.3\n`,
        )
        .join(''),
    ),
  )
  writeFileSync(
    join(dir, 'st-client.conf'),
    conf(
      'client',
      [5201, 8080]
        .map(
          (p) =>
            `[c${p}]\nclient = yes\naccept = 127.0.0.1:${p + 20000}\nconnect = ${ss.ip}:${p + 10000}\ncert = ${dir}/st-client.pem\nCAfile = ${dir}/st-ca.pem\nverifyChain = yes\nsslVersionMin = TLSv1.3\n`,
        )
        .join(''),
    ),
  )
  const stServer = tb.spawnInPod(ss, 'stunnel4', [join(dir, 'st-server.conf')])
  const stClient = tb.spawnInPod(tb.pod('sc'), 'stunnel4', [join(dir, 'st-client.conf')])
  daemons.push(stServer, stClient)
  // stunnel logs every connection; its errors are shown if its connections fail.
  let stunnelLog = ''
  for (const d of [stServer, stClient]) d.stderr?.on('data', (chunk: Buffer) => (stunnelLog = (stunnelLog + chunk.toString()).slice(-200_000)))
  await new Promise((r) => setTimeout(r, 1500))

  const ztunnels = (): number[] => [...cluster.ztunnels.values()].map((z) => z.child.pid!)
  const setups = {
    direct: { client: 'dc', iperf: [tb.pod('ds').ip, 5201] as [string, number], echo: `${tb.pod('ds').ip}:8080`, proxies: () => [] as number[] },
    'ambient-node': { client: 'mc', iperf: [tb.pod('ms').ip, 5201] as [string, number], echo: `${tb.pod('ms').ip}:8080`, proxies: ztunnels },
    'ambient-native': { client: 'mc', iperf: [tb.pod('ms').ip, 5201] as [string, number], echo: `${tb.pod('ms').ip}:8080`, proxies: ztunnels },
    stunnel: { client: 'sc', iperf: ['127.0.0.1', 25201] as [string, number], echo: '127.0.0.1:28080', proxies: () => [stServer.pid!, stClient.pid!] },
  }
  const samples: Record<string, Record<string, number>[]> = {}
  for (let round = 1; round <= rounds; round++) {
    for (const [label, setup] of Object.entries(setups)) {
      if (label.startsWith('ambient-')) {
        await cluster.restartZtunnels(label === 'ambient-native' ? 'native' : 'node')
        await new Promise((r) => setTimeout(r, 1000))
      }
      const result = await measure(tb.pod(setup.client), setup.iperf, setup.echo, setup.proxies)
      ;(samples[label] ??= []).push(result)
      console.error(`round ${round}/${rounds} ${label}: ${JSON.stringify(result)}`)
    }
  }
  // Medians over the rounds, with the spread (min..max) beside each.
  const table: Record<string, Record<string, string>> = {}
  const med: Record<string, Record<string, number>> = {}
  for (const [label, rows] of Object.entries(samples)) {
    table[label] = {}
    med[label] = {}
    for (const key of Object.keys(rows[0]!)) {
      const xs = rows.map((r) => r[key]!)
      med[label]![key] = median(xs)
      table[label]![key] = `${fmt(median(xs))} [${fmt(Math.min(...xs))}..${fmt(Math.max(...xs))}]`
    }
  }
  console.log(`${rounds} rounds; medians [min..max]; latencies from the C client unless named Node`)
  console.table(table)
  if (samples.stunnel!.some((r) => r.connFailed! > 0)) {
    const errors = stunnelLog.split('\n').filter((l) => /LOG[0-3]/.test(l) && !/TIMEOUTclose exceeded/.test(l))
    console.error(`stunnel: connections failed; its errors:\n${errors.slice(-20).join('\n')}`)
  }
  const d = med.direct!
  const st = med.stunnel!
  for (const label of ['ambient-node', 'ambient-native']) {
    const m = med[label]!
    const perRound = samples[label]!.map((r, i) => r.connectP50Us! / samples.direct![i]!.connectP50Us!)
    console.log(
      [
        `${label}:`,
        `throughput/stunnel ${(m.throughputMiBps! / st.throughputMiBps!).toFixed(2)} (goal >= 1.2)`,
        `cpu-s/GB/stunnel ${(m.cpuSecondsPerGB! / st.cpuSecondsPerGB!).toFixed(2)} (goal <= 1)`,
        `rr p50 added ${fmt(m.rrP50Us! - d.rrP50Us!)} us vs stunnel's ${fmt(st.rrP50Us! - d.rrP50Us!)} us`,
        `rr p99/stunnel ${(m.rrP99Us! / st.rrP99Us!).toFixed(2)} (goal <= 2)`,
        `connect p50/direct per round ${perRound.map((x) => x.toFixed(2)).join(', ')} (goal <= 6)`,
        `4 streams/1 stream ${(m.throughput4MiBps! / m.throughputMiBps!).toFixed(2)}`,
      ].join('; '),
    )
  }
} finally {
  for (const d of daemons) d.kill('SIGTERM')
  await cluster.stop()
}
