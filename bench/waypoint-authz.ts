// Cost of one L7 authorization decision in the waypoint (common/policy/waypoint-authz
// authorizeL7, path normalization included) with 1,000 AuthorizationPolicies applying
// to the request (and 10 for comparison), half attached to the waypoint's Gateway and
// half to the Service: one in ten DENY on a header value, nine in ten ALLOW on a method
// and path prefix plus, in the "namespace" mix, an exact source namespace (the
// evaluation then visits only the policies of the caller's namespace and the unbound
// ones), or, in the "any source" mix, a trust domain (nothing to index: every rule of
// every policy is evaluated). Three requests: one allowed by the last ALLOW policy in
// Envoy's order, one matching nothing, one denied by the first DENY policy. Also the
// one-off costs: converting the manifests and building the policies for the
// (gateway, service). Ratios and operations per second, no timed assertions. Bounded:
// --ms per measurement.
//   node --import tsx bench/waypoint-authz.ts [--ms 500]
import { parseArgs } from 'node:util'
import { convertWaypointPolicies } from '../common/model/convert/waypoint-authorization.js'
import { type L7Request, WaypointPolicyIndex, authorizeL7 } from '../common/policy/waypoint-authz.js'

const { values } = parseArgs({ options: { ms: { type: 'string', default: '500' } } })
const budgetMs = Number(values.ms)
if (!Number.isFinite(budgetMs) || budgetMs <= 0 || budgetMs > 10_000) throw new Error(`--ms ${values.ms}: give 1-10000 milliseconds`)
const ROOT = 'istio-system'
const GATEWAY = { namespace: 'bench', name: 'waypoint' }
const SERVICE = { namespace: 'bench', name: 'reviews' }

type Mix = 'namespace' | 'any source'

function manifests(n: number, mix: Mix): unknown[] {
  const out: unknown[] = []
  for (let i = 0; i < n; i++) {
    const spec =
      i % 10 === 0
        ? { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-block]', values: [`token-${i}`] }] }] }
        : {
            rules: [
              {
                from: [{ source: mix === 'namespace' ? { namespaces: [`client-${i}`] } : { trustDomains: ['cluster.local'] } }],
                to: [{ operation: { methods: ['GET', 'HEAD'], paths: [`/api/v${i}/*`, `/static/${i}/{**}`] } }],
              },
            ],
          }
    const targetRefs = [
      i % 2 === 0 ? { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: GATEWAY.name } : { group: '', kind: 'Service', name: SERVICE.name },
    ]
    out.push({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { namespace: 'bench', name: `p-${String(i).padStart(5, '0')}` },
      spec: { targetRefs, ...spec },
    })
  }
  return out
}

function request(clientNamespace: string, apiVersion: number, block = ''): L7Request {
  return {
    peerIdentity: `spiffe://cluster.local/ns/${clientNamespace}/sa/default`,
    sourceIp: '10.1.2.3',
    destinationIp: '10.96.0.10',
    destinationPort: 9080,
    method: 'GET',
    path: `/api/v${apiVersion}/items/../items/42?page=2`,
    host: 'reviews.bench.svc.cluster.local:9080',
    headers: { 'user-agent': 'bench', accept: '*/*', 'x-block': block },
  }
}

/** Runs fn in batches until the budget is spent; returns ns per call. */
function measure(fn: () => boolean): { nsPerOp: number; ops: number } {
  for (let i = 0; i < 200; i++) fn() // warm-up
  let ops = 0
  let sink = 0
  const start = process.hrtime.bigint()
  const deadline = start + BigInt(budgetMs) * 1_000_000n
  let now = start
  while (now < deadline) {
    for (let i = 0; i < 20; i++) sink += fn() ? 1 : 0
    ops += 20
    now = process.hrtime.bigint()
  }
  if (sink < 0) console.log(sink)
  return { nsPerOp: Number(now - start) / ops, ops }
}

const rows: string[][] = []
for (const [n, mix] of [
  [10, 'namespace'],
  [1_000, 'namespace'],
  [10, 'any source'],
  [1_000, 'any source'],
] as const) {
  const objects = manifests(n, mix)
  const t0 = process.hrtime.bigint()
  const converted = convertWaypointPolicies(objects, ROOT)
  const t1 = process.hrtime.bigint()
  const index = WaypointPolicyIndex.build(converted.policies)
  const policies = index.policiesFor({ gateway: GATEWAY, service: SERVICE })
  const t2 = process.hrtime.bigint()
  if (converted.policies.length !== n || policies.policies.length !== n) throw new Error(`expected ${n} applying policies, got ${policies.policies.length}`)
  const lastAllow = n - 1 - ((n - 1) % 10 === 0 ? 1 : 0)
  const cases = [
    ['allowed by the last ALLOW', request(`client-${lastAllow}`, lastAllow), 'allow-policy'],
    ['no policy matches', request('nobody', n + 1), 'no-allow-match'],
    ['denied by the first DENY', request(`client-${lastAllow}`, lastAllow, 'token-0'), 'deny-policy'],
  ] as const
  for (const [label, r, code] of cases) {
    const got = authorizeL7(policies, r).code
    if (got !== code) throw new Error(`${n} policies, ${label}: expected ${code}, got ${got}`)
    const m = measure(() => authorizeL7(policies, r).allowed)
    rows.push([
      String(n),
      mix,
      label,
      m.nsPerOp.toFixed(0),
      Math.round(1e9 / m.nsPerOp).toLocaleString('en-US'),
      `${(Number(t1 - t0) / 1e6).toFixed(1)} / ${(Number(t2 - t1) / 1e6).toFixed(1)}`,
    ])
  }
}
const headers = ['policies', 'mix', 'request', 'ns/op', 'ops/s', 'convert / index ms']
const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
console.log(`waypoint L7 authorization, ${budgetMs} ms per measurement, node ${process.version}`)
console.log(line(headers))
for (const r of rows) console.log(line(r))
const nsPerOp = (n: string, mix: Mix, request: string): number => Number(rows.find((r) => r[0] === n && r[1] === mix && r[2] === request)![3])
for (const mix of ['namespace', 'any source'] as const) {
  for (const request of ['allowed by the last ALLOW', 'no policy matches']) {
    console.log(`ratio 1,000 / 10 policies, ${mix}, ${request}: ${(nsPerOp('1000', mix, request) / nsPerOp('10', mix, request)).toFixed(1)}x`)
  }
}
