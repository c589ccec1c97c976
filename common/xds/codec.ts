// The model (common/model) to and from the protobuf bytes the agent streams to its
// node's ztunnel: istio.workload.Address, istio.security.Authorization and our
// ambient.zds.v1.LocalWorkload. Decoders check what the schema cannot (IP lengths,
// enum numbers, oneofs, port ranges) and throw XdsResourceError naming the
// resource and the field, so a client rejects that resource alone.
import type { GatewayAddress, MeshService, NetworkAddress, PortMapping, TunnelProtocol, Workload, WorkloadStatus, WorkloadType } from '../model/workload.js'
import { TUNNEL_PROTOCOL_NUMBER, WORKLOAD_STATUS_NUMBER, WORKLOAD_TYPE_NUMBER } from '../model/workload.js'
import type { Action, Address, Authorization, Group, Match, Scope, ServiceAccountMatch, StringMatch } from '../model/authorization.js'
import { ACTION_NUMBER, SCOPE_NUMBER, authorizationKey } from '../model/authorization.js'
import { bytesToIp, ipToBytes } from './ip.js'
import { decodeMessage, encodeMessage, messageType } from './proto.js'
import { AmbientError } from '../errors.js'

export const ADDRESS_TYPE_URL = 'type.googleapis.com/istio.workload.Address'
export const AUTHORIZATION_TYPE_URL = 'type.googleapis.com/istio.security.Authorization'
export const LOCAL_WORKLOAD_TYPE_URL = 'type.googleapis.com/ambient.zds.v1.LocalWorkload'
export const TYPE_URLS = [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, LOCAL_WORKLOAD_TYPE_URL] as const
export type TypeUrl = (typeof TYPE_URLS)[number]

/** A resource that cannot be encoded or decoded: `resource` names it, `field` the bad field. */
export class XdsResourceError extends AmbientError<'AMBIENT_ERR_XDS_RESOURCE'> {
  readonly resource: string
  readonly field: string
  constructor(resource: string, field: string, message: string, options?: { cause?: unknown }) {
    super('AMBIENT_ERR_XDS_RESOURCE', `${resource}: ${field}: ${message}`, options)
    this.resource = resource
    this.field = field
  }
}

/** ambient.zds.v1.LocalWorkload: what only the workload's own node knows. */
export interface LocalWorkload {
  readonly uid: string
  readonly name: string
  readonly namespace: string
  readonly serviceAccount: string
  readonly netnsPath: string
}

export type DecodedAddress = { readonly kind: 'workload'; readonly workload: Workload } | { readonly kind: 'service'; readonly service: MeshService }

/** Resource names as Istio gives them: a workload by uid, a service by `<namespace>/<hostname>`. */
export const workloadResourceName = (w: Pick<Workload, 'uid'>): string => w.uid
export const serviceResourceName = (s: Pick<MeshService, 'namespace' | 'hostname'>): string => `${s.namespace}/${s.hostname}`
export const authorizationResourceName = authorizationKey

// Wire shapes as protobufjs decodes them (camelCase, defaults filled): internal only.
interface WirePort {
  servicePort: number
  targetPort: number
}
interface WireWorkload {
  uid: string
  name: string
  namespace: string
  addresses: Buffer[]
  network: string
  tunnelProtocol: number
  trustDomain: string
  serviceAccount: string
  waypoint: WireGatewayAddress | null
  node: string
  canonicalName: string
  canonicalRevision: string
  workloadType: number
  workloadName: string
  services: Record<string, { ports: WirePort[] }>
  authorizationPolicies: string[]
  status: number
  clusterId: string
}
interface WireService {
  name: string
  namespace: string
  hostname: string
  addresses: { network: string; address: Buffer }[]
  ports: WirePort[]
  subjectAltNames: string[]
  waypoint: WireGatewayAddress | null
}
interface WireGatewayAddress {
  destination?: 'hostname' | 'address'
  hostname?: { namespace: string; hostname: string }
  address?: { network: string; address: Buffer }
  hboneMtlsPort: number
}
interface WireAddress {
  type?: 'workload' | 'service'
  workload?: WireWorkload
  service?: WireService
}
interface WireStringMatch {
  matchType?: 'exact' | 'prefix' | 'suffix' | 'presence'
  exact?: string
  prefix?: string
  suffix?: string
}
interface WireCidr {
  address: Buffer
  length: number
}
interface WireAccount {
  namespace: string
  serviceAccount: string
}
interface WireMatch {
  namespaces: WireStringMatch[]
  notNamespaces: WireStringMatch[]
  principals: WireStringMatch[]
  notPrincipals: WireStringMatch[]
  sourceIps: WireCidr[]
  notSourceIps: WireCidr[]
  destinationIps: WireCidr[]
  notDestinationIps: WireCidr[]
  destinationPorts: number[]
  notDestinationPorts: number[]
  serviceAccounts: WireAccount[]
  notServiceAccounts: WireAccount[]
}
interface WireAuthorization {
  name: string
  namespace: string
  scope: number
  action: number
  groups: { rules: { matches: WireMatch[] }[] }[]
  dryRun: boolean
}
interface WireLocal {
  uid: string
  workloadInfo: { name: string; namespace: string; serviceAccount: string } | null
  netnsPath: string
}

const T = {
  address: () => messageType('istio.workload.Address'),
  authorization: () => messageType('istio.security.Authorization'),
  local: () => messageType('ambient.zds.v1.LocalWorkload'),
}

function ipBytes(resource: string, field: string, ip: string): Buffer {
  const b = ipToBytes(ip)
  if (!b) throw new XdsResourceError(resource, field, `${JSON.stringify(ip)} is not an IP address`)
  return b
}

function ipText(resource: string, field: string, bytes: Uint8Array): string {
  const ip = bytesToIp(bytes)
  if (ip === null) throw new XdsResourceError(resource, field, `an IP address is 4 or 16 bytes, got ${bytes.length}`)
  return ip
}

function enumName<K extends string>(resource: string, field: string, numbers: Readonly<Record<K, number>>, n: number): K {
  const name = (Object.keys(numbers) as K[]).find((k) => numbers[k] === n)
  if (name === undefined) throw new XdsResourceError(resource, field, `unsupported enum number ${n}`)
  return name
}

function encodeGateway(resource: string, g: GatewayAddress | null): object | null {
  if (g === null) return null
  const d = g.destination
  const destination =
    d.kind === 'address'
      ? { address: { network: d.network, address: ipBytes(resource, 'waypoint.address.address', d.address) } }
      : { hostname: { namespace: d.namespace, hostname: d.hostname } }
  return { ...destination, hboneMtlsPort: g.hboneMtlsPort }
}

function decodeGateway(resource: string, g: WireGatewayAddress | null): GatewayAddress | null {
  if (g === null) return null
  const hboneMtlsPort = port(resource, 'waypoint.hbone_mtls_port', g.hboneMtlsPort)
  if (hboneMtlsPort === 0) throw new XdsResourceError(resource, 'waypoint.hbone_mtls_port', 'is 0: a waypoint needs its HBONE port')
  if (g.destination === 'address' && g.address) {
    return {
      destination: { kind: 'address', network: g.address.network, address: ipText(resource, 'waypoint.address.address', g.address.address) },
      hboneMtlsPort,
    }
  }
  if (g.destination === 'hostname' && g.hostname) {
    const namespace = required(resource, 'waypoint.hostname.namespace', g.hostname.namespace)
    return { destination: { kind: 'hostname', namespace, hostname: required(resource, 'waypoint.hostname.hostname', g.hostname.hostname) }, hboneMtlsPort }
  }
  throw new XdsResourceError(resource, 'waypoint.destination', 'neither hostname (1) nor address (2) is set')
}

function port(resource: string, field: string, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new XdsResourceError(resource, field, `port ${n} is out of range 0-65535`)
  return n
}

function ports(resource: string, field: string, wire: readonly WirePort[]): PortMapping[] {
  return wire.map((p, i) => ({
    servicePort: port(resource, `${field}[${i}].service_port`, p.servicePort),
    targetPort: port(resource, `${field}[${i}].target_port`, p.targetPort),
  }))
}

function required(resource: string, field: string, value: string): string {
  if (value === '') throw new XdsResourceError(resource, field, 'is empty')
  return value
}

/** Runs protobufjs's decode, turning its errors (truncated or malformed bytes) into XdsResourceError. */
function decodeOrThrow<W>(resource: string, type: ReturnType<typeof messageType>, bytes: Uint8Array): W {
  try {
    return decodeMessage<W>(type, bytes)
  } catch (err) {
    throw new XdsResourceError(resource, '(bytes)', `not a valid ${type.fullName.slice(1)}: ${(err as Error).message}`, { cause: err })
  }
}

// ---- istio.workload.Address -------------------------------------------------------

export function encodeWorkloadAddress(w: Workload): Buffer {
  const who = `workload ${w.uid}`
  // Map keys sorted, so equal workloads always give equal bytes (the server's versions are hashes of them).
  const services: Record<string, { ports: WirePort[] }> = {}
  for (const key of Object.keys(w.services).sort())
    services[key] = { ports: w.services[key]!.map((p) => ({ servicePort: p.servicePort, targetPort: p.targetPort })) }
  const workload = {
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    addresses: w.ips.map((ip, i) => ipBytes(who, `addresses[${i}]`, ip)),
    network: w.network,
    tunnelProtocol: TUNNEL_PROTOCOL_NUMBER[w.tunnelProtocol],
    trustDomain: w.trustDomain,
    serviceAccount: w.serviceAccount,
    waypoint: encodeGateway(who, w.waypoint),
    node: w.node,
    canonicalName: w.canonicalName,
    canonicalRevision: w.canonicalRevision,
    workloadType: WORKLOAD_TYPE_NUMBER[w.workloadType],
    workloadName: w.workloadName,
    services,
    authorizationPolicies: [...(w.authorizationPolicies ?? [])],
    status: WORKLOAD_STATUS_NUMBER[w.status],
    clusterId: w.clusterId,
  }
  return encodeMessage(T.address(), { workload })
}

export function encodeServiceAddress(s: MeshService): Buffer {
  const who = `service ${serviceResourceName(s)}`
  const service = {
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    addresses: s.addresses.map((a, i) => ({ network: a.network, address: ipBytes(who, `addresses[${i}].address`, a.address) })),
    ports: s.ports.map((p) => ({ servicePort: p.servicePort, targetPort: p.targetPort })),
    subjectAltNames: [...s.subjectAltNames],
    waypoint: encodeGateway(who, s.waypoint),
  }
  return encodeMessage(T.address(), { service })
}

export function decodeAddress(bytes: Uint8Array): DecodedAddress {
  const wire = decodeOrThrow<WireAddress>('address', T.address(), bytes)
  if (wire.type === 'workload' && wire.workload) return { kind: 'workload', workload: decodeWorkload(wire.workload) }
  if (wire.type === 'service' && wire.service) return { kind: 'service', service: decodeService(wire.service) }
  throw new XdsResourceError('address', 'type', 'neither workload (1) nor service (2) is set')
}

function decodeWorkload(w: WireWorkload): Workload {
  const who = `workload ${w.uid || `${w.namespace}/${w.name}`}`
  required(who, 'uid', w.uid)
  const services: Record<string, readonly PortMapping[]> = {}
  for (const [key, list] of Object.entries(w.services)) services[key] = ports(who, `services[${JSON.stringify(key)}].ports`, list.ports)
  return {
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    ips: w.addresses.map((b, i) => ipText(who, `addresses[${i}]`, b)),
    network: w.network,
    tunnelProtocol: enumName<TunnelProtocol>(who, 'tunnel_protocol', TUNNEL_PROTOCOL_NUMBER, w.tunnelProtocol),
    trustDomain: w.trustDomain,
    serviceAccount: w.serviceAccount,
    waypoint: decodeGateway(who, w.waypoint),
    node: w.node,
    canonicalName: w.canonicalName,
    canonicalRevision: w.canonicalRevision,
    workloadType: enumName<WorkloadType>(who, 'workload_type', WORKLOAD_TYPE_NUMBER, w.workloadType),
    workloadName: w.workloadName,
    services,
    authorizationPolicies: w.authorizationPolicies,
    status: enumName<WorkloadStatus>(who, 'status', WORKLOAD_STATUS_NUMBER, w.status),
    clusterId: w.clusterId,
    labels: {},
  }
}

function decodeService(s: WireService): MeshService {
  const who = `service ${s.namespace}/${s.hostname}`
  required(who, 'namespace', s.namespace)
  required(who, 'hostname', s.hostname)
  return {
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    addresses: s.addresses.map((a, i): NetworkAddress => ({ network: a.network, address: ipText(who, `addresses[${i}].address`, a.address) })),
    ports: ports(who, 'ports', s.ports),
    subjectAltNames: s.subjectAltNames,
    waypoint: decodeGateway(who, s.waypoint),
  }
}

// ---- istio.security.Authorization -------------------------------------------------

const MATCH_FIELDS = {
  strings: [
    ['namespaces', 'namespaces'],
    ['notNamespaces', 'not_namespaces'],
    ['principals', 'principals'],
    ['notPrincipals', 'not_principals'],
  ],
  cidrs: [
    ['sourceIps', 'source_ips'],
    ['notSourceIps', 'not_source_ips'],
    ['destinationIps', 'destination_ips'],
    ['notDestinationIps', 'not_destination_ips'],
  ],
  ports: [
    ['destinationPorts', 'destination_ports'],
    ['notDestinationPorts', 'not_destination_ports'],
  ],
  accounts: [
    ['serviceAccounts', 'service_accounts'],
    ['notServiceAccounts', 'not_service_accounts'],
  ],
} as const

function encodeStringMatch(m: StringMatch): WireStringMatch | { presence: object } {
  return m.kind === 'presence' ? { presence: {} } : { [m.kind]: m.value }
}

function encodeMatch(who: string, m: Match): object {
  const out: Record<string, unknown> = {}
  for (const [k] of MATCH_FIELDS.strings) out[k] = m[k].map(encodeStringMatch)
  for (const [k, f] of MATCH_FIELDS.cidrs) out[k] = m[k].map((a, i) => ({ address: ipBytes(who, `${f}[${i}].address`, a.address), length: a.length }))
  for (const [k] of MATCH_FIELDS.ports) out[k] = [...m[k]]
  for (const [k] of MATCH_FIELDS.accounts) out[k] = m[k].map((a) => ({ namespace: a.namespace, serviceAccount: a.serviceAccount }))
  return out
}

export function encodeAuthorization(a: Authorization): Buffer {
  const who = `authorization ${authorizationKey(a)}`
  return encodeMessage(T.authorization(), {
    name: a.name,
    namespace: a.namespace,
    scope: SCOPE_NUMBER[a.scope],
    action: ACTION_NUMBER[a.action],
    groups: a.groups.map((g, gi) => ({
      rules: g.rules.map((r, ri) => ({ matches: r.matches.map((m, mi) => encodeMatch(`${who} groups[${gi}].rules[${ri}].matches[${mi}]`, m)) })),
    })),
    dryRun: a.dryRun,
  })
}

function decodeStringMatch(who: string, field: string, m: WireStringMatch): StringMatch {
  switch (m.matchType) {
    case 'exact':
      return { kind: 'exact', value: m.exact ?? '' }
    case 'prefix':
      return { kind: 'prefix', value: m.prefix ?? '' }
    case 'suffix':
      return { kind: 'suffix', value: m.suffix ?? '' }
    case 'presence':
      return { kind: 'presence' }
    default:
      throw new XdsResourceError(who, field, 'no match_type is set (exact, prefix, suffix or presence)')
  }
}

function decodeCidr(who: string, field: string, c: WireCidr): Address {
  const address = ipText(who, `${field}.address`, c.address)
  const max = c.address.length * 8
  if (c.length > max) throw new XdsResourceError(who, `${field}.length`, `prefix length ${c.length} is longer than ${max}`)
  return { address, length: c.length }
}

function decodeMatch(who: string, path: string, m: WireMatch): Match {
  const out: Record<string, unknown> = {}
  for (const [k, f] of MATCH_FIELDS.strings) out[k] = m[k].map((s, i) => decodeStringMatch(who, `${path}.${f}[${i}]`, s))
  for (const [k, f] of MATCH_FIELDS.cidrs) out[k] = m[k].map((c, i) => decodeCidr(who, `${path}.${f}[${i}]`, c))
  for (const [k, f] of MATCH_FIELDS.ports) out[k] = m[k].map((p, i) => port(who, `${path}.${f}[${i}]`, p))
  for (const [k] of MATCH_FIELDS.accounts) out[k] = m[k].map((a): ServiceAccountMatch => ({ namespace: a.namespace, serviceAccount: a.serviceAccount }))
  return out as unknown as Match
}

export function decodeAuthorization(bytes: Uint8Array): Authorization {
  const a = decodeOrThrow<WireAuthorization>('authorization', T.authorization(), bytes)
  const who = `authorization ${a.namespace}/${a.name}`
  required(who, 'name', a.name)
  required(who, 'namespace', a.namespace)
  const groups = a.groups.map((g, gi): Group => ({
    rules: g.rules.map((r, ri) => ({ matches: r.matches.map((m, mi) => decodeMatch(who, `groups[${gi}].rules[${ri}].matches[${mi}]`, m)) })),
  }))
  return {
    name: a.name,
    namespace: a.namespace,
    scope: enumName<Scope>(who, 'scope', SCOPE_NUMBER, a.scope),
    action: enumName<Action>(who, 'action', ACTION_NUMBER, a.action),
    groups,
    dryRun: a.dryRun,
  }
}

// ---- ambient.zds.v1.LocalWorkload -------------------------------------------------

/** The node-local part of a workload that has a network namespace on this node. */
export function encodeLocalWorkload(w: Workload): Buffer {
  if (w.netnsPath === undefined) throw new XdsResourceError(`local workload ${w.uid}`, 'netns_path', 'the workload has no netnsPath: it is not on this node')
  return encodeMessage(T.local(), {
    uid: w.uid,
    workloadInfo: { name: w.name, namespace: w.namespace, serviceAccount: w.serviceAccount },
    netnsPath: w.netnsPath,
  })
}

export function decodeLocalWorkload(bytes: Uint8Array): LocalWorkload {
  const l = decodeOrThrow<WireLocal>('local workload', T.local(), bytes)
  const who = `local workload ${l.uid}`
  required(who, 'uid', l.uid)
  required(who, 'netns_path', l.netnsPath)
  if (!l.workloadInfo) throw new XdsResourceError(who, 'workload_info', 'is not set')
  return { uid: l.uid, name: l.workloadInfo.name, namespace: l.workloadInfo.namespace, serviceAccount: l.workloadInfo.serviceAccount, netnsPath: l.netnsPath }
}
