// Which waypoint a Service or a Pod uses, as Istio ambient decides it: label
// `istio.io/use-waypoint: <gateway name>` on the object, else on its namespace
// (`none` on the object opts it out of its namespace's waypoint);
// `istio.io/use-waypoint-namespace` on the same object names the waypoint's
// namespace (default: the object's own). The Gateway must be an `istio-waypoint`
// whose `istio.io/waypoint-for` takes that traffic (service or all for a Service,
// workload or all for a Pod) and, across namespaces, whose listener allows the
// binding namespace. The address given to ztunnel is the waypoint's Service (named
// after the Gateway, as istiod renders it) by cluster IP, on the HBONE port.
// A binding that cannot be honoured leaves the object without a waypoint and is
// reported (the object's traffic stays L4, as in Istio). Pure.
import type { PolicyWarning } from './authorization.js'
import { convertGateway, WAYPOINT_GATEWAY_CLASS, type WaypointGateway } from './convert/gateway.js'
import { selectorMatches } from './convert/labels.js'
import type { Snapshot } from './snapshot.js'
import type { GatewayAddress, Labels, Namespace, Pod, Service } from './workload.js'

export const USE_WAYPOINT_LABEL = 'istio.io/use-waypoint'
export const USE_WAYPOINT_NAMESPACE_LABEL = 'istio.io/use-waypoint-namespace'
/** The label istiod (and the agent) puts on a waypoint's pods: the Gateway's name. */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name'

export type WaypointTraffic = 'service' | 'workload'

/** A binding that could not be honoured, for logs and status. */
export interface WaypointBindingProblem {
  /** `Service ns/name`, `Pod ns/name` or `Namespace name`. */
  readonly object: string
  readonly waypoint: string
  readonly message: string
}

export interface WaypointIndex {
  /** Valid waypoint Gateways by `namespace/name`. */
  readonly gateways: ReadonlyMap<string, WaypointGateway>
  /** Gateways of class istio-waypoint that are malformed, and warnings about valid ones. */
  readonly invalid: readonly { readonly gateway: string; readonly field: string; readonly message: string }[]
  readonly warnings: readonly PolicyWarning[]
}

export function waypointIndex(snapshot: Snapshot): WaypointIndex {
  const gateways = new Map<string, WaypointGateway>()
  const invalid: { gateway: string; field: string; message: string }[] = []
  const warnings: PolicyWarning[] = []
  for (const object of snapshot.gateways) {
    const result = convertGateway(object)
    if (result.kind === 'waypoint') {
      gateways.set(`${result.gateway.namespace}/${result.gateway.name}`, result.gateway)
      warnings.push(...result.warnings)
    } else if (result.kind === 'invalid') {
      invalid.push({ gateway: `${result.error.policy.namespace}/${result.error.policy.name}`, field: result.error.field, message: result.error.message })
    }
  }
  return { gateways, invalid, warnings }
}

export type WaypointBinding =
  | { readonly kind: 'none' }
  | { readonly kind: 'bound'; readonly gateway: WaypointGateway; readonly address: GatewayAddress }
  | { readonly kind: 'problem'; readonly problem: WaypointBindingProblem }

/** The waypoint of traffic addressed to a Service, with the address ztunnel reaches it at. A waypoint's own Service never has one. */
export function serviceWaypoint(snapshot: Snapshot, index: WaypointIndex, service: Service): WaypointBinding {
  return addressed(snapshot, serviceGateway(snapshot, index, service))
}

/**
 * The waypoint Gateway a Service is bound to by labels, whether or not the
 * waypoint's own Service exists yet (`ambient waypoint check` on a user's YAML,
 * where istiod-style rendered objects are absent).
 */
export function serviceGateway(snapshot: Snapshot, index: WaypointIndex, service: Service): GatewayBinding {
  if (index.gateways.has(`${service.namespace}/${service.name}`)) return { kind: 'none' }
  return bind(snapshot, index, 'service', { kind: 'Service', namespace: service.namespace, name: service.name }, service.labels)
}

/** The waypoint of traffic addressed to a Pod's IP. A waypoint's own pods never have one. */
export function podWaypoint(snapshot: Snapshot, index: WaypointIndex, pod: Pod): WaypointBinding {
  if (isWaypointPod(index, pod)) return { kind: 'none' }
  return addressed(snapshot, bind(snapshot, index, 'workload', { kind: 'Pod', namespace: pod.namespace, name: pod.name }, pod.labels))
}

/** A binding by labels, without its address yet. */
export type GatewayBinding =
  | { readonly kind: 'none' }
  | { readonly kind: 'bound'; readonly gateway: WaypointGateway; readonly owner: string }
  | { readonly kind: 'problem'; readonly problem: WaypointBindingProblem }

/** The address of a bound waypoint: its Service's cluster IP on the HBONE port. */
function addressed(snapshot: Snapshot, binding: GatewayBinding): WaypointBinding {
  if (binding.kind !== 'bound') return binding
  const { gateway } = binding
  const waypoint = `${gateway.namespace}/${gateway.name}`
  const address = snapshot.services.get(waypoint)?.clusterIPs.find((ip) => !ip.includes(':'))
  if (address === undefined)
    return { kind: 'problem', problem: { object: binding.owner, waypoint, message: `waypoint ${waypoint} has no Service with a cluster IP yet` } }
  return { kind: 'bound', gateway, address: { destination: { kind: 'address', network: '', address }, hboneMtlsPort: gateway.hbonePort } }
}

/** A pod of a waypoint Deployment (labelled with its Gateway's name, in the Gateway's namespace). */
export function isWaypointPod(index: WaypointIndex, pod: Pick<Pod, 'namespace' | 'labels'>): boolean {
  const name = pod.labels[GATEWAY_NAME_LABEL]
  return name !== undefined && index.gateways.has(`${pod.namespace}/${name}`)
}

function bind(
  snapshot: Snapshot,
  index: WaypointIndex,
  traffic: WaypointTraffic,
  object: { readonly kind: 'Service' | 'Pod'; readonly namespace: string; readonly name: string },
  labels: Labels,
): GatewayBinding {
  // The object's own label wins (`none` included); else the namespace's.
  const namespace = snapshot.namespaces.get(object.namespace)
  const own = labels[USE_WAYPOINT_LABEL] !== undefined
  const source = own
    ? { labels, owner: `${object.kind} ${object.namespace}/${object.name}` }
    : namespace
      ? { labels: namespace.labels, owner: `Namespace ${namespace.name}` }
      : null
  const name = source?.labels[USE_WAYPOINT_LABEL]
  if (source === null || name === undefined || name === '' || name === 'none') return { kind: 'none' }
  const objectNamespace = object.namespace
  const gatewayNamespace = source.labels[USE_WAYPOINT_NAMESPACE_LABEL] || objectNamespace
  const waypoint = `${gatewayNamespace}/${name}`
  const problem = (message: string): GatewayBinding => ({ kind: 'problem', problem: { object: source.owner, waypoint, message } })
  const gateway = index.gateways.get(waypoint)
  if (gateway === undefined) return problem(`no Gateway ${waypoint} of class ${WAYPOINT_GATEWAY_CLASS}`)
  if (gateway.for !== 'all' && gateway.for !== traffic) {
    return problem(`waypoint ${waypoint} is for ${gateway.for} traffic (istio.io/waypoint-for), not ${traffic} traffic`)
  }
  if (gatewayNamespace !== objectNamespace && !allowsNamespace(gateway, namespace)) {
    return problem(`waypoint ${waypoint} does not allow namespace ${objectNamespace} (its mesh listener's allowedRoutes.namespaces)`)
  }
  return { kind: 'bound', gateway, owner: source.owner }
}

function allowsNamespace(gateway: WaypointGateway, namespace: Namespace | undefined): boolean {
  const allowed = gateway.allowedNamespaces
  if (allowed.from === 'All') return true
  if (allowed.from === 'Same') return false
  return namespace !== undefined && selectorMatches(allowed.matchLabels, namespace.labels)
}
