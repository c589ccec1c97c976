// The internal form of an L7 AuthorizationPolicy, as a waypoint enforces it: a
// security.istio.io AuthorizationPolicy attached with targetRefs, converted by
// common/model/convert/waypoint-authorization.ts and evaluated per HTTP request by
// common/policy/waypoint-authz.ts. Pure data (serializable: the CLI prints it).
//
// The shape follows istio.security.Authorization as the L4 model does (a policy has
// groups, one per spec.rules entry, OR-ed; a group has rules, one per from / to /
// when, AND-ed; a rules has matches, OR-ed; a match has fields, AND-ed, each with a
// positive and a negative side), so common/policy/matcher.ts evaluates both. The
// fields are the ones Istio's builder turns into an Envoy RBAC policy for HTTP
// (pilot/pkg/security/authz/model), with Envoy's matching rules noted per field.
import type { Address, PolicyRef, ServiceAccountMatch, StringMatch } from './authorization.js'

/** spec.action. CUSTOM (external authorizer) is not supported: see WaypointAuthorization.action. */
export type WaypointAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM'

/** Istio's only GatewayClass for waypoints (constants.WaypointGatewayClassName). */
export const WAYPOINT_GATEWAY_CLASS = 'istio-waypoint'

/**
 * What a policy attaches to (Istio's WorkloadPolicyMatcher.ShouldAttachPolicy for a
 * waypoint). A target's namespace is always the policy's (Istio refuses targetRef
 * namespaces).
 * - Gateway: every request through that waypoint.
 * - Service: requests addressed to that Service (through any waypoint serving it).
 * - GatewayClass `istio-waypoint`, from the root namespace: every request through every waypoint.
 */
export type WaypointTarget =
  | { readonly kind: 'Gateway'; readonly namespace: string; readonly name: string }
  | { readonly kind: 'Service'; readonly namespace: string; readonly name: string }
  | { readonly kind: 'GatewayClass'; readonly name: typeof WAYPOINT_GATEWAY_CLASS }

/** A `paths` value: an Istio string match (exact, `prefix*`, `*suffix`, `*`) or a `{*}` / `{**}` template. */
export type PathMatch = StringMatch | { readonly kind: 'template'; readonly template: string }

/** One `request.headers[name]` value: `name` is lower-case (header names are case-insensitive). */
export interface HeaderMatch {
  readonly name: string
  readonly match: StringMatch
}

/**
 * A value of an attribute the waypoint never has: request.auth.* and
 * requestPrincipals (ambient has no RequestAuthentication, so no request carries a
 * validated JWT), connection.sni (the waypoint receives plaintext HTTP inside the
 * HBONE tunnel), experimental.envoy.filters.* (Envoy dynamic metadata). As in Envoy
 * with the attribute absent, a positive value never matches and a negative one
 * never excludes.
 */
export interface UnavailableValue {
  /** The attribute as written: `requestPrincipals`, `request.auth.claims[iss]`, `connection.sni`... */
  readonly attribute: string
  readonly value: string
}

/**
 * One from.source, to.operation or when condition. Values of one field are OR-ed,
 * the fields set are AND-ed; a `not` field matches when none of its values do.
 */
export interface L7Match {
  /** Istio string forms against the peer's SPIFFE id without `spiffe://` (no peer identity: never). */
  readonly principals: readonly StringMatch[]
  readonly notPrincipals: readonly StringMatch[]
  /**
   * Namespace patterns as written; every `*` is a wildcard. Istio matches them as the
   * regular expression `.*` + `/ns/<pattern>/` + `.*` against the peer's SPIFFE id, and so does
   * the waypoint (see the converter's warning about suffix patterns).
   */
  readonly namespaces: readonly string[]
  readonly notNamespaces: readonly string[]
  readonly serviceAccounts: readonly ServiceAccountMatch[]
  readonly notServiceAccounts: readonly ServiceAccountMatch[]
  /** Trust domain patterns as written: exact, `prefix*`, `*suffix` or `*`. */
  readonly trustDomains: readonly string[]
  readonly notTrustDomains: readonly string[]
  /** ipBlocks, when source.ip: the source address the tunnel carries. */
  readonly sourceIps: readonly Address[]
  readonly notSourceIps: readonly Address[]
  /** remoteIpBlocks, when remote.ip: Envoy's trusted client address (X-Forwarded-For). */
  readonly remoteIps: readonly Address[]
  readonly notRemoteIps: readonly Address[]
  /** when destination.ip: the address the request was sent to. */
  readonly destinationIps: readonly Address[]
  readonly notDestinationIps: readonly Address[]
  /** ports, when destination.port. */
  readonly destinationPorts: readonly number[]
  readonly notDestinationPorts: readonly number[]
  /** Against `:authority` (Host) as sent, port included, case-insensitive. */
  readonly hosts: readonly StringMatch[]
  readonly notHosts: readonly StringMatch[]
  /** Against `:method`, case-sensitive. */
  readonly methods: readonly StringMatch[]
  readonly notMethods: readonly StringMatch[]
  /** Against the normalized path without query, case-sensitive. */
  readonly paths: readonly PathMatch[]
  readonly notPaths: readonly PathMatch[]
  /** when request.headers[name]: against the header's values joined with `,`; absent never matches. */
  readonly headers: readonly HeaderMatch[]
  readonly notHeaders: readonly HeaderMatch[]
  readonly unavailable: readonly UnavailableValue[]
  readonly notUnavailable: readonly UnavailableValue[]
}

/** A from, a to or one when: its matches are OR-ed. */
export interface L7Rules {
  readonly matches: readonly L7Match[]
}

/** One spec.rules entry: its rules are AND-ed; no rules matches every request. */
export interface L7Group {
  readonly rules: readonly L7Rules[]
}

export interface WaypointAuthorization {
  readonly namespace: string
  readonly name: string
  /**
   * CUSTOM policies are kept so that nothing fails open: the waypoint has no external
   * authorizer, so a request a CUSTOM policy's rules match is denied (what Istio does
   * when a CUSTOM policy names a provider it cannot use: getBadCustomDenyRules).
   */
  readonly action: WaypointAction
  /** From annotation `istio.io/dry-run`: evaluated and reported, never enforced (ALLOW and DENY only). */
  readonly dryRun: boolean
  readonly targets: readonly WaypointTarget[]
  /** spec.provider.name for CUSTOM, else null. */
  readonly provider: string | null
  /** spec.rules in order (the index is the rule number reported); none: the policy matches nothing. */
  readonly groups: readonly L7Group[]
}

export type WaypointWarningCode =
  | 'AMBIENT_WARN_POLICY_SPIFFE_PREFIX'
  | 'AMBIENT_WARN_POLICY_DRY_RUN_VALUE'
  | 'AMBIENT_WARN_WAYPOINT_CUSTOM_UNSUPPORTED'
  | 'AMBIENT_WARN_WAYPOINT_JWT'
  | 'AMBIENT_WARN_WAYPOINT_UNAVAILABLE_ATTRIBUTE'
  | 'AMBIENT_WARN_WAYPOINT_HOST_HEADER'
  | 'AMBIENT_WARN_WAYPOINT_NAMESPACE_PATTERN'
  | 'AMBIENT_WARN_WAYPOINT_REMOTE_IP'
  | 'AMBIENT_WARN_WAYPOINT_TARGET'
  | 'AMBIENT_WARN_WAYPOINT_NO_TARGET'

/** Accepted with a caveat (or, for NO_TARGET, left out): named by object and field path. */
export interface WaypointWarning {
  readonly code: WaypointWarningCode
  readonly policy: PolicyRef
  /** Field path in the object, e.g. `spec.rules[0].to[0].operation.paths[2]`. */
  readonly field: string
  readonly message: string
}

export const EMPTY_L7_MATCH: L7Match = Object.freeze({
  principals: [],
  notPrincipals: [],
  namespaces: [],
  notNamespaces: [],
  serviceAccounts: [],
  notServiceAccounts: [],
  trustDomains: [],
  notTrustDomains: [],
  sourceIps: [],
  notSourceIps: [],
  remoteIps: [],
  notRemoteIps: [],
  destinationIps: [],
  notDestinationIps: [],
  destinationPorts: [],
  notDestinationPorts: [],
  hosts: [],
  notHosts: [],
  methods: [],
  notMethods: [],
  paths: [],
  notPaths: [],
  headers: [],
  notHeaders: [],
  unavailable: [],
  notUnavailable: [],
})

/** An L7Match with the given fields set and every other field empty. */
export function l7Match(fields: Partial<L7Match>): L7Match {
  return { ...EMPTY_L7_MATCH, ...fields }
}

/** `namespace/name`. */
export function waypointPolicyKey(p: { readonly namespace: string; readonly name: string }): string {
  return `${p.namespace}/${p.name}`
}
