// ztunnel's data plane for one node, composed of its three parts as in Istio's
// ztunnel: the local pods' lifecycle (proxy/local-pods), outbound (proxy/outbound:
// HBONE or passthrough from the source pod) and inbound (proxy/inbound: HBONE and
// plaintext into a local pod, authorized). Started in that dependency order and
// stopped in reverse.
import type { Logger } from 'pino'
import type { Datapath } from '../datapath/datapath.js'
import type { IdentityManager } from '../common/identity/manager.js'
import type { WorkloadStore } from '../common/model/workload-store.js'
import type { PolicyStore } from '../common/policy/policy-store.js'
import type { ZtunnelMetrics } from './metrics.js'
import { Inbound } from './proxy/inbound.js'
import { LocalPods, type LocalPodStatus } from './proxy/local-pods.js'
import { Outbound } from './proxy/outbound.js'
import { HBONE_ENGINE_DEFAULTS, HboneEngine } from '../native/hbone.js'
import type { HandedPod } from './handoff.js'

export interface NodeProxyOptions {
  readonly node: string
  readonly datapath: Datapath
  readonly store: WorkloadStore
  readonly identities: IdentityManager
  readonly policies: PolicyStore
  readonly trustDomain: string
  readonly metrics: ZtunnelMetrics
  /** The native HBONE engine's settings, or null for Node's TLS and HTTP/2. */
  readonly hboneEngine: { readonly threads: number } | null
  readonly log: Logger
}

export class NodeProxy {
  private readonly inbound: Inbound
  private readonly outbound: Outbound
  private readonly pods: LocalPods
  private readonly engine: HboneEngine | null

  constructor(options: NodeProxyOptions) {
    const { store, identities, policies, metrics, log } = options
    this.engine = options.hboneEngine
      ? new HboneEngine({ ...HBONE_ENGINE_DEFAULTS, threads: options.hboneEngine.threads }, (err) => log.error({ err }, 'hbone engine event handler threw'))
      : null
    const engine = this.engine ?? undefined
    const { proxyMark, deliveryMark, hbonePort } = options.datapath.settings
    this.inbound = new Inbound({
      store,
      policies,
      metrics,
      trustDomain: options.trustDomain,
      deliveryMark,
      currentWorkload: (uid) => this.pods.workload(uid),
      log,
      engine,
    })
    this.outbound = new Outbound({ store, identities, metrics, proxyMark, hbonePort, localPod: (ip) => this.pods.podByIp(ip), log, engine })
    this.pods = new LocalPods({ node: options.node, datapath: options.datapath, store, identities, inbound: this.inbound, outbound: this.outbound, log })
  }

  /** Serves the local pods, on the sockets a predecessor `handed` over where they fit. */
  async start(handed: readonly HandedPod[] = []): Promise<void> {
    this.inbound.start()
    try {
      await this.pods.start(handed)
    } catch (err) {
      this.engine?.close()
      throw err
    }
  }

  async stop(): Promise<void> {
    this.inbound.stop()
    await this.pods.stop()
    await this.outbound.stop()
    this.engine?.close()
  }

  /** Every local pod's listening sockets (what a successor takes over). */
  listening(): HandedPod[] {
    return this.pods.listening()
  }

  /** Stops accepting and lets open connections finish, up to drainMs (see LocalPods.drain). */
  drain(options: { readonly handedOver: boolean; readonly drainMs: number }): Promise<void> {
    return this.pods.drain(options)
  }

  /** Local workloads and their open connections (readiness, admin). */
  status(): LocalPodStatus[] {
    return this.pods.status()
  }
}
