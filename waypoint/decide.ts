// The waypoint's decision for one request, pure and shared by the proxy and
// `ambient waypoint check` (the very same code): the path normalized as Istio's
// Envoy does (a path it refuses is answered 400/404), L7 authorization (CUSTOM,
// DENY, ALLOW: a denial is answered 403 `RBAC: access denied`), then, for a
// request addressed to a service, HTTPRoute selection and filters (a redirect, a
// 404 when bound routes have no matching rule, a 500 for an unusable rule), else
// the backends to forward to. A request addressed to a workload is not routed
// (GAMMA routes attach to services): it goes to that workload.
import type { PolicyProblem } from '../common/model/convert/policies.js'
import { authorizeL7, type L7Decision, type L7Request } from '../common/policy/waypoint-authz.js'
import type { RequestPlan } from './plan.js'
import type { PlanInput } from './proxy/http-handler.js'
import type { TcpDecision } from './proxy/tcp-handler.js'
import type { RouteRequest } from './route/request.js'
import { routeRequest } from './route/route.js'
import type { WaypointState, WaypointTarget } from './state.js'

export const RBAC_DENIED_BODY = 'RBAC: access denied'

export interface ConfigProblem {
  /** `Kind namespace/name` of the object. */
  readonly object: string
  readonly kind: 'invalid' | 'ignored' | 'unsupported' | 'warning'
  readonly field: string
  readonly code: string
  readonly message: string
}

/** What the state's routes, policies and gateway could not apply as written (log, metric, /config_dump). */
export function problemsOf(state: WaypointState): ConfigProblem[] {
  const out: ConfigProblem[] = []
  const add = (kind: ConfigProblem['kind'], list: readonly PolicyProblem[]): void => {
    for (const p of list) out.push({ object: `${p.kind} ${p.policy}`, kind, field: p.field, code: p.code, message: p.message })
  }
  add('invalid', state.routeProblems.invalid)
  add('ignored', state.routeProblems.ignored)
  add('warning', state.routeProblems.warnings)
  add('invalid', state.policyProblems.invalid)
  add('unsupported', state.policyProblems.unsupported)
  add('warning', state.policyProblems.warnings)
  return out
}

const name = (p: { readonly namespace: string; readonly name: string } | null): string | null => (p === null ? null : `${p.namespace}/${p.name}`)

function targetService(target: WaypointTarget): { namespace: string; name: string } | null {
  return target.kind === 'service' ? { namespace: target.service.namespace, name: target.service.name } : null
}

/** The authorization of one request as the waypoint evaluates it (before routing). */
export function authorizeRequest(state: WaypointState, input: PlanInput): L7Decision {
  const request: L7Request = {
    peerIdentity: input.peerIdentity,
    sourceIp: input.sourceIp,
    destinationIp: input.target.address.ip,
    destinationPort: input.target.address.port,
    method: input.method,
    path: input.path,
    host: input.authority,
    headers: input.headers,
  }
  return authorizeL7(state.policies(targetService(input.target)), request)
}

export function decidePlan(state: WaypointState, input: PlanInput): RequestPlan {
  const authz = authorizeRequest(state, input)
  const decided = { policy: name(authz.policy), decision: authz.allowed ? ('allow' as const) : ('deny' as const), route: null, rule: null }
  const normalized: RouteRequest | null = authz.path === null ? null : { method: input.method, path: authz.path, host: input.authority, headers: input.headers }
  if (!authz.allowed || normalized === null) {
    const status = authz.denyStatus ?? 403
    const body = status === 403 ? RBAC_DENIED_BODY : status === 400 ? 'Bad Request' : 'Not Found'
    return { ...decided, kind: 'respond', status, body, location: null, flags: '-', request: normalized }
  }
  const request = normalized
  const target = input.target
  if (target.kind === 'workload') {
    const forward = {
      kind: 'forward' as const,
      route: null,
      rule: null,
      backends: [],
      request,
      responseHeaders: null,
      mirrors: [],
      timeouts: { requestMs: null, backendRequestMs: null },
      retry: null,
    }
    return { ...decided, kind: 'forward', forward, workload: { workload: target.workload, port: target.address.port } }
  }
  const routed = routeRequest(state.routes, { namespace: target.service.namespace, name: target.service.name, port: target.port.port }, request)
  const at = { ...decided, route: name(routed.route), rule: routed.rule }
  switch (routed.kind) {
    case 'forward':
      return { ...at, kind: 'forward', forward: routed, workload: null }
    case 'redirect':
      return {
        ...at,
        kind: 'respond',
        status: routed.status,
        body: '',
        location: routed.location,
        flags: '-',
        request,
        responseHeaders: routed.responseHeaders,
      }
    case 'not-found':
      // Envoy's "no route" response flag.
      return { ...at, kind: 'respond', status: 404, body: 'route not found', location: null, flags: 'NR', request }
    case 'error':
      return { ...at, kind: 'respond', status: 500, body: `${routed.reason}`, location: null, flags: '-', request }
  }
}

/** A connection that is not HTTP: the same policies as they apply to TCP (tcpView). */
export function decideTcp(
  state: WaypointState,
  input: { readonly peerIdentity: string | null; readonly sourceIp: string; readonly target: WaypointTarget },
): TcpDecision {
  const request: L7Request = {
    peerIdentity: input.peerIdentity,
    sourceIp: input.sourceIp,
    destinationIp: input.target.address.ip,
    destinationPort: input.target.address.port,
    method: '',
    path: '/',
    host: '',
    headers: {},
  }
  const decision = authorizeL7(state.tcpPolicies(targetService(input.target)), request)
  return { allowed: decision.allowed, policy: name(decision.policy) }
}
