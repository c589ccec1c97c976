// The committed dashboards: exactly what the code generates (no drift), valid
// Grafana JSON (ids, grid, every query on the data source variable), every query
// valid PromQL (promtool), and every metric they name one that the agent, ztunnel
// or waypoint registers. test/e2e/dashboards.test.ts runs them against a real
// Prometheus scraping the demo.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import type { Registry } from 'prom-client'
import { AgentMetrics } from '../../agent/metrics.js'
import { ZtunnelMetrics } from '../../ztunnel/metrics.js'
import { WaypointMetrics } from '../../waypoint/metrics.js'
import { DASHBOARDS_DIR, generate } from './generate.js'
import { committedDashboards, labelValues, metricNames, queriesOf, substitute } from './dashboard-json.js'

const VALUES = { __rate_interval: '30s', node: ['node1', 'node2'], namespace: ['shop'], gateway: ['waypoint'] }
const dashboards = committedDashboards()
const queries = [...dashboards].flatMap(([file, d]) => queriesOf(file, d))

/** Every series name a registry exposes (a histogram's _bucket, _sum and _count). */
async function exposed(registry: Registry): Promise<string[]> {
  return (await registry.getMetricsAsJSON()).flatMap((m) =>
    String(m.type) === 'histogram'
      ? [`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`]
      : String(m.type) === 'summary'
        ? [m.name, `${m.name}_sum`, `${m.name}_count`]
        : [m.name],
  )
}

t.test('the committed JSON is what the code generates', async (t) => {
  for (const [file, text] of generate()) {
    const committed = readFileSync(join(DASHBOARDS_DIR, file), 'utf8')
    t.equal(committed, text, `${file} is up to date (npm run dashboards)`)
  }
  const check = spawnSync(process.execPath, ['--import', 'tsx', join(DASHBOARDS_DIR, 'generate.ts'), '--check'], { encoding: 'utf8' })
  t.equal(check.status, 0, `generate.ts --check agrees: ${check.stderr}`)
})

t.test('Grafana dashboards: unique uids, panels with ids on the grid, every query on the data source variable', async (t) => {
  const uids = [...dashboards.values()].map((d) => d.uid)
  t.same(uids, ['ambient-node', 'ambient-waypoint'])
  for (const [file, d] of dashboards) {
    const ids = d.panels.map((p) => p.id)
    t.equal(new Set(ids).size, ids.length, `${file}: panel ids are unique`)
    t.same(
      d.templating.list[0],
      { ...d.templating.list[0], name: 'datasource', type: 'datasource', query: 'prometheus' },
      `${file}: a Prometheus data source variable`,
    )
    const cells = new Set<string>()
    for (const panel of d.panels as unknown as {
      id: number
      type: string
      title: string
      gridPos: { x: number; y: number; w: number; h: number }
      datasource?: unknown
      targets?: { refId: string; expr: string; datasource: unknown }[]
    }[]) {
      const { x, y, w, h } = panel.gridPos
      t.ok(x >= 0 && w > 0 && x + w <= 24, `${file} panel ${panel.id}: within 24 columns`)
      const mine = Array.from({ length: w * h }, (_, k) => `${x + (k % w)},${y + Math.floor(k / w)}`)
      t.notOk(
        mine.some((c) => cells.has(c)),
        `${file} panel ${panel.id} overlaps none`,
      )
      for (const c of mine) cells.add(c)
      if (panel.type === 'row') continue
      t.ok(panel.title, `${file} panel ${panel.id} has a title`)
      t.ok(panel.targets && panel.targets.length > 0, `${file} ${panel.title}: has queries`)
      t.same(panel.datasource, { type: 'prometheus', uid: '${datasource}' })
      const refs = (panel.targets ?? []).map((q) => q.refId)
      t.equal(new Set(refs).size, refs.length, `${file} ${panel.title}: refIds are unique`)
      for (const q of panel.targets ?? [])
        t.same(q.datasource, { type: 'prometheus', uid: '${datasource}' }, `${file} ${panel.title} ${q.refId}: on $datasource`)
    }
  }
})

t.test('every query is valid PromQL once Grafana substituted its variables (promtool)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambient-dashboards-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const rules = queries.map((q, i) => ({ record: `dashboard_query_${i}`, expr: substitute(labelValues(q.expr)?.selector ?? q.expr, VALUES) }))
  t.ok(rules.length > 40, `${rules.length} queries`)
  const file = join(dir, 'rules.yml')
  writeFileSync(file, stringify({ groups: [{ name: 'dashboards', rules }] }))
  const check = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' })
  t.equal(check.status, 0, `promtool check rules:\n${check.stdout}${check.stderr}`)
  t.match(check.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`))
})

t.test('every metric a dashboard names is one the agent, ztunnel or waypoint exposes', async (t) => {
  const known = new Set([
    ...(await exposed(new AgentMetrics().registry)),
    ...(await exposed(new ZtunnelMetrics().registry)),
    ...(await exposed(new WaypointMetrics().registry)),
  ])
  const named = new Set(queries.flatMap((q) => metricNames(q.expr)))
  t.ok(named.size > 25, `${named.size} metrics named`)
  for (const name of named) t.ok(known.has(name), `${name} is exposed`)
  for (const wanted of [
    'ambient_datapath_events_total',
    'ambient_datapath_program_runs_total',
    'istio_tcp_connections_opened_total',
    'istio_request_duration_milliseconds_bucket',
  ])
    t.ok(named.has(wanted), `${wanted} is on a dashboard`)
})

t.test('metric names are found in every selector, and an expression that hides one is refused', async (t) => {
  t.same(metricNames('sum by (node) (rate(a_total{job="x", event=~"b|c{"}[$__rate_interval])) / max by (node, le) (b_bytes{node=~"$node"})'), [
    'a_total',
    'b_bytes',
  ])
  t.same(metricNames('label_values(process_start_time_seconds{job="ambient-waypoint"}, namespace)'), ['process_start_time_seconds'])
  t.throws(() => metricNames('sum(rate(bare_total[1m]))'), /bare_total is not read through a name\{\.\.\.\} selector/)
  t.equal(substitute('x{node=~"$node"}[$__rate_interval]', VALUES), 'x{node=~"(node1|node2)"}[30s]')
  t.equal(substitute('x{namespace=~"$namespace"}', VALUES), 'x{namespace=~"shop"}')
  t.throws(() => substitute('x{a=~"$other"}', VALUES), /no value given for \$other/)
})
