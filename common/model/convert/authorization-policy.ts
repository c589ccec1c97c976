// security.istio.io/v1 AuthorizationPolicy -> istio.security.Authorization, as Istio's
// control plane converts it for ztunnel (istio/istio
// pilot/pkg/serviceregistry/ambient/authorization.go, convertAuthorizationPolicy and
// handleRule), after the checks of Istio's validating webhook
// (pkg/config/validation ValidateAuthorizationPolicy). Pure.
//
// Istio behaviours implemented here, on purpose:
// - scope: no spec.selector -> NAMESPACE, or GLOBAL in the root namespace; a selector
//   (even an empty one) -> WORKLOAD_SELECTOR, which selects by matchLabels only, so an
//   empty matchLabels selects no workload at all (warned).
// - action: ALLOW (default) / DENY. CUSTOM and AUDIT are not enforced by ztunnel:
//   the policy is left out and warned about (Istio: "ztunnel does not support the X action").
// - spec.targetRef(s): the policy belongs to a waypoint; left out (warned).
// - one rule -> one Group: to -> one Rules of port matches, from -> one Rules of
//   source matches, each when -> one Rules with one Match.
// - L7 attributes (to.operation hosts/methods/paths and not*, from.source
//   requestPrincipals/remoteIpBlocks and not*, any when key other than source.ip,
//   source.namespace, source.principal, destination.ip, destination.port):
//   * ALLOW: the whole rule is dropped (it never matches at L4). A policy left with
//     no groups matches nothing, so its workloads are denied unless another ALLOW matches.
//   * DENY: only the L7 fields are dropped; a Match left empty stays and never matches
//     (ztunnel skips empty matches), so a from/to/when made only of L7 fields makes
//     its rule a no-op, while a rule with L4 fields beside them is enforced more
//     broadly than written. Both are warned (Istio's status messages say the same).
// - source.trustDomains/notTrustDomains and when keys source.serviceAccount /
//   source.trustDomain: Istio's ambient conversion does not carry trust domains, and
//   treats those when keys as non-L4 (L7 handling above). trustDomains are dropped
//   exactly as Istio drops them, with a warning.
// - principals are carried as written and matched against `td/ns/NS/sa/SA`; a value
//   starting with `spiffe://` therefore never matches (warned, as a hint).
// - serviceAccounts `sa` is `<policy namespace>/sa`; `ns/sa` as written.
// - annotation istio.io/dry-run (Go ParseBool) -> dryRun.
import {
  type Address,
  type Authorization,
  type Group,
  type Match,
  type PolicyRef,
  type PolicyWarning,
  type PolicyWarningCode,
  type Rules,
  type Scope,
  type ServiceAccountMatch,
  type StringMatch,
  type WorkloadAuthorization,
  PolicyError,
  isEmptyMatch,
  match,
} from '../authorization.js'
import {
  type Fields,
  badField,
  badValue,
  checkKeys,
  labelMap,
  optionalList,
  optionalRecord,
  optionalString,
  parseCidr,
  parseGoBool,
  parsePolicyPort,
  readMeta,
  stringList,
} from './object-fields.js'

export const DEFAULT_ROOT_NAMESPACE = 'istio-system'
export const DRY_RUN_ANNOTATION = 'istio.io/dry-run'

export interface ConvertOptions {
  /** Istio's root namespace (meshConfig.rootNamespace); policies there without selector are GLOBAL. */
  readonly rootNamespace: string
  /** Overrides metadata.namespace. */
  readonly namespace?: string
}

export type AuthorizationConversion =
  | { readonly kind: 'converted'; readonly policy: WorkloadAuthorization; readonly warnings: readonly PolicyWarning[] }
  | { readonly kind: 'ignored'; readonly ref: PolicyRef; readonly reason: 'target-refs' | 'unsupported-action'; readonly warnings: readonly PolicyWarning[] }
  | { readonly kind: 'invalid'; readonly ref: PolicyRef; readonly error: PolicyError }

const SPEC_KEYS = ['selector', 'targetRef', 'targetRefs', 'action', 'provider', 'rules']
const RULE_KEYS = ['from', 'to', 'when']
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
const SOURCE_L7 = ['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks']
const SOURCE_IGNORED = ['trustDomains', 'notTrustDomains']
const OPERATION_KEYS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths']
const OPERATION_L7 = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths']
/** Istio's l4WhenAttributes. */
export const L4_WHEN_KEYS: readonly string[] = ['source.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port']
/** Valid `when` keys (Istio's ValidateAttribute) that ztunnel cannot evaluate. */
const L7_WHEN_EXACT = [
  'remote.ip',
  'source.serviceAccount',
  'source.trustDomain',
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
  'connection.sni',
]
const L7_WHEN_MAP_PREFIXES = ['request.headers', 'request.auth.claims', 'experimental.envoy.filters.']

/** Collects warnings for one object. */
class Warnings {
  readonly list: PolicyWarning[] = []
  constructor(private readonly ref: PolicyRef) {}
  add(code: PolicyWarningCode, field: string, message: string): void {
    this.list.push({ code, policy: this.ref, field, message })
  }
}

export function convertAuthorizationPolicy(object: unknown, options: ConvertOptions): AuthorizationConversion {
  try {
    const read = readMeta('AuthorizationPolicy', object, options.namespace)
    return convertSpec(read.ref, read.meta.annotations, read.root, options.rootNamespace)
  } catch (err) {
    if (err instanceof PolicyError) return { kind: 'invalid', ref: err.policy, error: err }
    throw err
  }
}

function convertSpec(ref: PolicyRef, annotations: Readonly<Record<string, string>>, root: Fields, rootNamespace: string): AuthorizationConversion {
  const warnings = new Warnings(ref)
  const spec = optionalRecord(ref, root['spec'], 'spec') ?? {}
  checkKeys(ref, spec, SPEC_KEYS, 'spec')
  const selectorObj = optionalRecord(ref, spec['selector'], 'spec.selector')
  if (selectorObj !== undefined) checkKeys(ref, selectorObj, ['matchLabels'], 'spec.selector')
  const selector = selectorObj === undefined ? null : labelMap(ref, selectorObj['matchLabels'], 'spec.selector.matchLabels')
  const targetRefs = [
    ...(optionalRecord(ref, spec['targetRef'], 'spec.targetRef') === undefined ? [] : ['targetRef']),
    ...(optionalList(ref, spec['targetRefs'], 'spec.targetRefs').length > 0 ? ['targetRefs'] : []),
  ]
  if (selector !== null && targetRefs.length > 0) throw badField(ref, 'spec.selector', 'only one of targetRefs or selector can be set')
  const action = optionalString(ref, spec['action'], 'spec.action') ?? 'ALLOW'
  if (!['ALLOW', 'DENY', 'CUSTOM', 'AUDIT'].includes(action)) {
    throw badValue(ref, 'spec.action', `${JSON.stringify(action)} is not an action; use ALLOW, DENY, CUSTOM or AUDIT`)
  }
  if (spec['provider'] !== undefined && action !== 'CUSTOM') throw badField(ref, 'spec.provider', `must not be set with action ${action}`)
  const ruleList = optionalList(ref, spec['rules'], 'spec.rules')
  if (action === 'DENY' && ruleList.length === 0) {
    throw badField(ref, 'spec.rules', 'a DENY policy without rules never applies; add an empty rule {} to deny everything')
  }
  const dryRun = readDryRun(annotations, warnings)
  if (targetRefs.length > 0) {
    warnings.add('AMBIENT_WARN_POLICY_TARGET_REFS', `spec.${targetRefs[0]}`, 'policy attached with targetRefs is enforced by a waypoint, not by ztunnel')
    return { kind: 'ignored', ref, reason: 'target-refs', warnings: warnings.list }
  }
  if (action === 'CUSTOM' || action === 'AUDIT') {
    warnings.add(
      'AMBIENT_WARN_POLICY_UNSUPPORTED_ACTION',
      'spec.action',
      `ztunnel does not support the ${action} action at L4; the policy is not enforced (use a waypoint)`,
    )
    return { kind: 'ignored', ref, reason: 'unsupported-action', warnings: warnings.list }
  }
  const l4Action = action as 'ALLOW' | 'DENY'
  const scope: Scope = selector !== null ? 'WORKLOAD_SELECTOR' : ref.namespace === rootNamespace ? 'GLOBAL' : 'NAMESPACE'
  if (selector !== null && Object.keys(selector).length === 0) {
    warnings.add(
      'AMBIENT_WARN_POLICY_EMPTY_SELECTOR',
      'spec.selector.matchLabels',
      'empty workload selector selects no workload in ambient; remove spec.selector to apply to the whole namespace',
    )
  }
  const groups: Group[] = []
  ruleList.forEach((rule, i) => {
    const group = convertRule(ref, l4Action, rule, `spec.rules[${i}]`, warnings)
    if (group !== null) groups.push(group)
  })
  const authorization: Authorization = { name: ref.name, namespace: ref.namespace, scope, action: l4Action, groups, dryRun }
  if (l4Action === 'DENY' && warnings.list.some((w) => w.code === 'AMBIENT_WARN_POLICY_L7_ATTRIBUTE') && !hasEffectiveGroup(groups)) {
    warnings.add(
      'AMBIENT_WARN_POLICY_L7_ATTRIBUTE',
      'spec.rules',
      'after dropping HTTP attributes this DENY policy has no rule ztunnel can enforce and has no effect; use a waypoint with targetRefs',
    )
  }
  return {
    kind: 'converted',
    policy: { authorization, selector, source: { kind: 'AuthorizationPolicy', namespace: ref.namespace, name: ref.name } },
    warnings: warnings.list,
  }
}

function readDryRun(annotations: Readonly<Record<string, string>>, warnings: Warnings): boolean {
  const value = annotations[DRY_RUN_ANNOTATION]
  if (value === undefined || value === '') return false
  const parsed = parseGoBool(value)
  if (parsed === undefined) {
    warnings.add(
      'AMBIENT_WARN_POLICY_DRY_RUN_VALUE',
      `metadata.annotations["${DRY_RUN_ANNOTATION}"]`,
      `${JSON.stringify(value)} is not a boolean; the policy is enforced (write "true" for dry-run)`,
    )
    return false
  }
  return parsed
}

/** Istio's hasEffectiveRules: a group fires when every Rules has a non-empty Match. */
function hasEffectiveGroup(groups: readonly Group[]): boolean {
  return groups.some((g) => g.rules.every((r) => r.matches.some((m) => !isEmptyMatch(m))))
}

/** One AuthorizationPolicy rule -> one Group, or null for an ALLOW rule that needs L7. */
function convertRule(ref: PolicyRef, action: 'ALLOW' | 'DENY', value: unknown, field: string, warnings: Warnings): Group | null {
  const rule = optionalRecord(ref, value, field)
  if (rule === undefined) throw badField(ref, field, 'rule must not be null; use {} to match everything')
  checkKeys(ref, rule, RULE_KEYS, field)
  const l7Fields: string[] = []
  const rules: Rules[] = []
  const to = nonEmptyList(ref, rule['to'], `${field}.to`)
  const from = nonEmptyList(ref, rule['from'], `${field}.from`)
  if (to.length > 0) rules.push({ matches: to.map((t, j) => convertTo(ref, t, `${field}.to[${j}]`, l7Fields)) })
  if (from.length > 0) rules.push({ matches: from.map((f, j) => convertFrom(ref, f, `${field}.from[${j}]`, l7Fields, warnings)) })
  optionalList(ref, rule['when'], `${field}.when`).forEach((w, j) => {
    rules.push({ matches: [convertWhen(ref, w, `${field}.when[${j}]`, l7Fields)] })
  })
  for (const l7 of l7Fields) {
    warnings.add(
      'AMBIENT_WARN_POLICY_L7_ATTRIBUTE',
      l7,
      action === 'ALLOW'
        ? 'ztunnel does not support HTTP attributes: this ALLOW rule never matches at L4 (more restrictive than written); use a waypoint'
        : 'ztunnel does not support HTTP attributes: the DENY rule is enforced without this field; use a waypoint',
    )
  }
  return action === 'ALLOW' && l7Fields.length > 0 ? null : { rules }
}

function nonEmptyList(ref: PolicyRef, value: unknown, field: string): readonly unknown[] {
  const list = optionalList(ref, value, field)
  if (value !== undefined && value !== null && list.length === 0) throw badField(ref, field, 'must not be empty; remove it to match any')
  return list
}

function noteL7(ref: PolicyRef, obj: Fields, keys: readonly string[], field: string, l7Fields: string[]): void {
  for (const key of keys) {
    if (stringList(ref, obj[key], `${field}.${key}`).length > 0) l7Fields.push(`${field}.${key}`)
  }
}

function convertTo(ref: PolicyRef, value: unknown, field: string, l7Fields: string[]): Match {
  const to = optionalRecord(ref, value, field)
  const op = to === undefined ? undefined : optionalRecord(ref, to['operation'], `${field}.operation`)
  if (to === undefined || op === undefined) throw badField(ref, `${field}.operation`, 'must be set')
  checkKeys(ref, to, ['operation'], field)
  const path = `${field}.operation`
  checkKeys(ref, op, OPERATION_KEYS, path)
  if (OPERATION_KEYS.every((k) => stringList(ref, op[k], `${path}.${k}`).length === 0)) throw badField(ref, path, 'must not be empty')
  noteL7(ref, op, OPERATION_L7, path, l7Fields)
  return match({ destinationPorts: ports(ref, op['ports'], `${path}.ports`), notDestinationPorts: ports(ref, op['notPorts'], `${path}.notPorts`) })
}

function convertFrom(ref: PolicyRef, value: unknown, field: string, l7Fields: string[], warnings: Warnings): Match {
  const from = optionalRecord(ref, value, field)
  const src = from === undefined ? undefined : optionalRecord(ref, from['source'], `${field}.source`)
  if (from === undefined || src === undefined) throw badField(ref, `${field}.source`, 'must be set')
  checkKeys(ref, from, ['source'], field)
  const path = `${field}.source`
  checkKeys(ref, src, SOURCE_KEYS, path)
  const list = (k: string): readonly string[] => stringList(ref, src[k], `${path}.${k}`)
  if (SOURCE_KEYS.every((k) => list(k).length === 0)) throw badField(ref, path, 'must not be empty')
  const identityFields = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces'].filter((k) => list(k).length > 0)
  const saFields = ['serviceAccounts', 'notServiceAccounts'].filter((k) => list(k).length > 0)
  if (identityFields.length > 0 && saFields.length > 0) {
    throw badField(ref, `${path}.${saFields[0]}`, `cannot be set with ${identityFields[0]}; split them into two from entries`)
  }
  noteL7(ref, src, SOURCE_L7, path, l7Fields)
  for (const k of SOURCE_IGNORED) {
    if (list(k).length > 0)
      warnings.add(
        'AMBIENT_WARN_POLICY_IGNORED_FIELD',
        `${path}.${k}`,
        'ztunnel does not evaluate trust domains; this field is ignored at L4, as in Istio ambient',
      )
  }
  for (const k of ['principals', 'notPrincipals']) {
    list(k).forEach((p, i) => {
      if (p.startsWith('spiffe://'))
        warnings.add('AMBIENT_WARN_POLICY_SPIFFE_PREFIX', `${path}.${k}[${i}]`, `principal ${JSON.stringify(p)} never matches: write it without "spiffe://"`)
    })
  }
  return match({
    sourceIps: addresses(ref, src['ipBlocks'], `${path}.ipBlocks`),
    notSourceIps: addresses(ref, src['notIpBlocks'], `${path}.notIpBlocks`),
    namespaces: list('namespaces').map(stringMatch),
    notNamespaces: list('notNamespaces').map(stringMatch),
    serviceAccounts: serviceAccounts(ref, list('serviceAccounts'), `${path}.serviceAccounts`),
    notServiceAccounts: serviceAccounts(ref, list('notServiceAccounts'), `${path}.notServiceAccounts`),
    principals: list('principals').map(stringMatch),
    notPrincipals: list('notPrincipals').map(stringMatch),
  })
}

function convertWhen(ref: PolicyRef, value: unknown, field: string, l7Fields: string[]): Match {
  const when = optionalRecord(ref, value, field)
  if (when === undefined) throw badField(ref, field, 'condition must not be null')
  checkKeys(ref, when, ['key', 'values', 'notValues'], field)
  const key = optionalString(ref, when['key'], `${field}.key`) ?? ''
  if (key === '') throw badField(ref, `${field}.key`, 'must not be empty')
  const values = stringList(ref, when['values'], `${field}.values`)
  const notValues = stringList(ref, when['notValues'], `${field}.notValues`)
  if (values.length === 0 && notValues.length === 0) throw badField(ref, field, `at least one of values or notValues must be set for key ${key}`)
  if (!L4_WHEN_KEYS.includes(key)) {
    checkL7WhenKey(ref, key, `${field}.key`)
    l7Fields.push(`${field}[key=${key}]`)
    return match({})
  }
  const v = (negate: boolean): readonly string[] => (negate ? notValues : values)
  const p = (negate: boolean): string => `${field}.${negate ? 'notValues' : 'values'}`
  const at = (text: readonly string[], negate: boolean): readonly Address[] => addresses(ref, text, p(negate))
  switch (key) {
    case 'source.namespace':
      return match({ namespaces: v(false).map(stringMatch), notNamespaces: v(true).map(stringMatch) })
    case 'source.principal':
      return match({ principals: v(false).map(stringMatch), notPrincipals: v(true).map(stringMatch) })
    case 'source.ip':
      return match({ sourceIps: at(v(false), false), notSourceIps: at(v(true), true) })
    case 'destination.ip':
      return match({ destinationIps: at(v(false), false), notDestinationIps: at(v(true), true) })
    default:
      return match({ destinationPorts: ports(ref, v(false), p(false)), notDestinationPorts: ports(ref, v(true), p(true)) })
  }
}

/** Istio's ValidateAttribute for keys ztunnel does not evaluate. */
function checkL7WhenKey(ref: PolicyRef, key: string, field: string): void {
  if (L7_WHEN_EXACT.includes(key)) return
  const prefix = L7_WHEN_MAP_PREFIXES.find((p) => key.startsWith(p))
  if (prefix !== undefined) {
    const open = key.indexOf('[')
    if (prefix.endsWith('.') || (key.endsWith(']') && open > 0 && open < key.length - 2)) return
    throw badValue(ref, field, `bad key ${JSON.stringify(key)}: should have the form ${prefix}[name]`)
  }
  if (key === 'destination.namespace') throw badValue(ref, field, 'destination.namespace is replaced by metadata.namespace')
  if (key.startsWith('destination.labels')) throw badValue(ref, field, `${key} is replaced by spec.selector`)
  throw badValue(ref, field, `unknown attribute ${JSON.stringify(key)}`)
}

/** Istio's stringToMatch: `*` presence, `*x` suffix, `x*` prefix, else exact. */
export function stringMatch(value: string): StringMatch {
  if (value === '*') return { kind: 'presence' }
  if (value.startsWith('*')) return { kind: 'suffix', value: value.slice(1) }
  if (value.endsWith('*')) return { kind: 'prefix', value: value.slice(0, -1) }
  return { kind: 'exact', value }
}

function ports(ref: PolicyRef, value: unknown, field: string): readonly number[] {
  return stringList(ref, value, field).map((p, i) => parsePolicyPort(ref, p, `${field}[${i}]`))
}

function addresses(ref: PolicyRef, value: unknown, field: string): readonly Address[] {
  return stringList(ref, value, field).map((a, i) => parseCidr(ref, a, `${field}[${i}]`))
}

/** Istio's stringToServiceAccountMatch after CheckServiceAccount. */
function serviceAccounts(ref: PolicyRef, values: readonly string[], field: string): readonly ServiceAccountMatch[] {
  if (values.length > 16) throw badValue(ref, field, 'may not have more than 16 values; split the rule')
  return values.map((v, i) => {
    const parts = v.split('/')
    if (v.includes('*') || parts.length > 2 || parts.some((s) => s === '') || v.length > 320) {
      throw badValue(ref, `${field}[${i}]`, `${JSON.stringify(v)} is not "serviceAccount" or "namespace/serviceAccount" (no wildcards)`)
    }
    return parts.length === 2 ? { namespace: parts[0]!, serviceAccount: parts[1]! } : { namespace: ref.namespace, serviceAccount: v }
  })
}
