// ztunnel issue numbers, one run on the testbed, pod to pod across two nodes:
// direct (no mesh), ambient (both pods enrolled: HBONE mutual TLS between the two
// ztunnels) and stunnel4 (the C peer: a TLS client in the client pod, a TLS server
// in the server pod, mutual certificates). For each: single-stream throughput
// (iperf3, --seconds), 64-byte request/response p50/p99 over one connection,
// new-connection p50/p99 and rate, and proxy CPU seconds per GB moved. Latencies
// are measured after --warmup unmeasured round trips and connections on the same
// path, throughput after an unmeasured --warmup-seconds iperf3 run (every Node
// process on it compiles its hot code first; stunnel is C). cpuUsPerRt and
// cpuUsPerConn are both proxies' CPU per round trip and per new connection.
//   node --import tsx bench/mesh-vs-stunnel.ts [--seconds 5] [--connections 1000] [--warmup 1000] [--warmup-seconds 2]
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { ChildProcess } from 'node:child_process'
import { MeshCluster } from '../testbed/cluster.js'
import { startServer } from '../testbed/pod-clients.js'
import { createRootCa, issueWorkloadCertificate } from '../common/identity/pki.js'
import type { TestPod } from '../testbed/testbed.js'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '1000' },
    warmup: { type: 'string', default: '1000' },
    'warmup-seconds': { type: 'string', default: '2' },
  },
})
const seconds = Number(values.seconds)

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

async function measure(
  label: string,
  client: TestPod,
  iperfTarget: [string, number],
  echoTarget: string,
  proxies: () => number[],
): Promise<Record<string, unknown>> {
  if (Number(values['warmup-seconds']) > 0)
    await run(client, 'iperf3', ['-c', iperfTarget[0], '-p', String(iperfTarget[1]), '-t', values['warmup-seconds']!, '-J'])
  // Whole-process CPU (exited threads included: stunnel runs a thread per connection), 10 ms ticks.
  const proxyCpu = (): number => proxies().reduce((s, pid) => s + cpuSeconds(pid), 0)
  const cpuBefore = proxyCpu()
  const iperf = JSON.parse(await run(client, 'iperf3', ['-c', iperfTarget[0], '-p', String(iperfTarget[1]), '-t', String(seconds), '-J']))
  const bytes = iperf.end.sum_received.bytes as number
  const cpu = proxyCpu() - cpuBefore
  const rrCount = 2000
  const cpuBeforeRr = proxyCpu()
  const rr = JSON.parse(
    await run(client, process.execPath, [
      '--import',
      'tsx',
      join(import.meta.dirname, 'tools', 'rr-latency.ts'),
      '--to',
      echoTarget,
      '--count',
      String(rrCount),
      '--warmup',
      values.warmup!,
    ]),
  )
  const cpuRr = proxyCpu() - cpuBeforeRr
  const cpuBeforeConn = proxyCpu()
  const conn = JSON.parse(
    (
      await run(
        client,
        process.execPath,
        [
          '--import',
          'tsx',
          join(import.meta.dirname, 'tools', 'connect-latency.ts'),
          '--to',
          echoTarget,
          '--count',
          values.connections!,
          '--warmup',
          values.warmup!,
        ],
        300_000,
      )
    )
      .trim()
      .split('\n')
      .pop()!,
  )
  const cpuConn = proxyCpu() - cpuBeforeConn
  return {
    label,
    throughputMiBps: iperf.end.sum_received.bits_per_second / 8 / 1048576,
    rrP50Us: rr.p50Us,
    rrP99Us: rr.p99Us,
    connectP50Us: conn.firstByteP50Us,
    connectP99Us: conn.firstByteP99Us,
    connRate: conn.rate,
    connFailed: conn.failed + conn.warmupFailed,
    cpuSecondsPerGB: proxies().length ? cpu / (bytes / 1e9) : 0,
    // Both proxies' CPU, warm-up included (its round trips and connections take the same path).
    cpuUsPerRt: (cpuRr * 1e6) / (rrCount + Number(values.warmup)),
    cpuUsPerConn: (cpuConn * 1e6) / (Number(values.connections) + Number(values.warmup)),
  }
}

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

  const ztunnels = [...cluster.ztunnels.values()].map((z) => z.child.pid!)
  const results = [
    await measure('direct', tb.pod('dc'), [tb.pod('ds').ip, 5201], `${tb.pod('ds').ip}:8080`, () => []),
    await measure('ambient', tb.pod('mc'), [tb.pod('ms').ip, 5201], `${tb.pod('ms').ip}:8080`, () => ztunnels),
    await measure('stunnel', tb.pod('sc'), ['127.0.0.1', 25201], '127.0.0.1:28080', () => [stServer.pid!, stClient.pid!]),
  ]
  console.table(results)
  if ((results[2] as { connFailed: number }).connFailed > 0) {
    const errors = stunnelLog.split('\n').filter((l) => /LOG[0-3]/.test(l) && !/TIMEOUTclose exceeded/.test(l))
    console.error(`stunnel: ${(results[2] as { connFailed: number }).connFailed} connections failed; its errors:\n${errors.slice(-20).join('\n')}`)
  }
  const [direct, ambient, stunnel] = results as Record<string, number>[]
  console.log(
    `throughput ambient/direct ${(ambient!.throughputMiBps! / direct!.throughputMiBps!).toFixed(2)}, ambient/stunnel ${(ambient!.throughputMiBps! / stunnel!.throughputMiBps!).toFixed(2)}`,
  )
  console.log(
    `new connection p50 ambient/direct ${(ambient!.connectP50Us! / direct!.connectP50Us!).toFixed(2)}, stunnel/direct ${(stunnel!.connectP50Us! / direct!.connectP50Us!).toFixed(2)}`,
  )
} finally {
  for (const d of daemons) d.kill('SIGTERM')
  await cluster.stop()
}
