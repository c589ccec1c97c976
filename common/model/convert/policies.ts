// A list of manifest objects (any kinds) into the policies ztunnel enforces:
// AuthorizationPolicies in the workload API's form and PeerAuthentications, with
// every warning, malformed object and ignored policy named. Shared by the agent,
// ztunnel's local config and `ambient authz check`.
import type { ConfigKind, PolicyWarning, WorkloadAuthorization } from '../authorization.js'
import type { PeerAuthentication } from '../peer-authentication.js'
import { convertAuthorizationPolicy } from './authorization-policy.js'
import { convertPeerAuthentication } from './peer-authentication.js'
import { isRecord } from './object-fields.js'

export interface PolicyProblem {
  readonly kind: ConfigKind
  /** `namespace/name` */
  readonly policy: string
  readonly field: string
  readonly code: string
  readonly message: string
}

export interface ConvertedPolicies {
  readonly authorizations: WorkloadAuthorization[]
  readonly peerAuthentications: PeerAuthentication[]
  readonly warnings: PolicyProblem[]
  /** Malformed policies, left out. */
  readonly invalid: PolicyProblem[]
  /** Policies ztunnel does not enforce (targetRefs, CUSTOM, AUDIT). */
  readonly ignored: PolicyProblem[]
}

export const kindOf = (o: unknown): string => (isRecord(o) && typeof o['kind'] === 'string' ? o['kind'] : '')

const problem = (w: PolicyWarning): PolicyProblem => ({
  kind: w.policy.kind,
  policy: `${w.policy.namespace}/${w.policy.name}`,
  field: w.field,
  code: w.code,
  message: w.message,
})

export function convertPolicies(objects: readonly unknown[], rootNamespace: string): ConvertedPolicies {
  const out: ConvertedPolicies = { authorizations: [], peerAuthentications: [], warnings: [], invalid: [], ignored: [] }
  for (const object of objects) {
    const kind = kindOf(object)
    if (kind === 'AuthorizationPolicy') {
      const r = convertAuthorizationPolicy(object, { rootNamespace })
      if (r.kind === 'invalid')
        out.invalid.push({ kind: r.ref.kind, policy: `${r.ref.namespace}/${r.ref.name}`, field: r.error.field, code: r.error.code, message: r.error.message })
      else if (r.kind === 'ignored') out.ignored.push(...r.warnings.map(problem))
      else {
        out.authorizations.push(r.policy)
        out.warnings.push(...r.warnings.map(problem))
      }
    } else if (kind === 'PeerAuthentication') {
      const r = convertPeerAuthentication(object)
      if (r.kind === 'invalid')
        out.invalid.push({ kind: r.ref.kind, policy: `${r.ref.namespace}/${r.ref.name}`, field: r.error.field, code: r.error.code, message: r.error.message })
      else {
        out.peerAuthentications.push(r.policy)
        out.warnings.push(...r.warnings.map(problem))
      }
    }
  }
  return out
}
