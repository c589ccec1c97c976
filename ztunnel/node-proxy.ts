// ztunnel's data plane for one node: for every local enrolled workload, the
// in-pod listeners the datapath steers to (outbound 15001, inbound plaintext
// 15006) and the HBONE server on podIP:15008 inside the pod; outbound traffic to
// a mesh workload rides a pooled HBONE tunnel dialed from the source pod's netns
// with the source workload's certificate; anything else is plain passthrough.
import type { Logger } from 'pino'
import type { Duplex } from 'node:stream'
import type net from 'node:net'
import { netnsCookieOf } from '../agent/dataplane/datapath.js'
import type { Datapath } from '../agent/dataplane/datapath.js'
import { socketInNetns } from '../native/index.js'
import { HbonePool } from './hbone/pool.js'
import { HboneServer } from './hbone/server.js'
import { HboneNotLocalError } from './hbone/errors.js'
import { formatAuthority, formatForwarded } from './hbone/headers.js'
import type { IdentityProvider } from './identity/local-identities.js'
import { tcpLabels, type TcpLabels, type ZtunnelMetrics } from './metrics.js'
import { dialFromPod } from './proxy/inpod.js'
import { dialDelivery, HBONE_PORT, PodProxy, type CapturedConnection, type ConnectionHandler } from './proxy/pod-proxy.js'
import { relay } from './proxy/relay.js'
import { identityOf, type Workload, type WorkloadStore } from './state/workloads.js'

export interface NodeProxyOptions {
  readonly node: string
  readonly datapath: Datapath
  readonly store: WorkloadStore
  readonly identities: IdentityProvider
  readonly trustDomain: string
  readonly metrics: ZtunnelMetrics
  readonly log: Logger
}

interface PodRuntime {
  readonly workload: Workload
  readonly proxy: PodProxy
  readonly hbone: HboneServer<Workload>
}

function workloadLabels(prefix: 'source' | 'destination', w: Workload | undefined): Partial<TcpLabels> {
  if (!w) return {}
  return {
    [`${prefix}_workload`]: w.name,
    [`${prefix}_workload_namespace`]: w.namespace,
    [`${prefix}_principal`]: identityOf(w),
    [`${prefix}_app`]: w.labels.app ?? 'unknown',
  }
}

export class NodeProxy {
  private readonly pods = new Map<string, PodRuntime>()
  private readonly pool: HbonePool
  private unsubscribe: (() => void) | null = null
  private reconciling: Promise<void> = Promise.resolve()

  constructor(private readonly options: NodeProxyOptions) {
    this.pool = new HbonePool({
      contextFor: (identity) => options.identities.context(identity),
      dial: ({ nextHop, sourceIp }) => this.dialFromSource(nextHop, sourceIp),
      observer: {
        sessionOpened: () => options.metrics.hboneSessions.inc(),
        sessionClosed: () => options.metrics.hboneSessions.dec(),
      },
      log: options.log.child({ component: 'hbone-pool' }),
    })
  }

  async start(): Promise<void> {
    this.unsubscribe = this.options.store.onChange(() => void this.reconcile())
    await this.reconcile()
  }

  async stop(): Promise<void> {
    this.unsubscribe?.()
    await this.reconciling
    for (const uid of [...this.pods.keys()]) await this.removePod(uid)
    await this.pool.stop()
  }

  /** Local workloads and whether their listeners are up (readiness, admin). */
  status(): { uid: string; name: string; namespace: string; ip: string; identity: string; connections: number }[] {
    return [...this.pods.values()].map((p) => ({ uid: p.workload.uid, name: p.workload.name, namespace: p.workload.namespace, ip: p.workload.ips[0]!, identity: identityOf(p.workload), connections: p.proxy.connections }))
  }

  /** Serialized: brings the running pods in line with the store's local workloads. */
  reconcile(): Promise<void> {
    this.reconciling = this.reconciling.then(() => this.reconcileNow()).catch((err) => this.options.log.error({ err }, 'reconcile failed'))
    return this.reconciling
  }

  private async reconcileNow(): Promise<void> {
    const wanted = new Map(this.options.store.local(this.options.node).map((w) => [w.uid, w]))
    for (const uid of this.pods.keys()) if (!wanted.has(uid)) await this.removePod(uid)
    for (const [uid, w] of wanted) {
      if (this.pods.has(uid)) continue
      try {
        await this.addPod(w)
      } catch (err) {
        this.options.log.error({ err: (err as Error).message, workload: `${w.namespace}/${w.name}` }, 'cannot start the in-pod listeners; the pod fails closed until this succeeds')
      }
    }
  }

  private async addPod(w: Workload): Promise<void> {
    const ip = w.ips[0]!
    const netnsPath = w.netnsPath!
    const netnsCookie = await netnsCookieOf(netnsPath)
    const { proxyMark, deliveryMark } = this.options.datapath.settings
    const log = this.options.log.child({ workload: `${w.namespace}/${w.name}` })
    const proxy = new PodProxy({
      pod: { netnsPath, ip, netnsCookie },
      proxyMark,
      deliveryMark,
      origins: {
        originalDestination: (pod, source, redirectedTo) =>
          this.options.datapath.originalDestination({ netnsCookie: pod.netnsCookie, srcIp: source.ip, srcPort: source.port, dstIp: redirectedTo.ip, dstPort: redirectedTo.port }),
      },
      listeners: this.options.datapath,
      log,
      outbound: this.outbound(w),
      inbound: this.inboundPlaintext(w),
    })
    const hbone = new HboneServer<Workload>({
      credentials: this.options.identities.credentials(identityOf(w)),
      trustDomain: this.options.trustDomain,
      resolveTarget: (destination) => {
        if (destination.ip !== ip) throw new HboneNotLocalError(formatAuthority(destination))
        return w
      },
      connectUpstream: (_target, info) => dialDelivery({ netnsPath, ip }, info.destination, { ip: info.sourceIp, port: 0 }, deliveryMark),
      observer: {
        streamOpened: (info) => {
          const labels = this.inboundLabels(w, info.peerIdentity, 'mutual_tls', info.sourceIp)
          this.options.metrics.connectionOpened(labels, 'inbound')
        },
        streamClosed: (record) => {
          if (record.status !== 200) return
          const labels = this.inboundLabels(w, record.peerIdentity, 'mutual_tls', record.info?.sourceIp)
          this.options.metrics.connectionClosed(labels, 'inbound', { received: record.received, sent: record.sent })
        },
      },
      log: log.child({ component: 'hbone-server' }),
    })
    const fd = await socketInNetns(netnsPath, { family: 4, reuseAddr: true, bindAddress: ip, bindPort: HBONE_PORT, listenBacklog: 1024 })
    await hbone.start({ kind: 'fd', fd })
    try {
      await proxy.start()
    } catch (err) {
      await hbone.stop()
      throw err
    }
    this.pods.set(w.uid, { workload: w, proxy, hbone })
    log.info({ ip }, 'workload captured')
  }

  private async removePod(uid: string): Promise<void> {
    const pod = this.pods.get(uid)
    if (!pod) return
    this.pods.delete(uid)
    await pod.proxy.stop()
    await pod.hbone.stop()
    this.options.log.info({ workload: `${pod.workload.namespace}/${pod.workload.name}` }, 'workload released')
  }

  private inboundLabels(w: Workload, peerIdentity: string | null, security: string, sourceIp?: string): TcpLabels {
    const principal = peerIdentity ? { source_principal: peerIdentity } : {}
    const source = sourceIp ? this.options.store.findByIp(sourceIp) : undefined
    return tcpLabels({ reporter: 'destination', ...workloadLabels('source', source), ...workloadLabels('destination', w), ...principal, connection_security_policy: security })
  }

  private async dialFromSource(nextHop: { ip: string; port: number }, sourceIp?: string): Promise<net.Socket> {
    const pod = sourceIp ? [...this.pods.values()].find((p) => p.workload.ips.includes(sourceIp)) : undefined
    if (!pod) throw new Error(`no local workload with ip ${sourceIp} to dial ${nextHop.ip}:${nextHop.port} from`)
    return dialFromPod({ netnsPath: pod.workload.netnsPath!, ip: sourceIp! }, nextHop, { mark: this.options.datapath.settings.proxyMark })
  }

  private outbound(source: Workload): ConnectionHandler {
    return async (conn: CapturedConnection) => {
      const destination = this.options.store.findByIp(conn.destination.ip)
      const mesh = destination?.tunnelProtocol === 'HBONE'
      const labels = tcpLabels({
        reporter: 'source',
        ...workloadLabels('source', source),
        ...workloadLabels('destination', destination),
        connection_security_policy: mesh ? 'mutual_tls' : 'unknown',
      })
      let upstream: Duplex
      if (mesh) {
        upstream = await this.pool.connect({
          sourceIdentity: identityOf(source),
          destinationIdentity: identityOf(destination),
          nextHop: { ip: conn.destination.ip, port: HBONE_PORT },
          authority: formatAuthority(conn.destination),
          headers: { forwarded: formatForwarded(conn.source.ip) },
          sourceIp: conn.pod.ip,
        })
      } else {
        upstream = await dialFromPod(conn.pod, conn.destination, { mark: this.options.datapath.settings.proxyMark })
      }
      this.options.metrics.connectionOpened(labels, 'outbound')
      const result = await relay(conn.socket, upstream)
      this.options.metrics.connectionClosed(labels, 'outbound', { received: result.sent, sent: result.received })
      return result
    }
  }

  private inboundPlaintext(w: Workload): ConnectionHandler {
    return async (conn: CapturedConnection) => {
      const source = this.options.store.findByIp(conn.source.ip)
      const labels = tcpLabels({ reporter: 'destination', ...workloadLabels('source', source), ...workloadLabels('destination', w), source_principal: 'unknown', connection_security_policy: 'unknown' })
      const { deliveryMark } = this.options.datapath.settings
      const upstream = await dialDelivery(conn.pod, conn.destination, conn.source, deliveryMark)
      this.options.metrics.connectionOpened(labels, 'inbound')
      const result = await relay(conn.socket, upstream)
      this.options.metrics.connectionClosed(labels, 'inbound', { received: result.sent, sent: result.received })
      return result
    }
  }
}
