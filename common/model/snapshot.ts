// One immutable view of every configuration object the agent knows, and the pure
// batch update that derives the next view. Sources (common/kube, common/local)
// convert their objects into Changes first, then apply them at once.
import type { EndpointSlice, Namespace, Pod, Service, ServiceAccount } from './workload.js'

export type ResourceKind =
  'Namespace' | 'Pod' | 'Service' | 'EndpointSlice' | 'ServiceAccount' | 'AuthorizationPolicy' | 'PeerAuthentication' | 'Gateway' | 'HTTPRoute'

export const RESOURCE_KINDS: readonly ResourceKind[] = [
  'Namespace',
  'Pod',
  'Service',
  'EndpointSlice',
  'ServiceAccount',
  'AuthorizationPolicy',
  'PeerAuthentication',
  'Gateway',
  'HTTPRoute',
]

/**
 * Kinds that travel as the parsed objects (their envelope checked by the sources):
 * common/model/convert turns them into model form, naming each bad field, so one
 * malformed object is reported and left out without rejecting the others.
 */
export type OpaqueKind = 'AuthorizationPolicy' | 'PeerAuthentication' | 'Gateway' | 'HTTPRoute'
export const OPAQUE_KINDS: readonly OpaqueKind[] = ['AuthorizationPolicy', 'PeerAuthentication', 'Gateway', 'HTTPRoute']
/** The security.istio.io kinds. */
export type PolicyKind = 'AuthorizationPolicy' | 'PeerAuthentication'

export type Resource =
  | { readonly kind: 'Namespace'; readonly value: Namespace }
  | { readonly kind: 'Pod'; readonly value: Pod }
  | { readonly kind: 'Service'; readonly value: Service }
  | { readonly kind: 'EndpointSlice'; readonly value: EndpointSlice }
  | { readonly kind: 'ServiceAccount'; readonly value: ServiceAccount }
  | { readonly kind: OpaqueKind; readonly namespace: string; readonly name: string; readonly object: unknown }

/** Names one object; namespace is '' for cluster-scoped kinds (Namespace). */
export interface ResourceRef {
  readonly kind: ResourceKind
  readonly namespace: string
  readonly name: string
}

export type Change = { readonly type: 'upsert'; readonly resource: Resource } | { readonly type: 'delete'; readonly ref: ResourceRef }

export interface OpaqueObject {
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
  /** The gateway.networking.k8s.io Gateway objects as parsed, ordered by namespace/name. */
  readonly gateways: readonly unknown[]
  /** The gateway.networking.k8s.io HTTPRoute objects as parsed, ordered by namespace/name. */
  readonly httpRoutes: readonly unknown[]
  /** Every opaque object with its name, for lookups; keyed by `<namespace>/<name>`. */
  readonly opaque: Readonly<Record<OpaqueKind, ReadonlyMap<string, OpaqueObject>>>
}

/** The ordered list field of each opaque kind. */
const OPAQUE_LIST: Readonly<Record<OpaqueKind, 'authorizationPolicies' | 'peerAuthentications' | 'gateways' | 'httpRoutes'>> = {
  AuthorizationPolicy: 'authorizationPolicies',
  PeerAuthentication: 'peerAuthentications',
  Gateway: 'gateways',
  HTTPRoute: 'httpRoutes',
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
    case 'Gateway':
    case 'HTTPRoute':
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
    gateways: [],
    httpRoutes: [],
    opaque: { AuthorizationPolicy: new Map(), PeerAuthentication: new Map(), Gateway: new Map(), HTTPRoute: new Map() },
  }
}

type MapField = 'namespaces' | 'pods' | 'services' | 'endpointSlices' | 'serviceAccounts'
const MAP_FIELD: Readonly<Record<Exclude<ResourceKind, OpaqueKind>, MapField>> = {
  Namespace: 'namespaces',
  Pod: 'pods',
  Service: 'services',
  EndpointSlice: 'endpointSlices',
  ServiceAccount: 'serviceAccounts',
}

export function isOpaqueKind(kind: string): kind is OpaqueKind {
  return (OPAQUE_KINDS as readonly string[]).includes(kind)
}

/**
 * Applies a batch of changes and returns the next snapshot (or the same one when
 * nothing changed). Deleting something absent is a no-op, so batches can repeat.
 * Only the maps a batch touches are copied.
 */
export function applyBatch(snapshot: Snapshot, changes: readonly Change[]): Snapshot {
  if (changes.length === 0) return snapshot
  const copies = new Map<MapField | OpaqueKind, Map<string, unknown>>()
  const current = (field: MapField | OpaqueKind): ReadonlyMap<string, unknown> => (isOpaqueKind(field) ? snapshot.opaque[field] : snapshot[field])
  const writable = (field: MapField | OpaqueKind): Map<string, unknown> => {
    let copy = copies.get(field)
    if (copy === undefined) {
      const source = current(field)
      copy = new Map(source)
      copies.set(field, copy)
    }
    return copy
  }
  let changed = false
  for (const change of changes) {
    const ref = change.type === 'upsert' ? refOf(change.resource) : change.ref
    const field = isOpaqueKind(ref.kind) ? ref.kind : MAP_FIELD[ref.kind]
    const key = objectKey(ref.namespace, ref.name)
    if (change.type === 'delete') {
      if (!copies.has(field) && !current(field).has(key)) continue
      changed = writable(field).delete(key) || changed
      continue
    }
    const resource = change.resource
    const value = 'value' in resource ? resource.value : { namespace: resource.namespace, name: resource.name, object: resource.object }
    writable(field).set(key, value)
    changed = true
  }
  if (!changed) return snapshot
  const pick = <T>(field: MapField | OpaqueKind, current: ReadonlyMap<string, T>): ReadonlyMap<string, T> =>
    (copies.get(field) as Map<string, T> | undefined) ?? current
  const opaque = Object.fromEntries(OPAQUE_KINDS.map((kind) => [kind, pick(kind, snapshot.opaque[kind])])) as Record<
    OpaqueKind,
    ReadonlyMap<string, OpaqueObject>
  >
  // An ordered list is rebuilt only for a kind the batch touched.
  const list = (kind: OpaqueKind): readonly unknown[] => (opaque[kind] === snapshot.opaque[kind] ? snapshot[OPAQUE_LIST[kind]] : objectList(opaque[kind]))
  return {
    version: snapshot.version + 1,
    namespaces: pick('namespaces', snapshot.namespaces),
    pods: pick('pods', snapshot.pods),
    services: pick('services', snapshot.services),
    endpointSlices: pick('endpointSlices', snapshot.endpointSlices),
    serviceAccounts: pick('serviceAccounts', snapshot.serviceAccounts),
    authorizationPolicies: list('AuthorizationPolicy'),
    peerAuthentications: list('PeerAuthentication'),
    gateways: list('Gateway'),
    httpRoutes: list('HTTPRoute'),
    opaque,
  }
}

function objectList(objects: ReadonlyMap<string, OpaqueObject>): readonly unknown[] {
  return [...objects.keys()].sort().map((key) => (objects.get(key) as OpaqueObject).object)
}

/** Every object of a snapshot as upserts: what a source replays to a fresh consumer. */
export function resourcesOf(snapshot: Snapshot): Resource[] {
  const out: Resource[] = []
  for (const value of snapshot.namespaces.values()) out.push({ kind: 'Namespace', value })
  for (const value of snapshot.pods.values()) out.push({ kind: 'Pod', value })
  for (const value of snapshot.services.values()) out.push({ kind: 'Service', value })
  for (const value of snapshot.endpointSlices.values()) out.push({ kind: 'EndpointSlice', value })
  for (const value of snapshot.serviceAccounts.values()) out.push({ kind: 'ServiceAccount', value })
  for (const kind of OPAQUE_KINDS) {
    for (const p of snapshot.opaque[kind].values()) out.push({ kind, namespace: p.namespace, name: p.name, object: p.object })
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
      const p = snapshot.opaque[ref.kind].get(key)
      return p && { kind: ref.kind, namespace: p.namespace, name: p.name, object: p.object }
    }
  }
}
