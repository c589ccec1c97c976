// Routing one request: the first match of the Service port's sorted list decides,
// its rule's filters run in the order written (as the spec asks), and the result
// says what the proxy does: forward (to a backend chosen with pickBackend), answer a
// redirect, 404 or 500. Pure and deterministic.
//
// - No route bound to the Service port: forward to the Service itself, on the port
//   the request was sent to (Kubernetes' own behaviour, GEP-1294 "Route presence").
// - Routes bound but none matches: 404 (the spec's "no matching rule").
// - A rule with a filter the waypoint does not implement, no backendRefs, only
//   weight-0 backendRefs, or only invalid ones: 500.
import type { HeaderModifier, HttpRouteRetry, MirrorFraction } from '../../common/model/http-route.js'
import { ParsedRequest } from './match.js'
import { type RouteRequest, modifyHeaders, redirectLocation, rewriteRequest } from './request.js'
import type { BackendTarget, CompiledFilter, RouteRef, RouteTable, TableEntry, WeightedBackend } from './table.js'

/** The Service port a request was sent to (ztunnel's HBONE target for the waypoint). */
export type RouteTarget = BackendTarget

/** A copy of the request to send to a mirror, as the request was at the filter's place in the list. */
export interface MirrorTarget {
  readonly backend: BackendTarget
  readonly fraction: MirrorFraction
  readonly request: RouteRequest
}

/** Timeouts in ms: null not set (the proxy's default), 0 disabled (the spec's "0s"). */
export interface RouteTimeouts {
  readonly requestMs: number | null
  readonly backendRequestMs: number | null
}

/**
 * The rule's retry: retry on connection errors (always, once configured: the spec's
 * SHOULD) and on the response `codes`, up to `attempts` retries.
 */
export type RouteRetry = HttpRouteRetry

export interface ForwardDecision {
  readonly kind: 'forward'
  /** The route and rule index that matched; null when no route is bound (the default route). */
  readonly route: RouteRef | null
  readonly rule: number | null
  /** Weight > 0 only, raw weights; at least one is a service. */
  readonly backends: readonly WeightedBackend[]
  /** After the rule's RequestHeaderModifier and URLRewrite (`host` is the rewritten authority). */
  readonly request: RouteRequest
  /** The rule's ResponseHeaderModifier. */
  readonly responseHeaders: HeaderModifier | null
  /** The rule's mirrors with a valid backend, before sampling their fraction (pickBackend samples). */
  readonly mirrors: readonly MirrorTarget[]
  readonly timeouts: RouteTimeouts
  readonly retry: RouteRetry | null
}

export type RouteDecision =
  | ForwardDecision
  | {
      readonly kind: 'redirect'
      readonly status: 301 | 302 | 303 | 307 | 308
      readonly location: string
      readonly responseHeaders: HeaderModifier | null
      readonly route: RouteRef
      readonly rule: number
    }
  | { readonly kind: 'not-found'; readonly status: 404; readonly route: null; readonly rule: null }
  | { readonly kind: 'error'; readonly status: 500; readonly reason: string; readonly route: RouteRef; readonly rule: number }

const NO_TIMEOUTS: RouteTimeouts = Object.freeze({ requestMs: null, backendRequestMs: null })
const NOT_FOUND: RouteDecision = Object.freeze({ kind: 'not-found', status: 404, route: null, rule: null })

export function routeRequest(table: RouteTable, target: RouteTarget, request: RouteRequest): RouteDecision {
  const entries = table.entries(target.namespace, target.name, target.port)
  if (entries === undefined) {
    const backend: WeightedBackend = { kind: 'service', namespace: target.namespace, name: target.name, port: target.port, weight: 1, filters: [] }
    return { kind: 'forward', route: null, rule: null, backends: [backend], request, responseHeaders: null, mirrors: [], timeouts: NO_TIMEOUTS, retry: null }
  }
  const parsed = new ParsedRequest(request)
  for (const entry of entries) {
    if (entry.test(parsed)) return decide(entry, target, request)
  }
  return NOT_FOUND
}

/** The outcome of running filters on a request; also used by pickBackend for a backend's own filters. */
export interface FilterResult {
  readonly request: RouteRequest
  readonly responseHeaders: HeaderModifier | null
  readonly mirrors: readonly MirrorTarget[]
  readonly redirect: Extract<CompiledFilter, { type: 'RequestRedirect' }> | null
}

export function applyFilters(filters: readonly CompiledFilter[], request: RouteRequest): FilterResult {
  let current = request
  let responseHeaders: HeaderModifier | null = null
  let redirect: FilterResult['redirect'] = null
  const mirrors: MirrorTarget[] = []
  for (const f of filters) {
    switch (f.type) {
      case 'RequestHeaderModifier':
        current = { ...current, headers: modifyHeaders(current.headers, f.modifier) }
        break
      case 'ResponseHeaderModifier':
        responseHeaders = f.modifier
        break
      case 'URLRewrite':
        current = rewriteRequest(current, f.hostname, f.path, f.prefix)
        break
      case 'RequestMirror':
        if (f.target !== null) mirrors.push({ backend: f.target, fraction: f.fraction, request: current })
        break
      case 'RequestRedirect':
        redirect = f
    }
  }
  return { request: current, responseHeaders, mirrors, redirect }
}

function decide(entry: TableEntry, target: RouteTarget, request: RouteRequest): RouteDecision {
  const rule = entry.rule
  const route = rule.route
  if (rule.error !== null) return { kind: 'error', status: 500, reason: rule.error, route, rule: rule.index }
  const result = applyFilters(rule.filters, request)
  if (result.redirect !== null) {
    const location = redirectLocation(result.redirect, request, target.port, result.redirect.prefix)
    return { kind: 'redirect', status: result.redirect.statusCode, location, responseHeaders: result.responseHeaders, route, rule: rule.index }
  }
  return {
    kind: 'forward',
    route,
    rule: rule.index,
    backends: rule.backends,
    request: result.request,
    responseHeaders: result.responseHeaders,
    mirrors: result.mirrors,
    timeouts: rule.timeouts ?? NO_TIMEOUTS,
    retry: rule.retry,
  }
}
