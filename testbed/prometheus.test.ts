// The Prometheus harness against Debian's real prometheus: it scrapes a /metrics
// endpoint with the job and labels given, answers PromQL, listens where asked (a
// free port for port 0), refuses a busy port without mistaking the other server for
// itself, and leaves no process or folder behind, also when it fails to start.
import t, { type Test } from 'tap'
import http from 'node:http'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { PrometheusServer, scrapeConfig } from './prometheus.js'
import { parse } from 'yaml'

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The harness's temporary folders now (only it names them ambient-prometheus-*). */
const workDirs = (): string[] => readdirSync(tmpdir()).filter((n) => n.startsWith('ambient-prometheus-'))

async function server(t: Test, handler: http.RequestListener): Promise<number> {
  const s = http.createServer(handler)
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => s.close(() => r())))
  return (s.address() as AddressInfo).port
}

t.test('the scrape configuration names every target with its job and labels', async (t) => {
  const config = parse(
    scrapeConfig(
      [
        { job: 'ambient-agent', address: '127.0.0.1:1', labels: { node: 'n1' } },
        { job: 'ambient-agent', address: '127.0.0.1:2', labels: { node: 'n2' } },
        { job: 'ambient-waypoint', address: '127.0.0.1:3', labels: { namespace: 'shop', gateway: 'waypoint' } },
      ],
      1,
    ),
  )
  t.same(config.global, { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' })
  t.same(config.scrape_configs, [
    {
      job_name: 'ambient-agent',
      static_configs: [
        { targets: ['127.0.0.1:1'], labels: { node: 'n1' } },
        { targets: ['127.0.0.1:2'], labels: { node: 'n2' } },
      ],
    },
    { job_name: 'ambient-waypoint', static_configs: [{ targets: ['127.0.0.1:3'], labels: { namespace: 'shop', gateway: 'waypoint' } }] },
  ])
})

t.test('scrapes a target on a free port, answers queries, and stops without a trace', async (t) => {
  let value = 5
  const port = await server(t, (req, res) => {
    if (req.url !== '/metrics') return void res.writeHead(404).end()
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
    res.end(`# TYPE demo_requests_total counter\ndemo_requests_total{path="/shop"} ${value}\n`)
  })
  const prometheus = await PrometheusServer.start({
    listen: { host: '127.0.0.1', port: 0 },
    targets: [{ job: 'ambient-test', address: `127.0.0.1:${port}`, labels: { node: 'n1' } }],
  })
  t.teardown(() => prometheus.stop())
  t.match(prometheus.address, /^127\.0\.0\.1:\d+$/)
  t.not(prometheus.address, '127.0.0.1:0', 'the port it got')
  t.match(readFileSync(`${prometheus.workDir}/prometheus.yml`, 'utf8'), /scrape_interval: 1s/)
  let samples: Awaited<ReturnType<PrometheusServer['query']>> = []
  const deadline = Date.now() + 15_000
  while (samples.length === 0 && Date.now() < deadline) {
    samples = await prometheus.query('demo_requests_total')
    if (samples.length === 0) await new Promise((r) => setTimeout(r, 200))
  }
  t.same(samples, [{ metric: { __name__: 'demo_requests_total', job: 'ambient-test', instance: `127.0.0.1:${port}`, node: 'n1', path: '/shop' }, value: '5' }])
  value = 9
  await new Promise((r) => setTimeout(r, 2500))
  t.same(
    (await prometheus.query('sum(demo_requests_total{node="n1"})')).map((s) => s.value),
    ['9'],
    'scraped every second',
  )
  t.same(await prometheus.labelValues('path', 'demo_requests_total{job="ambient-test"}'), ['/shop'], "label_values as Grafana's variables list them")
  const targets = await prometheus.targets()
  t.same(
    targets.map((x) => [x.labels['job'], x.health, x.scrapeUrl]),
    [['ambient-test', 'up', `http://127.0.0.1:${port}/metrics`]],
  )
  await t.rejects(prometheus.query('sum(('), /prometheus refused sum\(\(: /)
  const { pid, workDir } = prometheus
  await prometheus.stop()
  await prometheus.stop()
  t.notOk(alive(pid), 'the process is gone')
  t.notOk(existsSync(workDir), 'its config and data are removed')
})

t.test('a busy port is refused, even when what holds it answers /-/ready', async (t) => {
  const before = workDirs()
  const port = await server(t, (_req, res) => res.writeHead(200).end('ready'))
  await t.rejects(PrometheusServer.start({ listen: { host: '127.0.0.1', port }, targets: [{ job: 'ambient-test', address: '127.0.0.1:9' }] }), {
    code: 'AMBIENT_ERR_TESTBED',
    message: new RegExp(`prometheus on 127\\.0\\.0\\.1:${port} exited \\(1\\)[\\s\\S]*address already in use`),
  })
  t.same(workDirs(), before, 'its folder is removed')
})

t.test('a missing binary is named, and nothing is left', async (t) => {
  const before = workDirs()
  await t.rejects(
    PrometheusServer.start({ listen: { host: '127.0.0.1', port: 0 }, targets: [{ job: 'x', address: '127.0.0.1:9' }], binary: '/nonexistent/prometheus' }),
    { code: 'AMBIENT_ERR_TESTBED', message: /cannot run \/nonexistent\/prometheus: is it installed\? \(apt-get install prometheus/ },
  )
  await t.rejects(PrometheusServer.start({ listen: { host: '127.0.0.1', port: 0 }, targets: [] }), /at least one scrape target/)
  t.same(workDirs(), before, 'its folder is removed')
})

/** A process running the harness (testbed/fixtures/prometheus.ts), once its Prometheus is ready. */
async function startParent(t: Test): Promise<{ parent: ChildProcess; pid: number; workDir: string }> {
  const fixture = join(import.meta.dirname, 'fixtures', 'prometheus.ts')
  const parent = spawn(process.execPath, ['--import', 'tsx', fixture, '--target', '127.0.0.1:9', '--timeout-ms', '30000'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.teardown(() => void parent.kill('SIGKILL'))
  const line = await new Promise<string>((resolve, reject) => {
    let out = ''
    parent.stdout!.on('data', (d) => {
      out += d
      if (out.includes('\n')) resolve(out.split('\n')[0]!)
    })
    parent.once('exit', (code) => reject(new Error(`the fixture exited ${code} before starting prometheus`)))
  })
  return { parent, ...(JSON.parse(line) as { pid: number; workDir: string }) }
}

t.test('an interrupted parent (Ctrl-C) takes its Prometheus and folder with it', async (t) => {
  const { parent, pid, workDir } = await startParent(t)
  t.ok(alive(pid) && existsSync(workDir), 'prometheus runs')
  const exited = new Promise<NodeJS.Signals | null>((r) => parent.once('exit', (_code, signal) => r(signal)))
  parent.kill('SIGINT')
  t.equal(await exited, 'SIGINT', 'the parent still ends by the signal')
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50))
  t.notOk(alive(pid), 'prometheus is gone')
  t.notOk(existsSync(workDir), 'its folder is removed')
})

t.test('it dies with the process that started it, even one killed with SIGKILL', async (t) => {
  const { parent, pid, workDir } = await startParent(t)
  t.teardown(() => rmSync(workDir, { recursive: true, force: true })) // a SIGKILLed parent cannot remove it
  t.ok(alive(pid), 'prometheus runs')
  parent.kill('SIGKILL')
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50))
  t.notOk(alive(pid), 'prometheus got the parent-death signal')
})
