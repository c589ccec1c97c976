// The waypoint's policies for a connection that is not HTTP, as Istio generates
// its network RBAC filters (pilot/pkg/security/authz/builder, TCP): a rule that
// needs an HTTP attribute (hosts, methods, paths, request headers, request.auth.*)
// can never ALLOW a TCP connection, so an ALLOW or AUDIT rule with one is dropped;
// in a DENY (or CUSTOM) rule the HTTP attributes are ignored and the rest applies,
// which denies more than written rather than less. Pure.
import { EMPTY_L7_MATCH, type L7Group, type L7Match, type WaypointAuthorization } from '../model/waypoint-authorization.js'

const HTTP_ONLY = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths', 'headers', 'notHeaders', 'unavailable', 'notUnavailable'] as const

function hasHttp(m: L7Match): boolean {
  return HTTP_ONLY.some((k) => m[k].length > 0)
}

function withoutHttp(m: L7Match): L7Match {
  const out: Record<string, unknown> = { ...m }
  for (const k of HTTP_ONLY) out[k] = []
  return out as unknown as L7Match
}

const isEmpty = (m: L7Match): boolean => (Object.values(m) as unknown[][]).every((v) => v.length === 0)

/** A DENY rule with its HTTP attributes ignored: a from/to/when one of whose alternatives was only HTTP now holds for every connection. */
function relaxed(group: L7Group): L7Group {
  const rules = group.rules.map((r) => ({ matches: r.matches.map(withoutHttp) })).filter((r) => !r.matches.some(isEmpty))
  return { rules }
}

/** A rule that matches nothing (a match with no field set never matches), kept in place so rule numbers stay as written. */
const NEVER: L7Group = Object.freeze({ rules: [{ matches: [EMPTY_L7_MATCH] }] })

/** The policy as it applies to a TCP connection; rule numbers are kept. */
export function tcpView(policy: WaypointAuthorization): WaypointAuthorization {
  const allowing = policy.action === 'ALLOW' || policy.action === 'AUDIT'
  const groups = policy.groups.map((g) => (allowing ? (g.rules.some((r) => r.matches.some(hasHttp)) ? NEVER : g) : relaxed(g)))
  return { ...policy, groups }
}
