// A tunnelled connection that is not HTTP: authorized at L4 by the same policies
// (a rule that needs HTTP attributes never allows it), then relayed as TCP to one
// of the addressed service's workloads (or the addressed workload), with Istio's
// TCP metrics reported by the waypoint.
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { ConnectionInfo } from '../../common/hbone/server.js'
import { relay } from '../../common/net/relay.js'
import { tcpLabels, workloadLabels } from '../../common/telemetry.js'
import type { WaypointMetrics } from '../metrics.js'
import type { WaypointState, WaypointTarget } from '../state.js'
import type { Endpoint, Upstreams } from './upstream.js'

export interface TcpDecision {
  readonly allowed: boolean
  /** `namespace/name` of the deciding policy, or null. */
  readonly policy: string | null
}

export interface TcpHandlerOptions {
  readonly state: () => WaypointState
  readonly authorize: (
    state: WaypointState,
    input: { readonly peerIdentity: string | null; readonly sourceIp: string; readonly target: WaypointTarget },
  ) => TcpDecision
  readonly upstreams: Upstreams
  readonly metrics: WaypointMetrics
  readonly log: Logger
  readonly random?: () => number
}

export class TcpHandler {
  constructor(private readonly options: TcpHandlerOptions) {}

  /** Relays one connection; resolves with its byte counts once both sides are done. */
  async handle(
    stream: Duplex,
    target: WaypointTarget,
    info: ConnectionInfo,
    leftover: Buffer | null,
  ): Promise<{ received: number; sent: number; error: Error | null }> {
    const state = this.options.state()
    const source = state.store.findByIp(info.sourceIp)
    const endpoint = this.endpoint(state, target)
    const labels = tcpLabels({
      reporter: 'waypoint',
      ...workloadLabels('source', source),
      ...(info.peerIdentity ? { source_principal: info.peerIdentity } : {}),
      ...workloadLabels('destination', endpoint?.workload ?? (target.kind === 'workload' ? target.workload : undefined)),
      ...(target.kind === 'service' ? { destination_service: state.hostname(target.service) } : {}),
      connection_security_policy: 'mutual_tls',
    })
    const decision = this.options.authorize(state, { peerIdentity: info.peerIdentity, sourceIp: info.sourceIp, target })
    if (!decision.allowed) {
      const denied = tcpLabels({ ...labels, response_flags: 'DENY' })
      this.options.metrics.tcpOpened.inc(denied)
      this.options.metrics.tcpConnectionClosed(denied, { received: 0, sent: 0 })
      this.options.log.info(
        { source: info.peerIdentity ?? info.sourceIp, destination: `${target.address.ip}:${target.address.port}`, policy: decision.policy },
        'tcp connection denied by policy',
      )
      stream.destroy()
      return { received: 0, sent: 0, error: null }
    }
    if (endpoint === null) {
      const flagged = tcpLabels({ ...labels, response_flags: 'UH' })
      this.options.metrics.tcpOpened.inc(flagged)
      this.options.metrics.tcpConnectionClosed(flagged, { received: 0, sent: 0 })
      stream.destroy()
      return { received: 0, sent: 0, error: new Error(`no healthy upstream for ${target.address.ip}:${target.address.port}`) }
    }
    let upstream: Duplex
    try {
      upstream = await this.options.upstreams.connect(endpoint, info.sourceIp)
    } catch (err) {
      const flagged = tcpLabels({ ...labels, response_flags: 'UF' })
      this.options.metrics.tcpOpened.inc(flagged)
      this.options.metrics.tcpConnectionClosed(flagged, { received: 0, sent: 0 })
      stream.destroy()
      return { received: 0, sent: 0, error: err as Error }
    }
    this.options.metrics.tcpOpened.inc(labels)
    if (leftover !== null) upstream.write(leftover)
    const relaying = relay(stream, upstream)
    // Sniffing left the stream paused; the relay's listeners are attached now.
    stream.resume()
    const result = await relaying
    const received = result.sent + (leftover?.length ?? 0)
    this.options.metrics.tcpConnectionClosed(labels, { received, sent: result.received })
    return { received, sent: result.received, error: result.error }
  }

  private endpoint(state: WaypointState, target: WaypointTarget): Endpoint | null {
    if (target.kind === 'workload') return { workload: target.workload, port: target.address.port }
    const candidates = state.store.endpoints({ namespace: target.service.namespace, hostname: state.hostname(target.service) }, target.port.port)
    const random = this.options.random ?? Math.random
    return candidates.length === 0 ? null : candidates[Math.floor(random() * candidates.length)]!
  }
}
