// The policy matcher: pure evaluation of Authorizations against one connection,
// shared by ztunnel (L4) and the waypoint (which compiles with a profile that has
// L7 fields too). Semantics are ztunnel's (src/rbac.rs Authorization::matches and
// src/state.rs assert_rbac):
// - a policy with no groups never matches; a group (one policy rule) matches when
//   all its Rules do; a Rules with no matches matches; otherwise when any of its
//   Match does; a Match with no field set never matches; a Match matches when every
//   field it declares does (any positive value, and none of the negative ones).
// - decision: dry-run DENY matches are recorded; any enforced DENY match rejects;
//   dry-run ALLOW matches are recorded; no enforced ALLOW policy allows; any ALLOW
//   match allows; otherwise reject.
import type { Action, Match, PolicySource } from '../model/authorization.js'
import type { EffectiveMtls } from '../model/peer-authentication.js'
import { type ConnectionAttributes, type FieldTest, type L4Facts, type MatchProfile, L4_PROFILE } from './fields.js'
import type { NamespaceIndex, PolicySet } from './policy-set.js'

/** The structural shape of istio.security.Authorization over any match type. */
export interface GenericAuthorization<M> {
  readonly name: string
  readonly namespace: string
  readonly action: Action
  readonly dryRun: boolean
  readonly groups: readonly { readonly rules: readonly { readonly matches: readonly M[] }[] }[]
}

/** A Match compiled: the tests of the fields it declares (none: never matches). */
export type CompiledMatch<F> = readonly FieldTest<F>[]

export interface CompiledPolicy<F> {
  readonly namespace: string
  readonly name: string
  readonly action: Action
  readonly dryRun: boolean
  readonly source: PolicySource
  /** groups -> rules -> matches. */
  readonly groups: readonly (readonly (readonly CompiledMatch<F>[])[])[]
}

/** groups -> rules -> matches, compiled. */
export type CompiledGroups<F> = CompiledPolicy<F>['groups']

/** Compiles the groups of any policy shape (the waypoint keeps its own policy type around them). */
export function compileGroups<M, F>(groups: GenericAuthorization<M>['groups'], profile: Pick<MatchProfile<unknown, M, F>, 'fields'>): CompiledGroups<F> {
  const compileMatch = (m: M): CompiledMatch<F> => {
    const tests: FieldTest<F>[] = []
    for (const f of profile.fields) {
      const t = f.compile(m)
      if (t !== null) tests.push(t)
    }
    return tests
  }
  return groups.map((g) => g.rules.map((r) => r.matches.map(compileMatch)))
}

export function compilePolicy<M, F>(a: GenericAuthorization<M>, profile: MatchProfile<unknown, M, F>, source?: PolicySource): CompiledPolicy<F> {
  return {
    namespace: a.namespace,
    name: a.name,
    action: a.action,
    dryRun: a.dryRun,
    source: source ?? { kind: 'AuthorizationPolicy', namespace: a.namespace, name: a.name },
    groups: compileGroups(a.groups, profile),
  }
}

function testMatches<F>(test: FieldTest<F>, facts: F): boolean {
  const any = test.anyOf
  if (any.length > 0) {
    let hit = false
    for (let i = 0; i < any.length && !hit; i++) hit = any[i]!(facts)
    if (!hit) return false
  }
  const none = test.noneOf
  for (let i = 0; i < none.length; i++) if (none[i]!(facts)) return false
  return true
}

function matchMatches<F>(m: CompiledMatch<F>, facts: F): boolean {
  if (m.length === 0) return false
  for (let i = 0; i < m.length; i++) if (!testMatches(m[i]!, facts)) return false
  return true
}

/** ztunnel's Authorization::matches. */
export function policyMatches<F>(policy: CompiledPolicy<F>, facts: F): boolean {
  return groupsMatch(policy.groups, facts)
}

/** Whether any group matches: the whole of policyMatches, for callers that compiled with compileGroups. */
export function groupsMatch<F>(groups: CompiledGroups<F>, facts: F): boolean {
  for (const group of groups) {
    let all = true
    for (const rule of group) {
      if (rule.length === 0) continue
      let any = false
      for (let i = 0; i < rule.length && !any; i++) any = matchMatches(rule[i]!, facts)
      if (!any) {
        all = false
        break
      }
    }
    if (all) return true
  }
  return false
}

/** Compiles one L4 Authorization (for tests and one-off checks). */
export function compileL4(a: GenericAuthorization<Match>, source?: PolicySource): CompiledPolicy<L4Facts> {
  return compilePolicy(a, L4_PROFILE as MatchProfile<unknown, Match, L4Facts>, source)
}

export interface PolicyName {
  readonly namespace: string
  readonly name: string
}

export type DecisionRule = 'mtls-strict' | 'deny-policy' | 'allow-policy' | 'no-allow-policies' | 'no-allow-match'

export interface DryRunMatch {
  readonly policy: PolicyName
  readonly action: Action
}

export interface Decision {
  readonly allowed: boolean
  /** The policy that decided (for mtls-strict: the PeerAuthentication); null when none did. */
  readonly policy: PolicyName | null
  readonly rule: DecisionRule
  readonly reason: string
  /** PeerAuthentication outcome for this destination port. */
  readonly mtls: EffectiveMtls
  /** Dry-run policies that matched; log them, they are not enforced. */
  readonly dryRun: readonly DryRunMatch[]
  /** Dry-run ALLOW policies exist, none matched and no enforced ALLOW exists: enforcing them would reject. */
  readonly dryRunWouldDeny: boolean
}

const nameOf = (p: { readonly namespace: string; readonly name: string }): PolicyName => ({ namespace: p.namespace, name: p.name })
const keyOf = (p: PolicyName): string => `${p.namespace}/${p.name}`

/** The policies that may match this peer, in evaluation order: its namespace's and the unbounded ones. */
function* candidates(index: NamespaceIndex, facts: L4Facts): Generator<CompiledPolicy<L4Facts>> {
  const scoped = facts.identity ? (index.byNamespace.get(facts.identity.namespace) ?? []) : []
  const rest = index.unbounded
  let i = 0
  let j = 0
  while (i < scoped.length || j < rest.length) {
    if (j >= rest.length || (i < scoped.length && index.order.get(scoped[i]!)! < index.order.get(rest[j]!)!)) yield scoped[i++]!
    else yield rest[j++]!
  }
}

/** Evaluates one inbound connection against the policies selecting its destination. */
export function evaluate(set: PolicySet, conn: ConnectionAttributes): Decision {
  const facts = L4_PROFILE.prepare(conn)
  const attached = conn.destination.authorizationPolicies
  const dest =
    attached === undefined || attached === null
      ? set.forDestination(conn.destination.namespace, conn.destination.labels)
      : set.forAttached(conn.destination.namespace, attached)
  const mtls = dest.mtlsFor(conn.destination.port)
  const dryRun: DryRunMatch[] = []
  for (const p of dest.denyDryRun) if (policyMatches(p, facts)) dryRun.push({ policy: nameOf(p), action: 'DENY' })
  const base = { mtls, dryRun }
  if (dest.mtls !== null && policyMatches(dest.mtls, facts)) {
    const pa = mtls.policy
    const from = pa === null ? 'the mesh default' : `PeerAuthentication ${keyOf(pa)} (${mtls.level} level)`
    return {
      ...base,
      allowed: false,
      policy: pa,
      rule: 'mtls-strict',
      reason: `plaintext refused: mTLS is STRICT on port ${conn.destination.port} by ${from}`,
      dryRunWouldDeny: false,
    }
  }
  for (const p of candidates(dest.denyIndex, facts)) {
    if (policyMatches(p, facts)) {
      return { ...base, allowed: false, policy: nameOf(p), rule: 'deny-policy', reason: `denied by DENY policy ${keyOf(p)}`, dryRunWouldDeny: false }
    }
  }
  let dryAllowMatched = false
  for (const p of dest.allowDryRun) {
    if (policyMatches(p, facts)) {
      dryAllowMatched = true
      dryRun.push({ policy: nameOf(p), action: 'ALLOW' })
    }
  }
  if (dest.allow.length === 0) {
    const wouldDeny = dest.allowDryRun.length > 0 && !dryAllowMatched
    return {
      ...base,
      allowed: true,
      policy: null,
      rule: 'no-allow-policies',
      reason: 'allowed: no ALLOW policy selects the destination',
      dryRunWouldDeny: wouldDeny,
    }
  }
  for (const p of candidates(dest.allowIndex, facts)) {
    if (policyMatches(p, facts)) {
      return { ...base, allowed: true, policy: nameOf(p), rule: 'allow-policy', reason: `allowed by ALLOW policy ${keyOf(p)}`, dryRunWouldDeny: false }
    }
  }
  const names = dest.allow.slice(0, 5).map(keyOf).join(', ') + (dest.allow.length > 5 ? `, ... (${dest.allow.length})` : '')
  return {
    ...base,
    allowed: false,
    policy: null,
    rule: 'no-allow-match',
    reason: `denied: no ALLOW policy matched (ALLOW policies selecting the destination: ${names})`,
    dryRunWouldDeny: false,
  }
}
