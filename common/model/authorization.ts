// The internal form of an L4 authorization policy: Istio's workload API message
// `istio.security.Authorization` (pkg/workloadapi/security/authorization.proto in
// istio/istio), field for field, with the proto field numbers noted so the agent's
// gRPC stream to ztunnel can encode it as Istio does. Pure data.
//
// Naming follows istio/istio's copy of the proto (Authorization.groups -> Group.rules
// -> Rules.matches). ztunnel's newer copy renames them rules -> clauses -> matches with
// the same field numbers, so the wire form is identical.
import type { Labels } from './workload.js'
import { AmbientError } from '../errors.js'

/** enum istio.security.Scope. */
export type Scope = 'GLOBAL' | 'NAMESPACE' | 'WORKLOAD_SELECTOR'
export const SCOPE_NUMBER: Readonly<Record<Scope, number>> = { GLOBAL: 0, NAMESPACE: 1, WORKLOAD_SELECTOR: 2 }

/** enum istio.security.Action. */
export type Action = 'ALLOW' | 'DENY'
export const ACTION_NUMBER: Readonly<Record<Action, number>> = { ALLOW: 0, DENY: 1 }

/**
 * message Address. On the wire `address` (1) is the 4 or 16 raw bytes; here it is
 * the canonical text form of the same IP (`10.0.0.0`, `fd00::`), `length` (2) the
 * prefix length (32 or 128 for a single address).
 */
export interface Address {
  readonly address: string
  readonly length: number
}

/** message StringMatch, oneof match_type: exact (1), prefix (2), suffix (3), presence (4). */
export type StringMatch =
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'prefix'; readonly value: string }
  | { readonly kind: 'suffix'; readonly value: string }
  | { readonly kind: 'presence' }

/** message ServiceAccountMatch: namespace (1), serviceAccount (2). */
export interface ServiceAccountMatch {
  readonly namespace: string
  readonly serviceAccount: string
}

/**
 * message Match. Values of one field are OR-ed, the fields set are AND-ed; a `not`
 * field matches when none of its values do. A Match with no field set never
 * matches (ztunnel skips it).
 */
export interface Match {
  /** 1 */ readonly namespaces: readonly StringMatch[]
  /** 2 */ readonly notNamespaces: readonly StringMatch[]
  /** 3: against the source identity without `spiffe://` (`td/ns/NS/sa/SA`). */
  readonly principals: readonly StringMatch[]
  /** 4 */ readonly notPrincipals: readonly StringMatch[]
  /** 5 */ readonly sourceIps: readonly Address[]
  /** 6 */ readonly notSourceIps: readonly Address[]
  /** 7 */ readonly destinationIps: readonly Address[]
  /** 8 */ readonly notDestinationIps: readonly Address[]
  /** 9 */ readonly destinationPorts: readonly number[]
  /** 10 */ readonly notDestinationPorts: readonly number[]
  /** 11 */ readonly serviceAccounts: readonly ServiceAccountMatch[]
  /** 12 */ readonly notServiceAccounts: readonly ServiceAccountMatch[]
}

/** message Rules: matches (2), OR-ed. An AuthorizationPolicy's from, to, or one when. */
export interface Rules {
  readonly matches: readonly Match[]
}

/** message Group: rules (1), AND-ed. One AuthorizationPolicy rule; no rules matches everything. */
export interface Group {
  readonly rules: readonly Rules[]
}

/** message Authorization. Groups are OR-ed; no groups never matches. */
export interface Authorization {
  /** 1 */ readonly name: string
  /** 2 */ readonly namespace: string
  /** 3 */ readonly scope: Scope
  /** 4 */ readonly action: Action
  /** 5 */ readonly groups: readonly Group[]
  /** 6: from annotation `istio.io/dry-run: "true"`; matches are logged, not enforced. */
  readonly dryRun: boolean
}

/** The kinds of configuration object whose fields the converters check and name in problems. */
export type ConfigKind = 'AuthorizationPolicy' | 'PeerAuthentication' | 'Gateway' | 'HTTPRoute'

/** The Kubernetes object an Authorization came from. */
export interface PolicySource {
  readonly kind: 'AuthorizationPolicy' | 'PeerAuthentication'
  readonly namespace: string
  readonly name: string
}

/**
 * An Authorization with what selects its workloads (Istio's model.WorkloadAuthorization):
 * `selector` is spec.selector.matchLabels for scope WORKLOAD_SELECTOR, null otherwise.
 */
export interface WorkloadAuthorization {
  readonly authorization: Authorization
  readonly selector: Labels | null
  readonly source: PolicySource
}

/** `namespace/name`, the key ztunnel indexes policies by. */
export function authorizationKey(a: { readonly namespace: string; readonly name: string }): string {
  return `${a.namespace}/${a.name}`
}

export const EMPTY_MATCH: Match = Object.freeze({
  namespaces: [],
  notNamespaces: [],
  principals: [],
  notPrincipals: [],
  sourceIps: [],
  notSourceIps: [],
  destinationIps: [],
  notDestinationIps: [],
  destinationPorts: [],
  notDestinationPorts: [],
  serviceAccounts: [],
  notServiceAccounts: [],
})

/** A Match with the given fields set and every other field empty. */
export function match(fields: Partial<Match>): Match {
  return { ...EMPTY_MATCH, ...fields }
}

/** True when no field is set: ztunnel never matches such a Match. */
export function isEmptyMatch(m: Match): boolean {
  return (Object.keys(EMPTY_MATCH) as (keyof Match)[]).every((k) => m[k].length === 0)
}

/**
 * Where in a configuration object a warning or error points: the object (a
 * security policy, or a Gateway API object the waypoint reads) and a field path.
 */
export interface PolicyRef {
  readonly kind: ConfigKind
  readonly namespace: string
  readonly name: string
}

export type PolicyWarningCode =
  | 'AMBIENT_WARN_POLICY_L7_ATTRIBUTE'
  | 'AMBIENT_WARN_POLICY_UNSUPPORTED_ACTION'
  | 'AMBIENT_WARN_POLICY_TARGET_REFS'
  | 'AMBIENT_WARN_POLICY_IGNORED_FIELD'
  | 'AMBIENT_WARN_POLICY_EMPTY_SELECTOR'
  | 'AMBIENT_WARN_POLICY_SPIFFE_PREFIX'
  | 'AMBIENT_WARN_POLICY_MTLS_DISABLE'
  | 'AMBIENT_WARN_POLICY_DRY_RUN_VALUE'

/**
 * Accepted with a caveat: the policy applies, but not everything in it does at L4.
 * In a cluster this becomes a status condition on the object; locally a log line
 * and a metric.
 */
export interface PolicyWarning {
  readonly code: PolicyWarningCode
  readonly policy: PolicyRef
  /** Field path in the object, e.g. `spec.rules[0].to[0].operation.methods`. */
  readonly field: string
  readonly message: string
}

export type PolicyErrorCode = 'AMBIENT_ERR_POLICY_NOT_AN_OBJECT' | 'AMBIENT_ERR_POLICY_BAD_FIELD' | 'AMBIENT_ERR_POLICY_BAD_VALUE'

/**
 * A malformed policy: the object is rejected on its own (as Istio's validating
 * webhook would refuse it) and nothing else changes.
 */
export class PolicyError extends AmbientError<PolicyErrorCode> {
  readonly policy: PolicyRef
  readonly field: string
  constructor(code: PolicyErrorCode, policy: PolicyRef, field: string, message: string) {
    super(code, `${policy.kind} ${policy.namespace}/${policy.name}: ${field}: ${message}`)
    this.policy = policy
    this.field = field
  }
}
