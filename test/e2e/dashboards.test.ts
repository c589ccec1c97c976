// The dashboards against real data: `ambient demo --prometheus 127.0.0.1:0` runs
// the two-node mesh with a real Prometheus (Debian's) scraping every agent, ztunnel
// and waypoint; while its traffic flows, every query of every panel of both
// dashboards (Grafana's variables substituted: $__rate_interval 30s, each variable
// All of what its own query lists) returns at least one series with a number, and
// every metric the dashboards name is on some scraped /metrics. Then Ctrl-C: the
// demo removes its Prometheus (process and folder) with everything else.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PrometheusApi } from '../../testbed/prometheus.js'
import { committedDashboards, labelValues, metricNames, queriesOf, substitute, type DashboardQuery } from '../../daemonset/dashboards/dashboard-json.js'

const CLI = join(import.meta.dirname, '..', '..', 'bin', 'ambient.js')
/** An upper bound: the test stops the demo (Ctrl-C) as soon as it has seen what it needs. */
const DURATION_S = 60
const prometheusDirs = (): string[] => readdirSync(tmpdir()).filter((n) => n.startsWith('ambient-prometheus-'))

t.test('every panel of the node and waypoint dashboards has data from the demo, through a real Prometheus', async (t) => {
  const dirsBefore = prometheusDirs()
  const child = spawn(process.execPath, [CLI, 'demo', '--duration', String(DURATION_S), '--prometheus', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (out += d))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  )
  const killTimer = setTimeout(() => child.kill('SIGKILL'), 150_000)
  t.teardown(async () => {
    // On a failure before the demo's end: Ctrl-C, so it removes what it created.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT')
    await exited
    clearTimeout(killTimer)
  })

  const prometheusUrl = await new Promise<string>((resolve, reject) => {
    const look = (): void => {
      const m = /^prometheus: (http:\/\/127\.0\.0\.1:\d+) /m.exec(out)
      if (m) resolve(m[1]!)
    }
    child.stdout.on('data', look)
    void exited.then(({ code }) => reject(new Error(`the demo exited ${code} before starting prometheus:\n${out.slice(-3000)}`)))
  })
  t.pass(`prometheus at ${prometheusUrl}`)
  const api = new PrometheusApi(prometheusUrl)

  // The scrape config names every agent, ztunnel and waypoint the demo printed, and each is up.
  const printed = [...out.matchAll(/^(\S+) (agent|ztunnel):\s+metrics http:\/\/(127\.0\.0\.1:\d+)\/metrics/gm)].map((m) => `ambient-${m[2]} ${m[1]} ${m[3]}`)
  const waypoint = /^waypoint (\S+)\/(\S+): metrics http:\/\/(127\.0\.0\.1:\d+)\/metrics/m.exec(out)
  t.equal(printed.length, 4, 'the demo printed two agents and two ztunnels')
  t.ok(waypoint, 'and its waypoint')
  const expectedTargets = [...printed, `ambient-waypoint ${waypoint![1]}/${waypoint![2]} ${waypoint![3]}`].sort()
  let targets = await api.targets()
  for (let i = 0; i < 50 && targets.length < expectedTargets.length; i++) {
    await new Promise((r) => setTimeout(r, 100)) // it loads the scrape config just after it is ready
    targets = await api.targets()
  }
  t.same(
    targets.map((x) => `${x.labels['job']} ${x.labels['node'] ?? `${x.labels['namespace']}/${x.labels['gateway']}`} ${new URL(x.scrapeUrl).host}`).sort(),
    expectedTargets,
    'prometheus scrapes each agent and ztunnel (labelled with its node) and the waypoint (namespace, gateway)',
  )

  const dashboards = committedDashboards()
  const queries = [...dashboards].flatMap(([file, d]) => queriesOf(file, d))
  const variables = queries.filter((q) => q.ref.startsWith('variable '))
  const panels = queries.filter((q) => !q.ref.startsWith('variable '))
  t.ok(panels.length > 50, `${panels.length} panel queries, ${variables.length} variables`)

  // Poll until every query has data (traffic needs a few scrapes to show in a 30 s rate), bounded by the demo's own end.
  const values: Record<string, string | string[]> = { __rate_interval: '30s' }
  let missing: string[] = []
  const pollStart = Date.now()
  const running = (): boolean => child.exitCode === null && child.signalCode === null && !/^ambient demo: done/m.test(out)
  for (let round = 0; ; round++) {
    try {
      missing = await missingData(api, variables, panels, values)
    } catch (err) {
      if (running()) throw err
      missing = [`the demo ended before every query had data (${(err as Error).message})`]
    }
    if (missing.length === 0 || !running()) break
    if (round % 5 === 0) t.comment(`${missing.length} queries without data yet, e.g. ${missing[0]}`)
    await new Promise((r) => setTimeout(r, 2000))
  }
  t.same(missing, [], `every query of every panel returned a series with a number while the demo ran (after ${((Date.now() - pollStart) / 1000).toFixed(1)} s)`)
  t.same(values['node'], ['node1', 'node2'], '$node lists both nodes')
  t.same([values['namespace'], values['gateway']], [['shop'], ['waypoint']], '$namespace and $gateway list the waypoint')

  // The kernel's run-time statistics flow (the demo's agents run with --bpf-stats).
  for (const node of ['node1', 'node2']) {
    const enabled = await api.query(`ambient_datapath_program_stats_enabled{node="${node}"}`)
    t.same(
      enabled.map((s) => s.value),
      ['1'],
      `${node}: run-time statistics enabled`,
    )
    const runs = await api.query(`sum(rate(ambient_datapath_program_runs_total{node="${node}"}[30s]))`)
    t.ok(Number(runs[0]?.value) > 0, `${node}: the kernel counted program runs (${runs[0]?.value}/s)`)
  }

  // Every metric the dashboards name is on a /metrics that Prometheus scrapes.
  const exposed = new Set<string>()
  for (const target of targets) {
    const text = await (await fetch(target.scrapeUrl)).text()
    for (const line of text.split('\n')) if (line && !line.startsWith('#')) exposed.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0])
  }
  const named = new Set(queries.flatMap((q) => metricNames(q.expr)))
  for (const name of named) t.ok(exposed.has(name), `${name} is scraped`)

  child.kill('SIGINT')
  const { code, signal } = await exited
  // The testbed's own handler removes everything at once and re-raises the signal, so the demo may end either way.
  const interrupted = code === 130 || signal === 'SIGINT'
  t.ok(interrupted, `Ctrl-C ends the demo (exit ${code}, signal ${signal})${interrupted ? '' : `\n${out.slice(-2000)}`}`)
  await t.rejects(fetch(`${prometheusUrl}/-/ready`), 'its prometheus is gone')
  t.same(
    prometheusDirs().filter((d) => !dirsBefore.includes(d)),
    [],
    "prometheus's config and data are removed",
  )
  const prefix = /grep (amb[0-9a-z]+x[0-9a-f]{4}-)/.exec(out)?.[1]
  t.ok(prefix, 'the demo printed its namespace prefix')
  const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => prefix && l.startsWith(prefix))
  t.same(left, [], 'no network namespace left')
})

/** The queries without data now; fills `values` with what each variable lists (Grafana's All). */
async function missingData(
  api: PrometheusApi,
  variables: readonly DashboardQuery[],
  panels: readonly DashboardQuery[],
  values: Record<string, string | string[]>,
): Promise<string[]> {
  const missing: string[] = []
  for (const v of variables) {
    const lv = labelValues(v.expr)!
    const list = await api.labelValues(lv.label, substitute(lv.selector, values))
    if (list.length === 0) missing.push(`${v.ref}: ${v.expr} lists nothing`)
    values[v.ref.slice('variable '.length)] = list
  }
  if (missing.length > 0) return missing
  for (const q of panels) {
    const samples = await api.query(substitute(q.expr, values))
    if (!samples.some((s) => Number.isFinite(Number(s.value)))) missing.push(describe(q, samples.length))
  }
  return missing
}

function describe(q: DashboardQuery, series: number): string {
  return `${q.dashboard} panel ${q.panel} ${q.ref}: ${series === 0 ? 'no series' : `${series} series, none a number`}: ${q.expr}`
}
