// The lifecycle of this node's enrolled pods (Istio ztunnel's inpod workload
// manager): for each local workload in the store, the in-pod listeners the datapath
// steers to (outbound, inbound plaintext) and the HBONE server on podIP:<hbone port>,
// opened inside the pod's netns; moved when the pod's sandbox changes, closed when
// it leaves. Reconciles are serialized; a pod that cannot start is retried and
// fails closed meanwhile.
import type { Logger } from 'pino'
import type { Datapath } from '../../datapath/datapath.js'
import { closeFd, podSockets, type PodSocketsResult } from '../../native/index.js'
import type { IdentityCredentials } from '../../common/hbone/tls.js'
import type { IdentityManager, ManagedCertificate, RotationReason } from '../../common/identity/manager.js'
import { identityOf, type Workload, type WorkloadStore } from '../../common/model/workload-store.js'
import type { HandedPod } from '../handoff.js'
import type { Inbound, PodHboneServer } from './inbound.js'
import { listenerOptions, PodSockets, type PodNetns } from './inpod.js'
import type { Outbound } from './outbound.js'
import { INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT, PodProxy } from './pod-proxy.js'

export interface LocalPodsOptions {
  readonly node: string
  readonly datapath: Datapath
  readonly store: WorkloadStore
  /** Workload certificates: issued, renewed at half-life, rotated with the trust bundle. */
  readonly identities: IdentityManager
  readonly inbound: Inbound
  readonly outbound: Outbound
  readonly log: Logger
}

interface PodRuntime {
  /** The latest version from the store: policies attached to it change while it runs. */
  workload: Workload
  readonly proxy: PodProxy
  readonly hbone: PodHboneServer
  readonly sockets: PodSockets
  /** Its listening sockets (what a successor ztunnel takes over) and their netns cookie. */
  readonly listening: PodSocketsResult
}

/** A pod to start and its listening sockets (or why it has none). */
interface PodStart {
  readonly w: Workload
  readonly sockets: PodSocketsResult | Error
}

export interface LocalPodStatus {
  readonly uid: string
  readonly name: string
  readonly namespace: string
  readonly ip: string
  readonly identity: string
  readonly connections: number
}

/** Pods whose in-pod listeners are made in one trip through their namespaces (a thread per batch, not per socket). */
const POD_START_BATCH = 64
const POD_START_RETRY_MS = 1000

export class LocalPods {
  private readonly pods = new Map<string, PodRuntime>()
  private unsubscribe: (() => void) | null = null
  private retry: NodeJS.Timeout | null = null
  private reconciling: Promise<void> = Promise.resolve()
  /** Sockets a predecessor ztunnel handed over, by pod uid, until the first reconcile serves (or closes) them. */
  private handed = new Map<string, HandedPod>()

  constructor(private readonly options: LocalPodsOptions) {}

  /** Starts serving the store's local pods; on the sockets `handed` over by a predecessor where they fit (the rest are closed). */
  async start(handed: readonly HandedPod[] = []): Promise<void> {
    this.handed = new Map(handed.map((p) => [p.uid, p]))
    this.unsubscribe = this.options.store.onChange(() => void this.reconcile())
    this.options.identities.on('certificate', this.onCertificate)
    await this.reconcile()
    for (const p of this.handed.values()) for (const fd of Object.values(p.fds)) closeFd(fd) // not a local pod of ours (any more)
    this.handed.clear()
  }

  async stop(): Promise<void> {
    this.quiesce()
    await this.reconciling
    for (const uid of [...this.pods.keys()]) await this.removePod(uid)
  }

  /** Every running pod's listening sockets (for a successor: ours stay open). */
  listening(): HandedPod[] {
    return [...this.pods.values()].map((p) => {
      const [outbound, inbound, hbone] = p.listening.fds as [number, number, number]
      return {
        uid: p.workload.uid,
        ip: p.workload.ips[0]!,
        netnsPath: p.workload.netnsPath!,
        netnsCookie: p.listening.netnsCookie,
        fds: { outbound, inbound, hbone },
      }
    })
  }

  /**
   * Stops accepting in every pod and lets open connections finish: HBONE sessions
   * get a GOAWAY shutdown notice. `handedOver`: a successor serves on the same
   * sockets now, so the listener registrations are left to it. Resolves when every
   * connection ended or `drainMs` passed (stop() then cuts what is left). The store
   * no longer moves pods from here on.
   */
  async drain(options: { readonly handedOver: boolean; readonly drainMs: number }): Promise<void> {
    this.quiesce()
    await this.reconciling
    const deadline = Date.now() + options.drainMs
    const ended = Promise.all(
      [...this.pods.values()].map((p) =>
        Promise.all([options.handedOver ? p.proxy.handOver() : p.proxy.stop({ drain: true }), p.hbone.stop({ drainMs: options.drainMs })]),
      ),
    )
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))))
    await Promise.race([ended, late])
    clearTimeout(timer)
    // Connections the native engine carries left Node's servers when it took their fd: counted apart.
    const open = (): number => this.status().reduce((n, p) => n + p.connections, 0)
    while (open() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    if (open() === 0) this.options.log.info('drained: every connection ended')
    else this.options.log.info({ open: open() }, 'drain deadline reached: the open connections are cut')
  }

  private quiesce(): void {
    if (this.retry !== null) clearTimeout(this.retry)
    this.retry = null
    this.unsubscribe?.()
    this.unsubscribe = null
    this.options.identities.off('certificate', this.onCertificate)
  }

  /** The latest workload of a running local pod. */
  workload(uid: string): Workload | undefined {
    return this.pods.get(uid)?.workload
  }

  /** The netns and sockets of the local pod with this IP (where its HBONE sessions are dialed from). */
  podByIp(ip: string): PodNetns | undefined {
    const pod = [...this.pods.values()].find((p) => p.workload.ips.includes(ip))
    return pod ? { netnsPath: pod.workload.netnsPath!, ip, sockets: pod.sockets } : undefined
  }

  /** Local workloads and their open connections (readiness, admin). */
  status(): LocalPodStatus[] {
    return [...this.pods.values()].map((p) => ({
      uid: p.workload.uid,
      name: p.workload.name,
      namespace: p.workload.namespace,
      ip: p.workload.ips[0]!,
      identity: identityOf(p.workload),
      connections: p.proxy.connections + this.options.outbound.openFrom(p.workload.ips[0]!),
    }))
  }

  /** Serialized: brings the running pods in line with the store's local workloads. */
  reconcile(): Promise<void> {
    this.reconciling = this.reconciling.then(() => this.reconcileNow()).catch((err) => this.options.log.error({ err }, 'reconcile failed'))
    return this.reconciling
  }

  /** A renewed or re-chained certificate: new HBONE handshakes use it; open ones keep theirs. */
  private readonly onCertificate = (cert: ManagedCertificate, reason: RotationReason): void => {
    if (reason === 'issued') return
    for (const pod of this.pods.values()) if (identityOf(pod.workload) === cert.identity) pod.hbone.updateCredentials(credentialsOf(cert))
    this.options.outbound.invalidateIdentity(cert.identity)
    this.options.log.info({ identity: cert.identity, serial: cert.serialNumber, notAfter: cert.notAfter.toISOString(), reason }, 'workload certificate rotated')
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
    if (updated) this.options.inbound.reevaluate()
    const added = [...wanted.values()].filter((w) => !this.pods.has(w.uid))
    const started = Date.now()
    let failed = 0
    // The next batch's sockets are made (a thread trip through their namespaces) while this batch's pods start serving.
    const batches = Array.from({ length: Math.ceil(added.length / POD_START_BATCH) }, (_, i) => added.slice(i * POD_START_BATCH, (i + 1) * POD_START_BATCH))
    let next = batches.length > 0 ? this.podSocketsFor(batches[0]!) : null
    for (let i = 0; i < batches.length; i++) {
      const starts = await next!
      next = i + 1 < batches.length ? this.podSocketsFor(batches[i + 1]!) : null
      failed += await this.addPods(starts)
    }
    if (added.length > 0) this.options.log.info({ added: added.length, failed, ms: Date.now() - started }, 'local pods started')
    if (failed > 0 && this.retry === null) {
      this.retry = setTimeout(() => {
        this.retry = null
        void this.reconcile()
      }, POD_START_RETRY_MS)
      this.retry.unref()
    }
  }

  /** A batch of pods' listening sockets: a predecessor's where they fit, the others made in one trip (per pod: its sockets or why not). */
  private async podSocketsFor(all: readonly Workload[]): Promise<PodStart[]> {
    const { hbonePort } = this.options.datapath.settings
    // A predecessor's sockets serve the same pod in the same sandbox; others are made here.
    const handed: PodStart[] = []
    const batch: Workload[] = []
    for (const w of all) {
      const h = this.handed.get(w.uid)
      if (h !== undefined && h.ip === w.ips[0] && h.netnsPath === w.netnsPath) {
        this.handed.delete(w.uid)
        handed.push({ w, sockets: { netnsCookie: h.netnsCookie, fds: [h.fds.outbound, h.fds.inbound, h.fds.hbone] } })
      } else batch.push(w)
    }
    let made: (PodSocketsResult | Error)[] = []
    if (batch.length > 0) {
      try {
        made = await podSockets(
          batch.map((w) => ({
            netnsPath: w.netnsPath!,
            sockets: [
              listenerOptions({ host: w.ips[0]!, port: OUTBOUND_PORT }),
              listenerOptions({ host: '127.0.0.1', port: INBOUND_PLAINTEXT_PORT }),
              listenerOptions({ host: w.ips[0]!, port: hbonePort }),
            ],
          })),
        )
      } catch (err) {
        made = batch.map(() => err as Error)
      }
    }
    return [...handed, ...batch.map((w, i) => ({ w, sockets: made[i]! }))]
  }

  /** Serves a batch of pods on their sockets; returns how many failed. */
  private async addPods(starts: readonly PodStart[]): Promise<number> {
    let failed = 0
    await Promise.all(
      starts.map(async ({ w, sockets }) => {
        try {
          if (sockets instanceof Error) throw sockets
          await this.addPod(w, sockets)
        } catch (err) {
          failed += 1
          this.options.log.error(
            { err: (err as Error).message, workload: `${w.namespace}/${w.name}` },
            'cannot start the in-pod listeners; the pod fails closed until this succeeds (retried)',
          )
        }
      }),
    )
    return failed
  }

  /** Serves one pod on its sockets from podSockets ([outbound, inbound, hbone]; each is closed if the pod cannot start). */
  private async addPod(w: Workload, made: PodSocketsResult): Promise<void> {
    const ip = w.ips[0]!
    const netnsPath = w.netnsPath!
    const { netnsCookie } = made
    const [outboundFd, inboundFd, hboneFd] = made.fds as [number, number, number]
    const { proxyMark, deliveryMark, hbonePort } = this.options.datapath.settings
    const log = this.options.log.child({ workload: `${w.namespace}/${w.name}` })
    const current = (): Workload => this.pods.get(w.uid)?.workload ?? w
    const sockets = new PodSockets(netnsPath, (err) => log.debug({ err: err.message }, 'cannot make spare sockets in the pod; dials make their own'))
    const pod = { netnsPath, ip, sockets }
    let owned = [outboundFd, inboundFd, hboneFd] // closed here if starting fails before a server took them
    try {
      const proxy = new PodProxy({
        pod: { ...pod, netnsCookie },
        proxyMark,
        deliveryMark,
        hbonePort,
        origins: {
          originalDestination: (p, source, redirectedTo) =>
            this.options.datapath.originalDestination({
              netnsCookie: p.netnsCookie,
              srcIp: source.ip,
              srcPort: source.port,
              dstIp: redirectedTo.ip,
              dstPort: redirectedTo.port,
            }),
        },
        listeners: this.options.datapath,
        log,
        outbound: this.options.outbound.handler(current),
        inbound: this.options.inbound.plaintext(current),
        pauseOutbound: this.options.outbound.takesSockets,
      })
      const credentials = credentialsOf(await this.options.identities.getCertificate(identityOf(w)))
      const hbone = this.options.inbound.hboneServer(pod, current, credentials, log)
      owned = [outboundFd, inboundFd]
      await hbone.start({ kind: 'fd', fd: hboneFd })
      try {
        owned = []
        await proxy.start({ outbound: outboundFd, inbound: inboundFd })
      } catch (err) {
        await hbone.stop()
        throw err
      }
      this.pods.set(w.uid, { workload: w, proxy, hbone, sockets, listening: made })
      log.info({ ip }, 'workload captured')
    } catch (err) {
      for (const fd of owned) closeFd(fd)
      sockets.close()
      throw err
    }
  }

  private async removePod(uid: string): Promise<void> {
    const pod = this.pods.get(uid)
    if (!pod) return
    this.pods.delete(uid)
    await pod.proxy.stop()
    this.options.outbound.resetFrom(pod.workload.ips[0]!)
    await pod.hbone.stop()
    pod.sockets.close()
    this.options.log.info({ workload: `${pod.workload.namespace}/${pod.workload.name}` }, 'workload released')
  }
}

function credentialsOf(cert: ManagedCertificate): IdentityCredentials {
  return { keyPem: cert.keyPem, certPem: cert.certPem, chainPem: cert.chainPem || undefined, trustBundlePem: cert.trustBundlePem }
}
