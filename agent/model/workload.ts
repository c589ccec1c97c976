// The agent's internal model of the cluster objects it cares about. Pure data:
// Kubernetes objects are converted into these by agent/kube and agent/local and
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

/** What ztunnel needs to know about one pod. */
export interface Workload {
  /** Istio's workload uid: `Kubernetes//Pod/<ns>/<name>`. */
  readonly uid: string
  readonly name: string
  readonly namespace: string
  readonly ip: string
  readonly ips: readonly string[]
  readonly serviceAccount: string
  readonly node: string
  /** `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`. */
  readonly identity: string
  readonly labels: Labels
  readonly enrolled: boolean
}

export type ServiceProtocol = 'TCP' | 'UDP' | 'SCTP'

export interface ServicePort {
  /** Empty when the service has a single unnamed port. */
  readonly name: string
  readonly port: number
  /** A container port number, or the name of a container port. */
  readonly targetPort: number | string
  readonly protocol: ServiceProtocol
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

export function toWorkload(pod: Pod, options: { readonly trustDomain: string; readonly enrolled: boolean }): Workload {
  return {
    uid: workloadUid(pod.namespace, pod.name),
    name: pod.name,
    namespace: pod.namespace,
    ip: pod.podIP,
    ips: pod.podIPs,
    serviceAccount: pod.serviceAccount,
    node: pod.nodeName,
    identity: spiffeIdentity(options.trustDomain, pod.namespace, pod.serviceAccount),
    labels: pod.labels,
    enrolled: options.enrolled,
  }
}
