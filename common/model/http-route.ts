// The internal form of a gateway.networking.k8s.io HTTPRoute as ambient's waypoint
// uses it: only what binds the route to mesh Services (GAMMA, GEP-1294) and what
// routes a request, with every default of the API filled in. Pure data, produced by
// common/model/convert/http-route.ts and read by waypoint/route/.
//
// Field names follow the Gateway API (apis/v1/httproute_types.go in
// kubernetes-sigs/gateway-api). Header names are lowercased here, because the spec
// matches them case-insensitively; everything else is as written.
import type { PolicyRef } from './authorization.js'

/** The Gateway API group; also the default group of a parentRef. */
export const GATEWAY_API_GROUP = 'gateway.networking.k8s.io'

/**
 * rules[].retry.attempts when the retry stanza leaves it out: the spec says the
 * default is implementation-specific; Istio uses 2, and so do we.
 */
export const DEFAULT_RETRY_ATTEMPTS = 2

/** A Service the route attaches to: a parentRef with group "" (or "core") and kind Service. */
export interface ServiceParentRef {
  /** parentRef.namespace, defaulted to the route's namespace. */
  readonly namespace: string
  readonly name: string
  /** parentRef.port: the route applies to this service port only; null: every port. */
  readonly port: number | null
  /** parentRef.sectionName: the name of the service port the route applies to; null: not set. */
  readonly sectionName: string | null
  /** Where it is written, e.g. `spec.parentRefs[0]`. */
  readonly field: string
}

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE' | 'CONNECT' | 'OPTIONS' | 'TRACE' | 'PATCH'
export const HTTP_METHODS: readonly HttpMethod[] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']

/**
 * HTTPPathMatch. `value` is as written (PathPrefix `/foo/` and `/foo` match the same
 * paths: a trailing slash is ignored). RegularExpression is a full match of the path
 * (without the query) in the dialect of common/model/convert/route-regex.ts.
 */
export type PathMatch =
  | { readonly type: 'Exact'; readonly value: string }
  | { readonly type: 'PathPrefix'; readonly value: string }
  | { readonly type: 'RegularExpression'; readonly value: string }

/** HTTPHeaderMatch; `name` lowercased. Several values of one header are matched joined by ",". */
export interface HeaderMatch {
  readonly type: 'Exact' | 'RegularExpression'
  readonly name: string
  readonly value: string
}

/** HTTPQueryParamMatch; `name` as written (query parameter names are case-sensitive). */
export interface QueryParamMatch {
  readonly type: 'Exact' | 'RegularExpression'
  readonly name: string
  readonly value: string
}

/**
 * HTTPRouteMatch: every condition must hold. Only the first of several header (or
 * query parameter) matches with an equivalent name is kept, as the spec requires.
 */
export interface HttpRouteMatch {
  readonly path: PathMatch
  readonly headers: readonly HeaderMatch[]
  readonly queryParams: readonly QueryParamMatch[]
  readonly method: HttpMethod | null
}

/** HTTPHeader; `name` lowercased. */
export interface HttpHeader {
  readonly name: string
  readonly value: string
}

/** HTTPHeaderFilter. A header name appears in at most one of the three lists. */
export interface HeaderModifier {
  readonly set: readonly HttpHeader[]
  readonly add: readonly HttpHeader[]
  /** Lowercased names. */
  readonly remove: readonly string[]
}

/** HTTPPathModifier. */
export type PathModifier =
  { readonly type: 'ReplaceFullPath'; readonly replaceFullPath: string } | { readonly type: 'ReplacePrefixMatch'; readonly replacePrefixMatch: string }

/**
 * BackendObjectReference with its defaults filled in: group "" and kind Service
 * (group "core" is written as ""), namespace the route's. `port` is null only for
 * kinds other than Service (a Service reference without a port is rejected).
 */
export interface BackendObjectRef {
  readonly group: string
  readonly kind: string
  readonly namespace: string
  readonly name: string
  readonly port: number | null
  /** Where it is written, e.g. `spec.rules[0].backendRefs[1]`. */
  readonly field: string
}

/** The share of requests a RequestMirror copies: numerator / denominator (percent p is p/100). */
export interface MirrorFraction {
  readonly numerator: number
  readonly denominator: number
}

/** The filter types the spec defines that ambient's waypoint does not implement. */
export type UnsupportedFilterType = 'ExtensionRef' | 'CORS' | 'ExternalAuth'

/**
 * HTTPRouteFilter, one variant per type. `Unsupported` keeps the place of a filter
 * ambient cannot apply: the spec forbids skipping it, so requests that would pass
 * through it are answered 500 (and the conversion warns).
 */
export type HttpRouteFilter =
  | { readonly type: 'RequestHeaderModifier'; readonly modifier: HeaderModifier }
  | { readonly type: 'ResponseHeaderModifier'; readonly modifier: HeaderModifier }
  | { readonly type: 'URLRewrite'; readonly hostname: string | null; readonly path: PathModifier | null }
  | {
      readonly type: 'RequestRedirect'
      readonly scheme: 'http' | 'https' | null
      readonly hostname: string | null
      readonly path: PathModifier | null
      readonly port: number | null
      /** Defaulted to 302. */
      readonly statusCode: 301 | 302 | 303 | 307 | 308
    }
  | { readonly type: 'RequestMirror'; readonly backend: BackendObjectRef; readonly fraction: MirrorFraction }
  | { readonly type: 'Unsupported'; readonly filterType: UnsupportedFilterType; readonly field: string }

/** HTTPBackendRef. `weight` defaults to 1; 0 gets no traffic. */
export interface HttpBackendRef {
  readonly backend: BackendObjectRef
  readonly weight: number
  /** Filters applied only to requests sent to this backend. */
  readonly filters: readonly HttpRouteFilter[]
}

/**
 * HTTPRouteTimeouts in milliseconds (GEP-2257 durations). null: not set (the proxy's
 * default applies); 0: the spec's "0s", which disables the timeout.
 */
export interface HttpRouteTimeouts {
  readonly requestMs: number | null
  readonly backendRequestMs: number | null
}

/** HTTPRouteRetry (experimental in the Gateway API; GEP-1731). */
export interface HttpRouteRetry {
  /** Retries after the first try; DEFAULT_RETRY_ATTEMPTS when not written; 0 disables retries. */
  readonly attempts: number
  /** Response status codes (400-599) that are retried, besides connection errors. */
  readonly codes: readonly number[]
  /** Minimum wait between tries; null: the proxy's default. */
  readonly backoffMs: number | null
}

/** HTTPRouteRule. `matches` is never empty: an absent list is the spec's default PathPrefix `/`. */
export interface HttpRouteRule {
  readonly name: string | null
  readonly matches: readonly HttpRouteMatch[]
  readonly filters: readonly HttpRouteFilter[]
  readonly backendRefs: readonly HttpBackendRef[]
  readonly timeouts: HttpRouteTimeouts | null
  readonly retry: HttpRouteRetry | null
}

export interface HttpRoute {
  readonly namespace: string
  readonly name: string
  /** metadata.creationTimestamp (RFC 3339), '' when the object has none (local manifests). */
  readonly creationTimestamp: string
  /** The Service parents; other parents (Gateways...) are left out with a warning. */
  readonly parents: readonly ServiceParentRef[]
  readonly rules: readonly HttpRouteRule[]
}

/** The default match of a rule without matches. */
export const DEFAULT_MATCH: HttpRouteMatch = Object.freeze({
  path: Object.freeze({ type: 'PathPrefix', value: '/' }),
  headers: Object.freeze([]),
  queryParams: Object.freeze([]),
  method: null,
}) as HttpRouteMatch

export type RouteWarningCode =
  /** A parentRef that is not a core Service (a Gateway...): ignored by the waypoint. */
  | 'AMBIENT_WARN_ROUTE_PARENT_IGNORED'
  /** spec.hostnames on a route with Service parents: GAMMA says not to use them. */
  | 'AMBIENT_WARN_ROUTE_HOSTNAMES_IGNORED'
  /** A filter type the waypoint does not implement: its requests get 500. */
  | 'AMBIENT_WARN_ROUTE_UNSUPPORTED_FILTER'
  /** A header or query parameter match repeating an earlier name: ignored, per the spec. */
  | 'AMBIENT_WARN_ROUTE_DUPLICATE_MATCH'
  /** A field the waypoint does not implement and that does not change where requests go. */
  | 'AMBIENT_WARN_ROUTE_IGNORED_FIELD'
  /** Binding (waypoint/route): the parent Service, or its port, does not exist. */
  | 'AMBIENT_WARN_ROUTE_PARENT_NOT_FOUND'
  /** Binding: a route for a Service in another namespace (a consumer route) that this waypoint does not apply. */
  | 'AMBIENT_WARN_ROUTE_CONSUMER_ROUTE'
  /** Binding: a backendRef (or mirror) that cannot be used; its share of requests gets 500. */
  | 'AMBIENT_WARN_ROUTE_INVALID_BACKEND'

/** Accepted with a caveat; becomes a status condition on the HTTPRoute (shape of PolicyWarning). */
export interface RouteWarning {
  readonly code: RouteWarningCode
  readonly policy: PolicyRef
  /** Field path in the object, e.g. `spec.rules[0].filters[1]`. */
  readonly field: string
  readonly message: string
}
