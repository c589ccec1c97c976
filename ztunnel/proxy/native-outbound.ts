// Outbound HBONE on the native engine (--hbone-engine native): the captured
// socket's fd moves to the engine once a session is ready, and the engine relays
// it through a pooled CONNECT stream; metrics and logs stay here. Tunnels are
// kept per source pod, so a pod that leaves has its connections reset.
import type net from 'node:net'
import type { Logger } from 'pino'
import type { HboneEngine } from '../../native/hbone.js'
import { takeSocketFd } from '../../native/index.js'
import type { IdentityManager } from '../../common/identity/manager.js'
import type { RelayResult } from '../../common/net/relay.js'
import type { TcpLabels, ZtunnelMetrics } from '../metrics.js'
import { socketFromPod, type PodNetns } from './inpod.js'
import { NativeHbonePool, type NativeConnectRequest } from './native-hbone-pool.js'
import type { CapturedConnection } from './pod-proxy.js'

export interface NativeOutboundOptions {
  readonly engine: HboneEngine
  readonly identities: IdentityManager
  readonly metrics: ZtunnelMetrics
  readonly proxyMark: number
  readonly localPod: (ip: string) => PodNetns | undefined
  readonly log: Logger
}

export class NativeOutbound {
  private readonly pool: NativeHbonePool
  /** Per source pod IP: how to reset each open tunnel. */
  private readonly open = new Map<string, Set<() => void>>()

  constructor(private readonly options: NativeOutboundOptions) {
    this.pool = new NativeHbonePool({
      engine: options.engine,
      contextFor: async (identity) => {
        const cert = await options.identities.getCertificate(identity)
        return options.engine.createContext('client', cert)
      },
      socketFor: (nextHop, sourceIp) => {
        const pod = sourceIp ? options.localPod(sourceIp) : undefined
        if (!pod) return Promise.reject(new Error(`no local workload with ip ${sourceIp} to dial ${nextHop.ip}:${nextHop.port} from`))
        return socketFromPod(pod, { mark: options.proxyMark })
      },
      observer: {
        sessionOpened: () => options.metrics.hboneSessions.inc(),
        sessionClosed: () => options.metrics.hboneSessions.dec(),
      },
      log: options.log.child({ component: 'hbone-pool', engine: 'native' }),
    })
  }

  /** Relays one captured connection; resolves when the tunnel is over, rejects when it never opened. */
  async relay(conn: CapturedConnection, request: NativeConnectRequest, labels: TcpLabels): Promise<RelayResult> {
    const podIp = conn.pod.ip
    let reset: (() => void) | null = null
    const result = await this.pool
      .relay(
        request,
        () => takeSocketFd(conn.socket as net.Socket & { _handle?: { fd?: number } }),
        () => this.options.metrics.connectionOpened(labels, 'outbound'),
        (resetTunnel) => {
          reset = resetTunnel
          let set = this.open.get(podIp)
          if (!set) this.open.set(podIp, (set = new Set()))
          set.add(resetTunnel)
        },
      )
      .finally(() => {
        const set = this.open.get(podIp)
        if (reset && set) {
          set.delete(reset)
          if (set.size === 0) this.open.delete(podIp)
        }
      })
    // Istio's `received` is what the source sent: the bytes read from the application's socket.
    this.options.metrics.connectionClosed(labels, 'outbound', { received: result.sent, sent: result.received })
    return { sent: result.sent, received: result.received, error: result.message ? new Error(result.message) : null }
  }

  resetFrom(podIp: string): void {
    for (const reset of this.open.get(podIp) ?? []) reset()
    this.open.delete(podIp)
  }

  openFrom(podIp: string): number {
    return this.open.get(podIp)?.size ?? 0
  }

  invalidateIdentity(identity: string): void {
    this.pool.invalidateIdentity(identity)
  }

  stop(): Promise<void> {
    return this.pool.stop()
  }
}
