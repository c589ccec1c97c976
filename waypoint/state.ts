// What one waypoint knows, rebuilt from each configuration snapshot (as ztunnel's
// ProxyState: convert first, then swap in at once; proxies read the current view):
// its own Gateway, the mesh's workloads and services (for source identities and
// backends), and which services and workloads are bound to it. Pure: built from a
// Snapshot, no I/O.
import { HboneUnknownDestinationError } from '../common/hbone/errors.js'
import { formatAuthority, type SocketAddress } from '../common/hbone/headers.js'
import type { WaypointGateway } from '../common/model/convert/gateway.js'
import { meshResources } from '../common/model/mesh-resources.js'
import type { Snapshot } from '../common/model/snapshot.js'
import { waypointIndex } from '../common/model/waypoint.js'
import { WorkloadStore } from '../common/model/workload-store.js'
import { convertHttpRoutes } from '../common/model/convert/http-route.js'
import type { PolicyProblem } from '../common/model/convert/policies.js'
import { buildRouteTable, type RouteTable } from './route/table.js'
import { convertWaypointPolicies } from '../common/model/convert/waypoint-authorization.js'
import { compileWaypointPolicies, WaypointPolicyIndex, type WaypointPolicies } from '../common/policy/waypoint-authz.js'
import { tcpView } from '../common/policy/waypoint-tcp.js'
import type { MeshService, Service, ServicePort, Workload } from '../common/model/workload.js'

export interface StateOptions {
  readonly gateway: { readonly namespace: string; readonly name: string }
  readonly trustDomain: string
  readonly rootNamespace: string
  readonly clusterDomain: string
}

/** What a CONNECT stream addressed: a service bound to this waypoint (on one of its ports), or a bound workload. */
export type WaypointTarget =
  | { readonly kind: 'service'; readonly service: Service; readonly port: ServicePort; readonly address: SocketAddress }
  | { readonly kind: 'workload'; readonly workload: Workload; readonly address: SocketAddress }

export class WaypointState {
  /** This waypoint's Gateway; null while it is missing or malformed (nothing is served). */
  readonly gateway: WaypointGateway | null
  readonly store = new WorkloadStore()
  /** Services by `namespace/name`. */
  private readonly services: ReadonlyMap<string, Service>
  /** Services and workloads whose waypoint is this one, by IP. */
  private readonly boundServices = new Map<string, { service: Service; mesh: MeshService }>()
  private readonly boundWorkloads = new Map<string, Workload>()
  readonly problems: readonly string[]
  /** The HTTPRoutes, bound to their Service ports and sorted by the spec's precedence. */
  readonly routes: RouteTable
  /** HTTPRoutes that are malformed (left out), ignored, or applied with a caveat. */
  readonly routeProblems: {
    readonly invalid: readonly PolicyProblem[]
    readonly ignored: readonly PolicyProblem[]
    readonly warnings: readonly PolicyProblem[]
  }
  /** AuthorizationPolicies with targetRefs, indexed by Gateway and Service. */
  readonly policyIndex: WaypointPolicyIndex
  readonly policyProblems: {
    readonly invalid: readonly PolicyProblem[]
    readonly ignored: readonly PolicyProblem[]
    readonly warnings: readonly PolicyProblem[]
    readonly unsupported: readonly PolicyProblem[]
  }
  private readonly compiledTcp = new Map<string, WaypointPolicies>()

  private constructor(
    readonly snapshot: Snapshot,
    readonly options: StateOptions,
  ) {
    const index = waypointIndex(snapshot)
    const key = `${options.gateway.namespace}/${options.gateway.name}`
    this.gateway = index.gateways.get(key) ?? null
    const problems: string[] = []
    const invalid = index.invalid.find((g) => g.gateway === key)
    if (invalid) problems.push(`gateway ${key} is invalid: ${invalid.message}`)
    else if (this.gateway === null) problems.push(`no Gateway ${key} of class istio-waypoint`)
    const resources = meshResources(snapshot, { ...options, localNetns: new Map() })
    this.store.replaceAll(resources.workloads)
    this.store.replaceServices(resources.services)
    this.services = snapshot.services
    const own = snapshot.services.get(key)?.clusterIPs.find((ip) => !ip.includes(':'))
    const isOwn = (w: MeshService['waypoint']): boolean => own !== undefined && w?.destination.kind === 'address' && w.destination.address === own
    for (const mesh of resources.services) {
      if (!isOwn(mesh.waypoint)) continue
      const service = snapshot.services.get(`${mesh.namespace}/${mesh.name}`)
      if (service) for (const a of mesh.addresses) this.boundServices.set(a.address, { service, mesh })
    }
    for (const w of resources.workloads) if (isOwn(w.waypoint)) for (const ip of w.ips) this.boundWorkloads.set(ip, w)
    if (this.gateway !== null && own === undefined) problems.push(`the waypoint's own Service ${key} has no cluster IP: nothing can be bound to it`)
    this.problems = problems
    const converted = convertHttpRoutes(snapshot.httpRoutes)
    this.routes = buildRouteTable(converted.routes, {
      lookupService: (namespace, name) => snapshot.services.get(`${namespace}/${name}`),
      waypointNamespace: options.gateway.namespace,
    })
    this.routeProblems = { invalid: converted.invalid, ignored: converted.ignored, warnings: [...converted.warnings, ...this.routes.problems] }
    const policies = convertWaypointPolicies(snapshot.authorizationPolicies, options.rootNamespace)
    this.policyIndex = WaypointPolicyIndex.build(policies.policies)
    this.policyProblems = policies
  }

  static build(snapshot: Snapshot, options: StateOptions): WaypointState {
    return new WaypointState(snapshot, options)
  }

  /** The service or workload a CONNECT authority names; throws 503 (HboneUnknownDestinationError) when it is not bound here. */
  target(destination: SocketAddress): WaypointTarget {
    const authority = formatAuthority(destination)
    if (this.gateway === null) throw new HboneUnknownDestinationError(`${authority} (waypoint ${this.gatewayKey} is not configured)`)
    const bound = this.boundServices.get(destination.ip)
    if (bound !== undefined) {
      const port = bound.service.ports.find((p) => p.port === destination.port)
      if (port === undefined)
        throw new HboneUnknownDestinationError(`${authority} (service ${bound.service.namespace}/${bound.service.name} has no port ${destination.port})`)
      return { kind: 'service', service: bound.service, port, address: destination }
    }
    const workload = this.boundWorkloads.get(destination.ip)
    if (workload !== undefined) return { kind: 'workload', workload, address: destination }
    throw new HboneUnknownDestinationError(`${authority} (no service or workload there uses waypoint ${this.gatewayKey})`)
  }

  /** The L7 policies of a request addressed to `service` (null: to a workload) through this waypoint. */
  policies(service: Pick<Service, 'namespace' | 'name'> | null): WaypointPolicies {
    return this.policyIndex.policiesFor({ gateway: this.options.gateway, service: service && { namespace: service.namespace, name: service.name } })
  }

  /** The same policies as they apply to a connection that is not HTTP (tcpView), compiled once per target. */
  tcpPolicies(service: Pick<Service, 'namespace' | 'name'> | null): WaypointPolicies {
    const key = service === null ? '' : `${service.namespace}/${service.name}`
    let found = this.compiledTcp.get(key)
    if (found === undefined) this.compiledTcp.set(key, (found = compileWaypointPolicies(this.policies(service).policies.map(tcpView))))
    return found
  }

  service(namespace: string, name: string): Service | undefined {
    return this.services.get(`${namespace}/${name}`)
  }

  /** The mesh view of a service (its hostname, VIPs and waypoint). */
  meshService(service: Pick<Service, 'namespace' | 'name'>): MeshService | undefined {
    const vip = this.services.get(`${service.namespace}/${service.name}`)?.clusterIPs[0]
    return vip === undefined ? undefined : this.store.serviceByVip(vip)
  }

  hostname(service: Pick<Service, 'namespace' | 'name'>): string {
    return `${service.name}.${service.namespace}.svc.${this.options.clusterDomain}`
  }

  get gatewayKey(): string {
    return `${this.options.gateway.namespace}/${this.options.gateway.name}`
  }
}
