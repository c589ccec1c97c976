// Inbound (Istio ztunnel's proxy/inbound and inbound_passthrough): HBONE streams and
// plaintext connections into a local enrolled pod. Each is authorized against the
// destination's policies (a denied stream gets 401, a denied plaintext connection a
// reset), delivered from the client's own address, counted, and kept in a table so
// that a policy change closes the open ones it now denies.
import type net from 'node:net'
import type { Logger } from 'pino'
import { HboneNotLocalError } from '../../common/hbone/errors.js'
import { formatAuthority } from '../../common/hbone/headers.js'
import { HboneServer, type HboneServerObserver } from '../../common/hbone/server.js'
import type { IdentityCredentials } from '../../common/hbone/tls.js'
import type { Workload, WorkloadStore } from '../../common/model/workload-store.js'
import { abortSocket, relay } from '../../common/net/relay.js'
import type { Decision } from '../../common/policy/matcher.js'
import type { InboundAttributes, PolicyStore } from '../../common/policy/policy-store.js'
import { tcpLabels, workloadLabels, type TcpLabels, type ZtunnelMetrics } from '../metrics.js'
import type { PodNetns } from './inpod.js'
import { deliverThrough, dialDelivery, type CapturedConnection, type ConnectionHandler } from './pod-proxy.js'
import type { HboneEngine } from '../../native/hbone.js'
import { HboneUpstreamError } from '../../common/hbone/errors.js'
import { NativeHboneServer } from './native-hbone-server.js'

export interface InboundOptions {
  readonly store: WorkloadStore
  readonly policies: PolicyStore
  readonly metrics: ZtunnelMetrics
  readonly trustDomain: string
  /** SO_MARK of delivery sockets into a pod (the in-pod route returns replies to them). */
  readonly deliveryMark: number
  /** The latest version of a local workload (its policies and labels change while connections stay open). */
  readonly currentWorkload: (uid: string) => Workload | undefined
  readonly log: Logger
  /** --hbone-engine native: HBONE servers run on this engine; absent: Node's TLS and HTTP/2. */
  readonly engine?: HboneEngine
}

/** What a pod's HBONE listener needs to offer, on either engine. */
export interface PodHboneServer {
  start(listen: { readonly kind: 'fd'; readonly fd: number }): Promise<unknown>
  /** With drainMs: GOAWAY shutdown notice to every session, and their open streams up to drainMs to end. */
  stop(options?: { readonly drainMs?: number }): Promise<void>
  updateCredentials(credentials: IdentityCredentials): void
}

interface OpenInbound {
  readonly uid: string
  readonly attrs: InboundAttributes
  readonly close: () => void
}

export class Inbound {
  /** Open inbound connections with what they were authorized on: re-checked when policy changes. */
  private readonly open = new Map<number, OpenInbound>()
  private nextId = 1
  private unsubscribe: (() => void) | null = null

  constructor(private readonly options: InboundOptions) {}

  start(): void {
    this.unsubscribe = this.options.policies.onChange(() => this.reevaluate())
  }

  stop(): void {
    this.unsubscribe?.()
    this.unsubscribe = null
  }

  /** The HBONE server of one local pod: listens on podIP:<hbone port> inside its netns. */
  hboneServer(pod: PodNetns, current: () => Workload, credentials: IdentityCredentials, log: Logger): PodHboneServer {
    const attributes = (info: { peerIdentity: string | null; sourceIp: string; destination: { ip: string; port: number } }): InboundAttributes => ({
      peerIdentity: info.peerIdentity,
      sourceIp: info.sourceIp,
      destination: current(),
      destinationIp: info.destination.ip,
      destinationPort: info.destination.port,
    })
    const { engine } = this.options
    const common = {
      credentials,
      trustDomain: this.options.trustDomain,
      resolveTarget: (destination: { ip: string; port: number }): Workload => {
        if (destination.ip !== pod.ip) throw new HboneNotLocalError(formatAuthority(destination))
        return current()
      },
      authorize: (info: { peerIdentity: string; sourceIp: string; destination: { ip: string; port: number } }) => {
        const decision = this.authorize(attributes(info), 'hbone')
        return { allowed: decision.allowed, policy: decision.policy ? `${decision.policy.namespace}/${decision.policy.name}` : undefined }
      },
      log: log.child({ component: 'hbone-server' }),
    }
    if (engine) {
      return new NativeHboneServer<Workload>({
        ...common,
        engine,
        deliver: async (tunnel, _target, info) => {
          try {
            await deliverThrough((fd, target) => tunnel.deliver(fd, target), pod, info.destination, { ip: info.sourceIp, port: 0 }, this.options.deliveryMark)
          } catch (err) {
            throw new HboneUpstreamError(info.authority, err)
          }
          this.trackUntil(current().uid, attributes(info), tunnel.closed, () => tunnel.reset())
        },
        observer: this.hboneObserver(current),
      })
    }
    return new HboneServer<Workload>({
      ...common,
      connectUpstream: async (_target, info) => {
        const upstream = await dialDelivery(pod, info.destination, { ip: info.sourceIp, port: 0 }, this.options.deliveryMark)
        this.track(current().uid, attributes(info), upstream, () => upstream.destroy(new Error('denied by a policy change')))
        return upstream
      },
      observer: this.hboneObserver(current),
    })
  }

  /** Istio's TCP metrics of a pod's HBONE streams (either engine). */
  private hboneObserver(current: () => Workload): HboneServerObserver<Workload> {
    const { metrics } = this.options
    return {
      connectionRejected: (event) => metrics.hboneRefused.inc({ reason: event.reason }),
      streamOpened: (info) => metrics.connectionOpened(this.labels(current(), info.peerIdentity, 'mutual_tls', info.sourceIp), 'inbound'),
      streamClosed: (record) => {
        if (record.status !== 200) metrics.hboneRefused.inc({ reason: record.outcome })
        if (record.status === 401) {
          const labels = tcpLabels({ ...this.labels(current(), record.peerIdentity, 'mutual_tls', record.info?.sourceIp), response_flags: 'DENY' })
          metrics.connectionOpened(labels, 'inbound')
          metrics.connectionClosed(labels, 'inbound', { received: 0, sent: 0 })
        }
        if (record.status !== 200) return
        const labels = this.labels(current(), record.peerIdentity, 'mutual_tls', record.info?.sourceIp)
        metrics.connectionClosed(labels, 'inbound', { received: record.received, sent: record.sent })
      },
    }
  }

  /** The handler for one pod's plaintext inbound connections (steered by sk_lookup). */
  plaintext(current: () => Workload): ConnectionHandler {
    return async (conn: CapturedConnection) => {
      const w = current()
      const source = this.options.store.findByIp(conn.source.ip)
      const labels = tcpLabels({
        reporter: 'destination',
        ...workloadLabels('source', source),
        ...workloadLabels('destination', w),
        source_principal: 'unknown',
        connection_security_policy: 'unknown',
      })
      const attrs: InboundAttributes = {
        peerIdentity: null,
        sourceIp: conn.source.ip,
        destination: w,
        destinationIp: conn.destination.ip,
        destinationPort: conn.destination.port,
      }
      if (!this.authorize(attrs, 'plaintext').allowed) {
        const denied = tcpLabels({ ...labels, response_flags: 'DENY' })
        this.options.metrics.connectionOpened(denied, 'inbound')
        this.options.metrics.connectionClosed(denied, 'inbound', { received: 0, sent: 0 })
        conn.socket.resetAndDestroy()
        return
      }
      this.track(w.uid, attrs, conn.socket, () => abortSocket(conn.socket))
      const upstream = await dialDelivery(conn.pod, conn.destination, conn.source, this.options.deliveryMark)
      this.options.metrics.connectionOpened(labels, 'inbound')
      const result = await relay(conn.socket, upstream)
      this.options.metrics.connectionClosed(labels, 'inbound', { received: result.sent, sent: result.received })
      return result
    }
  }

  /** Policy or workloads changed: close every open inbound connection the new policy denies. */
  reevaluate(): void {
    let closed = 0
    for (const [id, open] of this.open) {
      const destination = this.options.currentWorkload(open.uid) ?? open.attrs.destination
      if (this.authorize({ ...open.attrs, destination }, open.attrs.peerIdentity ? 'hbone' : 'plaintext').allowed) continue
      this.open.delete(id)
      open.close()
      closed++
    }
    this.options.log.info({ open: this.open.size, closed }, 'policy or workloads changed: open inbound connections re-evaluated')
  }

  /** Evaluates an inbound connection; a denial is logged with the deciding policy. */
  private authorize(attrs: InboundAttributes, via: 'hbone' | 'plaintext'): Decision {
    const decision = this.options.policies.evaluate(attrs)
    const policy = decision.policy ? `${decision.policy.namespace}/${decision.policy.name}` : null
    const source = attrs.peerIdentity ?? attrs.sourceIp
    for (const dry of decision.dryRun)
      this.options.log.info({ policy: `${dry.policy.namespace}/${dry.policy.name}`, action: dry.action, source }, 'dry-run policy matched')
    if (!decision.allowed) {
      this.options.log.info(
        { via, source, destination: `${attrs.destinationIp}:${attrs.destinationPort}`, policy, rule: decision.rule, reason: decision.reason },
        'connection denied by policy',
      )
    }
    return decision
  }

  private track(uid: string, attrs: InboundAttributes, socket: net.Socket, close: () => void): void {
    this.trackUntil(uid, attrs, new Promise((resolve) => socket.once('close', resolve)), close)
  }

  private trackUntil(uid: string, attrs: InboundAttributes, closed: Promise<unknown>, close: () => void): void {
    const id = this.nextId++
    this.open.set(id, { uid, attrs, close })
    void closed.finally(() => this.open.delete(id))
  }

  private labels(w: Workload, peerIdentity: string | null, security: string, sourceIp?: string): TcpLabels {
    const principal = peerIdentity ? { source_principal: peerIdentity } : {}
    const source = sourceIp ? this.options.store.findByIp(sourceIp) : undefined
    return tcpLabels({
      reporter: 'destination',
      ...workloadLabels('source', source),
      ...workloadLabels('destination', w),
      ...principal,
      connection_security_policy: security,
    })
  }
}
