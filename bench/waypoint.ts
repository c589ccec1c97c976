// Waypoint issue numbers, one run on the testbed: HTTP/1.1 keep-alive and h2c
// requests from a client on node n1 to a server on node n2 along four paths:
//   direct    plain pods, no mesh
//   nginx     plain pods through nginx as a reverse proxy in a pod on n1 (the C peer;
//             one worker, keep-alive upstream; h2c upstream through grpc_pass)
//   l4        both pods in the mesh, a service labelled use-waypoint: none (HBONE
//             between the two ztunnels only)
//   waypoint  the same pods through the namespace's waypoint (its own pod on n1)
// The servers are nginx too (a fixed 3-byte answer), so every path has the same,
// cheap backend. For each path and protocol: the highest rate (h2load, --clients
// connections, one request in flight on each, --seconds after a second of warm-up)
// and, at a fixed --rate (h2load --rps over 10 connections, after an unmeasured
// warm-up at the same rate), p50/p99 latency from h2load's per-request log and the
// proxy pod's CPU (its cgroup's cpu.stat, every thread and child) per 1,000
// requests: that is the proxy's vCPU at 1,000 requests/s. The added latency is the
// proxy path's p50 minus its base's (waypoint - l4, nginx - direct). Goals: waypoint
// CPU per 1k requests <= 0.25 s (Istio's waypoint, ~0.25 vCPU at 1,000 rps) and its
// added p50 < 2x nginx's. --rounds rounds; printed: medians and [min..max].
//   node --import tsx bench/waypoint.ts [--rounds 3] [--seconds 5] [--rate 1000] [--clients 16]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { ChildProcess } from 'node:child_process'
import { AgentCluster } from '../testbed/agent-cluster.js'
import type { TestPod } from '../testbed/testbed.js'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rate: { type: 'string', default: '1000' },
    clients: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
  },
})
const seconds = Number(values.seconds)
const rate = Number(values.rate)
const clients = Number(values.clients)
const rounds = Number(values.rounds)
for (const [name, v] of Object.entries({ seconds, rate, clients, rounds })) {
  if (!Number.isInteger(v) || v < 1 || v > 100_000)
    throw new Error(`--${name} must be a whole number from 1 to 100000, not ${JSON.stringify(values[name as keyof typeof values])}`)
}
if (rate % 10 !== 0) throw new Error(`--rate must be a multiple of 10 (10 connections at rate/10 each), not ${rate}`)

const WEB_VIP = '198.18.100.10'
const WEB_L4_VIP = '198.18.100.11'
const ports = [
  { name: 'http', port: 80, targetPort: 8080 },
  { name: 'http2', port: 81, targetPort: 8081, appProtocol: 'kubernetes.io/h2c' },
]
const cluster = await AgentCluster.start({
  name: 'bench-wp',
  nodes: ['n1', 'n2'],
  namespaces: { shop: { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' }, plain: {} },
  pods: [
    { name: 'client', namespace: 'shop', node: 'n1', serviceAccount: 'client', labels: { app: 'client' } },
    {
      name: 'waypoint',
      namespace: 'shop',
      node: 'n1',
      serviceAccount: 'waypoint',
      labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'istio.io/dataplane-mode': 'none' },
    },
    { name: 'web', namespace: 'shop', node: 'n2', serviceAccount: 'web', labels: { app: 'web' } },
    { name: 'pclient', namespace: 'plain', node: 'n1', labels: { app: 'pclient' } },
    { name: 'proxy', namespace: 'plain', node: 'n1', labels: { app: 'proxy' } },
    { name: 'pweb', namespace: 'plain', node: 'n2', labels: { app: 'pweb' } },
  ],
  services: [
    { name: 'web', namespace: 'shop', vip: WEB_VIP, ports, selector: { app: 'web' } },
    { name: 'web-l4', namespace: 'shop', vip: WEB_L4_VIP, ports, selector: { app: 'web' }, labels: { 'istio.io/use-waypoint': 'none' } },
    {
      name: 'waypoint',
      namespace: 'shop',
      vip: '198.18.100.2',
      ports: [{ name: 'mesh', port: 15008, targetPort: 15008 }],
      selector: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' },
    },
  ],
  policies: [
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'waypoint', namespace: 'shop', labels: { 'istio.io/waypoint-for': 'service' } },
      spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
    },
  ],
})
const tb = cluster.tb
const daemons: ChildProcess[] = []

/** nginx in a pod, in the foreground, everything it writes under the bench's work directory. */
async function startNginx(pod: TestPod, http: string): Promise<void> {
  const dir = join(cluster.workDir, `nginx-${pod.name}`)
  mkdirSync(dir, { recursive: true })
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `${k}_temp_path ${dir}/${k};`).join(' ')
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1;\npid ${dir}/nginx.pid;\nevents { worker_connections 4096; }\n` +
      `http {\n  access_log off;\n  keepalive_requests 10000000;\n  ${temp}\n${http}\n}\n`,
  )
  const child = tb.spawnInPod(pod, 'nginx', ['-e', join(dir, 'error.log'), '-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'])
  daemons.push(child)
  let stderr = ''
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()))
  // Listening is what counts: poll until every port of the configuration listens (or nginx exits).
  const want = [...http.matchAll(/listen (\d+)/g)].map((m) => m[1]!)
  const deadline = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx in ${pod.name} exited ${child.exitCode}: ${stderr}${readFileSync(join(dir, 'error.log'), 'utf8')}`)
    const r = await tb.exec(pod, 'ss', ['-Hltn'])
    const listening = new Set([...r.stdout.matchAll(/:(\d+)\s/g)].map((m) => m[1]!))
    if (want.every((p) => listening.has(p))) return
    if (Date.now() > deadline) throw new Error(`nginx in ${pod.name} is not listening on ${want.join(', ')} after 10 s: ${r.stdout}${stderr}`)
    await new Promise((res) => setTimeout(res, 100))
  }
}

const serverHttp = `  server { listen 8080; location / { return 200 "ok\\n"; } }\n  server { listen 8081 http2; location / { return 200 "ok\\n"; } }`
const proxyHttp = (to: string): string =>
  `  upstream h1 { server ${to}:8080; keepalive 64; }\n  upstream h2 { server ${to}:8081; keepalive 64; }\n` +
  `  server { listen 80; location / { proxy_pass http://h1; proxy_http_version 1.1; proxy_set_header Connection ""; } }\n` +
  `  server { listen 81 http2; location / { grpc_pass grpc://h2; } }`

/** A pod's CPU seconds so far: every process and thread in its cgroup. */
function podCpuSeconds(pod: TestPod): number {
  const line = readFileSync(join(pod.cgroup, 'cpu.stat'), 'utf8').match(/^usage_usec (\d+)$/m)
  if (!line) throw new Error(`no usage_usec in ${pod.cgroup}/cpu.stat`)
  return Number(line[1]) / 1e6
}

interface H2loadResult {
  readonly rps: number
  readonly done: number
}

async function h2load(client: TestPod, args: string[], expect: number | null): Promise<H2loadResult> {
  const r = await tb.exec(client, 'h2load', args, { timeoutMs: (seconds + 60) * 1000 })
  if (r.code !== 0) throw new Error(`h2load ${args.join(' ')} failed (${r.code}): ${r.stderr.slice(-500)}${r.stdout.slice(-500)}`)
  const finished = r.stdout.match(/finished in [\d.]+m?s, ([\d.]+) req\/s/)
  const requests = r.stdout.match(/requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/)
  const codes = r.stdout.match(/status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/)
  if (!finished || !requests || !codes) throw new Error(`h2load ${args.join(' ')}: unexpected output: ${r.stdout.slice(-800)}`)
  const [, , done, ok, failed, errored, timeout] = requests.map(Number)
  // A timed run (-D) counts warm-up answers in the status codes, not in the requests: only non-2xx codes count there.
  const non2xx = Number(codes[2]) + Number(codes[3]) + Number(codes[4])
  if (failed! + errored! + timeout! > 0 || non2xx > 0 || (expect !== null && ok !== expect)) {
    throw new Error(`h2load ${args.join(' ')}: ${requests[0]}; ${codes[0]}`)
  }
  return { rps: Number(finished[1]), done: done! }
}

function percentiles(logFile: string): { p50Us: number; p99Us: number } {
  const lat = readFileSync(logFile, 'utf8')
    .trim()
    .split('\n')
    .map((row) => row.split('\t'))
    .filter((c) => c[1] === '200')
    .map((c) => Number(c[2]))
    .sort((a, b) => a - b)
  if (lat.length === 0) throw new Error(`${logFile}: no successful requests logged`)
  const at = (q: number): number => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!
  return { p50Us: at(0.5), p99Us: at(0.99) }
}

interface Path {
  readonly client: string
  readonly target: (proto: 'h1' | 'h2') => string
  readonly proxy: string | null
}

async function measure(path: Path, proto: 'h1' | 'h2', label: string): Promise<Record<string, number>> {
  const client = tb.pod(path.client)
  const url = `http://${path.target(proto)}/`
  const protoArgs = proto === 'h1' ? ['--h1'] : []
  const max = await h2load(client, [...protoArgs, '-c', String(clients), '-m', '1', '-D', String(seconds), '--warm-up-time', '1', url], null)
  const n = rate * seconds
  const fixed = ['-c', '10', '--rps', String(rate / 10)]
  await h2load(client, [...protoArgs, ...fixed, '-n', String(rate), url], rate)
  const proxyPod = path.proxy === null ? null : tb.pod(path.proxy)
  const cpu0 = proxyPod ? podCpuSeconds(proxyPod) : 0
  const log = join(cluster.workDir, `h2load-${label}-${proto}.tsv`)
  await h2load(client, [...protoArgs, ...fixed, '-n', String(n), '--log-file', log, url], n)
  const cpuPer1k = proxyPod ? ((podCpuSeconds(proxyPod) - cpu0) * 1000) / n : 0
  const lat = percentiles(log)
  return { maxRps: max.rps, p50Us: lat.p50Us, p99Us: lat.p99Us, proxyCpuSecondsPer1k: cpuPer1k }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
const fmt = (x: number): string => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(3))

try {
  await startNginx(tb.pod('web'), serverHttp)
  await startNginx(tb.pod('pweb'), serverHttp)
  await startNginx(tb.pod('proxy'), proxyHttp(tb.pod('pweb').ip))
  await cluster.startWaypoint('waypoint', 'shop/waypoint')
  const pweb = tb.pod('pweb').ip
  const paths: Record<string, Path> = {
    direct: { client: 'pclient', target: (p) => `${pweb}:${p === 'h1' ? 8080 : 8081}`, proxy: null },
    nginx: { client: 'pclient', target: (p) => `${tb.pod('proxy').ip}:${p === 'h1' ? 80 : 81}`, proxy: 'proxy' },
    l4: { client: 'client', target: (p) => `${WEB_L4_VIP}:${p === 'h1' ? 80 : 81}`, proxy: null },
    waypoint: { client: 'client', target: (p) => `${WEB_VIP}:${p === 'h1' ? 80 : 81}`, proxy: 'waypoint' },
  }
  const samples: Record<string, Record<string, number>[]> = {}
  for (let round = 1; round <= rounds; round++) {
    for (const proto of ['h1', 'h2'] as const) {
      for (const [label, path] of Object.entries(paths)) {
        const result = await measure(path, proto, label)
        ;(samples[`${label} ${proto}`] ??= []).push(result)
        console.error(`round ${round}/${rounds} ${label} ${proto}: ${JSON.stringify(result)}`)
      }
    }
  }
  const med = (key: string, metric: string): number => median(samples[key]!.map((s) => s[metric]!))
  const table: Record<string, Record<string, string>> = {}
  for (const [key, list] of Object.entries(samples)) {
    table[key] = {}
    for (const metric of Object.keys(list[0]!)) {
      const xs = list.map((s) => s[metric]!)
      table[key]![metric] = `${fmt(median(xs))} [${fmt(Math.min(...xs))}..${fmt(Math.max(...xs))}]`
    }
  }
  console.table(table)
  for (const proto of ['h1', 'h2']) {
    const wpAdded = med(`waypoint ${proto}`, 'p50Us') - med(`l4 ${proto}`, 'p50Us')
    const nginxAdded = med(`nginx ${proto}`, 'p50Us') - med(`direct ${proto}`, 'p50Us')
    const wpCpu = med(`waypoint ${proto}`, 'proxyCpuSecondsPer1k')
    console.log(
      `${proto}: waypoint adds ${wpAdded.toFixed(0)} µs p50 (nginx adds ${nginxAdded.toFixed(0)} µs: ${(wpAdded / nginxAdded).toFixed(2)}x, goal < 2x); ` +
        `waypoint CPU ${wpCpu.toFixed(3)} s per 1k requests (nginx ${med(`nginx ${proto}`, 'proxyCpuSecondsPer1k').toFixed(3)}; goal <= 0.25); ` +
        `max rate waypoint/l4 ${(med(`waypoint ${proto}`, 'maxRps') / med(`l4 ${proto}`, 'maxRps')).toFixed(2)}, nginx/direct ${(med(`nginx ${proto}`, 'maxRps') / med(`direct ${proto}`, 'maxRps')).toFixed(2)}`,
    )
  }
} finally {
  for (const d of daemons) d.kill()
  await cluster.stop()
}
