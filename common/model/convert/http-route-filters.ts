// HTTPRoute filters, backendRefs, timeouts and retry -> the model, with the checks
// of the Gateway API's CRD schema and CEL rules (apis/v1/httproute_types.go,
// object_reference_types.go, shared_types.go), so a manifest read from a folder is
// held to what the API server would accept. Used by ./http-route.ts. Pure.
import type { PolicyRef } from '../authorization.js'
import type {
  BackendObjectRef,
  HeaderModifier,
  HttpBackendRef,
  HttpHeader,
  HttpRouteFilter,
  HttpRouteRetry,
  HttpRouteTimeouts,
  MirrorFraction,
  PathModifier,
  RouteWarning,
  RouteWarningCode,
  UnsupportedFilterType,
} from '../http-route.js'
import { DEFAULT_RETRY_ATTEMPTS } from '../http-route.js'
import { type Fields, badField, badValue, checkKeys, optionalList, optionalRecord, optionalString } from './object-fields.js'

/** What every reader needs: the object (for errors), its namespace, and where warnings go. */
export interface RouteContext {
  readonly ref: PolicyRef
  readonly warnings: RouteWarning[]
}

export function warn(ctx: RouteContext, code: RouteWarningCode, field: string, message: string): void {
  ctx.warnings.push({ code, policy: ctx.ref, field, message })
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const KIND = /^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/
/** HeaderName (also query parameter names): an RFC 7230 token. */
export const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/

/** A list of at most `max` items (the CRD's MaxItems). */
export function boundedList(ctx: RouteContext, value: unknown, field: string, max: number): readonly unknown[] {
  const list = optionalList(ctx.ref, value, field)
  if (list.length > max) throw badValue(ctx.ref, field, `has ${list.length} items; at most ${max} are allowed`)
  return list
}

/** An object in a list or a required object field; null is not an object here. */
export function requiredRecord(ctx: RouteContext, value: unknown, field: string): Fields {
  const obj = optionalRecord(ctx.ref, value, field)
  if (obj === undefined) throw badField(ctx.ref, field, 'is required (an object)')
  return obj
}

export function optionalInteger(ctx: RouteContext, value: unknown, field: string, min: number, max: number): number | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value)) throw badField(ctx.ref, field, `expected an integer, got ${JSON.stringify(value)}`)
  if (value < min || value > max) throw badValue(ctx.ref, field, `${value} is out of range (${min}-${max})`)
  return value
}

/** A string field matching `pattern` (and at most `maxLength` long); undefined when absent. */
export function patternString(ctx: RouteContext, value: unknown, field: string, pattern: RegExp, maxLength: number, what: string): string | undefined {
  const text = optionalString(ctx.ref, value, field)
  if (text === undefined) return undefined
  if (text.length > maxLength || !pattern.test(text)) throw badValue(ctx.ref, field, `${JSON.stringify(text)} is not ${what}`)
  return text
}

export function readNamespace(ctx: RouteContext, value: unknown, field: string): string | undefined {
  return patternString(ctx, value, field, DNS_LABEL, 63, 'a namespace name (an RFC 1123 label)')
}

export function readObjectName(ctx: RouteContext, value: unknown, field: string): string {
  const name = optionalString(ctx.ref, value, field)
  if (name === undefined || name === '') throw badField(ctx.ref, field, 'is required')
  if (name.length > 253) throw badValue(ctx.ref, field, `${JSON.stringify(name)} is longer than 253 characters`)
  return name
}

export function readGroup(ctx: RouteContext, value: unknown, field: string): string | undefined {
  const group = optionalString(ctx.ref, value, field)
  if (group === undefined || group === '') return group
  return patternString(ctx, group, field, DNS_SUBDOMAIN, 253, 'an API group (empty for the core group, or a DNS subdomain)')
}

export function readKind(ctx: RouteContext, value: unknown, field: string): string | undefined {
  return patternString(ctx, value, field, KIND, 63, 'a kind (letters, digits and -, starting with a letter)')
}

export function readSectionName(ctx: RouteContext, value: unknown, field: string): string | undefined {
  return patternString(ctx, value, field, DNS_SUBDOMAIN, 253, 'a section name (an RFC 1123 subdomain)')
}

/** PreciseHostname: an RFC 1123 hostname, no wildcard, no IP. */
export function readPreciseHostname(ctx: RouteContext, value: unknown, field: string): string | undefined {
  return patternString(ctx, value, field, DNS_SUBDOMAIN, 253, 'a hostname (lowercase RFC 1123, no wildcard, no port)')
}

/** "" and "core" both name the core API group (the Gateway API writes ""). */
export function isCoreGroup(group: string): boolean {
  return group === '' || group === 'core'
}

const DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/
const DURATION_PART = /([0-9]{1,5})(ms|h|m|s)/g
const UNIT_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1 }

/** A GEP-2257 duration (`1h30m`, `500ms`, `0s`) in milliseconds; undefined when the text is not one. */
export function parseGatewayDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined
  let total = 0
  for (const m of text.matchAll(DURATION_PART)) total += Number(m[1]) * UNIT_MS[m[2]!]!
  return total
}

function readDuration(ctx: RouteContext, value: unknown, field: string): number | null {
  const text = optionalString(ctx.ref, value, field)
  if (text === undefined) return null
  const ms = parseGatewayDuration(text)
  if (ms === undefined) {
    throw badValue(
      ctx.ref,
      field,
      `${JSON.stringify(text)} is not a Gateway API duration: 1 to 4 parts of up to 5 digits and a unit h, m, s or ms (e.g. 10s, 1m30s, 500ms)`,
    )
  }
  return ms
}

export function readTimeouts(ctx: RouteContext, value: unknown, field: string): HttpRouteTimeouts | null {
  const obj = optionalRecord(ctx.ref, value, field)
  if (obj === undefined) return null
  checkKeys(ctx.ref, obj, ['request', 'backendRequest'], field)
  const requestMs = readDuration(ctx, obj['request'], `${field}.request`)
  const backendRequestMs = readDuration(ctx, obj['backendRequest'], `${field}.backendRequest`)
  // The CEL rule: with a request timeout other than 0s, backendRequest must not be longer.
  if (requestMs !== null && requestMs !== 0 && backendRequestMs !== null && backendRequestMs > requestMs) {
    throw badValue(
      ctx.ref,
      `${field}.backendRequest`,
      `${JSON.stringify(obj['backendRequest'])} is longer than the request timeout ${JSON.stringify(obj['request'])}; it must not be`,
    )
  }
  return { requestMs, backendRequestMs }
}

export function readRetry(ctx: RouteContext, value: unknown, field: string): HttpRouteRetry | null {
  const obj = optionalRecord(ctx.ref, value, field)
  if (obj === undefined) return null
  checkKeys(ctx.ref, obj, ['codes', 'attempts', 'backoff'], field)
  const codes: number[] = []
  optionalList(ctx.ref, obj['codes'], `${field}.codes`).forEach((c, i) => {
    const code = optionalInteger(ctx, c, `${field}.codes[${i}]`, 400, 599)
    if (code === undefined) throw badField(ctx.ref, `${field}.codes[${i}]`, 'must be a status code, not null')
    if (codes.includes(code)) throw badValue(ctx.ref, `${field}.codes[${i}]`, `${code} is listed twice`)
    codes.push(code)
  })
  // The CRD asks for attempts >= 1 since v1.4; 0 (accepted before) disables retries, as in Istio.
  const attempts = optionalInteger(ctx, obj['attempts'], `${field}.attempts`, 0, 2 ** 31 - 1) ?? DEFAULT_RETRY_ATTEMPTS
  return { attempts, codes, backoffMs: readDuration(ctx, obj['backoff'], `${field}.backoff`) }
}

/** Where a filter list sits, for the checks that depend on it. */
export interface FilterScope {
  /** 'rule' for rules[].filters, 'backend' for rules[].backendRefs[].filters. */
  readonly level: 'rule' | 'backend'
  /** True when the rule has exactly one match and it is a PathPrefix (the CEL rule for ReplacePrefixMatch). */
  readonly singlePathPrefix: boolean
  /** True when the rule has backendRefs (a rule-level RequestRedirect must not). */
  readonly hasBackendRefs: boolean
}

const FILTER_FIELDS: Readonly<Record<string, string>> = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestMirror: 'requestMirror',
  RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite',
  ExtensionRef: 'extensionRef',
  CORS: 'cors',
  ExternalAuth: 'externalAuth',
}
const NOT_REPEATABLE = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'CORS']
/** Filters the waypoint applies on a backendRef; any other filter type there makes that backend answer 500. */
const BACKEND_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'URLRewrite', 'RequestMirror']

export function readFilters(ctx: RouteContext, value: unknown, field: string, scope: FilterScope): readonly HttpRouteFilter[] {
  const list = boundedList(ctx, value, field, 16)
  const types: string[] = []
  const filters = list.map((item, i) => {
    const f = `${field}[${i}]`
    const obj = requiredRecord(ctx, item, f)
    checkKeys(ctx.ref, obj, ['type', ...Object.values(FILTER_FIELDS)], f)
    const type = optionalString(ctx.ref, obj['type'], `${f}.type`)
    if (type === undefined) throw badField(ctx.ref, `${f}.type`, 'is required')
    const own = FILTER_FIELDS[type]
    if (own === undefined)
      throw badValue(ctx.ref, `${f}.type`, `${JSON.stringify(type)} is not a filter type; use one of ${Object.keys(FILTER_FIELDS).join(', ')}`)
    for (const other of Object.values(FILTER_FIELDS)) {
      if (other !== own && obj[other] !== undefined && obj[other] !== null) throw badField(ctx.ref, `${f}.${other}`, `must not be set for filter type ${type}`)
    }
    if (NOT_REPEATABLE.includes(type) && types.includes(type)) throw badValue(ctx.ref, `${f}.type`, `${type} filter cannot be repeated`)
    types.push(type)
    const config = optionalRecord(ctx.ref, obj[own], `${f}.${own}`)
    if (config === undefined) throw badField(ctx.ref, `${f}.${own}`, `must be set for filter type ${type}`)
    return readFilter(ctx, type, config, f, `${f}.${own}`, scope)
  })
  if (types.includes('RequestRedirect') && types.includes('URLRewrite')) {
    throw badValue(ctx.ref, field, 'may specify either a RequestRedirect or a URLRewrite filter, but not both')
  }
  if (scope.level === 'rule' && scope.hasBackendRefs && types.includes('RequestRedirect')) {
    throw badValue(ctx.ref, field, 'a RequestRedirect filter must not be used together with backendRefs')
  }
  return filters
}

function readFilter(ctx: RouteContext, type: string, config: Fields, field: string, configField: string, scope: FilterScope): HttpRouteFilter {
  let filter: HttpRouteFilter
  switch (type) {
    case 'RequestHeaderModifier':
      filter = { type, modifier: readHeaderModifier(ctx, config, configField, true) }
      break
    case 'ResponseHeaderModifier':
      filter = { type, modifier: readHeaderModifier(ctx, config, configField, false) }
      break
    case 'URLRewrite':
      checkKeys(ctx.ref, config, ['hostname', 'path'], configField)
      filter = {
        type,
        hostname: readPreciseHostname(ctx, config['hostname'], `${configField}.hostname`) ?? null,
        path: readPathModifier(ctx, config['path'], `${configField}.path`, scope),
      }
      break
    case 'RequestRedirect':
      filter = readRedirect(ctx, config, configField, scope)
      break
    case 'RequestMirror':
      filter = readMirror(ctx, config, configField)
      break
    default:
      filter = { type: 'Unsupported', filterType: type as UnsupportedFilterType, field }
  }
  if (filter.type === 'Unsupported' || (scope.level === 'backend' && !BACKEND_FILTERS.includes(type))) {
    const who = scope.level === 'rule' ? 'requests matching this rule are' : 'requests sent to this backend are'
    warn(
      ctx,
      'AMBIENT_WARN_ROUTE_UNSUPPORTED_FILTER',
      field,
      `ambient's waypoint does not implement the ${type} filter here; ${who} answered 500 rather than skip it`,
    )
    return { type: 'Unsupported', filterType: type as UnsupportedFilterType, field }
  }
  return filter
}

/** Istio's isValidHeaderValue: no control character but tab, no DEL (so no header injection). */
function isValidHeaderValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c !== 0x09 && (c < 0x20 || c === 0x7f)) return false
  }
  return true
}

function readHeaders(ctx: RouteContext, value: unknown, field: string): HttpHeader[] {
  return boundedList(ctx, value, field, 16).map((item, i) => {
    const f = `${field}[${i}]`
    const obj = requiredRecord(ctx, item, f)
    checkKeys(ctx.ref, obj, ['name', 'value'], f)
    const name = readHeaderName(ctx, obj['name'], `${f}.name`)
    const text = optionalString(ctx.ref, obj['value'], `${f}.value`)
    if (text === undefined || text === '') throw badField(ctx.ref, `${f}.value`, 'is required')
    if (text.length > 4096 || !isValidHeaderValue(text))
      throw badValue(ctx.ref, `${f}.value`, `${JSON.stringify(text)} is not a valid header value (no control characters, at most 4096 characters)`)
    return { name, value: text }
  })
}

export function readHeaderName(ctx: RouteContext, value: unknown, field: string): string {
  const name = patternString(ctx, value, field, HEADER_NAME, 256, 'a header name (an RFC 7230 token)')
  if (name === undefined) throw badField(ctx.ref, field, 'is required')
  return name.toLowerCase()
}

function readHeaderModifier(ctx: RouteContext, config: Fields, field: string, request: boolean): HeaderModifier {
  checkKeys(ctx.ref, config, ['set', 'add', 'remove'], field)
  const set = readHeaders(ctx, config['set'], `${field}.set`)
  const add = readHeaders(ctx, config['add'], `${field}.add`)
  const removeList = boundedList(ctx, config['remove'], `${field}.remove`, 16)
  const remove = removeList.map((n, i) => readHeaderName(ctx, n, `${field}.remove[${i}]`))
  const seen = new Map<string, string>()
  const once = (name: string, at: string): void => {
    const first = seen.get(name)
    if (first !== undefined)
      throw badValue(ctx.ref, at, `header ${JSON.stringify(name)} already has an action at ${first}; only one action per header name is allowed`)
    seen.set(name, at)
  }
  set.forEach((h, i) => once(h.name, `${field}.set[${i}]`))
  add.forEach((h, i) => once(h.name, `${field}.add[${i}]`))
  remove.forEach((n, i) => once(n, `${field}.remove[${i}]`))
  if (!request || !seen.has('host')) return { set, add, remove }
  // Envoy (so Istio) refuses to modify Host with header operations; the authority is
  // changed with URLRewrite.hostname instead.
  warn(
    ctx,
    'AMBIENT_WARN_ROUTE_IGNORED_FIELD',
    seen.get('host')!,
    'the Host header is not modified by a RequestHeaderModifier (as in Istio); use a URLRewrite filter with hostname',
  )
  return { set: set.filter((h) => h.name !== 'host'), add: add.filter((h) => h.name !== 'host'), remove: remove.filter((n) => n !== 'host') }
}

function readPathModifier(ctx: RouteContext, value: unknown, field: string, scope: FilterScope): PathModifier | null {
  const obj = optionalRecord(ctx.ref, value, field)
  if (obj === undefined) return null
  checkKeys(ctx.ref, obj, ['type', 'replaceFullPath', 'replacePrefixMatch'], field)
  const type = optionalString(ctx.ref, obj['type'], `${field}.type`)
  const full = optionalString(ctx.ref, obj['replaceFullPath'], `${field}.replaceFullPath`)
  const prefix = optionalString(ctx.ref, obj['replacePrefixMatch'], `${field}.replacePrefixMatch`)
  for (const [key, text] of [
    ['replaceFullPath', full],
    ['replacePrefixMatch', prefix],
  ] as const) {
    if (text !== undefined && text.length > 1024) throw badValue(ctx.ref, `${field}.${key}`, 'is longer than 1024 characters')
  }
  if (type === 'ReplaceFullPath') {
    if (prefix !== undefined) throw badField(ctx.ref, `${field}.replacePrefixMatch`, "must not be set when type is 'ReplaceFullPath'")
    if (full === undefined) throw badField(ctx.ref, `${field}.replaceFullPath`, "must be specified when type is set to 'ReplaceFullPath'")
    return { type, replaceFullPath: full }
  }
  if (type === 'ReplacePrefixMatch') {
    if (full !== undefined) throw badField(ctx.ref, `${field}.replaceFullPath`, "must not be set when type is 'ReplacePrefixMatch'")
    if (prefix === undefined) throw badField(ctx.ref, `${field}.replacePrefixMatch`, "must be specified when type is set to 'ReplacePrefixMatch'")
    if (!scope.singlePathPrefix) {
      throw badValue(ctx.ref, `${field}.type`, 'ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix')
    }
    return { type, replacePrefixMatch: prefix }
  }
  if (type === undefined) throw badField(ctx.ref, `${field}.type`, 'is required')
  throw badValue(ctx.ref, `${field}.type`, `${JSON.stringify(type)} is not a path modifier; use ReplaceFullPath or ReplacePrefixMatch`)
}

const REDIRECT_CODES = [301, 302, 303, 307, 308] as const

function readRedirect(ctx: RouteContext, config: Fields, field: string, scope: FilterScope): HttpRouteFilter {
  checkKeys(ctx.ref, config, ['scheme', 'hostname', 'path', 'port', 'statusCode'], field)
  const scheme = optionalString(ctx.ref, config['scheme'], `${field}.scheme`)
  if (scheme !== undefined && scheme !== 'http' && scheme !== 'https')
    throw badValue(ctx.ref, `${field}.scheme`, `${JSON.stringify(scheme)} is not a redirect scheme; use http or https`)
  const status = config['statusCode'] ?? 302
  const statusCode = REDIRECT_CODES.find((c) => c === status)
  if (statusCode === undefined)
    throw badValue(ctx.ref, `${field}.statusCode`, `${JSON.stringify(status)} is not a redirect status; use 301, 302, 303, 307 or 308`)
  return {
    type: 'RequestRedirect',
    scheme: scheme ?? null,
    hostname: readPreciseHostname(ctx, config['hostname'], `${field}.hostname`) ?? null,
    path: readPathModifier(ctx, config['path'], `${field}.path`, scope),
    port: optionalInteger(ctx, config['port'], `${field}.port`, 1, 65535) ?? null,
    statusCode,
  }
}

function readMirror(ctx: RouteContext, config: Fields, field: string): HttpRouteFilter {
  checkKeys(ctx.ref, config, ['backendRef', 'percent', 'fraction'], field)
  const backend = readBackendObjectRef(ctx, requiredRecord(ctx, config['backendRef'], `${field}.backendRef`), `${field}.backendRef`, [])
  const percent = optionalInteger(ctx, config['percent'], `${field}.percent`, 0, 100)
  const fractionObj = optionalRecord(ctx.ref, config['fraction'], `${field}.fraction`)
  if (percent !== undefined && fractionObj !== undefined) throw badField(ctx.ref, `${field}.fraction`, 'only one of percent or fraction may be specified')
  let fraction: MirrorFraction = { numerator: percent ?? 100, denominator: 100 }
  if (fractionObj !== undefined) {
    checkKeys(ctx.ref, fractionObj, ['numerator', 'denominator'], `${field}.fraction`)
    const numerator = optionalInteger(ctx, fractionObj['numerator'], `${field}.fraction.numerator`, 0, 2 ** 31 - 1)
    if (numerator === undefined) throw badField(ctx.ref, `${field}.fraction.numerator`, 'is required')
    const denominator = optionalInteger(ctx, fractionObj['denominator'], `${field}.fraction.denominator`, 1, 2 ** 31 - 1) ?? 100
    if (numerator > denominator) throw badValue(ctx.ref, `${field}.fraction`, `numerator ${numerator} must be less than or equal to denominator ${denominator}`)
    fraction = { numerator, denominator }
  }
  return { type: 'RequestMirror', backend, fraction }
}

/** BackendObjectReference: group "" and kind Service by default; a Service needs a port (CEL). */
export function readBackendObjectRef(ctx: RouteContext, obj: Fields, field: string, extraKeys: readonly string[]): BackendObjectRef {
  checkKeys(ctx.ref, obj, ['group', 'kind', 'name', 'namespace', 'port', ...extraKeys], field)
  const group = readGroup(ctx, obj['group'], `${field}.group`) ?? ''
  const kind = readKind(ctx, obj['kind'], `${field}.kind`) ?? 'Service'
  const name = readObjectName(ctx, obj['name'], `${field}.name`)
  const namespace = readNamespace(ctx, obj['namespace'], `${field}.namespace`) ?? ctx.ref.namespace
  const port = optionalInteger(ctx, obj['port'], `${field}.port`, 1, 65535) ?? null
  const service = isCoreGroup(group) && kind === 'Service'
  if (service && port === null) throw badField(ctx.ref, `${field}.port`, 'is required for a Service reference (the service port, not the target port)')
  if (service && name.includes('.')) throw badValue(ctx.ref, `${field}.name`, `${JSON.stringify(name)}: use the name of the Service, not its hostname`)
  return { group: isCoreGroup(group) ? '' : group, kind, namespace, name, port, field }
}

export function readBackendRefs(ctx: RouteContext, value: unknown, field: string, singlePathPrefix: boolean): readonly HttpBackendRef[] {
  return boundedList(ctx, value, field, 16).map((item, i) => {
    const f = `${field}[${i}]`
    const obj = requiredRecord(ctx, item, f)
    const backend = readBackendObjectRef(ctx, obj, f, ['weight', 'filters'])
    const weight = optionalInteger(ctx, obj['weight'], `${f}.weight`, 0, 1_000_000) ?? 1
    const filters = readFilters(ctx, obj['filters'], `${f}.filters`, { level: 'backend', singlePathPrefix, hasBackendRefs: true })
    return { backend, weight, filters }
  })
}
