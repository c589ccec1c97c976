// Cost of one L4 authorization decision (common/policy evaluate) per connection with
// 10, 1,000 and 10,000 AuthorizationPolicies in the destination's namespace (nine
// in ten ALLOW on a source namespace + port, one in ten DENY on a source IP), plus
// a STRICT mesh PeerAuthentication. Two connections: one allowed by the last ALLOW
// policy, one matching nothing (both scan every policy). Also the one-off cost of
// building the PolicySet. Bounded: --ms per measurement.
//   node --import tsx bench/policy-eval.ts [--ms 500]
import { parseArgs } from 'node:util'
import type { WorkloadAuthorization } from '../common/model/authorization.js'
import { convertAuthorizationPolicy } from '../common/model/convert/authorization-policy.js'
import { convertPeerAuthentication } from '../common/model/convert/peer-authentication.js'
import type { PeerAuthentication } from '../common/model/peer-authentication.js'
import type { ConnectionAttributes } from '../common/policy/fields.js'
import { evaluate } from '../common/policy/matcher.js'
import { PolicySet } from '../common/policy/policy-set.js'

const { values } = parseArgs({ options: { ms: { type: 'string', default: '500' } } })
const budgetMs = Number(values.ms)
const ROOT = 'istio-system'

function policies(n: number): WorkloadAuthorization[] {
  const out: WorkloadAuthorization[] = []
  for (let i = 0; i < n; i++) {
    const spec =
      i % 10 === 0
        ? { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: [`192.0.${(i >> 8) & 255}.${i & 255}/32`] } }] }] }
        : { rules: [{ from: [{ source: { namespaces: [`client-${i}`] } }], to: [{ operation: { ports: ['8080', '8443'] } }] }] }
    const r = convertAuthorizationPolicy({ kind: 'AuthorizationPolicy', metadata: { namespace: 'bench', name: `p-${i}` }, spec }, { rootNamespace: ROOT })
    if (r.kind !== 'converted') throw new Error(`policy p-${i} did not convert`)
    out.push(r.policy)
  }
  return out
}

function peerAuthentications(): PeerAuthentication[] {
  const r = convertPeerAuthentication({ kind: 'PeerAuthentication', metadata: { namespace: ROOT, name: 'default' }, spec: { mtls: { mode: 'STRICT' } } })
  if (r.kind !== 'converted') throw r.error
  return [r.policy]
}

function conn(clientNamespace: string): ConnectionAttributes {
  return {
    sourceIdentity: { trustDomain: 'cluster.local', namespace: clientNamespace, serviceAccount: 'default' },
    sourceIp: '10.1.2.3',
    destination: { ip: '10.9.0.1', port: 8080, namespace: 'bench', labels: { app: 'server', version: 'v1' } },
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
    for (let i = 0; i < 50; i++) sink += fn() ? 1 : 0
    ops += 50
    now = process.hrtime.bigint()
  }
  if (sink < 0) console.log(sink)
  return { nsPerOp: Number(now - start) / ops, ops }
}

const rows: string[][] = []
for (const n of [10, 1_000, 10_000]) {
  const list = policies(n)
  const pas = peerAuthentications()
  const t0 = process.hrtime.bigint()
  const set = PolicySet.build({ authorizations: list, peerAuthentications: pas, rootNamespace: ROOT })
  set.forDestination('bench', { app: 'server', version: 'v1' })
  const buildMs = Number(process.hrtime.bigint() - t0) / 1e6
  const lastAllow = n - 1 - (n - 1 === 0 || (n - 1) % 10 === 0 ? 1 : 0)
  const allowed = conn(`client-${lastAllow}`)
  const denied = conn('nobody')
  if (!evaluate(set, allowed).allowed || evaluate(set, denied).allowed) throw new Error('unexpected decision')
  for (const [label, c] of [
    ['allowed by last policy', allowed],
    ['no policy matches', denied],
  ] as const) {
    const m = measure(() => evaluate(set, c).allowed)
    rows.push([String(n), label, m.nsPerOp.toFixed(0), Math.round(1e9 / m.nsPerOp).toLocaleString('en-US'), buildMs.toFixed(1)])
  }
}
const headers = ['policies', 'connection', 'ns/op', 'ops/s', 'build ms']
const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
console.log(`policy evaluation, ${budgetMs} ms per measurement, node ${process.version}`)
console.log(line(headers))
for (const r of rows) console.log(line(r))
