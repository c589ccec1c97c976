// security.istio.io/v1 (and v1beta1) AuthorizationPolicy attached with targetRefs ->
// the L7 model a waypoint evaluates (common/model/waypoint-authorization.ts), after
// the checks of Istio's validating webhook (pkg/config/validation
// ValidateAuthorizationPolicy, pkg/config/security, the CRD's CEL rules) and the
// parsing Envoy does of what Istio generates (pilot/pkg/security/authz/model). Pure.
//
// Istio behaviours implemented here, on purpose:
// - Attachment (pilot/pkg/model/policyattachment.go): targetRefs, or the deprecated
//   targetRef when targetRefs is empty; at most one of selector/targetRef/targetRefs;
//   at most 16; a targetRef namespace is refused (targets are in the policy's
//   namespace). Kinds: Gateway (gateway.networking.k8s.io), Service (group "" or
//   "core"), GatewayClass `istio-waypoint` from the root namespace (every waypoint),
//   ServiceEntry (networking.istio.io: valid, but ambient has none, so it matches
//   nothing: warned). A GatewayClass target of another name or from another namespace
//   matches nothing in Istio either: warned. Any other kind is refused. A policy
//   without targetRefs is ztunnel's (waypoints never use selectors): ignored.
// - Actions ALLOW (default), DENY, AUDIT, CUSTOM. CUSTOM is validated as Istio does
//   (provider.name, the fields it refuses) and kept: the waypoint denies what its
//   rules match (fail closed, as Istio does for a provider it cannot use), and the
//   policy is reported as unsupported.
// - `istio.io/dry-run` is parsed as the L4 converter does (Go ParseBool, a bad value
//   warned and enforced); Istio refuses the annotation on AUDIT and CUSTOM policies.
// - JWT (requestPrincipals, request.auth.*): ambient has no RequestAuthentication, so
//   no request has a request principal; the values are kept as unavailable (positive
//   values never match, negative ones always pass, as Envoy treats the absent JWT
//   payload) and warned about.
// - Paths: Istio's `{*}` / `{**}` templates (CheckValidPathTemplate), also checked
//   against what Envoy's URI template parser accepts (a template Envoy refuses would
//   fail the whole listener in Istio); `{` or `}` outside a template is refused.
import { type Address, type PolicyRef, type ServiceAccountMatch, type StringMatch, PolicyError } from '../authorization.js'
import {
  type HeaderMatch,
  type L7Group,
  type L7Match,
  type L7Rules,
  type PathMatch,
  type UnavailableValue,
  type WaypointAction,
  type WaypointAuthorization,
  type WaypointTarget,
  type WaypointWarning,
  type WaypointWarningCode,
  WAYPOINT_GATEWAY_CLASS,
  l7Match,
} from '../waypoint-authorization.js'
import { DRY_RUN_ANNOTATION, stringMatch } from './authorization-policy.js'
import {
  type Fields,
  badField,
  badValue,
  checkKeys,
  optionalList,
  optionalRecord,
  optionalString,
  parseCidr,
  parseGoBool,
  parsePolicyPort,
  readMeta,
  stringList,
} from './object-fields.js'
import { type PolicyProblem, kindOf } from './policies.js'

export interface WaypointConvertOptions {
  /** Istio's root namespace (meshConfig.rootNamespace): where GatewayClass targets apply from. */
  readonly rootNamespace: string
  /** Overrides metadata.namespace. */
  readonly namespace?: string
}

export type WaypointConversion =
  | { readonly kind: 'converted'; readonly policy: WaypointAuthorization; readonly warnings: readonly WaypointWarning[] }
  | { readonly kind: 'ignored'; readonly ref: PolicyRef; readonly reason: 'no-target-refs' | 'no-usable-target'; readonly warnings: readonly WaypointWarning[] }
  | { readonly kind: 'invalid'; readonly ref: PolicyRef; readonly error: PolicyError }

const API_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1']
const SPEC_KEYS = ['selector', 'targetRef', 'targetRefs', 'action', 'provider', 'rules']
const SOURCE_KEYS = [
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
  'namespaces',
  'notNamespaces',
  'ipBlocks',
  'notIpBlocks',
  'remoteIpBlocks',
  'notRemoteIpBlocks',
  'serviceAccounts',
  'notServiceAccounts',
  'trustDomains',
  'notTrustDomains',
]
/** Source fields Istio refuses with action CUSTOM (everything but the IP blocks). */
const SOURCE_NOT_CUSTOM = SOURCE_KEYS.filter((k) => !/IpBlocks$/i.test(k))
const OPERATION_KEYS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths']
const TARGET_KINDS: Readonly<Record<string, string>> = {
  'core/Service': 'Service',
  'networking.istio.io/ServiceEntry': 'ServiceEntry',
  'gateway.networking.k8s.io/Gateway': 'Gateway',
  'gateway.networking.k8s.io/GatewayClass': 'GatewayClass',
}
const KIND_PATTERN = /^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/
const GROUP_PATTERN = /^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
/** Istio's validLiteral for a path template segment (RFC 3986 pchar). */
const ISTIO_TEMPLATE_LITERAL = /^[a-zA-Z0-9-._~%!$&'()+,;:@=]+$/
/** Envoy's kLiteral (uri_template_internal.cc): pchar without `=` and `*`. */
const ENVOY_TEMPLATE_LITERAL = /^[a-zA-Z0-9\-._~%!$&'()+,;:@]+$/
const ENVOY_PATH_GLOB = "[a-zA-Z0-9\\-._~%!$&'()+,;:@]+"
const ENVOY_TEXT_GLOB = "[a-zA-Z0-9\\-._~%!$&'()+,;:@/]*"

/** Collects warnings for one object. */
class Warnings {
  readonly list: WaypointWarning[] = []
  constructor(private readonly ref: PolicyRef) {}
  add(code: WaypointWarningCode, field: string, message: string): void {
    this.list.push({ code, policy: this.ref, field, message })
  }
}

interface Context {
  readonly ref: PolicyRef
  readonly action: WaypointAction
  readonly warnings: Warnings
}

export function convertWaypointAuthorizationPolicy(object: unknown, options: WaypointConvertOptions): WaypointConversion {
  try {
    const read = readMeta('AuthorizationPolicy', object, options.namespace)
    return convertObject(read.ref, read.meta.annotations, read.root, options.rootNamespace)
  } catch (err) {
    if (err instanceof PolicyError) return { kind: 'invalid', ref: err.policy, error: err }
    throw err
  }
}

function convertObject(ref: PolicyRef, annotations: Readonly<Record<string, string>>, root: Fields, rootNamespace: string): WaypointConversion {
  const apiVersion = root['apiVersion']
  if (apiVersion !== undefined && !API_VERSIONS.includes(apiVersion as string)) {
    throw badValue(ref, 'apiVersion', `${JSON.stringify(apiVersion)} is not an AuthorizationPolicy version; use ${API_VERSIONS.join(' or ')}`)
  }
  const warnings = new Warnings(ref)
  const spec = optionalRecord(ref, root['spec'], 'spec') ?? {}
  checkKeys(ref, spec, SPEC_KEYS, 'spec')
  const refs = targetRefList(ref, spec)
  if (refs === null) {
    warnings.add('AMBIENT_WARN_WAYPOINT_NO_TARGET', 'spec.targetRefs', 'no targetRefs: the policy is enforced by ztunnel (waypoints never use selectors)')
    return { kind: 'ignored', ref, reason: 'no-target-refs', warnings: warnings.list }
  }
  const targets = uniqueTargets(refs.map(([value, field]) => convertTarget(ref, value, field, rootNamespace, warnings)))
  const action = optionalString(ref, spec['action'], 'spec.action') ?? 'ALLOW'
  if (!['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'].includes(action)) {
    throw badValue(ref, 'spec.action', `${JSON.stringify(action)} is not an action; use ALLOW, DENY, AUDIT or CUSTOM`)
  }
  const ctx: Context = { ref, action: action as WaypointAction, warnings }
  const provider = readProvider(ctx, spec)
  const ruleList = optionalList(ref, spec['rules'], 'spec.rules')
  if (ruleList.length > 512) throw badValue(ref, 'spec.rules', `has ${ruleList.length} rules; at most 512 are allowed`)
  if ((action === 'DENY' || action === 'CUSTOM') && ruleList.length === 0) {
    throw badField(ref, 'spec.rules', `a ${action} policy without rules never applies; add an empty rule {} to match every request`)
  }
  const dryRun = readDryRun(ctx, annotations)
  const groups = ruleList.map((rule, i) => convertRule(ctx, rule, `spec.rules[${i}]`))
  if (action === 'CUSTOM') {
    warnings.add(
      'AMBIENT_WARN_WAYPOINT_CUSTOM_UNSUPPORTED',
      'spec.action',
      `the waypoint has no external authorizer (provider ${JSON.stringify(provider)}): requests this policy's rules match are denied, so nothing passes unchecked`,
    )
  }
  if (targets.length === 0) return { kind: 'ignored', ref, reason: 'no-usable-target', warnings: warnings.list }
  const policy: WaypointAuthorization = { namespace: ref.namespace, name: ref.name, action: ctx.action, dryRun, targets, provider, groups }
  return { kind: 'converted', policy, warnings: warnings.list }
}

/** The target references with their field paths (Istio's GetTargetRefs), or null when there are none. */
function targetRefList(ref: PolicyRef, spec: Fields): ReadonlyArray<readonly [unknown, string]> | null {
  const single = spec['targetRef']
  const list = optionalList(ref, spec['targetRefs'], 'spec.targetRefs')
  const hasSingle = single !== undefined && single !== null
  const hasSelector = spec['selector'] !== undefined && spec['selector'] !== null
  if ([hasSelector, hasSingle, list.length > 0].filter(Boolean).length > 1) {
    throw badField(ref, hasSelector ? 'spec.selector' : 'spec.targetRef', 'only one of targetRefs or selector can be set')
  }
  if (list.length > 16) throw badValue(ref, 'spec.targetRefs', `has ${list.length} entries; at most 16 are allowed`)
  if (list.length > 0) return list.map((v, i) => [v, `spec.targetRefs[${i}]`] as const)
  return hasSingle ? [[single, 'spec.targetRef']] : null
}

function convertTarget(ref: PolicyRef, value: unknown, field: string, rootNamespace: string, warnings: Warnings): WaypointTarget | null {
  const target = optionalRecord(ref, value, field)
  if (target === undefined) throw badField(ref, field, 'must not be null')
  checkKeys(ref, target, ['group', 'kind', 'name', 'namespace'], field)
  const group = optionalString(ref, target['group'], `${field}.group`) ?? ''
  const kind = optionalString(ref, target['kind'], `${field}.kind`) ?? ''
  const name = optionalString(ref, target['name'], `${field}.name`) ?? ''
  const namespace = optionalString(ref, target['namespace'], `${field}.namespace`) ?? ''
  if (kind === '' || kind.length > 63 || !KIND_PATTERN.test(kind)) throw badValue(ref, `${field}.kind`, `${JSON.stringify(kind)} is not a kind (e.g. Gateway)`)
  if (name === '' || name.length > 253) throw badValue(ref, `${field}.name`, 'must be set (at most 253 characters)')
  if (group.length > 253 || !GROUP_PATTERN.test(group)) throw badValue(ref, `${field}.group`, `${JSON.stringify(group)} is not an API group`)
  if (namespace !== '') {
    throw badValue(ref, `${field}.namespace`, 'cross namespace referencing is not supported; put the policy in the namespace of its target')
  }
  const resolved = TARGET_KINDS[`${group === '' ? 'core' : group}/${kind}`]
  if (resolved === undefined) {
    throw badValue(
      ref,
      field,
      `${group}/${kind} cannot be a target; use gateway.networking.k8s.io Gateway or GatewayClass, "" Service, or networking.istio.io ServiceEntry`,
    )
  }
  if (resolved === 'Gateway' || resolved === 'Service') return { kind: resolved, namespace: ref.namespace, name }
  if (resolved === 'ServiceEntry') {
    warnings.add('AMBIENT_WARN_WAYPOINT_TARGET', field, `ambient has no ServiceEntry: the target ServiceEntry ${JSON.stringify(name)} matches nothing`)
    return null
  }
  if (name !== WAYPOINT_GATEWAY_CLASS) {
    warnings.add(
      'AMBIENT_WARN_WAYPOINT_TARGET',
      field,
      `only GatewayClass ${WAYPOINT_GATEWAY_CLASS} selects waypoints; ${JSON.stringify(name)} matches nothing`,
    )
    return null
  }
  if (ref.namespace !== rootNamespace) {
    warnings.add(
      'AMBIENT_WARN_WAYPOINT_TARGET',
      field,
      `a GatewayClass target applies only from the root namespace ${JSON.stringify(rootNamespace)}; here it matches nothing`,
    )
    return null
  }
  return { kind: 'GatewayClass', name: WAYPOINT_GATEWAY_CLASS }
}

function uniqueTargets(targets: readonly (WaypointTarget | null)[]): WaypointTarget[] {
  const seen = new Map<string, WaypointTarget>()
  for (const t of targets) if (t !== null) seen.set(JSON.stringify(t), t)
  return [...seen.values()]
}

function readProvider(ctx: Context, spec: Fields): string | null {
  const provider = optionalRecord(ctx.ref, spec['provider'], 'spec.provider')
  if (provider !== undefined && ctx.action !== 'CUSTOM') throw badField(ctx.ref, 'spec.provider', `must not be set with action ${ctx.action}`)
  if (ctx.action !== 'CUSTOM') return null
  if (provider !== undefined) checkKeys(ctx.ref, provider, ['name'], 'spec.provider')
  const name = provider === undefined ? '' : (optionalString(ctx.ref, provider['name'], 'spec.provider.name') ?? '')
  if (name === '') throw badField(ctx.ref, 'spec.provider.name', 'must be set for action CUSTOM')
  return name
}

function readDryRun(ctx: Context, annotations: Readonly<Record<string, string>>): boolean {
  const value = annotations[DRY_RUN_ANNOTATION]
  const field = `metadata.annotations["${DRY_RUN_ANNOTATION}"]`
  if (value === undefined) return false
  if (ctx.action !== 'ALLOW' && ctx.action !== 'DENY') throw badValue(ctx.ref, field, `is only supported with action ALLOW or DENY, not ${ctx.action}`)
  if (value === '') return false
  const parsed = parseGoBool(value)
  if (parsed === undefined) {
    ctx.warnings.add('AMBIENT_WARN_POLICY_DRY_RUN_VALUE', field, `${JSON.stringify(value)} is not a boolean; the policy is enforced (write "true" for dry-run)`)
    return false
  }
  return parsed
}

/** One spec.rules entry -> one group: a Rules per from, to and each when. */
function convertRule(ctx: Context, value: unknown, field: string): L7Group {
  const rule = optionalRecord(ctx.ref, value, field)
  if (rule === undefined) throw badField(ctx.ref, field, 'rule must not be null; use {} to match every request')
  checkKeys(ctx.ref, rule, ['from', 'to', 'when'], field)
  const rules: L7Rules[] = []
  const to = nonEmptyList(ctx, rule['to'], `${field}.to`)
  const from = nonEmptyList(ctx, rule['from'], `${field}.from`)
  if (to.length > 0) rules.push({ matches: to.map((t, j) => convertOperation(ctx, t, `${field}.to[${j}]`)) })
  if (from.length > 0) rules.push({ matches: from.map((f, j) => convertSource(ctx, f, `${field}.from[${j}]`)) })
  optionalList(ctx.ref, rule['when'], `${field}.when`).forEach((w, j) => rules.push({ matches: [convertCondition(ctx, w, `${field}.when[${j}]`)] }))
  return { rules }
}

function nonEmptyList(ctx: Context, value: unknown, field: string): readonly unknown[] {
  const list = optionalList(ctx.ref, value, field)
  if (value !== undefined && value !== null && list.length === 0) throw badField(ctx.ref, field, 'must not be empty; remove it to match any')
  return list
}

/** The record under `key` of a from / to entry (`source`, `operation`), checked. */
function entry(ctx: Context, value: unknown, key: string, known: readonly string[], field: string): Fields {
  const outer = optionalRecord(ctx.ref, value, field)
  const inner = outer === undefined ? undefined : optionalRecord(ctx.ref, outer[key], `${field}.${key}`)
  if (outer === undefined || inner === undefined) throw badField(ctx.ref, `${field}.${key}`, 'must be set')
  checkKeys(ctx.ref, outer, [key], field)
  checkKeys(ctx.ref, inner, known, `${field}.${key}`)
  if (known.every((k) => stringList(ctx.ref, inner[k], `${field}.${key}.${k}`).length === 0)) throw badField(ctx.ref, `${field}.${key}`, 'must not be empty')
  return inner
}

function convertSource(ctx: Context, value: unknown, field: string): L7Match {
  const path = `${field}.source`
  const src = entry(ctx, value, 'source', SOURCE_KEYS, field)
  const lists = new Map(SOURCE_KEYS.map((k) => [k, stringList(ctx.ref, src[k], `${path}.${k}`)]))
  const list = (k: string): readonly string[] => lists.get(k)!
  const identity = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces'].filter((k) => list(k).length > 0)
  const accounts = ['serviceAccounts', 'notServiceAccounts'].filter((k) => list(k).length > 0)
  if (identity.length > 0 && accounts.length > 0) {
    throw badField(ctx.ref, `${path}.${accounts[0]}`, `cannot be set with ${identity[0]}; split them into two from entries`)
  }
  if (ctx.action === 'CUSTOM') {
    const refused = SOURCE_NOT_CUSTOM.find((k) => list(k).length > 0)
    if (refused !== undefined) throw badField(ctx.ref, `${path}.${refused}`, 'is not supported with action CUSTOM')
  }
  for (const k of ['trustDomains', 'notTrustDomains']) list(k).forEach((v, i) => checkTrustDomain(ctx, v, `${path}.${k}[${i}]`, true))
  for (const k of ['requestPrincipals', 'notRequestPrincipals']) if (list(k).length > 0) warnJwt(ctx, `${path}.${k}`, k === 'notRequestPrincipals')
  for (const k of ['remoteIpBlocks', 'notRemoteIpBlocks']) if (list(k).length > 0) warnRemoteIp(ctx, `${path}.${k}`)
  const unavailable = (k: string): UnavailableValue[] => list(k).map((v) => ({ attribute: 'requestPrincipals', value: v }))
  return l7Match({
    principals: principals(ctx, list('principals'), `${path}.principals`),
    notPrincipals: principals(ctx, list('notPrincipals'), `${path}.notPrincipals`),
    namespaces: namespaces(ctx, list('namespaces'), `${path}.namespaces`),
    notNamespaces: namespaces(ctx, list('notNamespaces'), `${path}.notNamespaces`),
    serviceAccounts: serviceAccounts(ctx, list('serviceAccounts'), `${path}.serviceAccounts`),
    notServiceAccounts: serviceAccounts(ctx, list('notServiceAccounts'), `${path}.notServiceAccounts`),
    trustDomains: list('trustDomains'),
    notTrustDomains: list('notTrustDomains'),
    sourceIps: addresses(ctx, list('ipBlocks'), `${path}.ipBlocks`),
    notSourceIps: addresses(ctx, list('notIpBlocks'), `${path}.notIpBlocks`),
    remoteIps: addresses(ctx, list('remoteIpBlocks'), `${path}.remoteIpBlocks`),
    notRemoteIps: addresses(ctx, list('notRemoteIpBlocks'), `${path}.notRemoteIpBlocks`),
    unavailable: unavailable('requestPrincipals'),
    notUnavailable: unavailable('notRequestPrincipals'),
  })
}

function convertOperation(ctx: Context, value: unknown, field: string): L7Match {
  const path = `${field}.operation`
  const op = entry(ctx, value, 'operation', OPERATION_KEYS, field)
  const list = (k: string): readonly string[] => stringList(ctx.ref, op[k], `${path}.${k}`)
  const paths = (k: string): PathMatch[] => list(k).map((p, i) => pathMatch(ctx, p, `${path}.${k}[${i}]`))
  const ports = (k: string): number[] => list(k).map((p, i) => parsePolicyPort(ctx.ref, p, `${path}.${k}[${i}]`))
  return l7Match({
    hosts: list('hosts').map(stringMatch),
    notHosts: list('notHosts').map(stringMatch),
    destinationPorts: ports('ports'),
    notDestinationPorts: ports('notPorts'),
    methods: list('methods').map(stringMatch),
    notMethods: list('notMethods').map(stringMatch),
    paths: paths('paths'),
    notPaths: paths('notPaths'),
  })
}

/** One `when` condition (Istio's ValidateAttribute, then the generator for its key). */
function convertCondition(ctx: Context, value: unknown, field: string): L7Match {
  const when = optionalRecord(ctx.ref, value, field)
  if (when === undefined) throw badField(ctx.ref, field, 'condition must not be null')
  checkKeys(ctx.ref, when, ['key', 'values', 'notValues'], field)
  const key = optionalString(ctx.ref, when['key'], `${field}.key`) ?? ''
  if (key === '') throw badField(ctx.ref, `${field}.key`, 'must not be empty')
  const values = stringList(ctx.ref, when['values'], `${field}.values`)
  const notValues = stringList(ctx.ref, when['notValues'], `${field}.notValues`)
  if (values.length === 0 && notValues.length === 0) throw badField(ctx.ref, field, `at least one of values or notValues must be set for key ${key}`)
  const keyField = `${field}.key`
  const both = <T>(f: (v: readonly string[], at: string) => T): readonly [T, T] => [f(values, `${field}.values`), f(notValues, `${field}.notValues`)]
  if (ctx.action === 'CUSTOM' && (/^source\.(namespace|serviceAccount|trustDomain|principal)$/.test(key) || key.startsWith('request.auth.'))) {
    throw badValue(ctx.ref, keyField, `${key} is not supported with action CUSTOM`)
  }
  const ips = (v: readonly string[], at: string): Address[] => addresses(ctx, v, at)
  switch (key) {
    case 'source.ip': {
      const [pos, neg] = both(ips)
      return l7Match({ sourceIps: pos, notSourceIps: neg })
    }
    case 'remote.ip': {
      warnRemoteIp(ctx, keyField)
      const [pos, neg] = both(ips)
      return l7Match({ remoteIps: pos, notRemoteIps: neg })
    }
    case 'destination.ip': {
      const [pos, neg] = both(ips)
      return l7Match({ destinationIps: pos, notDestinationIps: neg })
    }
    case 'destination.port': {
      const [pos, neg] = both((v, at) => v.map((p, i) => parsePolicyPort(ctx.ref, p, `${at}[${i}]`)))
      return l7Match({ destinationPorts: pos, notDestinationPorts: neg })
    }
    case 'source.namespace': {
      const [pos, neg] = both((v, at) => namespaces(ctx, v, at))
      return l7Match({ namespaces: pos, notNamespaces: neg })
    }
    case 'source.principal': {
      const [pos, neg] = both((v, at) => principals(ctx, v, at))
      return l7Match({ principals: pos, notPrincipals: neg })
    }
    case 'source.serviceAccount': {
      const [pos, neg] = both((v, at) => serviceAccounts(ctx, v, at))
      return l7Match({ serviceAccounts: pos, notServiceAccounts: neg })
    }
    case 'source.trustDomain': {
      both((v, at) => v.forEach((d, i) => checkTrustDomain(ctx, d, `${at}[${i}]`, false)))
      return l7Match({ trustDomains: values, notTrustDomains: notValues })
    }
  }
  return convertMapCondition(ctx, key, values, notValues, keyField)
}

/** when keys that name a header, a claim or metadata, and the attributes the waypoint never has. */
function convertMapCondition(ctx: Context, key: string, values: readonly string[], notValues: readonly string[], keyField: string): L7Match {
  const unavailable = (): L7Match => {
    const as = (v: readonly string[]): UnavailableValue[] => v.map((value) => ({ attribute: key, value }))
    return l7Match({ unavailable: as(values), notUnavailable: as(notValues) })
  }
  if (key.startsWith('request.headers')) {
    const name = bracketed(ctx, key, 'request.headers', keyField).toLowerCase()
    if (name === 'host') {
      ctx.warnings.add(
        'AMBIENT_WARN_WAYPOINT_HOST_HEADER',
        keyField,
        'the Host header is :authority in Envoy, so request.headers[host] is never present; use to.operation.hosts or request.headers[:authority]',
      )
    }
    const as = (v: readonly string[]): HeaderMatch[] => v.map((s) => ({ name, match: stringMatch(s) }))
    return l7Match({ headers: as(values), notHeaders: as(notValues) })
  }
  if (['request.auth.principal', 'request.auth.audiences', 'request.auth.presenter'].includes(key) || key.startsWith('request.auth.claims')) {
    if (key.startsWith('request.auth.claims')) bracketed(ctx, key, 'request.auth.claims', keyField)
    warnJwt(ctx, keyField, values.length === 0)
    return unavailable()
  }
  if (key === 'connection.sni' || key.startsWith('experimental.envoy.filters.')) {
    if (key !== 'connection.sni') bracketed(ctx, key, key.slice(0, Math.max(key.indexOf('['), 0)), keyField)
    const what = key === 'connection.sni' ? 'the waypoint receives plaintext HTTP inside the tunnel, so there is no SNI' : 'the waypoint has no Envoy metadata'
    ctx.warnings.add(
      'AMBIENT_WARN_WAYPOINT_UNAVAILABLE_ATTRIBUTE',
      keyField,
      `${what}: values never match and notValues never exclude (as in Istio when the attribute is absent)`,
    )
    return unavailable()
  }
  if (key === 'destination.namespace') throw badValue(ctx.ref, keyField, 'destination.namespace is replaced by metadata.namespace')
  if (key.startsWith('destination.labels')) throw badValue(ctx.ref, keyField, `${key} is replaced by the targetRefs`)
  if (key === 'destination.name' || key === 'destination.user') throw badValue(ctx.ref, keyField, `${key} was only supported in v1alpha1`)
  throw badValue(ctx.ref, keyField, `unknown attribute ${JSON.stringify(key)}`)
}

/** The name in `prefix[name]` (Istio's validateMapKey and extractNameInBrackets); nested brackets are kept as written. */
function bracketed(ctx: Context, key: string, prefix: string, field: string): string {
  const rest = key.slice(prefix.length)
  if (prefix === '' || !rest.startsWith('[') || !rest.endsWith(']') || rest.length < 3) {
    throw badValue(ctx.ref, field, `bad key ${JSON.stringify(key)}: should have the form ${prefix === '' ? 'a.b' : prefix}[name]`)
  }
  return rest.slice(1, -1)
}

function warnJwt(ctx: Context, field: string, negativeOnly: boolean): void {
  ctx.warnings.add(
    'AMBIENT_WARN_WAYPOINT_JWT',
    field,
    'JWT is not supported: ambient has no RequestAuthentication, so no request has a request principal or claims; ' +
      (negativeOnly ? 'a not-match therefore always matches' : 'values never match and notValues always pass') +
      ' (as in Istio without a RequestAuthentication)',
  )
}

function warnRemoteIp(ctx: Context, field: string): void {
  ctx.warnings.add(
    'AMBIENT_WARN_WAYPOINT_REMOTE_IP',
    field,
    'remote.ip is the last X-Forwarded-For address (or the source address without one), which a client can set; match ipBlocks to check the connection',
  )
}

function principals(ctx: Context, values: readonly string[], field: string): StringMatch[] {
  values.forEach((p, i) => {
    if (p.startsWith('spiffe://')) {
      ctx.warnings.add('AMBIENT_WARN_POLICY_SPIFFE_PREFIX', `${field}[${i}]`, `principal ${JSON.stringify(p)} never matches: write it without "spiffe://"`)
    }
  })
  return values.map(stringMatch)
}

/** Istio's namespace regex (srcNamespaceGenerator): `*` is `.*`, against the whole SPIFFE id. */
export function namespaceRegExp(pattern: string): RegExp {
  const body = pattern.split('*').map(escapeRegExp).join('.*')
  return new RegExp(`^.*/ns/${body}/.*$`)
}

function namespaces(ctx: Context, values: readonly string[], field: string): readonly string[] {
  values.forEach((v, i) => {
    const example = 'spiffe://cluster.local/ns/other/sa/default'
    // Probe with an identity of no namespace at all: only a pattern that spills over
    // the "/sa" segment (or beyond) matches it. Names without "*" or "/" never do.
    if (v !== '*' && /[*/]/.test(v) && namespaceRegExp(v).test('spiffe://cluster.local/ns//sa/default')) {
      ctx.warnings.add(
        'AMBIENT_WARN_WAYPOINT_NAMESPACE_PATTERN',
        `${field}[${i}]`,
        `Istio matches namespaces as the regular expression .*/ns/<pattern>/.* over the whole identity, so ${JSON.stringify(v)} also matches identities outside the namespaces it names` +
          (namespaceRegExp(v).test(example) ? ` (e.g. ${example})` : ''),
      )
    }
  })
  return values
}

/** Istio's CheckServiceAccount; `sa` is `<policy namespace>/sa`. */
function serviceAccounts(ctx: Context, values: readonly string[], field: string): ServiceAccountMatch[] {
  if (values.length > 16) throw badValue(ctx.ref, field, 'may not have more than 16 values; split the rule')
  return values.map((v, i) => {
    const parts = v.split('/')
    if (v.includes('*') || parts.length > 2 || parts.some((s) => s === '') || v.length > 320) {
      throw badValue(ctx.ref, `${field}[${i}]`, `${JSON.stringify(v)} is not "serviceAccount" or "namespace/serviceAccount" (no wildcards)`)
    }
    return parts.length === 2 ? { namespace: parts[0]!, serviceAccount: parts[1]! } : { namespace: ctx.ref.namespace, serviceAccount: v }
  })
}

/** Istio's CheckWildcardValues (and, for source.trustDomains, CheckTrustDomainValues: no `/`). */
function checkTrustDomain(ctx: Context, value: string, field: string, noSlash: boolean): void {
  const stars = value.split('*').length - 1
  if (stars > 1 || (stars === 1 && value !== '*' && !value.startsWith('*') && !value.endsWith('*'))) {
    throw badValue(ctx.ref, field, `${JSON.stringify(value)}: one wildcard at most, at the start or the end`)
  }
  if (noSlash && value.includes('/')) throw badValue(ctx.ref, field, `${JSON.stringify(value)}: a trust domain must not contain "/"`)
}

function addresses(ctx: Context, values: readonly string[], field: string): Address[] {
  return values.map((a, i) => parseCidr(ctx.ref, a, `${field}[${i}]`))
}

/** A `paths` value: Istio's CheckValidPathTemplate, and for templates what Envoy's parser accepts. */
function pathMatch(ctx: Context, value: string, field: string): PathMatch {
  const template = value.includes('{*}') || value.includes('{**}')
  let afterAny = false
  for (const glob of value.replace(/^\/+|\/+$/g, '').split('/')) {
    if ((glob === '{*}' || glob === '{**}') && afterAny) throw badValue(ctx.ref, field, `${JSON.stringify(value)}: {**} must be the last operator`)
    if (glob === '{**}') afterAny = true
    if (glob === '{*}' || glob === '{**}') continue
    if (/[{}]/.test(glob))
      throw badValue(ctx.ref, field, `${JSON.stringify(value)}: segment ${JSON.stringify(glob)}: "{" and "}" are only allowed as a whole {*} or {**} segment`)
    if (template && !ISTIO_TEMPLATE_LITERAL.test(glob)) {
      throw badValue(ctx.ref, field, `${JSON.stringify(value)}: segment ${JSON.stringify(glob)} of a path template must be {*}, {**} or a plain literal`)
    }
  }
  if (!template) return stringMatch(value)
  const envoy = pathTemplatePattern(value)
  if (typeof envoy !== 'string') throw badValue(ctx.ref, field, `${JSON.stringify(value)}: ${envoy.error}`)
  return { kind: 'template', template: value }
}

/**
 * The regular expression Envoy's URI template matcher uses for an Istio path template
 * (`{*}` -> `*`, `{**}` -> `**`, then uri_template_internal.cc: `*` is one segment of
 * pchar without `=`, `**` any number of segments), anchored; or why Envoy refuses it.
 */
export function pathTemplatePattern(template: string): string | { readonly error: string } {
  const envoy = template.replaceAll('{**}', '**').replaceAll('{*}', '*')
  if (!envoy.startsWith('/')) return { error: 'a path template must start with "/"' }
  const segments = envoy.slice(1).split('/')
  const trailingSlash = segments.length > 1 && segments[segments.length - 1] === ''
  if (trailingSlash) segments.pop()
  const parts: string[] = []
  for (const s of segments) {
    if (s === '*') parts.push(ENVOY_PATH_GLOB)
    else if (s === '**') parts.push(ENVOY_TEXT_GLOB)
    else if (ENVOY_TEMPLATE_LITERAL.test(s)) parts.push(escapeRegExp(s))
    else return { error: `Envoy's URI template parser refuses the segment ${JSON.stringify(s)} (empty, or with "=" or "*")` }
  }
  return `^/${parts.join('/')}${trailingSlash ? '/' : ''}$`
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}

export interface ConvertedWaypointPolicies {
  readonly policies: WaypointAuthorization[]
  /** Caveats of accepted policies. */
  readonly warnings: PolicyProblem[]
  /** Malformed policies, left out (as Istio's webhook would refuse them). */
  readonly invalid: PolicyProblem[]
  /** Policies no waypoint enforces: no targetRefs (ztunnel's), or no target a waypoint can have. */
  readonly ignored: PolicyProblem[]
  /** Policies enforced differently than written: CUSTOM (requests their rules match are denied). */
  readonly unsupported: PolicyProblem[]
}

const problem = (w: WaypointWarning): PolicyProblem => ({
  kind: w.policy.kind,
  policy: `${w.policy.namespace}/${w.policy.name}`,
  field: w.field,
  code: w.code,
  message: w.message,
})

/** Every AuthorizationPolicy among `objects` (any kinds) for the waypoints, with what was left out and why. */
export function convertWaypointPolicies(objects: readonly unknown[], rootNamespace: string): ConvertedWaypointPolicies {
  const out: ConvertedWaypointPolicies = { policies: [], warnings: [], invalid: [], ignored: [], unsupported: [] }
  for (const object of objects) {
    if (kindOf(object) !== 'AuthorizationPolicy') continue
    const r = convertWaypointAuthorizationPolicy(object, { rootNamespace })
    if (r.kind === 'invalid') {
      out.invalid.push({ kind: r.ref.kind, policy: `${r.ref.namespace}/${r.ref.name}`, field: r.error.field, code: r.error.code, message: r.error.message })
    } else if (r.kind === 'ignored') out.ignored.push(...r.warnings.map(problem))
    else {
      out.policies.push(r.policy)
      for (const w of r.warnings) (w.code === 'AMBIENT_WARN_WAYPOINT_CUSTOM_UNSUPPORTED' ? out.unsupported : out.warnings).push(problem(w))
    }
  }
  return out
}
