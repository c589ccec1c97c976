// Outbound (Istio ztunnel's proxy/outbound): a connection an enrolled pod made,
// redirected to its in-pod listener. To a mesh workload (or a service VIP resolved
// to one) it rides a pooled HBONE tunnel dialed from the source pod's netns with the
// source workload's certificate; anything else is plain TCP passthrough.
import type { Duplex } from 'node:stream'
import type net from 'node:net'
import type { Logger } from 'pino'
import { HbonePool } from '../../common/hbone/pool.js'
import { formatAuthority, formatForwarded } from '../../common/hbone/headers.js'
import type { IdentityManager } from '../../common/identity/manager.js'
import { identityOf, type Workload, type WorkloadStore } from '../../common/model/workload-store.js'
import { relay } from '../../common/net/relay.js'
import { tcpLabels, workloadLabels, type ZtunnelMetrics } from '../metrics.js'
import { dialFromPod, type PodNetns } from './inpod.js'
import type { HboneEngine } from '../../native/hbone.js'
import { NativeOutbound } from './native-outbound.js'
import type { CapturedConnection, ConnectionHandler } from './pod-proxy.js'

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
      const { destination, target } = this.resolve(conn.destination)
      const mesh = destination?.tunnelProtocol === 'HBONE'
      const labels = tcpLabels({
        reporter: 'source',
        ...workloadLabels('source', source),
        ...workloadLabels('destination', destination),
        connection_security_policy: mesh ? 'mutual_tls' : 'unknown',
      })
      let upstream: Duplex
      if (mesh && destination !== undefined && this.native) {
        const request = {
          sourceIdentity: identityOf(source),
          destinationIdentity: identityOf(destination),
          nextHop: { ip: target.ip, port: this.options.hbonePort },
          authority: formatAuthority(target),
          headers: { forwarded: formatForwarded(conn.source.ip) },
          sourceIp: conn.pod.ip,
        }
        return this.native.relay(conn, request, labels)
      } else if (mesh && destination !== undefined) {
        upstream = await this.pool.connect({
          sourceIdentity: identityOf(source),
          destinationIdentity: identityOf(destination),
          nextHop: { ip: target.ip, port: this.options.hbonePort },
          authority: formatAuthority(target),
          headers: { forwarded: formatForwarded(conn.source.ip) },
          sourceIp: conn.pod.ip,
        })
      } else {
        upstream = await dialFromPod(conn.pod, target, { mark: this.options.proxyMark })
      }
      this.options.metrics.connectionOpened(labels, 'outbound')
      const result = await relay(conn.socket, upstream)
      this.options.metrics.connectionClosed(labels, 'outbound', { received: result.sent, sent: result.received })
      return result
    }
  }

  /**
   * Where a connection goes: a workload's IP as is; a service VIP to one of its healthy
   * workloads, on that workload's target port. A VIP without one stays plain TCP to the
   * VIP, as any destination outside the mesh: the cluster's service proxy routes it,
   * and a meshed destination still enforces its own policy on that plaintext.
   */
  private resolve(original: { readonly ip: string; readonly port: number }): { destination: Workload | undefined; target: { ip: string; port: number } } {
    const destination = this.options.store.findByIp(original.ip)
    if (destination !== undefined) return { destination, target: original }
    const endpoint = this.options.store.pickServiceEndpoint(original.ip, original.port)
    if (endpoint === null) return { destination: undefined, target: original }
    return { destination: endpoint.workload, target: { ip: endpoint.workload.ips[0]!, port: endpoint.port } }
  }

  private async dialFromSource(nextHop: { ip: string; port: number }, sourceIp?: string): Promise<net.Socket> {
    const pod = sourceIp ? this.options.localPod(sourceIp) : undefined
    if (!pod) throw new Error(`no local workload with ip ${sourceIp} to dial ${nextHop.ip}:${nextHop.port} from`)
    return dialFromPod(pod, nextHop, { mark: this.options.proxyMark })
  }
}
