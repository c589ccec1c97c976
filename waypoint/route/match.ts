// HTTPRouteMatch, compiled once per configuration into a predicate, and the
// precedence the spec orders matches by (HTTPRouteRule.Matches in
// apis/v1/httproute_types.go).
import type { HttpRouteMatch, PathMatch } from '../../common/model/http-route.js'
import { compileRouteRegex } from '../../common/model/convert/route-regex.js'
import { type RouteRequest, headerValue, normalizePrefix, pathHasPrefix, splitTarget } from './request.js'

/** A request split once for all the matches it is tried against. */
export class ParsedRequest {
  readonly path: string
  private readonly query: string | null
  private params: URLSearchParams | undefined
  constructor(readonly request: RouteRequest) {
    const target = splitTarget(request.path)
    this.path = target.path
    this.query = target.query
  }
  /**
   * The first value of a query parameter, decoded as a form (`%20` and `+` are a
   * space); the spec recommends the first value when a parameter repeats.
   */
  queryParam(name: string): string | undefined {
    if (this.query === null) return undefined
    this.params ??= new URLSearchParams(this.query)
    return this.params.get(name) ?? undefined
  }
}

type Test = (value: string) => boolean

function valueTest(type: 'Exact' | 'RegularExpression', value: string): Test {
  if (type === 'Exact') return (v) => v === value
  const compiled = compileRouteRegex(value)
  // The conversion already rejected an expression that does not compile.
  if (!compiled.ok) throw new Error(`route regex did not compile: ${compiled.message}`)
  const regex = compiled.regex
  return (v) => regex.test(v)
}

/** Path match types in precedence order: Exact, then PathPrefix, then RegularExpression. */
const PATH_RANK: Readonly<Record<PathMatch['type'], number>> = { Exact: 3, PathPrefix: 2, RegularExpression: 1 }

export interface CompiledMatch {
  readonly test: (request: ParsedRequest) => boolean
  /** Precedence, higher first: the path match type (PATH_RANK). */
  readonly pathRank: number
  /** Precedence within a type, longer first: characters of the (normalized) prefix, exact path or expression. */
  readonly pathLength: number
  readonly hasMethod: boolean
  readonly headerCount: number
  readonly queryCount: number
}

export function compileMatch(match: HttpRouteMatch): CompiledMatch {
  const path = match.path
  const prefix = normalizePrefix(path.value)
  const pathTest: Test =
    path.type === 'Exact' ? (p) => p === path.value : path.type === 'PathPrefix' ? (p) => pathHasPrefix(p, prefix) : valueTest('RegularExpression', path.value)
  const headers = match.headers.map((h) => ({ name: h.name, test: valueTest(h.type, h.value) }))
  const params = match.queryParams.map((q) => ({ name: q.name, test: valueTest(q.type, q.value) }))
  const method = match.method
  const test = (r: ParsedRequest): boolean => {
    if (!pathTest(r.path)) return false
    if (method !== null && r.request.method !== method) return false
    for (const h of headers) {
      const v = headerValue(r.request, h.name)
      if (v === undefined || !h.test(v)) return false
    }
    for (const q of params) {
      const v = r.queryParam(q.name)
      if (v === undefined || !q.test(v)) return false
    }
    return true
  }
  return {
    test,
    pathRank: PATH_RANK[path.type],
    pathLength: path.type === 'PathPrefix' ? prefix.length : path.value.length,
    hasMethod: method !== null,
    headerCount: headers.length,
    queryCount: params.length,
  }
}

/** What orders two matches bound to the same Service port when their own keys tie. */
export interface MatchOrigin {
  /** metadata.creationTimestamp in ms; -Infinity when the route has none (Istio's zero time: oldest). */
  readonly created: number
  /** `{namespace}/{name}` of the route. */
  readonly routeKey: string
  readonly ruleIndex: number
  readonly matchIndex: number
}

/**
 * The spec's precedence, as a sort order (negative: `a` first). Across all rules of
 * all routes bound to one Service port: Exact path; PathPrefix with the most
 * characters; a method match; the most header matches; the most query parameter
 * matches; then the oldest route (creation timestamp), the route first by
 * `{namespace}/{name}`, the first rule of the route and its first match.
 * RegularExpression paths (implementation-specific) come after Exact and PathPrefix,
 * longer expressions first, as Istio orders them.
 */
export function comparePrecedence(a: CompiledMatch & MatchOrigin, b: CompiledMatch & MatchOrigin): number {
  return (
    b.pathRank - a.pathRank ||
    b.pathLength - a.pathLength ||
    Number(b.hasMethod) - Number(a.hasMethod) ||
    b.headerCount - a.headerCount ||
    b.queryCount - a.queryCount ||
    compareCreated(a.created, b.created) ||
    (a.routeKey < b.routeKey ? -1 : a.routeKey > b.routeKey ? 1 : 0) ||
    a.ruleIndex - b.ruleIndex ||
    a.matchIndex - b.matchIndex
  )
}

function compareCreated(a: number, b: number): number {
  return a === b ? 0 : a < b ? -1 : 1
}
