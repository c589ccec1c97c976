// ztunnel's data plane for one node: for every local enrolled workload, the
// in-pod listeners the datapath steers to (outbound 15001, inbound plaintext
// 15006) and the HBONE server on podIP:15008 inside the pod; outbound traffic to
// a mesh workload rides a pooled HBONE tunnel dialed from the source pod's netns
// with the source workload's certificate; anything else is plain passthrough.
import type { Logger } from 'pino'
import type { Duplex } from 'node:stream'
import type net from 'node:net'
import { netnsCookieOf } from '../datapath/datapath.js'
import type { Datapath } from '../datapath/datapath.js'
import { socketInNetns } from '../native/index.js'
import { HbonePool } from '../common/hbone/pool.js'
import { HboneServer } from '../common/hbone/server.js'
import { HboneNotLocalError } from '../common/hbone/errors.js'
import { formatAuthority, formatForwarded } from '../common/hbone/headers.js'
import type { IdentityManager, ManagedCertificate, RotationReason } from '../common/identity/manager.js'
import type { IdentityCredentials } from '../common/hbone/tls.js'
import { tcpLabels, type TcpLabels, type ZtunnelMetrics } from './metrics.js'
import { dialFromPod, PodSockets } from './proxy/inpod.js'
import { dialDelivery, PodProxy, type CapturedConnection, type ConnectionHandler } from './proxy/pod-proxy.js'
import { abortSocket, relay } from '../common/net/relay.js'
import { eachLimited } from '../common/concurrency.js'
import { identityOf, type Workload, type WorkloadStore } from '../common/model/workload-store.js'
import type { InboundAttributes, PolicyStore } from '../common/policy/policy-store.js'
import type { Decision } from '../common/policy/matcher.js'

export interface NodeProxyOptions {
  readonly node: string
  readonly datapath: Datapath
  readonly store: WorkloadStore
  /** Workload certificates: issued, renewed at half-life, rotated with the trust bundle. */
  readonly identities: IdentityManager
  readonly policies: PolicyStore
  readonly trustDomain: string
  readonly metrics: ZtunnelMetrics
  readonly log: Logger
}

interface PodRuntime {
  /** The latest version from the store: policies attached to it change while it runs. */
  workload: Workload
  readonly proxy: PodProxy
  readonly hbone: HboneServer<Workload>
  readonly sockets: PodSockets
}

/** Pods whose in-pod listeners are opened at once (each opens three sockets inside the pod's netns). */
const POD_START_CONCURRENCY = 4
const POD_START_RETRY_MS = 1000

function workloadLabels(prefix: 'source' | 'destination', w: Workload | undefined): Partial<TcpLabels> {
  if (!w) return {}
  return {
    [`${prefix}_workload`]: w.name,
    [`${prefix}_workload_namespace`]: w.namespace,
    [`${prefix}_principal`]: identityOf(w),
    [`${prefix}_app`]: w.canonicalName || 'unknown',
  }
}

export class NodeProxy {
  private readonly pods = new Map<string, PodRuntime>()
  private readonly pool: HbonePool
  private unsubscribe: (() => void) | null = null
  private retry: NodeJS.Timeout | null = null
  private unsubscribePolicies: (() => void) | null = null
  /** Open inbound connections with what they were authorized on: re-checked when policy changes. */
  private readonly openInbound = new Map<number, { readonly uid: string; readonly attrs: InboundAttributes; readonly close: () => void }>()
  private nextInbound = 1
  private reconciling: Promise<void> = Promise.resolve()

  constructor(private readonly options: NodeProxyOptions) {
    this.pool = new HbonePool({
      contextFor: async (identity) => (await options.identities.getCertificate(identity)).secureContext,
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
    this.unsubscribePolicies = this.options.policies.onChange(() => this.reevaluateOpenConnections())
    this.options.identities.on('certificate', this.onCertificate)
    await this.reconcile()
  }

  async stop(): Promise<void> {
    if (this.retry !== null) clearTimeout(this.retry)
    this.retry = null
    this.unsubscribe?.()
    this.unsubscribePolicies?.()
    this.options.identities.off('certificate', this.onCertificate)
    await this.reconciling
    for (const uid of [...this.pods.keys()]) await this.removePod(uid)
    await this.pool.stop()
  }

  /** A renewed or re-chained certificate: new HBONE handshakes use it; open ones keep theirs. */
  private readonly onCertificate = (cert: ManagedCertificate, reason: RotationReason): void => {
    if (reason === 'issued') return
    for (const pod of this.pods.values()) if (identityOf(pod.workload) === cert.identity) pod.hbone.updateCredentials(credentialsOf(cert))
    this.pool.invalidateIdentity(cert.identity)
    this.options.log.info({ identity: cert.identity, serial: cert.serialNumber, notAfter: cert.notAfter.toISOString(), reason }, 'workload certificate rotated')
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
    let updated = false
    for (const [uid, pod] of [...this.pods]) {
      const next = wanted.get(uid)
      // Gone, or the same pod in another sandbox (netns or IP changed): its listeners must move.
      if (next === undefined || next.netnsPath !== pod.workload.netnsPath || next.ips[0] !== pod.workload.ips[0]) await this.removePod(uid)
      else if (next !== pod.workload) {
        pod.workload = next
        updated = true
      }
    }
    // A workload's attached policies (or labels) may have changed: open connections are checked again.
    if (updated) this.reevaluateOpenConnections()
    let failed = 0
    const added = [...wanted.values()].filter((w) => !this.pods.has(w.uid))
    await eachLimited(added, POD_START_CONCURRENCY, async (w) => {
      try {
        await this.addPod(w)
      } catch (err) {
        failed += 1
        this.options.log.error({ err: (err as Error).message, workload: `${w.namespace}/${w.name}` }, 'cannot start the in-pod listeners; the pod fails closed until this succeeds (retried)')
      }
    })
    if (failed > 0 && this.retry === null) {
      this.retry = setTimeout(() => {
        this.retry = null
        void this.reconcile()
      }, POD_START_RETRY_MS)
      this.retry.unref()
    }
  }

  private async addPod(w: Workload): Promise<void> {
    const ip = w.ips[0]!
    const netnsPath = w.netnsPath!
    const netnsCookie = await netnsCookieOf(netnsPath)
    const { proxyMark, deliveryMark, hbonePort } = this.options.datapath.settings
    const log = this.options.log.child({ workload: `${w.namespace}/${w.name}` })
    const current = (): Workload => this.pods.get(w.uid)?.workload ?? w
    const sockets = new PodSockets(netnsPath, (err) => log.debug({ err: err.message }, 'cannot make spare sockets in the pod; dials make their own'))
    const proxy = new PodProxy({
      pod: { netnsPath, ip, netnsCookie, sockets },
      proxyMark,
      deliveryMark,
      hbonePort,
      origins: {
        originalDestination: (pod, source, redirectedTo) =>
          this.options.datapath.originalDestination({ netnsCookie: pod.netnsCookie, srcIp: source.ip, srcPort: source.port, dstIp: redirectedTo.ip, dstPort: redirectedTo.port }),
      },
      listeners: this.options.datapath,
      log,
      outbound: this.outbound(current),
      inbound: this.inboundPlaintext(current),
    })
    const hbone = new HboneServer<Workload>({
      credentials: credentialsOf(await this.options.identities.getCertificate(identityOf(w))),
      trustDomain: this.options.trustDomain,
      resolveTarget: (destination) => {
        if (destination.ip !== ip) throw new HboneNotLocalError(formatAuthority(destination))
        return current()
      },
      authorize: (info) => {
        const decision = this.authorize({ peerIdentity: info.peerIdentity, sourceIp: info.sourceIp, destination: current(), destinationIp: info.destination.ip, destinationPort: info.destination.port }, 'hbone')
        return { allowed: decision.allowed, policy: decision.policy ? `${decision.policy.namespace}/${decision.policy.name}` : undefined }
      },
      connectUpstream: async (_target, info) => {
        const upstream = await dialDelivery({ netnsPath, ip, sockets }, info.destination, { ip: info.sourceIp, port: 0 }, deliveryMark)
        this.track(w.uid, { peerIdentity: info.peerIdentity, sourceIp: info.sourceIp, destination: current(), destinationIp: info.destination.ip, destinationPort: info.destination.port }, upstream, () => upstream.destroy(new Error('denied by a policy change')))
        return upstream
      },
      observer: {
        streamOpened: (info) => {
          const labels = this.inboundLabels(current(), info.peerIdentity, 'mutual_tls', info.sourceIp)
          this.options.metrics.connectionOpened(labels, 'inbound')
        },
        streamClosed: (record) => {
          if (record.status === 401) {
            const labels = tcpLabels({ ...this.inboundLabels(current(), record.peerIdentity, 'mutual_tls', record.info?.sourceIp), response_flags: 'DENY' })
            this.options.metrics.connectionOpened(labels, 'inbound')
            this.options.metrics.connectionClosed(labels, 'inbound', { received: 0, sent: 0 })
          }
          if (record.status !== 200) return
          const labels = this.inboundLabels(current(), record.peerIdentity, 'mutual_tls', record.info?.sourceIp)
          this.options.metrics.connectionClosed(labels, 'inbound', { received: record.received, sent: record.sent })
        },
      },
      log: log.child({ component: 'hbone-server' }),
    })
    try {
      const fd = await socketInNetns(netnsPath, { family: 4, reuseAddr: true, bindAddress: ip, bindPort: hbonePort, listenBacklog: 1024 })
      await hbone.start({ kind: 'fd', fd })
      try {
        await proxy.start()
      } catch (err) {
        await hbone.stop()
        throw err
      }
    } catch (err) {
      sockets.close()
      throw err
    }
    this.pods.set(w.uid, { workload: w, proxy, hbone, sockets })
    log.info({ ip }, 'workload captured')
  }

  private async removePod(uid: string): Promise<void> {
    const pod = this.pods.get(uid)
    if (!pod) return
    this.pods.delete(uid)
    await pod.proxy.stop()
    await pod.hbone.stop()
    pod.sockets.close()
    this.options.log.info({ workload: `${pod.workload.namespace}/${pod.workload.name}` }, 'workload released')
  }

  /** Evaluates an inbound connection; a denial is logged with the deciding policy. */
  private authorize(attrs: InboundAttributes, via: 'hbone' | 'plaintext'): Decision {
    const decision = this.options.policies.evaluate(attrs)
    const policy = decision.policy ? `${decision.policy.namespace}/${decision.policy.name}` : null
    for (const dry of decision.dryRun) this.options.log.info({ policy: `${dry.policy.namespace}/${dry.policy.name}`, action: dry.action, source: attrs.peerIdentity ?? attrs.sourceIp }, 'dry-run policy matched')
    if (!decision.allowed) {
      this.options.log.info({ via, source: attrs.peerIdentity ?? attrs.sourceIp, destination: `${attrs.destinationIp}:${attrs.destinationPort}`, policy, rule: decision.rule, reason: decision.reason }, 'connection denied by policy')
    }
    return decision
  }

  private track(uid: string, attrs: InboundAttributes, socket: net.Socket, close: () => void): void {
    const id = this.nextInbound++
    this.openInbound.set(id, { uid, attrs, close })
    socket.once('close', () => this.openInbound.delete(id))
  }

  /** Policy changed: close every open inbound connection the new policy denies. */
  private reevaluateOpenConnections(): void {
    let closed = 0
    for (const [id, open] of this.openInbound) {
      const destination = this.pods.get(open.uid)?.workload ?? open.attrs.destination
      if (this.authorize({ ...open.attrs, destination }, open.attrs.peerIdentity ? 'hbone' : 'plaintext').allowed) continue
      this.openInbound.delete(id)
      open.close()
      closed++
    }
    this.options.log.info({ open: this.openInbound.size, closed }, 'policy or workloads changed: open inbound connections re-evaluated')
  }

  private inboundLabels(w: Workload, peerIdentity: string | null, security: string, sourceIp?: string): TcpLabels {
    const principal = peerIdentity ? { source_principal: peerIdentity } : {}
    const source = sourceIp ? this.options.store.findByIp(sourceIp) : undefined
    return tcpLabels({ reporter: 'destination', ...workloadLabels('source', source), ...workloadLabels('destination', w), ...principal, connection_security_policy: security })
  }

  private async dialFromSource(nextHop: { ip: string; port: number }, sourceIp?: string): Promise<net.Socket> {
    const pod = sourceIp ? [...this.pods.values()].find((p) => p.workload.ips.includes(sourceIp)) : undefined
    if (!pod) throw new Error(`no local workload with ip ${sourceIp} to dial ${nextHop.ip}:${nextHop.port} from`)
    return dialFromPod({ netnsPath: pod.workload.netnsPath!, ip: sourceIp!, sockets: pod.sockets }, nextHop, { mark: this.options.datapath.settings.proxyMark })
  }

  private outbound(currentSource: () => Workload): ConnectionHandler {
    return async (conn: CapturedConnection) => {
      const source = currentSource()
      // A service VIP goes to one of its healthy workloads, on that workload's target port.
      let target = conn.destination
      let destination = this.options.store.findByIp(conn.destination.ip)
      if (destination === undefined) {
        // No healthy pod endpoint (a selectorless service, or none ready): plain TCP to the VIP, as to
        // any destination outside the mesh; the cluster's service proxy routes it, and a meshed
        // destination still enforces its own policy on that plaintext.
        const endpoint = this.options.store.pickServiceEndpoint(conn.destination.ip, conn.destination.port)
        if (endpoint !== null) {
          destination = endpoint.workload
          target = { ip: endpoint.workload.ips[0]!, port: endpoint.port }
        }
      }
      const mesh = destination?.tunnelProtocol === 'HBONE'
      const labels = tcpLabels({
        reporter: 'source',
        ...workloadLabels('source', source),
        ...workloadLabels('destination', destination),
        connection_security_policy: mesh ? 'mutual_tls' : 'unknown',
      })
      let upstream: Duplex
      if (mesh && destination !== undefined) {
        upstream = await this.pool.connect({
          sourceIdentity: identityOf(source),
          destinationIdentity: identityOf(destination),
          nextHop: { ip: target.ip, port: this.options.datapath.settings.hbonePort },
          authority: formatAuthority(target),
          headers: { forwarded: formatForwarded(conn.source.ip) },
          sourceIp: conn.pod.ip,
        })
      } else {
        upstream = await dialFromPod(conn.pod, target, { mark: this.options.datapath.settings.proxyMark })
      }
      this.options.metrics.connectionOpened(labels, 'outbound')
      const result = await relay(conn.socket, upstream)
      this.options.metrics.connectionClosed(labels, 'outbound', { received: result.sent, sent: result.received })
      return result
    }
  }

  private inboundPlaintext(current: () => Workload): ConnectionHandler {
    return async (conn: CapturedConnection) => {
      const w = current()
      const source = this.options.store.findByIp(conn.source.ip)
      const labels = tcpLabels({ reporter: 'destination', ...workloadLabels('source', source), ...workloadLabels('destination', w), source_principal: 'unknown', connection_security_policy: 'unknown' })
      const attrs: InboundAttributes = { peerIdentity: null, sourceIp: conn.source.ip, destination: w, destinationIp: conn.destination.ip, destinationPort: conn.destination.port }
      if (!this.authorize(attrs, 'plaintext').allowed) {
        const denied = tcpLabels({ ...labels, response_flags: 'DENY' })
        this.options.metrics.connectionOpened(denied, 'inbound')
        this.options.metrics.connectionClosed(denied, 'inbound', { received: 0, sent: 0 })
        conn.socket.resetAndDestroy()
        return
      }
      this.track(w.uid, attrs, conn.socket, () => abortSocket(conn.socket))
      const { deliveryMark } = this.options.datapath.settings
      const upstream = await dialDelivery(conn.pod, conn.destination, conn.source, deliveryMark)
      this.options.metrics.connectionOpened(labels, 'inbound')
      const result = await relay(conn.socket, upstream)
      this.options.metrics.connectionClosed(labels, 'inbound', { received: result.sent, sent: result.received })
      return result
    }
  }
}

function credentialsOf(cert: ManagedCertificate): IdentityCredentials {
  return { keyPem: cert.keyPem, certPem: cert.certPem, chainPem: cert.chainPem || undefined, trustBundlePem: cert.trustBundlePem }
}
