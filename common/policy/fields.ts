// The attribute-predicate form of a Match. Each field of a Match (namespaces and
// notNamespaces, ...) compiles to one FieldTest: "any of these predicates" and
// "none of those", over the facts of one connection. The L4 table below mirrors
// ztunnel's src/rbac.rs; the waypoint adds L7 fields (paths, methods, headers...)
// by giving its own facts type (extending L4Facts) and appending to L4_FIELDS.
import type { Address, Match, ServiceAccountMatch, StringMatch } from '../model/authorization.js'
import type { Labels } from '../model/workload.js'
import { type ParsedIp, cidrContains, parseIp } from './ip.js'

export type Predicate<F> = (facts: F) => boolean

/** One field pair of a Match, compiled. Empty `anyOf` / `noneOf` means "not declared". */
export interface FieldTest<F> {
  readonly field: string
  readonly anyOf: readonly Predicate<F>[]
  readonly noneOf: readonly Predicate<F>[]
}

/** How one field pair of match type M compiles; null when neither side is set. */
export interface MatchField<M, F> {
  readonly field: string
  compile(match: M): FieldTest<F> | null
}

/** Everything a matcher needs for one kind of connection (L4 here, L7 in the waypoint). */
export interface MatchProfile<C, M, F> {
  prepare(conn: C): F
  readonly fields: readonly MatchField<M, F>[]
}

/** The peer's SPIFFE identity, `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`. */
export interface SourceIdentity {
  readonly trustDomain: string
  readonly namespace: string
  readonly serviceAccount: string
}

/** What ztunnel knows about one inbound connection. */
export interface ConnectionAttributes {
  /** undefined for plaintext (no peer certificate). */
  readonly sourceIdentity: SourceIdentity | undefined
  readonly sourceIp: string
  readonly destination: {
    readonly ip: string
    readonly port: number
    readonly namespace: string
    readonly labels: Labels
    /**
     * The WORKLOAD_SELECTOR policies (`ns/name`) the control plane attached to the
     * destination (istio.workload.Workload.authorization_policies); when absent,
     * selectors are matched against `labels` here.
     */
    readonly authorizationPolicies?: readonly string[] | null
  }
}

/** ConnectionAttributes in the form predicates read. */
export interface L4Facts {
  readonly identity: SourceIdentity | undefined
  /** `td/ns/NS/sa/SA` (the identity without `spiffe://`), undefined for plaintext. */
  readonly principal: string | undefined
  readonly sourceIp: ParsedIp | undefined
  readonly destinationIp: ParsedIp | undefined
  readonly destinationPort: number
}

export function prepareL4(conn: ConnectionAttributes): L4Facts {
  const id = conn.sourceIdentity
  return {
    identity: id,
    principal: id === undefined ? undefined : `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`,
    sourceIp: parseIp(conn.sourceIp),
    destinationIp: parseIp(conn.destination.ip),
    destinationPort: conn.destination.port,
  }
}

/** ztunnel's StringMatch::matches; `presence` needs a non-empty value. */
export function stringMatcher(m: StringMatch): (value: string) => boolean {
  switch (m.kind) {
    case 'exact':
      return (v) => v === m.value
    case 'prefix':
      return (v) => v.startsWith(m.value)
    case 'suffix':
      return (v) => v.endsWith(m.value)
    case 'presence':
      return (v) => v !== ''
  }
}

/**
 * A field pair of a match type: `pos` and `neg` read its values, `test` makes the
 * predicate for one value. Compiles to null when neither side has values.
 */
export function field<M, F, T>(name: string, pos: (m: M) => readonly T[], neg: (m: M) => readonly T[], test: (value: T) => Predicate<F>): MatchField<M, F> {
  return {
    field: name,
    compile(m) {
      const p = pos(m)
      const n = neg(m)
      if (p.length === 0 && n.length === 0) return null
      return { field: name, anyOf: p.map(test), noneOf: n.map(test) }
    },
  }
}

/** Plaintext peers have no principal and no namespace: such predicates are false for them. */
const principal = (m: StringMatch): Predicate<L4Facts> => {
  const s = stringMatcher(m)
  return (f) => f.principal !== undefined && s(f.principal)
}
const namespace = (m: StringMatch): Predicate<L4Facts> => {
  const s = stringMatcher(m)
  return (f) => f.identity !== undefined && s(f.identity.namespace)
}
const serviceAccount =
  (m: ServiceAccountMatch): Predicate<L4Facts> =>
  (f) =>
    f.identity !== undefined && f.identity.namespace === m.namespace && f.identity.serviceAccount === m.serviceAccount
const sourceIp = (a: Address): Predicate<L4Facts> => {
  const inside = cidrContains(a.address, a.length)
  return (f) => inside(f.sourceIp)
}
const destinationIp = (a: Address): Predicate<L4Facts> => {
  const inside = cidrContains(a.address, a.length)
  return (f) => inside(f.destinationIp)
}
const destinationPort =
  (port: number): Predicate<L4Facts> =>
  (f) =>
    f.destinationPort === port

/** The L4 fields of istio.security.Match, in ztunnel's evaluation order. */
export const L4_FIELDS: readonly MatchField<Match, L4Facts>[] = [
  field(
    'destination_ips',
    (m: Match) => m.destinationIps,
    (m) => m.notDestinationIps,
    destinationIp,
  ),
  field(
    'source_ips',
    (m: Match) => m.sourceIps,
    (m) => m.notSourceIps,
    sourceIp,
  ),
  field(
    'destination_ports',
    (m: Match) => m.destinationPorts,
    (m) => m.notDestinationPorts,
    destinationPort,
  ),
  field(
    'service_accounts',
    (m: Match) => m.serviceAccounts,
    (m) => m.notServiceAccounts,
    serviceAccount,
  ),
  field(
    'principals',
    (m: Match) => m.principals,
    (m) => m.notPrincipals,
    principal,
  ),
  field(
    'namespaces',
    (m: Match) => m.namespaces,
    (m) => m.notNamespaces,
    namespace,
  ),
]

export const L4_PROFILE: MatchProfile<ConnectionAttributes, Match, L4Facts> = { prepare: prepareL4, fields: L4_FIELDS }
