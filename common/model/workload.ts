// The agent's internal model of the cluster objects it cares about. Pure data:
// Kubernetes objects are converted into these by common/kube and common/local and
// never travel further.

export type Labels = Readonly<Record<string, string>>

export interface Namespace {
  readonly name: string
  readonly labels: Labels
}

export type PodPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown'
export const POD_PHASES: readonly PodPhase[] = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown']

export interface Pod {
  /** metadata.uid; empty when the source has none (a manifest may omit it). */
  readonly uid: string
  readonly namespace: string
  readonly name: string
  /** spec.nodeName; empty while unscheduled. */
  readonly nodeName: string
  /** status.podIP; empty until the pod has one. */
  readonly podIP: string
  /** status.podIPs, podIP first; empty until the pod has one. */
  readonly podIPs: readonly string[]
  readonly serviceAccount: string
  readonly labels: Labels
  readonly annotations: Labels
  readonly hostNetwork: boolean
  readonly phase: PodPhase
  /** status.containerStatuses[].containerID (`containerd://...`), those that have one. */
  readonly containerIDs: readonly string[]
}

/** enum istio.workload.TunnelProtocol: HBONE through its node's ztunnel, NONE outside the mesh (plain TCP). */
export type TunnelProtocol = 'NONE' | 'HBONE'
export const TUNNEL_PROTOCOL_NUMBER: Readonly<Record<TunnelProtocol, number>> = { NONE: 0, HBONE: 1 }
/** enum istio.workload.WorkloadType. */
export type WorkloadType = 'DEPLOYMENT' | 'CRONJOB' | 'POD' | 'JOB'
export const WORKLOAD_TYPE_NUMBER: Readonly<Record<WorkloadType, number>> = { DEPLOYMENT: 0, CRONJOB: 1, POD: 2, JOB: 3 }
/** enum istio.workload.WorkloadStatus. */
export type WorkloadStatus = 'HEALTHY' | 'UNHEALTHY'
export const WORKLOAD_STATUS_NUMBER: Readonly<Record<WorkloadStatus, number>> = { HEALTHY: 0, UNHEALTHY: 1 }

/** message istio.workload.Port: service_port (1), target_port (2). */
export interface PortMapping {
  readonly servicePort: number
  readonly targetPort: number
}

/**
 * message istio.workload.GatewayAddress: where a waypoint is reached. oneof
 * destination: hostname (1, NamespacedHostname{namespace 1, hostname 2}) or address
 * (2, NetworkAddress{network 1, address 2}); hbone_mtls_port (3).
 */
export interface GatewayAddress {
  readonly destination:
    | { readonly kind: 'address'; readonly network: string; readonly address: string }
    | { readonly kind: 'hostname'; readonly namespace: string; readonly hostname: string }
  readonly hboneMtlsPort: number
}

/**
 * One pod as ztunnel knows it: Istio's workload API message `istio.workload.Workload`
 * (pkg/workloadapi/workload.proto), the fields L4 uses, with their field numbers,
 * plus two node-local fields that are not part of that message (`labels`,
 * `netnsPath`). The agent builds it, streams it (common/xds) and ztunnel reads it;
 * ztunnel's local config builds the same type from YAML.
 */
export interface Workload {
  /** 20: Istio's uid, `<cluster>//Pod/<ns>/<name>`. */
  readonly uid: string
  /** 1 */ readonly name: string
  /** 2 */ readonly namespace: string
  /** 3 `addresses`: the pod IPs, as text (raw 4 or 16 bytes on the wire). */
  readonly ips: readonly string[]
  /** 4: empty for the default network. */
  readonly network: string
  /** 5 */ readonly tunnelProtocol: TunnelProtocol
  /** 6 */ readonly trustDomain: string
  /** 7 */ readonly serviceAccount: string
  /** 8: the waypoint that traffic addressed to this workload's IP goes through; null without one. */
  readonly waypoint: GatewayAddress | null
  /** 9 */ readonly node: string
  /** 10: telemetry's app (`service.istio.io/canonical-name`, `app.kubernetes.io/name`, `app`, else the workload name). */
  readonly canonicalName: string
  /** 11: `service.istio.io/canonical-revision`, `app.kubernetes.io/version`, `version`, else `latest`. */
  readonly canonicalRevision: string
  /** 12 */ readonly workloadType: WorkloadType
  /** 13: the owning Deployment/Job/CronJob name, else the pod name. */
  readonly workloadName: string
  /** 22: services selecting it, keyed by `<namespace>/<hostname>`, with their ports. */
  readonly services: Readonly<Record<string, readonly PortMapping[]>>
  /**
   * 16: the WORKLOAD_SELECTOR Authorizations (`<namespace>/<name>`) that select it,
   * resolved by the control plane. null when ztunnel resolves selectors itself from
   * `labels` (its local config, which carries policies as manifests).
   */
  readonly authorizationPolicies: readonly string[] | null
  /** 17 */ readonly status: WorkloadStatus
  /** 18 */ readonly clusterId: string
  /** Not in the workload API: pod labels, for ztunnel's local config only ({} when streamed). */
  readonly labels: Labels
  /** Not in the workload API: this node's pods only, the pod's network namespace (what Istio's ZDS hands ztunnel). */
  readonly netnsPath?: string
}

/** message istio.workload.NetworkAddress: network (1), address (2). */
export interface NetworkAddress {
  readonly network: string
  readonly address: string
}

/** message istio.workload.Service, the fields L4 uses; the resource is named `<namespace>/<hostname>`. */
export interface MeshService {
  /** 1 */ readonly name: string
  /** 2 */ readonly namespace: string
  /** 3: `<name>.<namespace>.svc.<cluster domain>`. */
  readonly hostname: string
  /** 4 */ readonly addresses: readonly NetworkAddress[]
  /** 5 */ readonly ports: readonly PortMapping[]
  /** 6 */ readonly subjectAltNames: readonly string[]
  /** 7: the waypoint that traffic addressed to this service goes through; null without one. */
  readonly waypoint: GatewayAddress | null
}

export type ServiceProtocol = 'TCP' | 'UDP' | 'SCTP'

export interface ServicePort {
  /** Empty when the service has a single unnamed port. */
  readonly name: string
  readonly port: number
  /** A container port number, or the name of a container port. */
  readonly targetPort: number | string
  readonly protocol: ServiceProtocol
  /** spec.ports[].appProtocol ('' when unset): how a waypoint treats the port (http, http2, grpc, tcp, ...). */
  readonly appProtocol: string
}

export interface Service {
  readonly namespace: string
  readonly name: string
  /** Empty for headless services (clusterIP None) and ExternalName services. */
  readonly clusterIPs: readonly string[]
  readonly ports: readonly ServicePort[]
  readonly labels: Labels
}

export interface ObjectRef {
  readonly kind: string
  readonly namespace: string
  readonly name: string
  readonly uid: string
}

export interface Endpoint {
  readonly addresses: readonly string[]
  /** conditions.ready; Kubernetes says unknown means ready. */
  readonly ready: boolean
  readonly nodeName: string
  readonly targetRef?: ObjectRef
}

export interface EndpointPort {
  readonly name: string
  readonly port: number
  readonly protocol: ServiceProtocol
}

export interface EndpointSlice {
  readonly namespace: string
  readonly name: string
  /** The owning service's name (label kubernetes.io/service-name); empty when absent. */
  readonly serviceName: string
  readonly addressType: 'IPv4' | 'IPv6' | 'FQDN'
  readonly endpoints: readonly Endpoint[]
  readonly ports: readonly EndpointPort[]
}

export interface ServiceAccount {
  readonly namespace: string
  readonly name: string
  readonly labels: Labels
  readonly annotations: Labels
}

export const DEFAULT_TRUST_DOMAIN = 'cluster.local'

/** Istio's SPIFFE identity of a service account. */
export function spiffeIdentity(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`
}

/** Istio's workload uid for a pod (`Kubernetes//Pod/<ns>/<name>`). */
export function workloadUid(namespace: string, name: string): string {
  return `Kubernetes//Pod/${namespace}/${name}`
}
