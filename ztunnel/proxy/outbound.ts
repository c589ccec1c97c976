// Outbound (Istio ztunnel's proxy/outbound): a connection an enrolled pod made,
// redirected to its in-pod listener. To a service or workload that has a waypoint it
// rides HBONE to the waypoint; to a mesh workload (or a service VIP resolved to one)
// it rides HBONE to that workload; tunnels are pooled and dialed from the source
// pod's netns with the source workload's certificate. Anything else is plain TCP.
import type { Duplex } from 'node:stream'
import type net from 'node:net'
import type { Logger } from 'pino'
import { HboneUnknownDestinationError } from '../../common/hbone/errors.js'
import { HbonePool } from '../../common/hbone/pool.js'
import { formatAuthority, formatForwarded } from '../../common/hbone/headers.js'
import type { IdentityManager } from '../../common/identity/manager.js'
import { identityOf, type Workload, type WorkloadStore } from '../../common/model/workload-store.js'
import type { GatewayAddress, MeshService } from '../../common/model/workload.js'
import { relay } from '../../common/net/relay.js'
import { tcpLabels, workloadLabels, type ZtunnelMetrics } from '../metrics.js'
import { dialFromPod, type PodNetns } from './inpod.js'
import type { HboneEngine } from '../../native/hbone.js'
import { NativeOutbound } from './native-outbound.js'
import type { CapturedConnection, ConnectionHandler, Endpoint } from './pod-proxy.js'

/** How an outbound connection leaves: an HBONE stream to a next hop, or plain TCP. */
export type OutboundRoute =
  | {
      readonly kind: 'hbone'
      /** The workload the tunnel ends at (a waypoint, or the destination itself). */
      readonly destination: Workload
      readonly nextHop: Endpoint
      /** The CONNECT target: what the client dialed (through a waypoint), or the chosen workload's address. */
      readonly authority: Endpoint
      readonly service: MeshService | undefined
    }
  | { readonly kind: 'tcp'; readonly target: Endpoint; readonly destination: Workload | undefined; readonly service: MeshService | undefined }

/** To a workload itself: HBONE when it is in the mesh, plain TCP otherwise. */
function direct(workload: Workload, target: Endpoint, service: MeshService | undefined, hbonePort: number): OutboundRoute {
  if (workload.tunnelProtocol !== 'HBONE') return { kind: 'tcp', target, destination: workload, service }
  return { kind: 'hbone', destination: workload, nextHop: { ip: target.ip, port: hbonePort }, authority: target, service }
}

export interface OutboundOptions {
  readonly store: WorkloadStore
  readonly identities: IdentityManager
  readonly metrics: ZtunnelMetrics
  /** SO_MARK of ztunnel's own sockets: the datapath never redirects them. */
  readonly proxyMark: number
  /** Port of every pod's (and waypoint's) HBONE listener. */
  readonly hbonePort: number
  /** The local pod an HBONE session is dialed from (its netns and sockets), by IP. */
  readonly localPod: (ip: string) => PodNetns | undefined
  readonly log: Logger
  /** --hbone-engine native: HBONE tunnels run on this engine; absent: Node's TLS and HTTP/2. */
  readonly engine?: HboneEngine
}

export class Outbound {
  private readonly pool: HbonePool
  private readonly native: NativeOutbound | null

  constructor(private readonly options: OutboundOptions) {
    this.pool = new HbonePool({
      contextFor: async (identity) => (await options.identities.getCertificate(identity)).secureContext,
      dial: ({ nextHop, sourceIp }) => this.dialFromSource(nextHop, sourceIp),
      observer: {
        sessionOpened: () => options.metrics.hboneSessions.inc(),
        sessionClosed: () => options.metrics.hboneSessions.dec(),
      },
      log: options.log.child({ component: 'hbone-pool' }),
    })
    this.native = options.engine ? new NativeOutbound({ ...options, engine: options.engine }) : null
  }

  /** With the native engine, captured sockets arrive paused: a mesh connection's fd moves to the engine. */
  get takesSockets(): boolean {
    return this.native !== null
  }

  /** Resets the native tunnels of a pod that leaves (Node's are reset with their sockets). */
  resetFrom(podIp: string): void {
    this.native?.resetFrom(podIp)
  }

  /** Open native tunnels of a pod (Node's are counted as sockets). */
  openFrom(podIp: string): number {
    return this.native?.openFrom(podIp) ?? 0
  }

  /** A rotated certificate: new sessions of that identity handshake with the new one. */
  invalidateIdentity(identity: string): void {
    this.pool.invalidateIdentity(identity)
    this.native?.invalidateIdentity(identity)
  }

  async stop(): Promise<void> {
    await Promise.all([this.pool.stop(), this.native?.stop()])
  }

  /** The handler for one pod's captured outbound connections; `currentSource` is the pod's latest workload. */
  handler(currentSource: () => Workload): ConnectionHandler {
    return async (conn: CapturedConnection) => {
      const source = currentSource()
      const route = this.route(conn.destination)
      const labels = tcpLabels({
        reporter: 'source',
        ...workloadLabels('source', source),
        ...workloadLabels('destination', route.destination),
        ...(route.service ? { destination_service: route.service.hostname } : {}),
        connection_security_policy: route.kind === 'hbone' ? 'mutual_tls' : 'unknown',
      })
      let upstream: Duplex
      if (route.kind === 'hbone' && this.native) {
        const request = {
          sourceIdentity: identityOf(source),
          destinationIdentity: identityOf(route.destination),
          nextHop: route.nextHop,
          authority: formatAuthority(route.authority),
          headers: { forwarded: formatForwarded(conn.source.ip) },
          sourceIp: conn.pod.ip,
        }
        return this.native.relay(conn, request, labels)
      } else if (route.kind === 'hbone') {
        upstream = await this.pool.connect({
          sourceIdentity: identityOf(source),
          destinationIdentity: identityOf(route.destination),
          nextHop: route.nextHop,
          authority: formatAuthority(route.authority),
          headers: { forwarded: formatForwarded(conn.source.ip) },
          sourceIp: conn.pod.ip,
        })
      } else {
        upstream = await dialFromPod(conn.pod, route.target, { mark: this.options.proxyMark })
      }
      this.options.metrics.connectionOpened(labels, 'outbound')
      const result = await relay(conn.socket, upstream)
      this.options.metrics.connectionClosed(labels, 'outbound', { received: result.sent, sent: result.received })
      return result
    }
  }

  /**
   * Where a connection goes (Istio ztunnel's outbound request building):
   * - to a service VIP whose service has a waypoint: HBONE to one of the waypoint's
   *   workloads, `:authority` the VIP and port as the client dialed them;
   * - to a workload's IP: through its workload waypoint if it has one, else HBONE
   *   to it when it is in the mesh, else plain TCP;
   * - to a service VIP without a waypoint: one of its healthy workloads, on that
   *   workload's target port (HBONE or plain as that workload is); a VIP without one
   *   is plain TCP to the VIP, as any destination outside the mesh.
   * A waypoint that has no healthy workload refuses the connection (never bypassed).
   */
  route(original: Endpoint): OutboundRoute {
    const { store, hbonePort } = this.options
    const service = store.serviceByVip(original.ip)
    if (service?.waypoint) return this.viaWaypoint(service.waypoint, original, service)
    const workload = store.findByIp(original.ip)
    if (workload?.waypoint) return this.viaWaypoint(workload.waypoint, original, undefined)
    if (workload !== undefined) return direct(workload, original, undefined, hbonePort)
    const endpoint = store.pickServiceEndpoint(original.ip, original.port)
    if (endpoint === null) return { kind: 'tcp', target: original, destination: undefined, service }
    return direct(endpoint.workload, { ip: endpoint.workload.ips[0]!, port: endpoint.port }, service, hbonePort)
  }

  private viaWaypoint(waypoint: GatewayAddress, original: Endpoint, service: MeshService | undefined): OutboundRoute {
    const chosen = this.options.store.pickWaypoint(waypoint)
    if (chosen === null) {
      const where =
        waypoint.destination.kind === 'address' ? waypoint.destination.address : `${waypoint.destination.namespace}/${waypoint.destination.hostname}`
      throw new HboneUnknownDestinationError(`${formatAuthority(original)} (its waypoint ${where} has no healthy workload)`)
    }
    return { kind: 'hbone', destination: chosen.workload, nextHop: { ip: chosen.workload.ips[0]!, port: chosen.port }, authority: original, service }
  }

  private async dialFromSource(nextHop: { ip: string; port: number }, sourceIp?: string): Promise<net.Socket> {
    const pod = sourceIp ? this.options.localPod(sourceIp) : undefined
    if (!pod) throw new Error(`no local workload with ip ${sourceIp} to dial ${nextHop.ip}:${nextHop.port} from`)
    return dialFromPod(pod, nextHop, { mark: this.options.proxyMark })
  }
}
