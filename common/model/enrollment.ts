// Which pods of this node are in the mesh (Istio ambient's rules), and what changed
// between two snapshots. Pure functions over the model.
import type { Namespace, Pod } from './workload.js'
import type { Snapshot } from './snapshot.js'

export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode'
export const DATAPLANE_MODE_AMBIENT = 'ambient'
export const DATAPLANE_MODE_NONE = 'none'
/** Set by the agent on every pod it enrolled. */
export const REDIRECTION_ANNOTATION = 'ambient.istio.io/redirection'
export const REDIRECTION_ENABLED = 'enabled'

export type NotEnrolledReason = 'other-node' | 'host-network' | 'opted-out' | 'namespace-not-ambient' | 'no-ip' | 'finished'

export type EnrollmentDecision = { readonly enrolled: true } | { readonly enrolled: false; readonly reason: NotEnrolledReason }

/**
 * Istio's rules, most decisive first: pods on other nodes are not this node's
 * business; hostNetwork pods are never enrolled; pod label
 * `istio.io/dataplane-mode=none` opts one pod out; otherwise namespace label
 * `istio.io/dataplane-mode=ambient` (or, as in Istio, the same label on the pod
 * itself) enrolls it; a pod without an IP is not enrollable yet, a finished one no more.
 */
export function decide(pod: Pod, namespace: Namespace | undefined, nodeName: string): EnrollmentDecision {
  if (pod.nodeName !== nodeName) return { enrolled: false, reason: 'other-node' }
  if (pod.hostNetwork) return { enrolled: false, reason: 'host-network' }
  const podMode = pod.labels[DATAPLANE_MODE_LABEL]
  if (podMode === DATAPLANE_MODE_NONE) return { enrolled: false, reason: 'opted-out' }
  const nsMode = namespace?.labels[DATAPLANE_MODE_LABEL]
  if (podMode !== DATAPLANE_MODE_AMBIENT && nsMode !== DATAPLANE_MODE_AMBIENT) {
    return { enrolled: false, reason: 'namespace-not-ambient' }
  }
  if (pod.podIP === '') return { enrolled: false, reason: 'no-ip' }
  // As soon as the sandbox has an IP (Pending included): init containers and the app's
  // first connections are captured too, as Istio's CNI plugin does at sandbox setup.
  if (pod.phase === 'Succeeded' || pod.phase === 'Failed') return { enrolled: false, reason: 'finished' }
  return { enrolled: true }
}

export function isEnrolled(snapshot: Snapshot, pod: Pod, nodeName: string): boolean {
  return decide(pod, snapshot.namespaces.get(pod.namespace), nodeName).enrolled
}

/** This node's enrolled pods, ordered by namespace/name. */
export function enrolledPods(snapshot: Snapshot, nodeName: string): Pod[] {
  const out: Pod[] = []
  for (const key of [...snapshot.pods.keys()].sort()) {
    const pod = snapshot.pods.get(key) as Pod
    if (isEnrolled(snapshot, pod, nodeName)) out.push(pod)
  }
  return out
}

export interface EnrollmentDiff {
  /** Enrolled in the next snapshot and not (or not as this same pod) in the previous one. */
  readonly enroll: readonly Pod[]
  /** Enrolled in the previous snapshot and no longer (as this same pod); the previous pod. */
  readonly unenroll: readonly Pod[]
}

/**
 * What to enroll and un-enroll going from prev to next. A pod that was recreated
 * under the same name (new uid) or got another IP is un-enrolled as the old pod
 * and enrolled as the new one.
 */
export function diff(prev: Snapshot, next: Snapshot, nodeName: string): EnrollmentDiff {
  const before = new Map(enrolledPods(prev, nodeName).map((p) => [`${p.namespace}/${p.name}`, p]))
  const after = new Map(enrolledPods(next, nodeName).map((p) => [`${p.namespace}/${p.name}`, p]))
  const enroll: Pod[] = []
  const unenroll: Pod[] = []
  for (const [key, pod] of before) {
    const now = after.get(key)
    if (now === undefined || !samePod(pod, now)) unenroll.push(pod)
  }
  for (const [key, pod] of after) {
    const was = before.get(key)
    if (was === undefined || !samePod(was, pod)) enroll.push(pod)
  }
  return { enroll, unenroll }
}

function samePod(a: Pod, b: Pod): boolean {
  return a.uid === b.uid && a.podIP === b.podIP
}
