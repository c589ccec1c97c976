// L7 authorization in the waypoint: which AuthorizationPolicies apply to a request
// (by the waypoint's Gateway and the Service the request was addressed to), and the
// decision for one HTTP request. Pure and deterministic: the waypoint's proxy and
// `ambient waypoint check` call the same functions.
//
// Semantics are those of the Envoy RBAC filters Istio generates for a waypoint
// (pilot/pkg/security/authz/builder, pilot/pkg/networking/core/listener_waypoint.go):
// - filters run CUSTOM, AUDIT, DENY, ALLOW. The waypoint has no external authorizer,
//   so a CUSTOM policy denies the requests its rules match (Istio's answer to a
//   provider it cannot use); a denial ends the evaluation as a filter chain does.
// - AUDIT policies never change the decision; the ones that match are reported.
// - any enforced DENY rule that matches denies; with no enforced ALLOW policy the
//   request is allowed; otherwise an enforced ALLOW rule must match.
// - dry-run (istio.io/dry-run) policies are evaluated and reported, never enforced;
//   `dryRunDecision` is the decision had they been enforced too.
// - the deciding policy and rule reported are the first matching in Envoy's order,
//   the policy id `ns[NS]-policy[NAME]-rule[N]` sorted as text (Envoy keeps RBAC
//   policies in a std::map), so what is printed is what Istio's access log shows.
// - the path is normalized first (path-normalize.ts); a path Envoy refuses is refused
//   (400, or 404 for one that is missing or not relative) before any policy.
// Cost: policiesFor() is computed once per (gateway, service) and cached; a rule that
// can only match callers of given namespaces (exact `namespaces`, `serviceAccounts`,
// principals naming `/ns/X/`) is indexed by them, so a request visits its own
// namespace's rules and the unindexed ones, in the same order (a test checks this
// against a plain scan).
// Per field (Istio's generators, Envoy's matchers): principals are Istio string forms
// over the SPIFFE id with `spiffe://` put in front; namespaces, serviceAccounts and
// trustDomains are Istio's regular expressions over the SPIFFE id; no peer identity
// matches none of them. hosts are case-insensitive over `:authority` as sent (port
// included: Istio does not strip it). methods, paths (normalized, without query) and
// header values are case-sensitive; `*` means present. Header values are joined with
// `,`; `host` is never a header (Envoy calls it `:authority`). remote.ip is Envoy's
// trusted client address with use_remote_address false (Istio's waypoint setting):
// the X-Forwarded-For address `xffNumTrustedHops` from the right (0: the last), else
// the source address.
import type { Address, PolicyRef, ServiceAccountMatch, StringMatch } from '../model/authorization.js'
import { namespaceRegExp, pathTemplatePattern } from '../model/convert/waypoint-authorization.js'
import {
  type HeaderMatch,
  type L7Group,
  type L7Match,
  type PathMatch,
  type WaypointAction,
  type WaypointAuthorization,
  type WaypointTarget,
  waypointPolicyKey,
} from '../model/waypoint-authorization.js'
import { type MatchField, type Predicate, field, stringMatcher } from './fields.js'
import { type ParsedIp, cidrContains, parseIp } from './ip.js'
import { type CompiledGroups, compileGroups, groupsMatch } from './matcher.js'
import { normalizePath } from './path-normalize.js'

/** One HTTP request as the waypoint received it. */
export interface L7Request {
  /** The peer's SPIFFE id from the tunnel (`spiffe://td/ns/NS/sa/SA`); null without one. */
  readonly peerIdentity: string | null
  /** The client address the tunnel carries (`forwarded: for=`), else the peer address. */
  readonly sourceIp: string
  /** Where the request was addressed (service VIP or pod IP) and its port. */
  readonly destinationIp: string
  readonly destinationPort: number
  readonly method: string
  /** `:path` / the request target as received, query included, not normalized. */
  readonly path: string
  /** `:authority` / Host as received. */
  readonly host: string
  /** Header names in lower case; a header sent several times as an array of its values, in order. */
  readonly headers: Readonly<Record<string, string | readonly string[]>>
}

export interface AuthorizeOptions {
  /** meshConfig pathNormalization MERGE_SLASHES instead of BASE (the default). */
  readonly mergeSlashes?: boolean
  /** X-Forwarded-For hops trusted for remote.ip (Envoy's xff_num_trusted_hops); Istio's waypoint uses 0. */
  readonly xffNumTrustedHops?: number
}

export interface PolicyName {
  readonly namespace: string
  readonly name: string
}

export type L7DecisionCode = 'bad-path' | 'custom-unsupported' | 'deny-policy' | 'allow-policy' | 'no-allow-policies' | 'no-allow-match'

export interface L7PolicyMatch {
  readonly policy: PolicyName
  readonly action: WaypointAction
  /** Index in spec.rules of the first rule that matched (in Envoy's order). */
  readonly rule: number
}

export interface L7Outcome {
  readonly allowed: boolean
  readonly code: L7DecisionCode
  /** The DENY (or CUSTOM) that denied, or the ALLOW that allowed; null when none decided. */
  readonly policy: PolicyName | null
  readonly action: 'ALLOW' | 'DENY' | 'CUSTOM' | null
  readonly rule: number | null
  readonly reason: string
}

export interface L7Decision extends L7Outcome {
  /**
   * What the proxy answers instead of forwarding: 403 (body `RBAC: access denied`) for
   * a policy denial, 400 or 404 for a path Envoy refuses; null when allowed.
   */
  readonly denyStatus: 400 | 403 | 404 | null
  /** The normalized path with its query: forward this one. Null when the path is refused. */
  readonly path: string | null
  /**
   * Dry-run policies that matched (one entry per policy, its first matching rule): the
   * DENY ones, then the ALLOW ones unless an enforced DENY denied (Envoy's ALLOW filter,
   * which holds them, does not run then).
   */
  readonly dryRun: readonly L7PolicyMatch[]
  /** The decision had the dry-run policies been enforced too; null when none was evaluated. */
  readonly dryRunDecision: L7Outcome | null
  /** AUDIT policies that matched: log them; they never change the decision. */
  readonly audit: readonly L7PolicyMatch[]
}

/** What the predicates read: one request, prepared once. */
export interface L7Facts {
  /** The full SPIFFE id (`spiffe://...`), null without a peer identity. */
  readonly identity: string | null
  /** identityNamespaces(identity): usually the one namespace of the peer. */
  readonly namespaces: readonly string[]
  readonly sourceIp: ParsedIp | undefined
  readonly remoteIp: ParsedIp | undefined
  readonly destinationIp: ParsedIp | undefined
  readonly destinationPort: number
  /** `:authority` in ASCII lower case. */
  readonly host: string
  readonly method: string
  /** The normalized path without query. */
  readonly path: string
  /** A header's values joined with `,`; undefined when absent. */
  header(name: string): string | undefined
}

const SPIFFE = 'spiffe://'
const asciiLower = (s: string): string => s.replace(/[A-Z]+/g, (m) => m.toLowerCase())
const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')

/** Envoy's trusted client address with use_remote_address false (Utility::getLastAddressFromXFF). */
export function remoteAddress(request: L7Request, trustedHops = 0): string {
  const raw = request.headers['x-forwarded-for']
  if (raw === undefined) return request.sourceIp
  const parts = (typeof raw === 'string' ? raw : raw.join(',')).split(',')
  const candidate = parts[parts.length - 1 - trustedHops]
  const ip = candidate === undefined ? '' : candidate.trim()
  return parseIp(ip) === undefined ? request.sourceIp : ip
}

/** The facts of a request whose path normalized to `path` (without query). */
export function prepareL7(request: L7Request, path: string, pathWithQuery: string, options: AuthorizeOptions = {}): L7Facts {
  const joined = new Map<string, string | undefined>()
  const header = (name: string): string | undefined => {
    if (joined.has(name)) return joined.get(name)
    let value: string | undefined
    if (name === ':authority') value = request.host
    else if (name === ':method') value = request.method
    else if (name === ':path') value = pathWithQuery
    else if (name !== 'host') {
      const raw = request.headers[name]
      value = raw === undefined || typeof raw === 'string' ? raw : raw.length === 0 ? undefined : raw.join(',')
    }
    joined.set(name, value)
    return value
  }
  // The addresses are parsed when a predicate first reads them: most policies never do.
  const lazy = <T>(compute: () => T): (() => T) => {
    let done = false
    let value: T
    return () => {
      if (!done) ((value = compute()), (done = true))
      return value
    }
  }
  const sourceIp = lazy(() => parseIp(request.sourceIp))
  const remoteIp = lazy(() => parseIp(remoteAddress(request, options.xffNumTrustedHops ?? 0)))
  const destinationIp = lazy(() => parseIp(request.destinationIp))
  return {
    identity: request.peerIdentity,
    namespaces: identityNamespaces(request.peerIdentity),
    get sourceIp() {
      return sourceIp()
    },
    get remoteIp() {
      return remoteIp()
    },
    get destinationIp() {
      return destinationIp()
    },
    destinationPort: request.destinationPort,
    host: asciiLower(request.host),
    method: request.method,
    path,
    header,
  }
}

/** Istio's StringMatcherWithPrefix(value, "spiffe://") over the SPIFFE id. */
function principal(m: StringMatch): Predicate<L7Facts> {
  if (m.kind === 'presence') return (f) => f.identity !== null && f.identity !== ''
  if (m.kind === 'suffix')
    return (f) => f.identity !== null && f.identity.length >= SPIFFE.length + m.value.length && f.identity.startsWith(SPIFFE) && f.identity.endsWith(m.value)
  const s = stringMatcher({ kind: m.kind, value: SPIFFE + m.value })
  return (f) => f.identity !== null && s(f.identity)
}
const identityRegExp =
  (re: RegExp): Predicate<L7Facts> =>
  (f) =>
    f.identity !== null && re.test(f.identity)
const namespace = (pattern: string): Predicate<L7Facts> => identityRegExp(namespaceRegExp(pattern))
/** srcServiceAccountGenerator's serviceAccountRegex. */
const serviceAccount = (sa: ServiceAccountMatch): Predicate<L7Facts> =>
  identityRegExp(new RegExp(`^spiffe://.+/ns/${escapeRegExp(sa.namespace)}/(.+/|)sa/${escapeRegExp(sa.serviceAccount)}(/.+)?$`))
/** srcTrustDomainGenerator. */
function trustDomain(value: string): Predicate<L7Facts> {
  if (value === '*') return (f) => f.identity !== null && f.identity.startsWith(SPIFFE)
  if (!value.includes('*')) return (f) => f.identity !== null && f.identity.startsWith(`${SPIFFE}${value}/`)
  const [before, after] = [value.slice(0, value.indexOf('*')), value.slice(value.indexOf('*') + 1)]
  return identityRegExp(new RegExp(`^spiffe://${escapeRegExp(before)}[^/]*${escapeRegExp(after)}/.*$`))
}
const ipIn = (read: (f: L7Facts) => ParsedIp | undefined) => (a: Address) => {
  const inside = cidrContains(a.address, a.length)
  return (f: L7Facts) => inside(read(f))
}
/** Envoy's HeaderMatcher: `*` is present_match, the rest a string match on the value. */
function valueMatch(m: StringMatch, lower: boolean): (value: string | undefined) => boolean {
  if (m.kind === 'presence') return (v) => v !== undefined
  const s = stringMatcher(lower ? { kind: m.kind, value: asciiLower(m.value) } : m)
  return (v) => v !== undefined && s(v)
}
function path(m: PathMatch): Predicate<L7Facts> {
  if (m.kind === 'template') {
    const pattern = pathTemplatePattern(m.template)
    if (typeof pattern !== 'string') return () => false // the converter refuses these
    const re = new RegExp(pattern)
    return (f) => re.test(f.path)
  }
  const s = stringMatcher(m)
  return (f) => s(f.path)
}
function header(h: HeaderMatch): Predicate<L7Facts> {
  const v = valueMatch(h.match, false)
  return (f) => v(f.header(h.name))
}
const never = (): Predicate<L7Facts> => () => false

/** The `not` key with the same value type as K. */
type NotKey<K extends keyof L7Match> = { [N in keyof L7Match]: L7Match[N] extends L7Match[K] ? N : never }[keyof L7Match]
const l7 = <K extends keyof L7Match>(pos: K, neg: NotKey<K>, test: (value: L7Match[K][number]) => Predicate<L7Facts>): MatchField<L7Match, L7Facts> =>
  field<L7Match, L7Facts, L7Match[K][number]>(
    pos,
    (m) => m[pos],
    (m) => m[neg] as L7Match[K],
    test,
  )
const onMethod = (m: StringMatch): Predicate<L7Facts> => {
  const v = valueMatch(m, false)
  return (f) => v(f.method)
}
const onHost = (m: StringMatch): Predicate<L7Facts> => {
  const v = valueMatch(m, true)
  return (f) => v(f.host)
}

/** The fields of an L7Match, cheapest first. */
export const L7_FIELDS: readonly MatchField<L7Match, L7Facts>[] = [
  l7('destinationPorts', 'notDestinationPorts', (p) => (f) => f.destinationPort === p),
  l7('methods', 'notMethods', onMethod),
  l7('hosts', 'notHosts', onHost),
  l7('paths', 'notPaths', path),
  l7(
    'destinationIps',
    'notDestinationIps',
    ipIn((f) => f.destinationIp),
  ),
  l7(
    'sourceIps',
    'notSourceIps',
    ipIn((f) => f.sourceIp),
  ),
  l7(
    'remoteIps',
    'notRemoteIps',
    ipIn((f) => f.remoteIp),
  ),
  l7('principals', 'notPrincipals', principal),
  l7('namespaces', 'notNamespaces', namespace),
  l7('serviceAccounts', 'notServiceAccounts', serviceAccount),
  l7('trustDomains', 'notTrustDomains', trustDomain),
  l7('headers', 'notHeaders', header),
  l7('unavailable', 'notUnavailable', never),
]

/** One spec.rules entry of one policy, compiled, with Envoy's policy id. */
export interface CompiledRule {
  readonly id: string
  readonly policy: WaypointAuthorization
  readonly rule: number
  readonly groups: CompiledGroups<L7Facts>
  /** Source namespaces the rule can match (see namespaceBound); null: any. */
  readonly bound: ReadonlySet<string> | null
}

/**
 * The rules of one filter stage in Envoy's order, with the positions of those bound to
 * a source namespace indexed by it, so a request visits only the rules its identity
 * can match (plus the unbounded ones), still in Envoy's order.
 */
export interface StageRules {
  readonly rules: readonly CompiledRule[]
  readonly unbounded: readonly number[]
  readonly byNamespace: ReadonlyMap<string, readonly number[]>
  /** The stage's policies for messages: the first five `ns/name` and the count. */
  readonly summary: string
}

export type Stage = 'custom' | 'audit' | 'deny' | 'allow' | 'denyDryRun' | 'allowDryRun'

/** The policies that apply to one (gateway, service), compiled and split as the filters evaluate them. */
export interface WaypointPolicies {
  /** The applying policies, by namespace and name. */
  readonly policies: readonly WaypointAuthorization[]
  readonly stages: Readonly<Record<Stage, StageRules>>
  /** summary of the ALLOW and dry-run ALLOW policies together (the dry-run decision's message). */
  readonly allowWithDryRunSummary: string
}

/** Every X such that `/ns/X/` occurs in a SPIFFE id: the namespaces Istio's identity regexes can find in it. */
export function identityNamespaces(identity: string | null): string[] {
  const out: string[] = []
  if (identity === null) return out
  for (let i = identity.indexOf('/ns/'); i >= 0; i = identity.indexOf('/ns/', i + 1)) {
    const end = identity.indexOf('/', i + 4)
    if (end > i + 4) out.push(identity.slice(i + 4, end))
  }
  return out
}

/**
 * The namespaces one of whose `/ns/X/` a SPIFFE id must contain for this match to
 * hold, or null. An exact namespace X (Istio's regex needs `/ns/X/`), a service account
 * (its regex needs `/ns/NS/`) and an exact or prefix principal that contains a whole
 * `/ns/X/` each need one.
 */
function matchNamespaces(m: L7Match): readonly string[] | null {
  if (m.namespaces.length > 0 && m.namespaces.every((n) => !n.includes('*') && !n.includes('/'))) return m.namespaces
  if (m.serviceAccounts.length > 0) return m.serviceAccounts.map((sa) => sa.namespace)
  const fromPrincipals = m.principals.map((p) => (p.kind === 'exact' || p.kind === 'prefix' ? identityNamespaces(SPIFFE + p.value)[0] : undefined))
  if (fromPrincipals.length > 0 && fromPrincipals.every((n) => n !== undefined)) return fromPrincipals as string[]
  return null
}

/** A rule is bound when one of its from / to / when has only bound matches (they are OR-ed; the rules AND-ed). */
function namespaceBound(group: L7Group): ReadonlySet<string> | null {
  for (const rules of group.rules) {
    const found = rules.matches.map(matchNamespaces)
    if (found.length > 0 && found.every((n) => n !== null)) return new Set(found.flat() as string[])
  }
  return null
}

function compileRules(p: WaypointAuthorization): CompiledRule[] {
  const id = (i: number): string => `ns[${p.namespace}]-policy[${p.name}]-rule[${i}]`
  // A policy without rules is a policy that never matches (Istio's rbacPolicyMatchNever).
  if (p.groups.length === 0) return [{ id: id(0), policy: p, rule: 0, groups: [], bound: new Set() }]
  return p.groups.map((g, i) => ({ id: id(i), policy: p, rule: i, groups: compileGroups([g], { fields: L7_FIELDS }), bound: namespaceBound(g) }))
}

const stageOf = (p: WaypointAuthorization): Stage =>
  p.action === 'CUSTOM'
    ? 'custom'
    : p.action === 'AUDIT'
      ? 'audit'
      : p.action === 'DENY'
        ? p.dryRun
          ? 'denyDryRun'
          : 'deny'
        : p.dryRun
          ? 'allowDryRun'
          : 'allow'

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

function stageRules(rules: CompiledRule[]): StageRules {
  rules.sort((a, b) => byText(a.id, b.id))
  const unbounded: number[] = []
  const byNamespace = new Map<string, number[]>()
  rules.forEach((r, i) => {
    if (r.bound === null) unbounded.push(i)
    else for (const ns of r.bound) pushTo(byNamespace, ns, i)
  })
  return { rules, unbounded, byNamespace, summary: summarize(rules) }
}

function summarize(rules: readonly CompiledRule[]): string {
  const names = [...new Set(rules.map((r) => waypointPolicyKey(r.policy)))].sort(byText)
  return names.slice(0, 5).join(', ') + (names.length > 5 ? `, ... (${names.length})` : '')
}

function assemble(policies: readonly WaypointAuthorization[], compiled: (p: WaypointAuthorization) => readonly CompiledRule[]): WaypointPolicies {
  const lists: Record<Stage, CompiledRule[]> = { custom: [], audit: [], deny: [], allow: [], denyDryRun: [], allowDryRun: [] }
  for (const p of policies) lists[stageOf(p)].push(...compiled(p))
  const stages = {} as Record<Stage, StageRules>
  for (const stage of Object.keys(lists) as Stage[]) stages[stage] = stageRules(lists[stage])
  return {
    policies: [...policies].sort((a, b) => byText(waypointPolicyKey(a), waypointPolicyKey(b))),
    stages,
    allowWithDryRunSummary: summarize([...lists.allow, ...lists.allowDryRun]),
  }
}

/** These policies, all applying (for a one-off check or a test). */
export function compileWaypointPolicies(policies: readonly WaypointAuthorization[]): WaypointPolicies {
  return assemble([...new Set(policies)], compileRules)
}

/** The waypoint a request went through and the Service it was addressed to (null: addressed to a workload). */
export interface WaypointRequestTarget {
  readonly gateway: PolicyName
  readonly service: PolicyName | null
}

const CACHE_LIMIT = 4096

/**
 * Every waypoint policy of the mesh, indexed by target; built once per configuration
 * change. policiesFor() is a map lookup once a (gateway, service) pair was seen.
 */
export class WaypointPolicyIndex {
  readonly size: number
  private readonly byGateway = new Map<string, WaypointAuthorization[]>()
  private readonly byService = new Map<string, WaypointAuthorization[]>()
  private readonly everyWaypoint: WaypointAuthorization[] = []
  private readonly compiled = new Map<WaypointAuthorization, readonly CompiledRule[]>()
  private readonly cache = new Map<string, WaypointPolicies>()

  private constructor(all: readonly WaypointAuthorization[]) {
    this.size = all.length
    for (const p of all) {
      for (const t of p.targets) this.attach(p, t)
    }
  }

  static build(all: readonly WaypointAuthorization[]): WaypointPolicyIndex {
    return new WaypointPolicyIndex(all)
  }

  private attach(p: WaypointAuthorization, t: WaypointTarget): void {
    if (t.kind === 'GatewayClass') this.everyWaypoint.push(p)
    else pushTo(t.kind === 'Gateway' ? this.byGateway : this.byService, waypointPolicyKey(t), p)
  }

  /** The policies for a request through `target.gateway` addressed to `target.service`. */
  policiesFor(target: WaypointRequestTarget): WaypointPolicies {
    const key = `${waypointPolicyKey(target.gateway)}\u0000${target.service === null ? '' : waypointPolicyKey(target.service)}`
    let found = this.cache.get(key)
    if (found === undefined) {
      const applying = new Set([
        ...this.everyWaypoint,
        ...(this.byGateway.get(waypointPolicyKey(target.gateway)) ?? []),
        ...(target.service === null ? [] : (this.byService.get(waypointPolicyKey(target.service)) ?? [])),
      ])
      found = assemble([...applying], (p) => this.compiledRules(p))
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear()
      this.cache.set(key, found)
    }
    return found
  }

  private compiledRules(p: WaypointAuthorization): readonly CompiledRule[] {
    let rules = this.compiled.get(p)
    if (rules === undefined) this.compiled.set(p, (rules = compileRules(p)))
    return rules
  }
}

/** policiesFor as a function, for callers holding an index. */
export function policiesFor(index: WaypointPolicyIndex, target: WaypointRequestTarget): WaypointPolicies {
  return index.policiesFor(target)
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

const nameOf = (p: PolicyRef | WaypointAuthorization): PolicyName => ({ namespace: p.namespace, name: p.name })

/** Two ascending position lists merged, without duplicates. */
function merge(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    const next = j >= b.length || (i < a.length && a[i]! <= b[j]!) ? a[i++]! : b[j++]!
    if (out.length === 0 || out[out.length - 1] !== next) out.push(next)
  }
  return out
}

/** The positions of the rules this request's identity can match, in Envoy's order. */
function candidates(stage: StageRules, facts: L7Facts): readonly number[] {
  let out = stage.unbounded
  if (stage.byNamespace.size === 0) return out
  for (const ns of facts.namespaces) {
    const bound = stage.byNamespace.get(ns)
    if (bound !== undefined) out = out.length === 0 ? bound : merge(out, bound)
  }
  return out
}

function firstMatch(stage: StageRules, facts: L7Facts): CompiledRule | null {
  const at = candidates(stage, facts)
  for (let i = 0; i < at.length; i++) {
    const r = stage.rules[at[i]!]!
    if (groupsMatch(r.groups, facts)) return r
  }
  return null
}

/** Each policy's first matching rule, in Envoy's order. */
function allMatches(stage: StageRules, facts: L7Facts): CompiledRule[] {
  const seen = new Set<WaypointAuthorization>()
  const out: CompiledRule[] = []
  for (const i of candidates(stage, facts)) {
    const r = stage.rules[i]!
    if (seen.has(r.policy) || !groupsMatch(r.groups, facts)) continue
    seen.add(r.policy)
    out.push(r)
  }
  return out
}

const reported = (r: CompiledRule): L7PolicyMatch => ({ policy: nameOf(r.policy), action: r.policy.action, rule: r.rule })

const earliest = (a: CompiledRule | null, b: CompiledRule | null): CompiledRule | null => (a === null ? b : b === null ? a : a.id <= b.id ? a : b)

function denied(r: CompiledRule): L7Outcome {
  const key = waypointPolicyKey(r.policy)
  const custom = r.policy.action === 'CUSTOM'
  return {
    allowed: false,
    code: custom ? 'custom-unsupported' : 'deny-policy',
    policy: nameOf(r.policy),
    action: custom ? 'CUSTOM' : 'DENY',
    rule: r.rule,
    reason: custom
      ? `denied: CUSTOM policy ${key} (rule ${r.rule}) needs provider ${JSON.stringify(r.policy.provider)} and the waypoint has no external authorizer`
      : `denied by DENY policy ${key} (rule ${r.rule})`,
  }
}

/** The ALLOW stage: no ALLOW policy allows, a match allows, otherwise deny. */
function allowOutcome(count: number, summary: string, hit: CompiledRule | null): L7Outcome {
  if (count === 0) return { allowed: true, code: 'no-allow-policies', policy: null, action: null, rule: null, reason: 'allowed: no ALLOW policy applies' }
  if (hit !== null) {
    return {
      allowed: true,
      code: 'allow-policy',
      policy: nameOf(hit.policy),
      action: 'ALLOW',
      rule: hit.rule,
      reason: `allowed by ALLOW policy ${waypointPolicyKey(hit.policy)} (rule ${hit.rule})`,
    }
  }
  return {
    allowed: false,
    code: 'no-allow-match',
    policy: null,
    action: null,
    rule: null,
    reason: `denied: no ALLOW policy matched (ALLOW policies: ${summary})`,
  }
}

/**
 * The decision, built property by property: V8 takes microseconds to spread these
 * small objects into one ({...a, ...b}), more than the whole evaluation.
 */
function decision(
  o: L7Outcome,
  path: string | null,
  denyStatus: L7Decision['denyStatus'],
  dryRun: readonly L7PolicyMatch[],
  dryRunDecision: L7Outcome | null,
  audit: readonly L7PolicyMatch[],
): L7Decision {
  return {
    allowed: o.allowed,
    code: o.code,
    policy: o.policy,
    action: o.action,
    rule: o.rule,
    reason: o.reason,
    denyStatus,
    path,
    dryRun,
    dryRunDecision,
    audit,
  }
}

/** The decision for one request. */
export function authorizeL7(policies: WaypointPolicies, request: L7Request, options: AuthorizeOptions = {}): L7Decision {
  const normalized = normalizePath(request.path, { mergeSlashes: options.mergeSlashes === true })
  if (!normalized.ok) {
    const refused: L7Outcome = {
      allowed: false,
      code: 'bad-path',
      policy: null,
      action: null,
      rule: null,
      reason: `refused before authorization: ${normalized.reason}`,
    }
    return decision(refused, null, normalized.status, [], null, [])
  }
  const facts = prepareL7(request, normalized.pathOnly, normalized.path, options)
  const s = policies.stages
  const custom = firstMatch(s.custom, facts)
  if (custom !== null) return decision(denied(custom), normalized.path, 403, [], null, [])
  const audit = allMatches(s.audit, facts).map(reported)
  const dryDeny = allMatches(s.denyDryRun, facts)
  const deny = firstMatch(s.deny, facts)
  const anyDryRun = s.denyDryRun.rules.length + s.allowDryRun.rules.length > 0
  if (deny !== null) {
    const dryRunDecision = anyDryRun ? denied(earliest(deny, dryDeny[0] ?? null)!) : null
    return decision(denied(deny), normalized.path, 403, dryDeny.map(reported), dryRunDecision, audit)
  }
  const allowHit = s.allow.rules.length > 0 ? firstMatch(s.allow, facts) : null
  const outcome = allowOutcome(s.allow.rules.length, s.allow.summary, allowHit)
  const dryAllow = anyDryRun ? allMatches(s.allowDryRun, facts) : []
  const dryRunDecision = !anyDryRun
    ? null
    : dryDeny.length > 0
      ? denied(dryDeny[0]!)
      : allowOutcome(s.allow.rules.length + s.allowDryRun.rules.length, policies.allowWithDryRunSummary, earliest(allowHit, dryAllow[0] ?? null))
  const dryRun = dryDeny.length + dryAllow.length === 0 ? [] : [...dryDeny, ...dryAllow].map(reported)
  return decision(outcome, normalized.path, outcome.allowed ? null : 403, dryRun, dryRunDecision, audit)
}
