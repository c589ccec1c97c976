// gateway.networking.k8s.io/v1 (or v1beta1) HTTPRoute -> the model ambient's waypoint
// routes by (common/model/http-route.ts), after the checks of the Gateway API CRD
// schema and CEL rules, so a manifest from a folder is held to what the API server
// accepts. A malformed object is rejected naming the field and value; what is valid
// but not implemented is a warning with a field path and code. Pure.
//
// Mesh semantics (GAMMA: GEP-1294 "xRoutes Mesh Binding", apis/v1/shared_types.go):
// - parentRefs: a parent is a Service when group is "" (or "core") and kind Service.
//   The group defaults to gateway.networking.k8s.io and the kind to Gateway, so
//   `{kind: Service, name: x}` without `group: ""` is not a Service (as in Istio);
//   other parents (Gateways, ServiceEntries...) are warned about and left out. A
//   route with no Service parent is `ignored`: it configures no waypoint.
// - parentRefs[].sectionName on a Service is the name of a service port (the spec's
//   ParentReference.SectionName); the route then applies to that port only. Istio
//   ignores it and applies the route to every port; ambient follows the spec.
// - spec.hostnames: GEP-1294 ("hostnames field"): "GAMMA implementations SHOULD NOT
//   infer any functionality from the hostnames field", and Istio matches mesh routes
//   by the parent Service only. They are checked for syntax and otherwise ignored,
//   with a warning suggesting a Host header match.
// - Defaults filled in: rules (one rule, match PathPrefix /), matches (PathPrefix /),
//   path type PathPrefix and value /, header/query match type Exact, backendRef group
//   "" kind Service weight 1, redirect statusCode 302, mirror 100%, retry attempts 2.
import { PolicyError, type PolicyRef } from '../authorization.js'
import {
  DEFAULT_MATCH,
  GATEWAY_API_GROUP,
  HTTP_METHODS,
  type HeaderMatch,
  type HttpMethod,
  type HttpRoute,
  type HttpRouteMatch,
  type HttpRouteRule,
  type PathMatch,
  type QueryParamMatch,
  type RouteWarning,
  type ServiceParentRef,
} from '../http-route.js'
import {
  HEADER_NAME,
  type RouteContext,
  boundedList,
  isCoreGroup,
  optionalInteger,
  patternString,
  readBackendRefs,
  readFilters,
  readGroup,
  readHeaderName,
  readKind,
  readNamespace,
  readObjectName,
  readRetry,
  readSectionName,
  readTimeouts,
  requiredRecord,
  warn,
} from './http-route-filters.js'
import { badField, badValue, checkKeys, isRecord, optionalRecord, optionalString, readMeta } from './object-fields.js'
import type { PolicyProblem } from './policies.js'
import { compileRouteRegex } from './route-regex.js'

export const HTTP_ROUTE_API_VERSIONS: readonly string[] = [`${GATEWAY_API_GROUP}/v1`, `${GATEWAY_API_GROUP}/v1beta1`]

export interface HttpRouteConvertOptions {
  /** Overrides metadata.namespace. */
  readonly namespace?: string
}

export type HttpRouteConversion =
  | { readonly kind: 'converted'; readonly route: HttpRoute; readonly warnings: readonly RouteWarning[] }
  | { readonly kind: 'ignored'; readonly ref: PolicyRef; readonly reason: 'no-service-parent'; readonly warnings: readonly RouteWarning[] }
  | { readonly kind: 'invalid'; readonly ref: PolicyRef; readonly error: PolicyError }

export function convertHttpRoute(object: unknown, options: HttpRouteConvertOptions = {}): HttpRouteConversion {
  try {
    const { ref, meta, root } = readMeta('HTTPRoute', object, options.namespace)
    const ctx: RouteContext = { ref, warnings: [] }
    const apiVersion = root['apiVersion']
    if (apiVersion !== undefined && !HTTP_ROUTE_API_VERSIONS.includes(apiVersion as string)) {
      throw badValue(ref, 'apiVersion', `${JSON.stringify(apiVersion)} is not an HTTPRoute version; use ${HTTP_ROUTE_API_VERSIONS.join(' or ')}`)
    }
    if (root['kind'] !== undefined && root['kind'] !== 'HTTPRoute') throw badValue(ref, 'kind', `expected HTTPRoute, got ${JSON.stringify(root['kind'])}`)
    if (meta.creationTimestamp !== '' && Number.isNaN(Date.parse(meta.creationTimestamp))) {
      throw badValue(ref, 'metadata.creationTimestamp', `${JSON.stringify(meta.creationTimestamp)} is not an RFC 3339 time`)
    }
    const spec = optionalRecord(ref, root['spec'], 'spec')
    if (spec === undefined) throw badField(ref, 'spec', 'is required')
    checkKeys(ref, spec, ['parentRefs', 'hostnames', 'rules', 'useDefaultGateways'], 'spec')
    if (spec['useDefaultGateways'] !== undefined && spec['useDefaultGateways'] !== null) {
      warn(ctx, 'AMBIENT_WARN_ROUTE_IGNORED_FIELD', 'spec.useDefaultGateways', 'default Gateways do not apply to a mesh waypoint; ignored')
    }
    const parents = readParents(ctx, spec['parentRefs'])
    readHostnames(ctx, spec['hostnames'], parents.length > 0)
    const rules = readRules(ctx, spec['rules'])
    if (parents.length === 0) return { kind: 'ignored', ref, reason: 'no-service-parent', warnings: ctx.warnings }
    const route: HttpRoute = { namespace: ref.namespace, name: ref.name, creationTimestamp: meta.creationTimestamp, parents, rules }
    return { kind: 'converted', route, warnings: ctx.warnings }
  } catch (err) {
    if (err instanceof PolicyError) return { kind: 'invalid', ref: err.policy, error: err }
    throw err
  }
}

export interface ConvertedHttpRoutes {
  readonly routes: HttpRoute[]
  readonly warnings: PolicyProblem[]
  /** Malformed routes, left out. */
  readonly invalid: PolicyProblem[]
  /** Routes without a Service parent (for Gateways only): nothing for a waypoint. */
  readonly ignored: PolicyProblem[]
}

const problem = (w: RouteWarning): PolicyProblem => ({
  kind: w.policy.kind,
  policy: `${w.policy.namespace}/${w.policy.name}`,
  field: w.field,
  code: w.code,
  message: w.message,
})

/** The HTTPRoutes among a list of manifest objects (other kinds are skipped), as convertPolicies does for policies. */
export function convertHttpRoutes(objects: readonly unknown[], options: HttpRouteConvertOptions = {}): ConvertedHttpRoutes {
  const out: ConvertedHttpRoutes = { routes: [], warnings: [], invalid: [], ignored: [] }
  for (const object of objects) {
    if (!isRecord(object) || object['kind'] !== 'HTTPRoute') continue
    const r = convertHttpRoute(object, options)
    if (r.kind === 'invalid') {
      out.invalid.push({ kind: 'HTTPRoute', policy: `${r.ref.namespace}/${r.ref.name}`, field: r.error.field, code: r.error.code, message: r.error.message })
    } else if (r.kind === 'ignored') {
      out.ignored.push(...r.warnings.filter((w) => w.code === 'AMBIENT_WARN_ROUTE_PARENT_IGNORED').map(problem))
      if (!r.warnings.some((w) => w.code === 'AMBIENT_WARN_ROUTE_PARENT_IGNORED')) {
        out.ignored.push({
          kind: 'HTTPRoute',
          policy: `${r.ref.namespace}/${r.ref.name}`,
          field: 'spec.parentRefs',
          code: 'AMBIENT_WARN_ROUTE_PARENT_IGNORED',
          message: 'the route has no parentRefs: it applies to no Service; add a parentRef with group "" and kind Service',
        })
      }
    } else {
      out.routes.push(r.route)
      out.warnings.push(...r.warnings.map(problem))
    }
  }
  return out
}

function readParents(ctx: RouteContext, value: unknown): ServiceParentRef[] {
  const parents: ServiceParentRef[] = []
  const seen: { readonly key: string; readonly section: string | null; readonly port: number | null; readonly field: string }[] = []
  boundedList(ctx, value, 'spec.parentRefs', 32).forEach((item, i) => {
    const f = `spec.parentRefs[${i}]`
    const obj = requiredRecord(ctx, item, f)
    checkKeys(ctx.ref, obj, ['group', 'kind', 'namespace', 'name', 'sectionName', 'port'], f)
    const group = readGroup(ctx, obj['group'], `${f}.group`) ?? GATEWAY_API_GROUP
    const kind = readKind(ctx, obj['kind'], `${f}.kind`) ?? 'Gateway'
    const namespace = readNamespace(ctx, obj['namespace'], `${f}.namespace`) ?? ctx.ref.namespace
    const name = readObjectName(ctx, obj['name'], `${f}.name`)
    const section = obj['sectionName'] === '' ? null : (readSectionName(ctx, obj['sectionName'], `${f}.sectionName`) ?? null)
    const port = optionalInteger(ctx, obj['port'], `${f}.port`, 1, 65535) ?? null
    const key = `${isCoreGroup(group) ? '' : group}/${kind}/${namespace}/${name}`
    for (const other of seen.filter((s) => s.key === key)) {
      if ((other.section === null) !== (section === null) || (other.port === null) !== (port === null)) {
        throw badValue(ctx.ref, f, `references the same parent as ${other.field}: both must set sectionName or port, the same way`)
      }
      if (other.section === section && other.port === port)
        throw badValue(ctx.ref, f, `references the same parent as ${other.field}: sectionName or port must differ`)
    }
    seen.push({ key, section, port, field: f })
    if (isCoreGroup(group) && kind === 'Service') {
      parents.push({ namespace, name, port, sectionName: section, field: f })
      return
    }
    warn(ctx, 'AMBIENT_WARN_ROUTE_PARENT_IGNORED', f, ignoredParentMessage(group, kind, namespace, name))
  })
  return parents
}

function ignoredParentMessage(group: string, kind: string, namespace: string, name: string): string {
  if (kind === 'Service') {
    return `parent ${namespace}/${name} is kind Service in group ${group}, not a core Service (the group defaults to ${GATEWAY_API_GROUP}); write group: "" to attach to the Service; ignored`
  }
  if (kind === 'Gateway' && group === GATEWAY_API_GROUP) {
    return `parent Gateway ${namespace}/${name} is ignored: ambient's waypoint applies routes attached to a Service (GAMMA)`
  }
  return `parent ${kind} ${namespace}/${name} (group ${JSON.stringify(group)}) is ignored: ambient's waypoint supports only Service parents`
}

const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/

function readHostnames(ctx: RouteContext, value: unknown, hasServiceParent: boolean): void {
  const list = boundedList(ctx, value, 'spec.hostnames', 16)
  list.forEach((h, i) =>
    patternString(ctx, h ?? '', `spec.hostnames[${i}]`, HOSTNAME, 253, 'a hostname (lowercase RFC 1123, optionally starting with *.; no IP, no port)'),
  )
  if (list.length > 0 && hasServiceParent) {
    warn(
      ctx,
      'AMBIENT_WARN_ROUTE_HOSTNAMES_IGNORED',
      'spec.hostnames',
      'hostnames do not select requests for a Service parent (GAMMA, GEP-1294): the route applies to every request to the Service; match the Host header in rules[].matches[].headers instead',
    )
  }
}

function readRules(ctx: RouteContext, value: unknown): HttpRouteRule[] {
  if (value === undefined || value === null) {
    return [{ name: null, matches: [DEFAULT_MATCH], filters: [], backendRefs: [], timeouts: null, retry: null }]
  }
  const list = boundedList(ctx, value, 'spec.rules', 16)
  if (list.length === 0) throw badValue(ctx.ref, 'spec.rules', 'must not be empty; leave it out for the default rule')
  let matchCount = 0
  const names = new Map<string, number>()
  return list.map((item, i) => {
    const f = `spec.rules[${i}]`
    const obj = requiredRecord(ctx, item, f)
    checkKeys(ctx.ref, obj, ['name', 'matches', 'filters', 'backendRefs', 'timeouts', 'retry', 'sessionPersistence'], f)
    const name = readSectionName(ctx, obj['name'], `${f}.name`) ?? null
    if (name !== null) {
      const first = names.get(name)
      if (first !== undefined)
        throw badValue(ctx.ref, `${f}.name`, `${JSON.stringify(name)} is already the name of spec.rules[${first}]; rule names must be unique`)
      names.set(name, i)
    }
    const matchList = boundedList(ctx, obj['matches'], `${f}.matches`, 64)
    matchCount += matchList.length
    if (matchCount > 128) throw badValue(ctx.ref, `${f}.matches`, 'the route has more than 128 matches across its rules; at most 128 are allowed')
    // An empty list, like an absent one, matches every request (as Istio reads it).
    const matches = matchList.length === 0 ? [DEFAULT_MATCH] : matchList.map((m, j) => readMatch(ctx, m, `${f}.matches[${j}]`))
    const singlePathPrefix = matches.length === 1 && matches[0]!.path.type === 'PathPrefix'
    const backendRefs = readBackendRefs(ctx, obj['backendRefs'], `${f}.backendRefs`, singlePathPrefix)
    const filters = readFilters(ctx, obj['filters'], `${f}.filters`, { level: 'rule', singlePathPrefix, hasBackendRefs: backendRefs.length > 0 })
    if (obj['sessionPersistence'] !== undefined && obj['sessionPersistence'] !== null) {
      warn(ctx, 'AMBIENT_WARN_ROUTE_IGNORED_FIELD', `${f}.sessionPersistence`, 'session persistence is not implemented; requests are spread by backend weight')
    }
    return {
      name,
      matches,
      filters,
      backendRefs,
      timeouts: readTimeouts(ctx, obj['timeouts'], `${f}.timeouts`),
      retry: readRetry(ctx, obj['retry'], `${f}.retry`),
    }
  })
}

function readMatch(ctx: RouteContext, value: unknown, field: string): HttpRouteMatch {
  const obj = requiredRecord(ctx, value, field)
  checkKeys(ctx.ref, obj, ['path', 'headers', 'queryParams', 'method'], field)
  const method = optionalString(ctx.ref, obj['method'], `${field}.method`)
  if (method !== undefined && !(HTTP_METHODS as readonly string[]).includes(method)) {
    throw badValue(ctx.ref, `${field}.method`, `${JSON.stringify(method)} is not a method; use one of ${HTTP_METHODS.join(', ')} (upper case)`)
  }
  return {
    path: readPathMatch(ctx, obj['path'], `${field}.path`),
    headers: readValueMatches(ctx, obj['headers'], `${field}.headers`, 'header'),
    queryParams: readValueMatches(ctx, obj['queryParams'], `${field}.queryParams`, 'query'),
    method: (method as HttpMethod | undefined) ?? null,
  }
}

const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$/
const PATH_FORBIDDEN = ['//', '/./', '/../', '%2f', '%2F', '#']

function readPathMatch(ctx: RouteContext, value: unknown, field: string): PathMatch {
  const obj = optionalRecord(ctx.ref, value, field)
  if (obj === undefined) return DEFAULT_MATCH.path
  checkKeys(ctx.ref, obj, ['type', 'value'], field)
  const type = optionalString(ctx.ref, obj['type'], `${field}.type`) ?? 'PathPrefix'
  const text = optionalString(ctx.ref, obj['value'], `${field}.value`) ?? '/'
  const at = `${field}.value`
  if (text.length > 1024) throw badValue(ctx.ref, at, 'is longer than 1024 characters')
  if (type === 'RegularExpression') {
    const compiled = compileRouteRegex(text)
    if (!compiled.ok) throw badValue(ctx.ref, at, compiled.message)
    return { type, value: text }
  }
  if (type !== 'Exact' && type !== 'PathPrefix') {
    throw badValue(ctx.ref, `${field}.type`, `${JSON.stringify(type)} is not a path match type; use Exact, PathPrefix or RegularExpression`)
  }
  const bad = (why: string): never => {
    throw badValue(ctx.ref, at, `${JSON.stringify(text)} ${why}`)
  }
  if (!text.startsWith('/')) bad('must be an absolute path starting with /')
  const forbidden = PATH_FORBIDDEN.find((s) => text.includes(s))
  if (forbidden !== undefined) bad(`must not contain ${JSON.stringify(forbidden)}`)
  if (text.endsWith('/..') || text.endsWith('/.')) bad('must not end with /. or /..')
  if (!PATH_CHARS.test(text)) bad('has characters a path cannot hold; percent-encode them')
  return { type, value: text }
}

function readValueMatches(ctx: RouteContext, value: unknown, field: string, what: 'header'): HeaderMatch[]
function readValueMatches(ctx: RouteContext, value: unknown, field: string, what: 'query'): QueryParamMatch[]
function readValueMatches(ctx: RouteContext, value: unknown, field: string, what: 'header' | 'query'): (HeaderMatch | QueryParamMatch)[] {
  const out: (HeaderMatch | QueryParamMatch)[] = []
  const firstAt = new Map<string, string>()
  boundedList(ctx, value, field, 16).forEach((item, i) => {
    const f = `${field}[${i}]`
    const obj = requiredRecord(ctx, item, f)
    checkKeys(ctx.ref, obj, ['type', 'name', 'value'], f)
    const type = optionalString(ctx.ref, obj['type'], `${f}.type`) ?? 'Exact'
    if (type !== 'Exact' && type !== 'RegularExpression')
      throw badValue(ctx.ref, `${f}.type`, `${JSON.stringify(type)} is not a match type; use Exact or RegularExpression`)
    const name =
      what === 'header'
        ? readHeaderName(ctx, obj['name'], `${f}.name`)
        : patternString(ctx, obj['name'], `${f}.name`, HEADER_NAME, 256, 'a query parameter name')
    if (name === undefined) throw badField(ctx.ref, `${f}.name`, 'is required')
    const text = optionalString(ctx.ref, obj['value'], `${f}.value`)
    if (text === undefined || text === '') throw badField(ctx.ref, `${f}.value`, 'is required')
    const max = what === 'header' ? 4096 : 1024
    if (text.length > max) throw badValue(ctx.ref, `${f}.value`, `is longer than ${max} characters`)
    if (type === 'RegularExpression') {
      const compiled = compileRouteRegex(text)
      if (!compiled.ok) throw badValue(ctx.ref, `${f}.value`, compiled.message)
    }
    const first = firstAt.get(name)
    if (first !== undefined) {
      const equivalent = what === 'header' ? 'an equivalent name (header names ignore case)' : 'the same name'
      warn(ctx, 'AMBIENT_WARN_ROUTE_DUPLICATE_MATCH', f, `${first} already matches ${equivalent}; only the first is used, as the spec requires`)
      return
    }
    firstAt.set(name, f)
    out.push({ type, name, value: text })
  })
  return out
}
