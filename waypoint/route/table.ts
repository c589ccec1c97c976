// The routing table: HTTPRoutes bound to Service ports (GAMMA, GEP-1294), their
// backends resolved and their matches sorted by the spec's precedence, built once
// per configuration change so that routing one request is a scan of one sorted
// list. Pure: services are looked up through the function the caller passes.
//
// Binding, as Istio's waypoint does it:
// - A route applies to its Service parent when the route is in the Service's
//   namespace (a producer route), or in the waypoint's own namespace
//   (pilot/pkg/networking/core/listener_waypoint.go getVirtualServiceForWaypoint).
//   Other routes for a Service in another namespace (consumer routes, which GAMMA
//   scopes to clients of the route's namespace) are not applied, and reported.
// - parentRef.port binds the route to that service port; sectionName to the port of
//   that name; neither to every port. A parent Service (or port) that does not exist
//   binds nothing, and is reported.
// Backends (HTTPBackendRef): a backend is invalid when it is not a core Service
// (InvalidKind), the Service does not exist or has no such port (BackendNotFound),
// or it is in another namespace while cross-namespace backends are not allowed
// (RefNotPermitted). GEP-1294 allows mesh routes to send to any namespace without a
// ReferenceGrant (Istio does not check them for mesh routes either), so that is the
// default. An invalid backend keeps its weight and answers 500 for its share.
import type {
  BackendObjectRef,
  HeaderModifier,
  HttpRoute,
  HttpRouteFilter,
  HttpRouteRule,
  MirrorFraction,
  PathModifier,
} from '../../common/model/http-route.js'
import type { PolicyProblem } from '../../common/model/convert/policies.js'
import { type CompiledMatch, type MatchOrigin, comparePrecedence, compileMatch } from './match.js'

/** What the table needs to know of a Service: its ports (the model's Service fits). */
export interface ServiceInfo {
  readonly ports: readonly { readonly name: string; readonly port: number }[]
}

/** Looks a Service up by namespace and name; undefined when there is none. */
export type LookupService = (namespace: string, name: string) => ServiceInfo | undefined

export interface RouteTableOptions {
  readonly lookupService: LookupService
  /** The waypoint's namespace: its routes apply to every Service it serves (as Istio). Unset: producer routes only. */
  readonly waypointNamespace?: string
  /** Backends in another namespace than the route's; default true (GEP-1294: no ReferenceGrant for mesh routes). */
  readonly allowCrossNamespaceBackends?: boolean
}

export interface RouteRef {
  readonly namespace: string
  readonly name: string
}

/** A Service port requests can be sent to. */
export interface BackendTarget {
  readonly namespace: string
  readonly name: string
  readonly port: number
}

/** A filter ready to apply: ReplacePrefixMatch knows the rule's PathPrefix, a mirror its resolved target. */
export type CompiledFilter =
  | { readonly type: 'RequestHeaderModifier'; readonly modifier: HeaderModifier }
  | { readonly type: 'ResponseHeaderModifier'; readonly modifier: HeaderModifier }
  | { readonly type: 'URLRewrite'; readonly hostname: string | null; readonly path: PathModifier | null; readonly prefix: string }
  | {
      readonly type: 'RequestRedirect'
      readonly scheme: 'http' | 'https' | null
      readonly hostname: string | null
      readonly path: PathModifier | null
      readonly port: number | null
      readonly statusCode: 301 | 302 | 303 | 307 | 308
      readonly prefix: string
    }
  /** `target` null: the mirror's backend is invalid and the mirror is dropped (the spec's rule for mirrors). */
  | { readonly type: 'RequestMirror'; readonly target: BackendTarget | null; readonly fraction: MirrorFraction }

/** One entry of a rule's backendRefs with weight > 0. */
export type WeightedBackend =
  | ({ readonly kind: 'service'; readonly weight: number; readonly filters: readonly CompiledFilter[] } & BackendTarget)
  | {
      readonly kind: 'invalid'
      readonly weight: number
      readonly reason: string
      /** The backendRef as written (kind and namespace/name; port null when absent), for `waypoint check`. */
      readonly ref: { readonly kind: string; readonly namespace: string; readonly name: string; readonly port: number | null }
    }

export interface CompiledRule {
  readonly route: RouteRef
  readonly index: number
  /** Why every request matching the rule is answered 500, or null. */
  readonly error: string | null
  readonly filters: readonly CompiledFilter[]
  readonly backends: readonly WeightedBackend[]
  readonly timeouts: HttpRouteRule['timeouts']
  readonly retry: HttpRouteRule['retry']
}

export interface TableEntry extends CompiledMatch, MatchOrigin {
  readonly rule: CompiledRule
}

interface ServiceEntries {
  /** Routes bound to every port, sorted. */
  readonly allPorts: readonly TableEntry[]
  /** Per port: the routes bound to that port and those bound to every port, sorted together. */
  readonly byPort: ReadonlyMap<number, readonly TableEntry[]>
}

export class RouteTable {
  constructor(
    private readonly services: ReadonlyMap<string, ServiceEntries>,
    /** Binding problems: parents and backends that cannot be used (for status conditions and `waypoint check`). */
    readonly problems: readonly PolicyProblem[],
  ) {}

  /** The matches bound to a Service port in precedence order, or undefined when no route is bound to it. */
  entries(namespace: string, name: string, port: number): readonly TableEntry[] | undefined {
    const service = this.services.get(`${namespace}/${name}`)
    if (service === undefined) return undefined
    return service.byPort.get(port) ?? (service.allPorts.length > 0 ? service.allPorts : undefined)
  }

  /** The routes bound to a Service port, in `{namespace}/{name}` order. */
  routesFor(namespace: string, name: string, port: number): readonly RouteRef[] {
    const keys = new Set((this.entries(namespace, name, port) ?? []).map((e) => e.routeKey))
    return [...keys].sort().map((k) => {
      const slash = k.indexOf('/')
      return { namespace: k.slice(0, slash), name: k.slice(slash + 1) }
    })
  }
}

/** Builds the table; each route's rules are compiled once however many ports it binds to. */
export function buildRouteTable(routes: readonly HttpRoute[], options: RouteTableOptions): RouteTable {
  const problems: PolicyProblem[] = []
  const report = (route: HttpRoute, field: string, code: string, message: string): void => {
    problems.push({ kind: 'HTTPRoute', policy: `${route.namespace}/${route.name}`, field, code, message })
  }
  const bindings = new Map<string, { allPorts: Set<HttpRoute>; byPort: Map<number, Set<HttpRoute>> }>()
  for (const route of routes) {
    for (const parent of route.parents) {
      const service = `${parent.namespace}/${parent.name}`
      if (parent.namespace !== route.namespace && route.namespace !== options.waypointNamespace) {
        report(
          route,
          parent.field,
          'AMBIENT_WARN_ROUTE_CONSUMER_ROUTE',
          `a route in namespace ${route.namespace} for Service ${service} (a consumer route) is not applied: the waypoint applies routes from the Service's namespace or its own namespace`,
        )
        continue
      }
      const info = options.lookupService(parent.namespace, parent.name)
      if (info === undefined) {
        report(route, parent.field, 'AMBIENT_WARN_ROUTE_PARENT_NOT_FOUND', `parent Service ${service} not found; the route applies when it exists`)
        continue
      }
      const port = parentPort(parent.sectionName, parent.port, info)
      if (typeof port === 'string') {
        report(route, parent.field, 'AMBIENT_WARN_ROUTE_PARENT_NOT_FOUND', `parent Service ${service} ${port}`)
        continue
      }
      let b = bindings.get(service)
      if (b === undefined) bindings.set(service, (b = { allPorts: new Set(), byPort: new Map() }))
      if (port === null) b.allPorts.add(route)
      else b.byPort.set(port, (b.byPort.get(port) ?? new Set()).add(route))
    }
  }
  const compiled = new Map<HttpRoute, readonly TableEntry[]>()
  const entriesOf = (route: HttpRoute): readonly TableEntry[] => {
    let entries = compiled.get(route)
    if (entries === undefined) compiled.set(route, (entries = compileRoute(route, options, report)))
    return entries
  }
  const sorted = (rs: Iterable<HttpRoute>): TableEntry[] => [...new Set(rs)].flatMap(entriesOf).sort(comparePrecedence)
  const services = new Map<string, ServiceEntries>()
  for (const [service, b] of bindings) {
    const byPort = new Map<number, readonly TableEntry[]>()
    for (const [port, rs] of b.byPort) byPort.set(port, sorted([...b.allPorts, ...rs]))
    services.set(service, { allPorts: sorted(b.allPorts), byPort })
  }
  return new RouteTable(services, problems)
}

/** The port a parent binds to: a number, null for every port, or what is wrong. */
function parentPort(sectionName: string | null, port: number | null, info: ServiceInfo): number | null | string {
  if (sectionName !== null) {
    const named = info.ports.find((p) => p.name === sectionName)
    if (named === undefined) return `has no port named ${JSON.stringify(sectionName)} (sectionName)`
    if (port !== null && named.port !== port)
      return `port ${JSON.stringify(sectionName)} is ${named.port}, not ${port}: sectionName and port must name the same port`
    return named.port
  }
  if (port !== null && !info.ports.some((p) => p.port === port)) return `has no port ${port}`
  return port
}

type Report = (route: HttpRoute, field: string, code: string, message: string) => void

function compileRoute(route: HttpRoute, options: RouteTableOptions, report: Report): TableEntry[] {
  const created = route.creationTimestamp === '' ? -Infinity : Date.parse(route.creationTimestamp)
  const routeKey = `${route.namespace}/${route.name}`
  return route.rules.flatMap((rule, ruleIndex) => {
    const compiledRule = compileRule(route, rule, ruleIndex, options, report)
    return rule.matches.map((match, matchIndex) => ({ ...compileMatch(match), created, routeKey, ruleIndex, matchIndex, rule: compiledRule }))
  })
}

function written(b: { readonly kind: string; readonly namespace: string; readonly name: string; readonly port: number | null }): {
  kind: string
  namespace: string
  name: string
  port: number | null
} {
  return { kind: b.kind, namespace: b.namespace, name: b.name, port: b.port }
}

function compileRule(route: HttpRoute, rule: HttpRouteRule, index: number, options: RouteTableOptions, report: Report): CompiledRule {
  const first = rule.matches[0]!.path
  // Only read by ReplacePrefixMatch, which the conversion allows only with a single PathPrefix match.
  const prefix = first.type === 'PathPrefix' ? first.value : '/'
  const unsupported = rule.filters.find((f) => f.type === 'Unsupported')
  const filters = compileFilters(route, rule.filters, prefix, options, report)
  const backends: WeightedBackend[] = []
  for (const ref of rule.backendRefs) {
    const resolved = resolveBackend(route, ref.backend, options)
    if (typeof resolved === 'string') {
      const effect = ref.weight > 0 ? `requests for this backend (weight ${ref.weight}) are answered 500` : 'it has weight 0 and gets no requests'
      report(route, ref.backend.field, 'AMBIENT_WARN_ROUTE_INVALID_BACKEND', `${resolved}; ${effect}`)
      if (ref.weight > 0) backends.push({ kind: 'invalid', weight: ref.weight, reason: `backend ${ref.backend.field}: ${resolved}`, ref: written(ref.backend) })
      continue
    }
    if (ref.weight === 0) continue
    const bad = ref.filters.find((f) => f.type === 'Unsupported')
    if (bad !== undefined) {
      backends.push({
        kind: 'invalid',
        weight: ref.weight,
        reason: `filter ${bad.field} (${bad.filterType}) is not implemented by ambient's waypoint`,
        ref: written(ref.backend),
      })
      continue
    }
    backends.push({ kind: 'service', ...resolved, weight: ref.weight, filters: compileFilters(route, ref.filters, prefix, options, report) })
  }
  const hasRedirect = filters.some((f) => f.type === 'RequestRedirect')
  let error: string | null = null
  if (unsupported !== undefined) error = `filter ${unsupported.field} (${unsupported.filterType}) is not implemented by ambient's waypoint`
  else if (!hasRedirect && backends.length === 0)
    error = rule.backendRefs.length === 0 ? 'the rule has no backendRefs' : 'every backendRef of the rule has weight 0'
  else if (!hasRedirect && backends.every((b) => b.kind === 'invalid')) error = backends.map((b) => (b.kind === 'invalid' ? b.reason : '')).join('; ')
  return { route: { namespace: route.namespace, name: route.name }, index, error, filters, backends, timeouts: rule.timeouts, retry: rule.retry }
}

function compileFilters(route: HttpRoute, filters: readonly HttpRouteFilter[], prefix: string, options: RouteTableOptions, report: Report): CompiledFilter[] {
  const out: CompiledFilter[] = []
  for (const f of filters) {
    switch (f.type) {
      case 'URLRewrite':
      case 'RequestRedirect':
        out.push({ ...f, prefix })
        break
      case 'RequestMirror': {
        const resolved = resolveBackend(route, f.backend, options)
        if (typeof resolved === 'string') report(route, f.backend.field, 'AMBIENT_WARN_ROUTE_INVALID_BACKEND', `${resolved}; the mirror is dropped`)
        out.push({ type: 'RequestMirror', target: typeof resolved === 'string' ? null : resolved, fraction: f.fraction })
        break
      }
      case 'Unsupported':
        break
      default:
        out.push(f)
    }
  }
  return out
}

/** A backend's Service port, or why it cannot be used. */
function resolveBackend(route: HttpRoute, ref: BackendObjectRef, options: RouteTableOptions): BackendTarget | string {
  if (ref.group !== '' || ref.kind !== 'Service')
    return `kind ${ref.kind} in group ${JSON.stringify(ref.group)} is not supported (InvalidKind): only Services are`
  const service = `${ref.namespace}/${ref.name}`
  if (ref.namespace !== route.namespace && options.allowCrossNamespaceBackends === false) {
    return `Service ${service} is in another namespace and cross-namespace backends are not allowed here (RefNotPermitted)`
  }
  const info = options.lookupService(ref.namespace, ref.name)
  if (info === undefined) return `Service ${service} not found (BackendNotFound)`
  if (!info.ports.some((p) => p.port === ref.port)) return `Service ${service} has no port ${ref.port} (BackendNotFound)`
  return { namespace: ref.namespace, name: ref.name, port: ref.port! }
}
