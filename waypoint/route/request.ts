// The request as the routing engine sees it, and the pure operations HTTPRoute
// filters perform on it: header modification, path prefix replacement, URL rewrite
// and the Location of a redirect, each as the Gateway API spec defines it
// (apis/v1/httproute_types.go: HTTPHeaderFilter, HTTPPathModifier,
// HTTPURLRewriteFilter, HTTPRequestRedirectFilter).
import type { HeaderModifier, PathModifier } from '../../common/model/http-route.js'

/**
 * One HTTP request, before routing. The proxy fills it from HTTP/1.1 or h2c: it
 * normalizes the path first (dot segments, as Istio's default normalization does),
 * and answers 400 itself to a request without a Host/:authority.
 */
export interface RouteRequest {
  readonly method: string
  /** The target in origin form: path and `?query` if any (`/a/b?x=1`). */
  readonly path: string
  /** Host header or :authority as received, port included when sent (`reviews:9080`). */
  readonly host: string
  /** Lowercase names; no `host` and no pseudo-headers. Repeated headers: the values in order. */
  readonly headers: Readonly<Record<string, string | readonly string[]>>
  /** The scheme the client used; `http` when absent (a waypoint reads plaintext HTTP inside HBONE). */
  readonly scheme?: 'http' | 'https'
}

export type Headers = RouteRequest['headers']

/** `/a/b?x=1` -> path `/a/b`, query `x=1`; query null when there is no `?`. */
export function splitTarget(target: string): { readonly path: string; readonly query: string | null } {
  const q = target.indexOf('?')
  return q < 0 ? { path: target, query: null } : { path: target.slice(0, q), query: target.slice(q + 1) }
}

/** The host part of an authority: `a.b:80` -> `a.b`, `[fd00::1]:80` -> `[fd00::1]`. */
export function authorityHost(authority: string): string {
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']')
    return close < 0 ? authority : authority.slice(0, close + 1)
  }
  const colon = authority.lastIndexOf(':')
  return colon < 0 ? authority : authority.slice(0, colon)
}

/** The value a header match sees: several values joined by `,` (as Envoy does); undefined when absent. */
export function headerValue(request: RouteRequest, name: string): string | undefined {
  if (name === 'host') return request.host
  const value = request.headers[name]
  if (value === undefined) return undefined
  return typeof value === 'string' ? value : value.join(',')
}

/**
 * HTTPHeaderFilter on a header map: `set` replaces every value, `add` appends one
 * (the spec's example: `my-header: foo` + add `bar,baz` -> `foo,bar,baz`, here the
 * values `foo` and `bar,baz`), `remove` deletes. Names are lowercase in both.
 */
export function modifyHeaders(headers: Headers, modifier: HeaderModifier): Headers {
  const out: Record<string, string | readonly string[]> = { ...headers }
  for (const name of modifier.remove) delete out[name]
  for (const h of modifier.set) out[h.name] = h.value
  for (const h of modifier.add) {
    const current = out[h.name]
    out[h.name] = current === undefined ? h.value : typeof current === 'string' ? [current, h.value] : [...current, h.value]
  }
  return out
}

/** A PathPrefix value as it is matched: one trailing `/` ignored, `/` itself kept (Istio's form). */
export function normalizePrefix(prefix: string): string {
  return prefix !== '/' && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix
}

/**
 * PathPrefix semantics: whole path elements, so `/foo` matches `/foo`, `/foo/` and
 * `/foo/bar` but not `/foobar`. `prefix` is normalized (normalizePrefix).
 */
export function pathHasPrefix(path: string, prefix: string): boolean {
  if (prefix === '/') return true
  return path.startsWith(prefix) && (path.length === prefix.length || path.charCodeAt(prefix.length) === 0x2f)
}

function absolute(path: string): string {
  return path.startsWith('/') ? path : `/${path}`
}

/**
 * HTTPPathModifier on a path (no query). ReplacePrefixMatch replaces the rule's
 * PathPrefix `prefix` element-wise, ignoring a trailing `/` on either side, as the
 * spec's table says (`/foo/bar`, prefix `/foo`, `/xyz` -> `/xyz/bar`; `/foo/`,
 * `/foo`, `` -> `/`). A path the prefix does not cover is left as is.
 */
export function modifyPath(modifier: PathModifier, path: string, prefix: string): string {
  if (modifier.type === 'ReplaceFullPath') return absolute(modifier.replaceFullPath)
  const matched = normalizePrefix(prefix)
  if (!pathHasPrefix(path, matched)) return path
  const rest = path.slice(matched === '/' ? 0 : matched.length)
  const replacement = modifier.replacePrefixMatch.endsWith('/') ? modifier.replacePrefixMatch.slice(0, -1) : modifier.replacePrefixMatch
  const out = replacement + rest
  return out === '' ? '/' : absolute(out)
}

/** HTTPURLRewriteFilter: a new authority and/or path; the query is kept. */
export function rewriteRequest(request: RouteRequest, hostname: string | null, path: PathModifier | null, prefix: string): RouteRequest {
  const target = splitTarget(request.path)
  const newPath = path === null ? target.path : modifyPath(path, target.path, prefix)
  return {
    ...request,
    host: hostname ?? request.host,
    path: target.query === null ? newPath : `${newPath}?${target.query}`,
  }
}

export interface RedirectSpec {
  readonly scheme: 'http' | 'https' | null
  readonly hostname: string | null
  readonly path: PathModifier | null
  readonly port: number | null
}

/**
 * The Location of a RequestRedirect, by the spec's rules: scheme from the filter or
 * the request; hostname from the filter or the request's Host (without its port);
 * port from the filter, else the scheme's well-known port (http 80, https 443) when
 * the filter sets a scheme, else the port the request was sent to (`listenerPort`,
 * the Service port for a mesh route); the port is left out for http:80 and
 * https:443. The path is modified as the filter says; the query is kept (as Envoy).
 */
export function redirectLocation(redirect: RedirectSpec, request: RouteRequest, listenerPort: number, prefix: string): string {
  const scheme = redirect.scheme ?? request.scheme ?? 'http'
  const host = redirect.hostname ?? authorityHost(request.host)
  const port = redirect.port ?? (redirect.scheme === null ? listenerPort : redirect.scheme === 'https' ? 443 : 80)
  const defaultPort = (scheme === 'http' && port === 80) || (scheme === 'https' && port === 443)
  const target = splitTarget(request.path)
  const path = redirect.path === null ? target.path : modifyPath(redirect.path, target.path, prefix)
  return `${scheme}://${host}${defaultPort ? '' : `:${port}`}${path}${target.query === null ? '' : `?${target.query}`}`
}
