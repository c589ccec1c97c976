// Cost of routing one request (waypoint/route routeRequest, plus pickBackend) when
// 1,000 HTTPRoutes are bound to the same Service: the worst case for the waypoint,
// whose per-request work is a scan of that Service port's sorted matches. 900
// routes have a PathPrefix and a header match, 100 a RegularExpression path; one
// more (`catch-all`, PathPrefix /) is added for the second row. Requests: one
// matched by the first entry in precedence order, one matched only by the
// catch-all after every prefix was tried, one matching nothing (404: every prefix
// and every expression tried). Also the one-off cost of converting the manifests
// and building the table. Bounded: --ms per measurement.
//   node --import tsx bench/route-table.ts [--ms 500]
import { parseArgs } from 'node:util'
import type { HttpRoute } from '../common/model/http-route.js'
import { convertHttpRoute } from '../common/model/convert/http-route.js'
import { pickBackend } from '../waypoint/route/pick.js'
import type { RouteRequest } from '../waypoint/route/request.js'
import { routeRequest } from '../waypoint/route/route.js'
import { type LookupService, buildRouteTable } from '../waypoint/route/table.js'

const { values } = parseArgs({ options: { ms: { type: 'string', default: '500' } } })
const budgetMs = Number(values.ms)
const N = 1_000

function defaultMatch(i: number): unknown {
  return i % 10 === 9
    ? { path: { type: 'RegularExpression', value: `/re-${i}/[0-9]+` } }
    : { path: { type: 'PathPrefix', value: `/api/v1/items-${i}` }, headers: [{ name: 'x-tenant', value: `t${i}` }] }
}

function manifest(i: number, name = `route-${i}`, match = defaultMatch(i)): unknown {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { namespace: 'bench', name, creationTimestamp: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString() },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'api' }],
      rules: [
        {
          matches: [match],
          filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-route', value: String(i) }] } }],
          backendRefs: [
            { name: 'v1', port: 8080, weight: 90 },
            { name: 'v2', port: 8080, weight: 10 },
          ],
        },
      ],
    },
  }
}

function convert(objects: readonly unknown[]): HttpRoute[] {
  return objects.map((o) => {
    const r = convertHttpRoute(o)
    if (r.kind !== 'converted') throw new Error(`bench route did not convert: ${r.kind}`)
    return r.route
  })
}

const lookupService: LookupService = () => ({ ports: [{ name: 'http', port: 8080 }] })
const target = { namespace: 'bench', name: 'api', port: 8080 }
const request = (path: string, tenant: string): RouteRequest => ({
  method: 'GET',
  path,
  host: 'api.bench:8080',
  headers: { 'x-tenant': tenant, accept: '*/*' },
})

/** Runs fn in batches until the budget is spent; returns ns per call. */
function measure(fn: () => unknown): number {
  for (let i = 0; i < 200; i++) fn() // warm-up
  let ops = 0
  const start = process.hrtime.bigint()
  const deadline = start + BigInt(budgetMs) * 1_000_000n
  let now = start
  while (now < deadline) {
    for (let i = 0; i < 50; i++) fn()
    ops += 50
    now = process.hrtime.bigint()
  }
  return Number(now - start) / ops
}

let random = 0.5
const next = (): number => (random = (random * 9301 + 49297) % 233280) / 233280

const rows: string[][] = []
const manifests = Array.from({ length: N }, (_, i) => manifest(i))
const catchAll = manifest(N, 'catch-all', { path: { type: 'PathPrefix', value: '/' } })
for (const [label, objects] of [
  [`${N} routes`, manifests],
  [`${N} routes + catch-all`, [...manifests, catchAll]],
] as const) {
  const t0 = process.hrtime.bigint()
  const routes = convert(objects)
  const t1 = process.hrtime.bigint()
  const table = buildRouteTable(routes, { lookupService })
  const t2 = process.hrtime.bigint()
  const entries = table.entries('bench', 'api', 8080)?.length ?? 0
  const cases: [string, RouteRequest, string][] = [
    ['first entry matches', request('/api/v1/items-100/x', 't100'), 'forward'],
    ['only the catch-all matches', request('/other/path', 'none'), objects.length > N ? 'forward' : 'not-found'],
  ]
  if (objects.length === N) cases.push(['nothing matches (404)', request('/other/path?x=1', 'none'), 'not-found'])
  for (const [what, req, kind] of cases) {
    const d = routeRequest(table, target, req)
    if (d.kind !== kind) throw new Error(`${label}, ${what}: expected ${kind}, got ${d.kind}`)
    const ns = measure(() => {
      const decision = routeRequest(table, target, req)
      return decision.kind === 'forward' ? pickBackend(decision, next) : decision
    })
    rows.push([
      label,
      String(entries),
      what,
      ns.toFixed(0),
      Math.round(1e9 / ns).toLocaleString('en-US'),
      (Number(t1 - t0) / 1e6).toFixed(1),
      (Number(t2 - t1) / 1e6).toFixed(1),
    ])
  }
}
const headers = ['routes', 'entries', 'request', 'ns/op', 'ops/s', 'convert ms', 'build ms']
const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
console.log(`routing one request (routeRequest + pickBackend), ${budgetMs} ms per measurement, node ${process.version}`)
console.log(line(headers))
for (const r of rows) console.log(line(r))
