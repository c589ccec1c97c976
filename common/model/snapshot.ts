// One immutable view of every configuration object the agent knows, and the pure
// batch update that derives the next view. Sources (common/kube, common/local)
// convert their objects into Changes first, then apply them at once.
import type { EndpointSlice, Namespace, Pod, Service, ServiceAccount } from './workload.js'

export type ResourceKind = 'Namespace' | 'Pod' | 'Service' | 'EndpointSlice' | 'ServiceAccount' | 'AuthorizationPolicy' | 'PeerAuthentication'

export const RESOURCE_KINDS: readonly ResourceKind[] = [
  'Namespace',
  'Pod',
  'Service',
  'EndpointSlice',
  'ServiceAccount',
  'AuthorizationPolicy',
  'PeerAuthentication',
]

/** Policies travel as the parsed objects; common/model/convert turns them into model form. */
export type PolicyKind = 'AuthorizationPolicy' | 'PeerAuthentication'

export type Resource =
  | { readonly kind: 'Namespace'; readonly value: Namespace }
  | { readonly kind: 'Pod'; readonly value: Pod }
  | { readonly kind: 'Service'; readonly value: Service }
  | { readonly kind: 'EndpointSlice'; readonly value: EndpointSlice }
  | { readonly kind: 'ServiceAccount'; readonly value: ServiceAccount }
  | { readonly kind: PolicyKind; readonly namespace: string; readonly name: string; readonly object: unknown }

/** Names one object; namespace is '' for cluster-scoped kinds (Namespace). */
export interface ResourceRef {
  readonly kind: ResourceKind
  readonly namespace: string
  readonly name: string
}

export type Change = { readonly type: 'upsert'; readonly resource: Resource } | { readonly type: 'delete'; readonly ref: ResourceRef }

export interface OpaquePolicy {
  readonly namespace: string
  readonly name: string
  readonly object: unknown
}

export interface Snapshot {
  /** Increases by one with every applied batch that changed something. */
  readonly version: number
  /** Keyed by name. */
  readonly namespaces: ReadonlyMap<string, Namespace>
  /** Keyed by `<namespace>/<name>` (see objectKey), like every namespaced map below. */
  readonly pods: ReadonlyMap<string, Pod>
  readonly services: ReadonlyMap<string, Service>
  readonly endpointSlices: ReadonlyMap<string, EndpointSlice>
  readonly serviceAccounts: ReadonlyMap<string, ServiceAccount>
  /** The security.istio.io AuthorizationPolicy objects as parsed, ordered by namespace/name. */
  readonly authorizationPolicies: readonly unknown[]
  /** The security.istio.io PeerAuthentication objects as parsed, ordered by namespace/name. */
  readonly peerAuthentications: readonly unknown[]
  /** Same policies with their names, for lookups; keyed by `<namespace>/<name>`. */
  readonly policies: {
    readonly AuthorizationPolicy: ReadonlyMap<string, OpaquePolicy>
    readonly PeerAuthentication: ReadonlyMap<string, OpaquePolicy>
  }
}

export function objectKey(namespace: string, name: string): string {
  return namespace === '' ? name : `${namespace}/${name}`
}

export function refOf(resource: Resource): ResourceRef {
  switch (resource.kind) {
    case 'Namespace':
      return { kind: 'Namespace', namespace: '', name: resource.value.name }
    case 'AuthorizationPolicy':
    case 'PeerAuthentication':
      return { kind: resource.kind, namespace: resource.namespace, name: resource.name }
    default:
      return { kind: resource.kind, namespace: resource.value.namespace, name: resource.value.name }
  }
}

export function refToString(ref: ResourceRef): string {
  return `${ref.kind} ${objectKey(ref.namespace, ref.name)}`
}

export function emptySnapshot(): Snapshot {
  return {
    version: 0,
    namespaces: new Map(),
    pods: new Map(),
    services: new Map(),
    endpointSlices: new Map(),
    serviceAccounts: new Map(),
    authorizationPolicies: [],
    peerAuthentications: [],
    policies: { AuthorizationPolicy: new Map(), PeerAuthentication: new Map() },
  }
}

type MapField = 'namespaces' | 'pods' | 'services' | 'endpointSlices' | 'serviceAccounts'
const MAP_FIELD: Readonly<Record<Exclude<ResourceKind, PolicyKind>, MapField>> = {
  Namespace: 'namespaces',
  Pod: 'pods',
  Service: 'services',
  EndpointSlice: 'endpointSlices',
  ServiceAccount: 'serviceAccounts',
}

function isPolicyKind(kind: ResourceKind): kind is PolicyKind {
  return kind === 'AuthorizationPolicy' || kind === 'PeerAuthentication'
}

/**
 * Applies a batch of changes and returns the next snapshot (or the same one when
 * nothing changed). Deleting something absent is a no-op, so batches can repeat.
 * Only the maps a batch touches are copied.
 */
export function applyBatch(snapshot: Snapshot, changes: readonly Change[]): Snapshot {
  if (changes.length === 0) return snapshot
  const copies = new Map<MapField | PolicyKind, Map<string, unknown>>()
  const writable = (field: MapField | PolicyKind): Map<string, unknown> => {
    let copy = copies.get(field)
    if (copy === undefined) {
      const source: ReadonlyMap<string, unknown> = isPolicyField(field) ? snapshot.policies[field] : snapshot[field]
      copy = new Map(source)
      copies.set(field, copy)
    }
    return copy
  }
  let changed = false
  for (const change of changes) {
    const ref = change.type === 'upsert' ? refOf(change.resource) : change.ref
    const field = isPolicyKind(ref.kind) ? ref.kind : MAP_FIELD[ref.kind]
    const key = objectKey(ref.namespace, ref.name)
    if (change.type === 'delete') {
      const current = isPolicyField(field) ? snapshot.policies[field] : snapshot[field]
      if (!copies.has(field) && !current.has(key)) continue
      changed = writable(field).delete(key) || changed
      continue
    }
    const resource = change.resource
    const value = 'value' in resource ? resource.value : { namespace: resource.namespace, name: resource.name, object: resource.object }
    writable(field).set(key, value)
    changed = true
  }
  if (!changed) return snapshot
  const pick = <T>(field: MapField | PolicyKind, current: ReadonlyMap<string, T>): ReadonlyMap<string, T> =>
    (copies.get(field) as Map<string, T> | undefined) ?? current
  const authz = pick('AuthorizationPolicy', snapshot.policies.AuthorizationPolicy)
  const peer = pick('PeerAuthentication', snapshot.policies.PeerAuthentication)
  return {
    version: snapshot.version + 1,
    namespaces: pick('namespaces', snapshot.namespaces),
    pods: pick('pods', snapshot.pods),
    services: pick('services', snapshot.services),
    endpointSlices: pick('endpointSlices', snapshot.endpointSlices),
    serviceAccounts: pick('serviceAccounts', snapshot.serviceAccounts),
    authorizationPolicies: authz === snapshot.policies.AuthorizationPolicy ? snapshot.authorizationPolicies : policyList(authz),
    peerAuthentications: peer === snapshot.policies.PeerAuthentication ? snapshot.peerAuthentications : policyList(peer),
    policies: { AuthorizationPolicy: authz, PeerAuthentication: peer },
  }
}

function isPolicyField(field: MapField | PolicyKind): field is PolicyKind {
  return field === 'AuthorizationPolicy' || field === 'PeerAuthentication'
}

function policyList(policies: ReadonlyMap<string, OpaquePolicy>): readonly unknown[] {
  return [...policies.keys()].sort().map((key) => (policies.get(key) as OpaquePolicy).object)
}

/** Every object of a snapshot as upserts: what a source replays to a fresh consumer. */
export function resourcesOf(snapshot: Snapshot): Resource[] {
  const out: Resource[] = []
  for (const value of snapshot.namespaces.values()) out.push({ kind: 'Namespace', value })
  for (const value of snapshot.pods.values()) out.push({ kind: 'Pod', value })
  for (const value of snapshot.services.values()) out.push({ kind: 'Service', value })
  for (const value of snapshot.endpointSlices.values()) out.push({ kind: 'EndpointSlice', value })
  for (const value of snapshot.serviceAccounts.values()) out.push({ kind: 'ServiceAccount', value })
  for (const kind of ['AuthorizationPolicy', 'PeerAuthentication'] as const) {
    for (const p of snapshot.policies[kind].values()) out.push({ kind, namespace: p.namespace, name: p.name, object: p.object })
  }
  return out
}

/** Looks up one object by reference; undefined when absent. */
export function lookup(snapshot: Snapshot, ref: ResourceRef): Resource | undefined {
  const key = objectKey(ref.namespace, ref.name)
  switch (ref.kind) {
    case 'Namespace': {
      const value = snapshot.namespaces.get(key)
      return value && { kind: 'Namespace', value }
    }
    case 'Pod': {
      const value = snapshot.pods.get(key)
      return value && { kind: 'Pod', value }
    }
    case 'Service': {
      const value = snapshot.services.get(key)
      return value && { kind: 'Service', value }
    }
    case 'EndpointSlice': {
      const value = snapshot.endpointSlices.get(key)
      return value && { kind: 'EndpointSlice', value }
    }
    case 'ServiceAccount': {
      const value = snapshot.serviceAccounts.get(key)
      return value && { kind: 'ServiceAccount', value }
    }
    default: {
      const p = snapshot.policies[ref.kind].get(key)
      return p && { kind: ref.kind, namespace: p.namespace, name: p.name, object: p.object }
    }
  }
}
