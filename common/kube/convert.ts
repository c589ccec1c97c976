// Converts Kubernetes objects (parsed JSON from the API or YAML from a manifest)
// into the model. Input is untrusted: every field is checked, and a bad one rejects
// its object with an InvalidObjectError naming the object and the field.
import { isIP } from 'node:net'
import type { Change, OpaqueKind, Resource, ResourceKind, ResourceRef } from '../model/snapshot.js'
import {
  POD_PHASES,
  type Endpoint,
  type EndpointPort,
  type EndpointSlice,
  type Labels,
  type Namespace,
  type Pod,
  type PodPhase,
  type Service,
  type ServicePort,
  type ServiceProtocol,
} from '../model/workload.js'
import { InvalidObjectError, type ObjectOrigin } from './errors.js'

/** apiVersion(s) accepted per kind; the first is the one the API source watches. */
export const API_VERSIONS: Readonly<Record<ResourceKind, readonly string[]>> = {
  Namespace: ['v1'],
  Pod: ['v1'],
  Service: ['v1'],
  ServiceAccount: ['v1'],
  EndpointSlice: ['discovery.k8s.io/v1'],
  AuthorizationPolicy: ['security.istio.io/v1', 'security.istio.io/v1beta1'],
  PeerAuthentication: ['security.istio.io/v1', 'security.istio.io/v1beta1'],
  Gateway: ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'],
  HTTPRoute: ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'],
}

export function isResourceKind(kind: unknown): kind is ResourceKind {
  return typeof kind === 'string' && Object.hasOwn(API_VERSIONS, kind)
}

export type ConvertResult = { readonly ok: true; readonly resource: Resource } | { readonly ok: false; readonly error: InvalidObjectError }

type Obj = Readonly<Record<string, unknown>>

class Reader {
  constructor(
    readonly kind: string,
    readonly namespace: string,
    readonly name: string,
    readonly origin: ObjectOrigin,
  ) {}

  fail(field: string, problem: string): never {
    throw new InvalidObjectError({ kind: this.kind, namespace: this.namespace, name: this.name, field, problem, ...this.origin })
  }

  object(value: unknown, field: string): Obj | undefined {
    if (value === undefined || value === null) return undefined
    if (typeof value !== 'object' || Array.isArray(value)) this.fail(field, `must be an object, got ${describe(value)}`)
    return value as Obj
  }

  array(value: unknown, field: string): readonly unknown[] {
    if (value === undefined || value === null) return []
    if (!Array.isArray(value)) this.fail(field, `must be a list, got ${describe(value)}`)
    return value
  }

  string(value: unknown, field: string, fallback = ''): string {
    if (value === undefined || value === null) return fallback
    if (typeof value !== 'string') this.fail(field, `must be a string, got ${describe(value)}`)
    return value
  }

  boolean(value: unknown, field: string, fallback: boolean): boolean {
    if (value === undefined || value === null) return fallback
    if (typeof value !== 'boolean') this.fail(field, `must be true or false, got ${describe(value)}`)
    return value
  }

  ip(value: unknown, field: string): string {
    const s = this.string(value, field)
    if (s !== '' && isIP(s) === 0) this.fail(field, `must be an IP address, got ${JSON.stringify(s)}`)
    return s
  }

  port(value: unknown, field: string): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
      this.fail(field, `must be a port number (1-65535), got ${describe(value)}`)
    }
    return value
  }

  protocol(value: unknown, field: string): ServiceProtocol {
    const s = this.string(value, field, 'TCP')
    if (s !== 'TCP' && s !== 'UDP' && s !== 'SCTP') this.fail(field, `must be TCP, UDP or SCTP, got ${JSON.stringify(s)}`)
    return s
  }

  stringMap(value: unknown, field: string): Labels {
    const obj = this.object(value, field)
    if (obj === undefined) return Object.freeze({})
    const out: Record<string, string> = {}
    for (const [k, v] of Object.entries(obj)) out[k] = this.string(v, `${field}.${k}`) // null label values are absent
    return Object.freeze(out)
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'object') return 'an object'
  return `${typeof value} ${String(value)}`
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value as object)) deepFreeze(v)
  }
  return value
}

/**
 * Reads kind, namespace and name of an object, before anything else is checked.
 * `kind` is the expected kind (API lists carry no kind per item); when absent the
 * object's own kind and apiVersion are checked.
 */
export function identify(
  raw: unknown,
  options: { readonly kind?: ResourceKind; readonly origin?: ObjectOrigin; readonly defaultNamespace?: string } = {},
): { readonly ref: ResourceRef; readonly obj: Obj; readonly reader: Reader } {
  const origin = options.origin ?? {}
  const fallbackKind = options.kind ?? 'object'
  const early = new Reader(fallbackKind, '', '', origin)
  const obj = early.object(raw, '(object)') ?? early.fail('(object)', 'is empty')
  const metadata = early.object(obj.metadata, 'metadata') ?? early.fail('metadata', 'is missing')
  const name = early.string(metadata.name, 'metadata.name')
  const ownKind = obj.kind
  let kind: ResourceKind
  if (options.kind !== undefined) {
    kind = options.kind
    if (ownKind !== undefined && ownKind !== kind) new Reader(kind, '', name, origin).fail('kind', `must be ${kind}, got ${describe(ownKind)}`)
  } else {
    if (typeof ownKind !== 'string' || ownKind === '') return new Reader('object', '', name, origin).fail('kind', 'is missing')
    if (!isResourceKind(ownKind)) {
      throw new InvalidObjectError(
        {
          kind: ownKind,
          namespace: '',
          name,
          field: 'kind',
          problem: `${JSON.stringify(ownKind)} is not supported (supported: ${Object.keys(API_VERSIONS).join(', ')})`,
          ...origin,
        },
        'AMBIENT_ERR_SOURCE_UNSUPPORTED_KIND',
      )
    }
    kind = ownKind
    const apiVersion = obj.apiVersion
    if (!API_VERSIONS[kind].includes(apiVersion as string)) {
      new Reader(kind, '', name, origin).fail('apiVersion', `must be ${API_VERSIONS[kind].join(' or ')}, got ${describe(apiVersion)}`)
    }
  }
  const clusterScoped = kind === 'Namespace'
  const namespace = clusterScoped ? '' : early.string(metadata.namespace, 'metadata.namespace', options.defaultNamespace ?? '')
  const reader = new Reader(kind, namespace, name, origin)
  if (name === '') reader.fail('metadata.name', 'is missing')
  if (!clusterScoped && namespace === '') reader.fail('metadata.namespace', 'is missing')
  return { ref: { kind, namespace, name }, obj, reader }
}

/** Converts one object; never throws. */
export function convertObject(
  raw: unknown,
  options: { readonly kind?: ResourceKind; readonly origin?: ObjectOrigin; readonly defaultNamespace?: string } = {},
): ConvertResult {
  try {
    const { ref, obj, reader } = identify(raw, options)
    return { ok: true, resource: convertKnown(ref, obj, reader) }
  } catch (err) {
    if (err instanceof InvalidObjectError) return { ok: false, error: err }
    throw err
  }
}

/** The delete change for an object, or the error when it cannot even be named. */
export function deletionOf(
  raw: unknown,
  kind: ResourceKind,
): { readonly ok: true; readonly change: Change } | { readonly ok: false; readonly error: InvalidObjectError } {
  try {
    return { ok: true, change: { type: 'delete', ref: identify(raw, { kind }).ref } }
  } catch (err) {
    if (err instanceof InvalidObjectError) return { ok: false, error: err }
    throw err
  }
}

function convertKnown(ref: ResourceRef, obj: Obj, r: Reader): Resource {
  const metadata = obj.metadata as Obj
  switch (ref.kind) {
    case 'Namespace': {
      const value: Namespace = Object.freeze({ name: ref.name, labels: r.stringMap(metadata.labels, 'metadata.labels') })
      return { kind: 'Namespace', value }
    }
    case 'Pod':
      return { kind: 'Pod', value: convertPod(ref, obj, r) }
    case 'Service':
      return { kind: 'Service', value: convertService(ref, obj, r) }
    case 'EndpointSlice':
      return { kind: 'EndpointSlice', value: convertEndpointSlice(ref, obj, r) }
    case 'ServiceAccount':
      return {
        kind: 'ServiceAccount',
        value: Object.freeze({
          namespace: ref.namespace,
          name: ref.name,
          labels: r.stringMap(metadata.labels, 'metadata.labels'),
          annotations: r.stringMap(metadata.annotations, 'metadata.annotations'),
        }),
      }
    case 'AuthorizationPolicy':
    case 'PeerAuthentication':
    case 'Gateway':
    case 'HTTPRoute':
      return convertOpaque(ref.kind, ref, obj, r)
  }
}

function convertPod(ref: ResourceRef, obj: Obj, r: Reader): Pod {
  const metadata = obj.metadata as Obj
  const spec = r.object(obj.spec, 'spec') ?? {}
  const status = r.object(obj.status, 'status') ?? {}
  const podIP = r.ip(status.podIP, 'status.podIP')
  const podIPs: string[] = podIP === '' ? [] : [podIP]
  r.array(status.podIPs, 'status.podIPs').forEach((entry, i) => {
    const ip = r.ip(r.object(entry, `status.podIPs[${i}]`)?.ip, `status.podIPs[${i}].ip`)
    if (ip !== '' && !podIPs.includes(ip)) podIPs.push(ip)
  })
  const phase = r.string(status.phase, 'status.phase', 'Pending')
  if (!POD_PHASES.includes(phase as PodPhase)) r.fail('status.phase', `must be one of ${POD_PHASES.join(', ')}, got ${JSON.stringify(phase)}`)
  const containerIDs: string[] = []
  for (const field of ['initContainerStatuses', 'containerStatuses'] as const) {
    r.array(status[field], `status.${field}`).forEach((entry, i) => {
      const id = r.string(r.object(entry, `status.${field}[${i}]`)?.containerID, `status.${field}[${i}].containerID`)
      if (id !== '') containerIDs.push(id)
    })
  }
  return Object.freeze({
    uid: r.string(metadata.uid, 'metadata.uid'),
    namespace: ref.namespace,
    name: ref.name,
    nodeName: r.string(spec.nodeName, 'spec.nodeName'),
    podIP,
    podIPs: Object.freeze(podIPs),
    serviceAccount: r.string(spec.serviceAccountName, 'spec.serviceAccountName', '') || 'default',
    labels: r.stringMap(metadata.labels, 'metadata.labels'),
    annotations: r.stringMap(metadata.annotations, 'metadata.annotations'),
    hostNetwork: r.boolean(spec.hostNetwork, 'spec.hostNetwork', false),
    phase: phase as PodPhase,
    containerIDs: Object.freeze(containerIDs),
  })
}

function convertService(ref: ResourceRef, obj: Obj, r: Reader): Service {
  const metadata = obj.metadata as Obj
  const spec = r.object(obj.spec, 'spec') ?? {}
  const clusterIP = r.string(spec.clusterIP, 'spec.clusterIP')
  const raw = spec.clusterIPs === undefined || spec.clusterIPs === null ? (clusterIP ? [clusterIP] : []) : r.array(spec.clusterIPs, 'spec.clusterIPs')
  const clusterIPs: string[] = []
  raw.forEach((ip, i) => {
    const field = spec.clusterIPs === undefined || spec.clusterIPs === null ? 'spec.clusterIP' : `spec.clusterIPs[${i}]`
    if (ip === 'None') return
    clusterIPs.push(r.ip(ip, field))
  })
  const ports: ServicePort[] = r.array(spec.ports, 'spec.ports').map((entry, i) => {
    const field = `spec.ports[${i}]`
    const p = r.object(entry, field) ?? r.fail(field, 'is empty')
    const port = r.port(p.port, `${field}.port`)
    let targetPort: number | string = port
    if (typeof p.targetPort === 'number') targetPort = r.port(p.targetPort, `${field}.targetPort`)
    else if (p.targetPort !== undefined && p.targetPort !== null) {
      const s = r.string(p.targetPort, `${field}.targetPort`)
      targetPort = /^\d+$/.test(s) ? r.port(Number(s), `${field}.targetPort`) : s
    }
    return Object.freeze({
      name: r.string(p.name, `${field}.name`),
      port,
      targetPort,
      protocol: r.protocol(p.protocol, `${field}.protocol`),
      appProtocol: r.string(p.appProtocol, `${field}.appProtocol`),
    })
  })
  return Object.freeze({
    namespace: ref.namespace,
    name: ref.name,
    clusterIPs: Object.freeze(clusterIPs),
    ports: Object.freeze(ports),
    labels: r.stringMap(metadata.labels, 'metadata.labels'),
  })
}

function convertEndpointSlice(ref: ResourceRef, obj: Obj, r: Reader): EndpointSlice {
  const labels = r.stringMap((obj.metadata as Obj).labels, 'metadata.labels')
  const addressType = r.string(obj.addressType, 'addressType', 'IPv4')
  if (addressType !== 'IPv4' && addressType !== 'IPv6' && addressType !== 'FQDN') {
    r.fail('addressType', `must be IPv4, IPv6 or FQDN, got ${JSON.stringify(addressType)}`)
  }
  const endpoints: Endpoint[] = r.array(obj.endpoints, 'endpoints').map((entry, i) => {
    const field = `endpoints[${i}]`
    const e = r.object(entry, field) ?? r.fail(field, 'is empty')
    const addresses = r
      .array(e.addresses, `${field}.addresses`)
      .map((a, j) => (addressType === 'FQDN' ? r.string(a, `${field}.addresses[${j}]`) : r.ip(a, `${field}.addresses[${j}]`)))
    const conditions = r.object(e.conditions, `${field}.conditions`) ?? {}
    const target = r.object(e.targetRef, `${field}.targetRef`)
    const endpoint: Endpoint = {
      addresses: Object.freeze(addresses),
      ready: r.boolean(conditions.ready, `${field}.conditions.ready`, true),
      nodeName: r.string(e.nodeName, `${field}.nodeName`),
      ...(target && {
        targetRef: Object.freeze({
          kind: r.string(target.kind, `${field}.targetRef.kind`),
          namespace: r.string(target.namespace, `${field}.targetRef.namespace`, ref.namespace),
          name: r.string(target.name, `${field}.targetRef.name`),
          uid: r.string(target.uid, `${field}.targetRef.uid`),
        }),
      }),
    }
    return Object.freeze(endpoint)
  })
  const ports: EndpointPort[] = r.array(obj.ports, 'ports').map((entry, i) => {
    const p = r.object(entry, `ports[${i}]`) ?? {}
    return Object.freeze({
      name: r.string(p.name, `ports[${i}].name`),
      port: r.port(p.port, `ports[${i}].port`),
      protocol: r.protocol(p.protocol, `ports[${i}].protocol`),
    })
  })
  return Object.freeze({
    namespace: ref.namespace,
    name: ref.name,
    serviceName: labels['kubernetes.io/service-name'] ?? '',
    addressType,
    endpoints: Object.freeze(endpoints),
    ports: Object.freeze(ports),
  })
}

function convertOpaque(kind: OpaqueKind, ref: ResourceRef, obj: Obj, r: Reader): Resource {
  // Only the envelope is checked here; common/model/convert owns the semantics.
  r.object(obj.spec, 'spec')
  r.stringMap((obj.metadata as Obj).labels, 'metadata.labels')
  // API list items carry no kind/apiVersion; the policy converter may look at them.
  const object = deepFreeze({ apiVersion: API_VERSIONS[kind][0], kind, ...structuredClone(obj) })
  return { kind, namespace: ref.namespace, name: ref.name, object }
}
