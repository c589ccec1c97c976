// gateway.networking.k8s.io/v1 Gateway -> a waypoint, when its class is Istio's
// `istio-waypoint` (other classes belong to other controllers and are not ours).
// Istio's shape: one listener `mesh` on port 15008, protocol HBONE; label
// `istio.io/waypoint-for` (service, the default; workload; all; none) says which
// traffic the waypoint takes; `allowedRoutes.namespaces` on that listener says
// which namespaces may bind to it with `istio.io/use-waypoint-namespace`. Pure.
import { PolicyError, type PolicyWarning } from '../authorization.js'
import type { Labels } from '../workload.js'
import { badValue, isRecord, labelMap, optionalList, optionalRecord, optionalString, readMeta } from './object-fields.js'

export const WAYPOINT_GATEWAY_CLASS = 'istio-waypoint'
export const WAYPOINT_FOR_LABEL = 'istio.io/waypoint-for'
export const WAYPOINT_LISTENER = 'mesh'
export const WAYPOINT_LISTENER_PROTOCOL = 'HBONE'

/** Which traffic a waypoint takes: addressed to services, to workloads, both, or none. */
export type WaypointFor = 'service' | 'workload' | 'all' | 'none'
const WAYPOINT_FOR: readonly WaypointFor[] = ['service', 'workload', 'all', 'none']

/** Which namespaces may bind to a waypoint from another namespace (Gateway API allowedRoutes.namespaces). */
export type AllowedNamespaces = { readonly from: 'Same' } | { readonly from: 'All' } | { readonly from: 'Selector'; readonly matchLabels: Labels }

export interface WaypointGateway {
  readonly namespace: string
  readonly name: string
  readonly for: WaypointFor
  /** The HBONE port of the `mesh` listener (15008). */
  readonly hbonePort: number
  readonly allowedNamespaces: AllowedNamespaces
}

export type GatewayConversion =
  | { readonly kind: 'waypoint'; readonly gateway: WaypointGateway; readonly warnings: readonly PolicyWarning[] }
  /** Another class: some other controller's gateway. */
  | { readonly kind: 'other'; readonly gatewayClassName: string }
  | { readonly kind: 'invalid'; readonly error: PolicyError }

export function convertGateway(object: unknown, options: { readonly namespace?: string } = {}): GatewayConversion {
  try {
    const { ref, root } = readMeta('Gateway', object, options.namespace)
    const spec = optionalRecord(ref, root['spec'], 'spec') ?? {}
    const className = optionalString(ref, spec['gatewayClassName'], 'spec.gatewayClassName') ?? ''
    if (className !== WAYPOINT_GATEWAY_CLASS) return { kind: 'other', gatewayClassName: className }
    const metadata = isRecord(root['metadata']) ? root['metadata'] : {}
    const labels = labelMap(ref, metadata['labels'], 'metadata.labels')
    const forValue = labels[WAYPOINT_FOR_LABEL] ?? 'service'
    if (!(WAYPOINT_FOR as readonly string[]).includes(forValue)) {
      throw badValue(ref, `metadata.labels["${WAYPOINT_FOR_LABEL}"]`, `${JSON.stringify(forValue)} must be service, workload, all or none`)
    }
    const warnings: PolicyWarning[] = []
    const listeners = optionalList(ref, spec['listeners'], 'spec.listeners')
    const index = listeners.findIndex((l) => isRecord(l) && l['name'] === WAYPOINT_LISTENER)
    let hbonePort = 15008
    let allowedNamespaces: AllowedNamespaces = { from: 'Same' }
    if (index < 0) {
      warnings.push({
        code: 'AMBIENT_WARN_POLICY_IGNORED_FIELD',
        policy: ref,
        field: 'spec.listeners',
        message: `no listener named "${WAYPOINT_LISTENER}": the waypoint takes HBONE on 15008 as Istio's does`,
      })
    } else {
      const listener = listeners[index] as Readonly<Record<string, unknown>>
      const field = `spec.listeners[${index}]`
      const port = listener['port']
      if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
        throw badValue(ref, `${field}.port`, `${JSON.stringify(port)} is not a port`)
      hbonePort = port
      const protocol = optionalString(ref, listener['protocol'], `${field}.protocol`)
      if (protocol !== WAYPOINT_LISTENER_PROTOCOL) throw badValue(ref, `${field}.protocol`, `${JSON.stringify(protocol)} must be ${WAYPOINT_LISTENER_PROTOCOL}`)
      allowedNamespaces = readAllowedNamespaces(ref, listener['allowedRoutes'], `${field}.allowedRoutes`)
    }
    return { kind: 'waypoint', gateway: { namespace: ref.namespace, name: ref.name, for: forValue as WaypointFor, hbonePort, allowedNamespaces }, warnings }
  } catch (err) {
    if (err instanceof PolicyError) return { kind: 'invalid', error: err }
    throw err
  }
}

function readAllowedNamespaces(ref: Parameters<typeof badValue>[0], value: unknown, field: string): AllowedNamespaces {
  const allowed = optionalRecord(ref, value, field)
  const namespaces = allowed === undefined ? undefined : optionalRecord(ref, allowed['namespaces'], `${field}.namespaces`)
  const from = namespaces === undefined ? 'Same' : (optionalString(ref, namespaces['from'], `${field}.namespaces.from`) ?? 'Same')
  if (from === 'Same' || from === 'All') return { from }
  if (from !== 'Selector') throw badValue(ref, `${field}.namespaces.from`, `${JSON.stringify(from)} must be Same, All or Selector`)
  const selector = optionalRecord(ref, namespaces!['selector'], `${field}.namespaces.selector`) ?? {}
  if (selector['matchExpressions'] !== undefined) {
    throw badValue(ref, `${field}.namespaces.selector.matchExpressions`, 'is not supported; use matchLabels')
  }
  return { from: 'Selector', matchLabels: labelMap(ref, selector['matchLabels'], `${field}.namespaces.selector.matchLabels`) }
}
