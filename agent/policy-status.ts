// What the agent writes in a cluster onto each AuthorizationPolicy and
// PeerAuthentication, as Istio ambient does: a `ZtunnelAccepted` status condition
// saying whether ztunnel enforces the policy as written and, if not, which field it
// could not apply and why; and on an AuthorizationPolicy with targetRefs (a
// waypoint's) a `WaypointAccepted` condition instead: accepted and bound to its
// targets, or which field the waypoint cannot apply, or which target is not a
// waypoint. Pure: the reconciler compares and patches.
import type { ConvertedPolicies, PolicyProblem } from '../common/model/convert/policies.js'
import type { ConvertedWaypointPolicies } from '../common/model/convert/waypoint-authorization.js'
import { isRecord } from '../common/model/convert/object-fields.js'
import type { WaypointTarget } from '../common/model/waypoint-authorization.js'

export const ZTUNNEL_ACCEPTED = 'ZtunnelAccepted'
export const WAYPOINT_ACCEPTED = 'WaypointAccepted'

export interface PolicyCondition {
  readonly type: typeof ZTUNNEL_ACCEPTED | typeof WAYPOINT_ACCEPTED
  readonly status: 'True' | 'False'
  /** Accepted; UnsupportedValue (a part not enforced as written); Invalid (rejected); TargetNotFound (no waypoint there). */
  readonly reason: 'Accepted' | 'UnsupportedValue' | 'Invalid' | 'TargetNotFound'
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
    // A waypoint's policy: WaypointAccepted says it (waypointStatusPatches), not ztunnel.
    if (kind === 'AuthorizationPolicy' && hasTargetRefs(object)) continue
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

function hasTargetRefs(object: Record<string, unknown>): boolean {
  const spec = object['spec']
  return isRecord(spec) && (spec['targetRefs'] !== undefined || spec['targetRef'] !== undefined)
}

/**
 * The WaypointAccepted condition of each AuthorizationPolicy with targetRefs.
 * `targetProblem` says why a target is no waypoint (null when it is one).
 */
export function waypointStatusPatches(
  objects: readonly unknown[],
  converted: Pick<ConvertedWaypointPolicies, 'policies' | 'invalid' | 'unsupported' | 'warnings'>,
  targetProblem: (target: WaypointTarget, policyNamespace: string) => string | null,
): PolicyStatusPatch[] {
  const byKey = (list: readonly PolicyProblem[]): Map<string, PolicyProblem[]> => {
    const out = new Map<string, PolicyProblem[]>()
    for (const p of list) out.set(p.policy, [...(out.get(p.policy) ?? []), p])
    return out
  }
  const invalid = byKey(converted.invalid)
  const unsupported = byKey(converted.unsupported)
  const warnings = byKey(converted.warnings)
  const policies = new Map(converted.policies.map((p) => [`${p.namespace}/${p.name}`, p]))
  const patches: PolicyStatusPatch[] = []
  for (const object of objects) {
    if (!isRecord(object) || object['kind'] !== 'AuthorizationPolicy' || !isRecord(object['metadata']) || !hasTargetRefs(object)) continue
    const meta = object['metadata']
    const namespace = typeof meta['namespace'] === 'string' ? meta['namespace'] : ''
    const name = typeof meta['name'] === 'string' ? meta['name'] : ''
    if (namespace === '' || name === '') continue
    const key = `${namespace}/${name}`
    const generation = typeof meta['generation'] === 'number' ? { observedGeneration: meta['generation'] } : {}
    const condition = (status: 'True' | 'False', reason: PolicyCondition['reason'], message: string): PolicyCondition => ({
      type: WAYPOINT_ACCEPTED,
      status,
      reason,
      message,
      ...generation,
    })
    const policy = policies.get(key)
    const missing = policy === undefined ? [] : policy.targets.map((t) => targetProblem(t, namespace)).filter((m): m is string => m !== null)
    let wanted: PolicyCondition
    if (invalid.has(key)) wanted = condition('False', 'Invalid', `rejected: ${describe(invalid.get(key)!)}`)
    else if (policy === undefined)
      continue // no target a waypoint can have: nothing to say as a waypoint
    else if (missing.length === policy.targets.length) wanted = condition('False', 'TargetNotFound', missing.join('; '))
    else if (unsupported.has(key)) wanted = condition('False', 'UnsupportedValue', `enforced differently: ${describe(unsupported.get(key)!)}`)
    else if (warnings.has(key)) wanted = condition('False', 'UnsupportedValue', `enforced by the waypoint except: ${describe(warnings.get(key)!)}`)
    else
      wanted = condition(
        'True',
        'Accepted',
        `bound to ${policy.targets.map(targetName).join(', ')}${missing.length > 0 ? ` (not: ${missing.join('; ')})` : ''}`,
      )
    const existing = conditionsOf(object)
    if (carries(existing, wanted)) continue
    const others = existing.filter((c) => !(isRecord(c) && c['type'] === WAYPOINT_ACCEPTED))
    patches.push({ kind: 'AuthorizationPolicy', namespace, name, condition: wanted, conditions: [...others, wanted] })
  }
  return patches
}

function targetName(t: WaypointTarget): string {
  return t.kind === 'GatewayClass' ? `GatewayClass ${t.name}` : `${t.kind} ${t.namespace}/${t.name}`
}

function carries(conditions: readonly unknown[], want: PolicyCondition): boolean {
  const have = conditions.find((c: unknown) => isRecord(c) && c['type'] === want.type) as Record<string, unknown> | undefined
  return (
    have !== undefined &&
    have['status'] === want.status &&
    have['reason'] === want.reason &&
    have['message'] === want.message &&
    have['observedGeneration'] === want.observedGeneration
  )
}
