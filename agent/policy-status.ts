// What the agent writes in a cluster onto each AuthorizationPolicy and
// PeerAuthentication: a `ZtunnelAccepted` status condition, as Istio ambient does,
// saying whether ztunnel enforces the policy as written and, if not, which field
// it could not apply and why. Pure: the reconciler compares and patches.
import type { ConvertedPolicies, PolicyProblem } from '../common/model/convert/policies.js'
import { isRecord } from '../common/model/convert/object-fields.js'

export const ZTUNNEL_ACCEPTED = 'ZtunnelAccepted'

export interface PolicyCondition {
  readonly type: typeof ZTUNNEL_ACCEPTED
  readonly status: 'True' | 'False'
  /** Accepted; UnsupportedValue (a part ztunnel does not enforce); Invalid (rejected). */
  readonly reason: 'Accepted' | 'UnsupportedValue' | 'Invalid'
  readonly message: string
  readonly observedGeneration?: number
}

export interface PolicyStatusPatch {
  readonly kind: 'AuthorizationPolicy' | 'PeerAuthentication'
  readonly namespace: string
  readonly name: string
  readonly condition: PolicyCondition
  /** The whole conditions list to write: the object's other conditions kept, ours replaced (a merge patch replaces lists). */
  readonly conditions: readonly unknown[]
}

const describe = (problems: readonly PolicyProblem[]): string => problems.map((p) => `${p.field}: ${p.message}`).join('; ')

/** The condition each policy object should carry, and whether it already does. */
export function policyStatusPatches(objects: readonly unknown[], converted: Pick<ConvertedPolicies, 'invalid' | 'ignored' | 'warnings'>): PolicyStatusPatch[] {
  const group = (list: readonly PolicyProblem[]): Map<string, PolicyProblem[]> => {
    const out = new Map<string, PolicyProblem[]>()
    for (const p of list) out.set(`${p.kind} ${p.policy}`, [...(out.get(`${p.kind} ${p.policy}`) ?? []), p])
    return out
  }
  const invalid = group(converted.invalid)
  const ignored = group(converted.ignored)
  const warnings = group(converted.warnings)
  const patches: PolicyStatusPatch[] = []
  for (const object of objects) {
    if (!isRecord(object) || !isRecord(object['metadata'])) continue
    const kind = object['kind']
    if (kind !== 'AuthorizationPolicy' && kind !== 'PeerAuthentication') continue
    const meta = object['metadata']
    const namespace = typeof meta['namespace'] === 'string' ? meta['namespace'] : ''
    const name = typeof meta['name'] === 'string' ? meta['name'] : ''
    if (namespace === '' || name === '') continue
    const key = `${kind} ${namespace}/${name}`
    const generation = typeof meta['generation'] === 'number' ? { observedGeneration: meta['generation'] } : {}
    let condition: PolicyCondition
    if (invalid.has(key))
      condition = { type: ZTUNNEL_ACCEPTED, status: 'False', reason: 'Invalid', message: `rejected: ${describe(invalid.get(key)!)}`, ...generation }
    else if (ignored.has(key))
      condition = {
        type: ZTUNNEL_ACCEPTED,
        status: 'False',
        reason: 'UnsupportedValue',
        message: `not enforced by ztunnel: ${describe(ignored.get(key)!)}`,
        ...generation,
      }
    else if (warnings.has(key))
      condition = {
        type: ZTUNNEL_ACCEPTED,
        status: 'False',
        reason: 'UnsupportedValue',
        message: `enforced by ztunnel except: ${describe(warnings.get(key)!)}`,
        ...generation,
      }
    else condition = { type: ZTUNNEL_ACCEPTED, status: 'True', reason: 'Accepted', message: 'attached to ztunnel', ...generation }
    const existing = conditionsOf(object)
    if (carries(existing, condition)) continue
    const others = existing.filter((c) => !(isRecord(c) && c['type'] === ZTUNNEL_ACCEPTED))
    patches.push({ kind, namespace, name, condition, conditions: [...others, condition] })
  }
  return patches
}

/** The object's status.conditions, or none. */
function conditionsOf(object: Record<string, unknown>): readonly unknown[] {
  const status = object['status']
  return isRecord(status) && Array.isArray(status['conditions']) ? status['conditions'] : []
}

function carries(conditions: readonly unknown[], want: PolicyCondition): boolean {
  const have = conditions.find((c: unknown) => isRecord(c) && c['type'] === ZTUNNEL_ACCEPTED) as Record<string, unknown> | undefined
  return (
    have !== undefined &&
    have['status'] === want.status &&
    have['reason'] === want.reason &&
    have['message'] === want.message &&
    have['observedGeneration'] === want.observedGeneration
  )
}
