// The agent's snapshot as the resources of Istio's workload API that it streams to
// ztunnel: one Workload per pod with an IP, one Service per Service with cluster
// IPs, and the Authorizations, with selectors resolved here as istiod does
// (Workload.authorization_policies) and PeerAuthentications in their converted
// DENY form. Pure.
import { isIPv4 } from 'node:net'
import type { Authorization, WorkloadAuthorization } from './authorization.js'
import { authorizationKey } from './authorization.js'
import { selectorMatches } from './convert/labels.js'
import { mtlsAuthorization } from './convert/peer-authentication.js'
import { convertPolicies, type ConvertedPolicies } from './convert/policies.js'
import { decide } from './enrollment.js'
import { selectPeerAuthentications, type PeerAuthentication } from './peer-authentication.js'
import type { Snapshot } from './snapshot.js'
import { podWaypoint, serviceWaypoint, waypointIndex, type WaypointBinding, type WaypointBindingProblem, type WaypointIndex } from './waypoint.js'
import { workloadUid, type GatewayAddress, type Labels, type MeshService, type Pod, type PortMapping, type Workload } from './workload.js'

export interface MeshResourceOptions {
  readonly trustDomain: string
  readonly rootNamespace: string
  /** Kubernetes cluster domain for service hostnames (cluster.local). */
  readonly clusterDomain: string
  /** Network namespace of each of this node's enrolled pods, by pod uid (metadata.uid). */
  readonly localNetns: ReadonlyMap<string, string>
}

export interface MeshResources {
  readonly workloads: readonly Workload[]
  readonly services: readonly MeshService[]
  readonly authorizations: readonly Authorization[]
  /** What the policy conversion reported (warnings, invalid and ignored policies). */
  readonly policies: ConvertedPolicies
  /** The waypoint Gateways, and the bindings that could not be honoured. */
  readonly waypoints: WaypointIndex & { readonly problems: readonly WaypointBindingProblem[] }
}

/** Istio's canonical service name and revision of a pod (telemetry). */
export function canonicalOf(pod: Pick<Pod, 'name' | 'labels'>): { readonly name: string; readonly revision: string } {
  const l = pod.labels
  return {
    name: l['service.istio.io/canonical-name'] ?? l['app.kubernetes.io/name'] ?? l['app'] ?? pod.name,
    revision: l['service.istio.io/canonical-revision'] ?? l['app.kubernetes.io/version'] ?? l['version'] ?? 'latest',
  }
}

/** Pods an EndpointSlice lists as not ready (readiness probe failing, starting, terminating). */
function notReadyPods(snapshot: Snapshot): Set<string> {
  const out = new Set<string>()
  for (const slice of snapshot.endpointSlices.values()) {
    for (const e of slice.endpoints) if (!e.ready && e.targetRef?.kind === 'Pod') out.add(`${e.targetRef.namespace}/${e.targetRef.name}`)
  }
  return out
}

function servicesByPod(snapshot: Snapshot, clusterDomain: string): Map<string, Record<string, PortMapping[]>> {
  const out = new Map<string, Record<string, PortMapping[]>>()
  for (const slice of snapshot.endpointSlices.values()) {
    const service = snapshot.services.get(`${slice.namespace}/${slice.serviceName}`)
    if (service === undefined) continue
    const hostname = `${service.name}.${service.namespace}.svc.${clusterDomain}`
    const ports: PortMapping[] = []
    for (const sp of service.ports) {
      const target =
        typeof sp.targetPort === 'number'
          ? slice.ports.find((p) => p.port === sp.targetPort)
          : slice.ports.find((p) => p.name === sp.targetPort || p.name === sp.name)
      ports.push({ servicePort: sp.port, targetPort: target?.port ?? (typeof sp.targetPort === 'number' ? sp.targetPort : 0) })
    }
    for (const endpoint of slice.endpoints) {
      const ref = endpoint.targetRef
      if (ref === undefined || ref.kind !== 'Pod') continue
      const key = `${ref.namespace}/${ref.name}`
      const entry = out.get(key) ?? {}
      entry[`${service.namespace}/${hostname}`] = ports
      out.set(key, entry)
    }
  }
  return out
}

/** The address of a bound waypoint; a problem is recorded and the object gets none. */
function addressOf(binding: WaypointBinding, problems: WaypointBindingProblem[]): GatewayAddress | null {
  if (binding.kind === 'problem') problems.push(binding.problem)
  return binding.kind === 'bound' ? binding.address : null
}

function meshServices(snapshot: Snapshot, clusterDomain: string, index: WaypointIndex, problems: WaypointBindingProblem[]): MeshService[] {
  const out: MeshService[] = []
  for (const s of snapshot.services.values()) {
    if (s.clusterIPs.length === 0) continue
    out.push({
      name: s.name,
      namespace: s.namespace,
      hostname: `${s.name}.${s.namespace}.svc.${clusterDomain}`,
      addresses: s.clusterIPs.map((address) => ({ network: '', address })),
      ports: s.ports.map((p) => ({ servicePort: p.port, targetPort: typeof p.targetPort === 'number' ? p.targetPort : 0 })),
      subjectAltNames: [],
      waypoint: addressOf(serviceWaypoint(snapshot, index, s), problems),
    })
  }
  return out
}

/** The WORKLOAD_SELECTOR AuthorizationPolicies selecting a pod, as Istio attaches them: its namespace's and the root namespace's. */
function attachedPolicies(selectorPolicies: readonly WorkloadAuthorization[], rootNamespace: string, namespace: string, labels: Labels): string[] {
  const out: string[] = []
  for (const wa of selectorPolicies) {
    const a = wa.authorization
    if (a.namespace !== namespace && a.namespace !== rootNamespace) continue
    if (wa.selector === null || Object.keys(wa.selector).length === 0 || !selectorMatches(wa.selector, labels)) continue
    out.push(authorizationKey(a))
  }
  return out
}

/** The last conversion: snapshots share unchanged policy lists, so a pass after a pod change converts nothing again. */
let lastConversion: {
  readonly aps: readonly unknown[]
  readonly pas: readonly unknown[]
  readonly root: string
  readonly converted: ConvertedPolicies
} | null = null

function convertedPolicies(snapshot: Snapshot, rootNamespace: string): ConvertedPolicies {
  const last = lastConversion
  if (last !== null && last.aps === snapshot.authorizationPolicies && last.pas === snapshot.peerAuthentications && last.root === rootNamespace)
    return last.converted
  const converted = convertPolicies(snapshot.authorizationPolicies.concat(snapshot.peerAuthentications), rootNamespace)
  lastConversion = { aps: snapshot.authorizationPolicies, pas: snapshot.peerAuthentications, root: rootNamespace, converted }
  return converted
}

export function meshResources(snapshot: Snapshot, options: MeshResourceOptions): MeshResources {
  const policies = convertedPolicies(snapshot, options.rootNamespace)
  const selectorPolicies = policies.authorizations.filter((wa) => wa.authorization.scope === 'WORKLOAD_SELECTOR')
  const authorizations = new Map<string, Authorization>()
  for (const wa of policies.authorizations) authorizations.set(authorizationKey(wa.authorization), wa.authorization)
  const pasByNamespace = new Map<string, PeerAuthentication[]>()
  for (const pa of policies.peerAuthentications) pasByNamespace.set(pa.namespace, [...(pasByNamespace.get(pa.namespace) ?? []), pa])
  const services = servicesByPod(snapshot, options.clusterDomain)
  const notReady = notReadyPods(snapshot)
  const waypoints = waypointIndex(snapshot)
  const problems: WaypointBindingProblem[] = []
  const workloads: Workload[] = []
  for (const key of [...snapshot.pods.keys()].sort()) {
    const pod = snapshot.pods.get(key)!
    // IPv4 only: the datapath captures IPv4 (a dual-stack pod's IPv6 traffic is not meshed yet).
    const ips = (pod.podIPs.length > 0 ? pod.podIPs : [pod.podIP]).filter((ip) => isIPv4(ip))
    if (pod.podIP === '' || pod.hostNetwork || pod.phase === 'Succeeded' || pod.phase === 'Failed' || ips.length === 0) continue
    const enrolled = decide(pod, snapshot.namespaces.get(pod.namespace), pod.nodeName).enrolled
    const attached = attachedPolicies(selectorPolicies, options.rootNamespace, pod.namespace, pod.labels)
    const candidates = [
      ...(pasByNamespace.get(pod.namespace) ?? []),
      ...(pod.namespace === options.rootNamespace ? [] : (pasByNamespace.get(options.rootNamespace) ?? [])),
    ]
    const mtls = mtlsAuthorization(selectPeerAuthentications(candidates, options.rootNamespace, pod.namespace, pod.labels), options.rootNamespace)
    if (mtls !== null) {
      authorizations.set(authorizationKey(mtls), mtls)
      attached.push(authorizationKey(mtls))
    }
    const canonical = canonicalOf(pod)
    const netnsPath = enrolled ? options.localNetns.get(pod.uid) : undefined
    workloads.push({
      uid: workloadUid(pod.namespace, pod.name),
      name: pod.name,
      namespace: pod.namespace,
      ips,
      network: '',
      tunnelProtocol: enrolled ? 'HBONE' : 'NONE',
      trustDomain: options.trustDomain,
      serviceAccount: pod.serviceAccount,
      waypoint: addressOf(podWaypoint(snapshot, waypoints, pod), problems),
      node: pod.nodeName,
      canonicalName: canonical.name,
      canonicalRevision: canonical.revision,
      workloadType: 'POD',
      workloadName: pod.name,
      services: services.get(key) ?? {},
      authorizationPolicies: attached,
      status: pod.phase === 'Running' && !notReady.has(key) ? 'HEALTHY' : 'UNHEALTHY',
      clusterId: 'Kubernetes',
      labels: {},
      ...(netnsPath === undefined ? {} : { netnsPath }),
    })
  }
  const meshServiceList = meshServices(snapshot, options.clusterDomain, waypoints, problems)
  return { workloads, services: meshServiceList, authorizations: [...authorizations.values()], policies, waypoints: { ...waypoints, problems } }
}
