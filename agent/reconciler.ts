// The agent's control loop: from the source's latest snapshot to the datapath and
// ztunnel. Each pass is idempotent (it compares what should be with what the
// pinned maps hold, so a restarted agent adopts and repairs), passes never overlap,
// and changes arriving during a pass coalesce into one more pass.
//
// Order keeps enrolled pods failing closed, never open: to enroll, ztunnel first
// learns the pod (and opens its in-pod listeners), then the datapath captures it;
// to un-enroll, the datapath lets go first, then ztunnel forgets the pod.
import { eachLimited } from '../common/concurrency.js'
import type { Logger } from '../common/log.js'
import { rmSync } from 'node:fs'
import { netnsCookieOf, type Datapath, type EnrolledPod } from './dataplane/datapath.js'
import { podNetns, PodNetnsError } from './enroll/pod-netns.js'
import { enrolledPods, REDIRECTION_ANNOTATION, REDIRECTION_ENABLED } from './model/enrollment.js'
import { meshResources, type MeshResources } from './model/mesh-resources.js'
import type { Snapshot } from './model/snapshot.js'
import type { Pod } from './model/workload.js'
import type { AgentMetrics } from './metrics.js'
import { policyStatusPatches } from './policy-status.js'

/** What the agent needs from either source (Kubernetes or the manifests folder). */
export interface AgentSource {
  ready(): Promise<Snapshot>
  snapshot(): Snapshot
  onChange(listener: (snapshot: Snapshot) => void): () => void
  annotatePod(namespace: string, name: string, annotations: Readonly<Record<string, string | null>>): Promise<void>
}

/** Writes policy status in a cluster (the Kubernetes source); absent with a manifests folder. */
export interface PolicyStatusWriter {
  patchPolicyStatus(kind: 'AuthorizationPolicy' | 'PeerAuthentication', namespace: string, name: string, conditions: readonly unknown[]): Promise<void>
}

/** Where the agent sends the workload API resources (the xDS server). */
export interface ResourceSink {
  update(resources: Pick<MeshResources, 'workloads' | 'services' | 'authorizations'>): void
}

export interface ReconcilerOptions {
  readonly node: string
  readonly source: AgentSource
  readonly datapath: Datapath
  readonly sink: ResourceSink
  /** The cgroup v2 folder under which kubelet's pod cgroups live. */
  readonly cgroupRoot: string
  readonly trustDomain: string
  readonly rootNamespace: string
  readonly clusterDomain: string
  /** Port of ztunnel's in-pod outbound listener. */
  readonly outboundPort: number
  /** How long to wait for ztunnel's in-pod listener before capturing a pod anyway (fail closed). */
  readonly listenerWaitMs: number
  /** Pods whose netns could not be found are retried after this long. */
  readonly retryMs: number
  readonly log: Logger
  readonly metrics: AgentMetrics
  /** Writes the ZtunnelAccepted condition onto policies (every agent computes the same one; only differences are written). */
  readonly policyStatus?: PolicyStatusWriter
}

/** One of this node's enrolled pods, as `ambient status` shows it. */
export interface PodStatus {
  readonly namespace: string
  readonly name: string
  readonly uid: string
  readonly ip: string
  readonly identity: string
  readonly netnsPath: string | null
  readonly netnsCookie: string | null
  /** captured: in the datapath; pending: not yet (error says why). */
  readonly state: 'captured' | 'pending'
  readonly error: string | null
}

interface Resolved {
  readonly netnsPath: string
  readonly netnsInode: bigint
}

const key = (p: Pick<Pod, 'namespace' | 'name'>): string => `${p.namespace}/${p.name}`

/** Pods captured at once: each waits for ztunnel's listener and configures its netns (one process). */
const ENROLL_CONCURRENCY = 32

export class Reconciler {
  readonly #o: ReconcilerOptions
  readonly #log: Logger
  /** Pod uid -> its netns, found once per pod (a pod keeps its netns for life). */
  readonly #netns = new Map<string, Resolved>()
  readonly #errors = new Map<string, string>()
  #pods: readonly PodStatus[] = []
  #running: Promise<void> | null = null
  #again = false
  #retry: NodeJS.Timeout | undefined
  #unsubscribe: (() => void) | undefined
  #stopped = false
  #passes = 0
  #lastSnapshotVersion = -1

  constructor(options: ReconcilerOptions) {
    this.#o = options
    this.#log = options.log
  }

  /** Waits for the source's first full snapshot, reconciles once, then follows changes. */
  async start(): Promise<void> {
    await this.#o.source.ready()
    this.#unsubscribe = this.#o.source.onChange(() => this.schedule())
    await this.schedule()
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#unsubscribe?.()
    if (this.#retry) clearTimeout(this.#retry)
    await this.#running
  }

  /** Runs a pass now, or one more after the running one; resolves when the state it saw is applied. */
  schedule(): Promise<void> {
    if (this.#stopped) return Promise.resolve()
    if (this.#running) {
      this.#again = true
      return this.#running
    }
    this.#running = (async () => {
      try {
        do {
          this.#again = false
          await this.#pass()
        } while (this.#again && !this.#stopped)
      } finally {
        this.#running = null
      }
    })()
    return this.#running
  }

  pods(): readonly PodStatus[] {
    return this.#pods
  }

  stats(): { readonly passes: number; readonly snapshotVersion: number } {
    return { passes: this.#passes, snapshotVersion: this.#lastSnapshotVersion }
  }

  async #pass(): Promise<void> {
    const started = process.hrtime.bigint()
    const snapshot = this.#o.source.snapshot()
    const { datapath, node, log } = this.#o
    let errors = 0
    const desired = enrolledPods(snapshot, node)
    const desiredUids = new Set(desired.map((p) => p.uid))
    for (const uid of this.#netns.keys()) if (!desiredUids.has(uid)) this.#netns.delete(uid)
    this.#errors.clear()
    for (const pod of desired) {
      if (this.#netns.has(pod.uid)) continue
      try {
        const found = podNetns(this.#o.cgroupRoot, pod.uid)
        this.#netns.set(pod.uid, { netnsPath: found.netnsPath, netnsInode: found.netnsInode })
      } catch (err) {
        errors += 1
        const message = (err as Error).message
        this.#errors.set(pod.uid, message)
        this.#o.metrics.reconcileErrors.inc({ reason: err instanceof PodNetnsError ? err.code : 'netns' })
        log.warn({ pod: key(pod), uid: pod.uid, err: message }, 'pod not captured yet: its network namespace was not found')
      }
    }
    const ready = desired.filter((p) => this.#netns.has(p.uid))
    const readyIps = new Map(ready.map((p) => [p.podIP, p]))

    // 1. Let go of what should no longer be captured: the datapath first.
    const inDatapath = datapath.enrolledPods()
    const cookies = new Map<string, bigint>()
    for (const pod of ready) cookies.set(pod.uid, await this.#cookie(pod))
    for (const entry of inDatapath) {
      const pod = readyIps.get(entry.ip)
      if (pod !== undefined && cookies.get(pod.uid) === entry.netnsCookie) continue
      if (pod === undefined && desired.some((p) => p.podIP === entry.ip)) continue // netns not found now: keep as is
      try {
        const stillThere = [...snapshot.pods.values()].find((p) => p.podIP === entry.ip && p.nodeName === node)
        const netnsPath = stillThere ? this.#tryNetns(stillThere.uid) : undefined
        await datapath.unenrollPod({ netnsCookie: entry.netnsCookie, ip: entry.ip, ...(netnsPath ? { netnsPath } : {}) })
        log.info({ ip: entry.ip, netnsCookie: String(entry.netnsCookie), pod: stillThere ? key(stillThere) : null }, 'pod released from the datapath')
      } catch (err) {
        errors += 1
        this.#o.metrics.reconcileErrors.inc({ reason: 'unenroll' })
        log.error({ ip: entry.ip, err: (err as Error).message }, 'cannot release pod from the datapath')
      }
    }

    // 2. Tell ztunnel (the local pods it must serve, every workload, every policy).
    const localNetns = new Map([...this.#netns].filter(([uid]) => desiredUids.has(uid)).map(([uid, r]) => [uid, r.netnsPath]))
    const resources = meshResources(snapshot, { trustDomain: this.#o.trustDomain, rootNamespace: this.#o.rootNamespace, clusterDomain: this.#o.clusterDomain, localNetns })
    this.#o.sink.update(resources)
    this.#reportPolicies(resources)
    errors += await this.#writePolicyStatus(snapshot, resources)

    // 3. Capture what should be: once ztunnel listens in the pod (or the wait ran out: fail closed).
    const captured = new Map<string, EnrolledPod>()
    for (const entry of datapath.enrolledPods()) captured.set(entry.ip, entry)
    await eachLimited(
      ready,
      ENROLL_CONCURRENCY,
      async (pod) => {
        const have = captured.get(pod.podIP)
        if (have !== undefined && have.netnsCookie === cookies.get(pod.uid)) return
        const netnsPath = this.#netns.get(pod.uid)!.netnsPath
        try {
          if (!(await this.#waitForListener(pod.podIP))) {
            log.warn({ pod: key(pod), waitedMs: this.#o.listenerWaitMs }, 'ztunnel has no listener in the pod yet: capturing anyway, its connections fail until ztunnel serves it')
          }
          await datapath.enrollPod({ netnsPath, ip: pod.podIP, outboundPort: this.#o.outboundPort })
          log.info({ pod: key(pod), ip: pod.podIP, netnsPath }, 'pod captured')
        } catch (err) {
          errors += 1
          this.#errors.set(pod.uid, (err as Error).message)
          this.#netns.delete(pod.uid) // look it up again next time: the pod may have been recreated
          this.#o.metrics.reconcileErrors.inc({ reason: 'enroll' })
          log.error({ pod: key(pod), err: (err as Error).message }, 'cannot capture pod')
        }
      },
    )
    for (const link of datapath.staleNetnsLinks()) {
      log.info({ link }, 'removing the sk_lookup link of a pod that is gone')
      rmSync(link, { force: true })
    }

    // 4. Mark pods (the annotation is what users and Istio tooling look at).
    errors += await this.#annotate(snapshot, new Set(ready.filter((p) => !this.#errors.has(p.uid)).map((p) => p.uid)))

    const now = new Map(datapath.enrolledPods().map((e) => [e.ip, e]))
    this.#pods = desired.map((pod) => {
      const entry = now.get(pod.podIP)
      const resolved = this.#netns.get(pod.uid)
      return {
        namespace: pod.namespace,
        name: pod.name,
        uid: pod.uid,
        ip: pod.podIP,
        identity: `spiffe://${this.#o.trustDomain}/ns/${pod.namespace}/sa/${pod.serviceAccount}`,
        netnsPath: resolved?.netnsPath ?? null,
        netnsCookie: entry ? String(entry.netnsCookie) : null,
        state: entry !== undefined && resolved !== undefined ? 'captured' : 'pending',
        error: this.#errors.get(pod.uid) ?? null,
      }
    })
    this.#passes += 1
    this.#lastSnapshotVersion = snapshot.version
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    this.#o.metrics.recordPass({ seconds, enrolled: this.#pods.filter((p) => p.state === 'captured').length, pending: this.#pods.filter((p) => p.state === 'pending').length, occupancy: datapath.occupancy() })
    log.debug({ version: snapshot.version, desired: desired.length, errors, seconds }, 'reconciled')
    if (this.#pods.some((p) => p.state === 'pending') && !this.#stopped) {
      if (this.#retry) clearTimeout(this.#retry)
      this.#retry = setTimeout(() => void this.schedule(), this.#o.retryMs)
      this.#retry.unref()
    }
  }

  async #cookie(pod: Pod): Promise<bigint> {
    return netnsCookieOf(this.#netns.get(pod.uid)!.netnsPath)
  }

  #tryNetns(uid: string): string | undefined {
    try {
      return podNetns(this.#o.cgroupRoot, uid).netnsPath
    } catch {
      return undefined
    }
  }

  async #waitForListener(ip: string): Promise<boolean> {
    const deadline = Date.now() + this.#o.listenerWaitMs
    while (!this.#o.datapath.hasListener(ip)) {
      if (Date.now() >= deadline || this.#stopped) return false
      await new Promise((r) => setTimeout(r, 10))
    }
    return true
  }

  /** Sets the redirection annotation on captured pods and removes it from this node's other pods. Returns the failures. */
  async #annotate(snapshot: Snapshot, captured: ReadonlySet<string>): Promise<number> {
    let failures = 0
    for (const pod of snapshot.pods.values()) {
      if (pod.nodeName !== this.#o.node) continue
      const has = pod.annotations[REDIRECTION_ANNOTATION] === REDIRECTION_ENABLED
      const want = captured.has(pod.uid)
      if (has === want) continue
      try {
        await this.#o.source.annotatePod(pod.namespace, pod.name, { [REDIRECTION_ANNOTATION]: want ? REDIRECTION_ENABLED : null })
      } catch (err) {
        failures += 1
        this.#o.metrics.reconcileErrors.inc({ reason: 'annotate' })
        this.#log.warn({ pod: key(pod), err: (err as Error).message }, 'cannot update the redirection annotation')
      }
    }
    return failures
  }

  #reportedPolicies = ''

  /** Puts each policy's ZtunnelAccepted condition on the object when it differs. Returns the failures. */
  async #writePolicyStatus(snapshot: Snapshot, resources: MeshResources): Promise<number> {
    const writer = this.#o.policyStatus
    if (writer === undefined) return 0
    let failures = 0
    for (const patch of policyStatusPatches([...snapshot.authorizationPolicies, ...snapshot.peerAuthentications], resources.policies)) {
      try {
        await writer.patchPolicyStatus(patch.kind, patch.namespace, patch.name, [patch.condition])
        this.#log.info({ policy: `${patch.namespace}/${patch.name}`, kind: patch.kind, status: patch.condition.status, reason: patch.condition.reason }, 'policy status written')
      } catch (err) {
        failures += 1
        this.#o.metrics.reconcileErrors.inc({ reason: 'policy-status' })
        this.#log.warn({ policy: `${patch.namespace}/${patch.name}`, err: (err as Error).message }, 'cannot write policy status')
      }
    }
    return failures
  }

  /** Logs policy problems once per change (ztunnel never sees invalid or ignored policies). */
  #reportPolicies(resources: MeshResources): void {
    const { invalid, ignored, warnings } = resources.policies
    const digest = JSON.stringify([invalid, ignored, warnings])
    this.#o.metrics.setPolicyProblems(resources.policies)
    if (digest === this.#reportedPolicies) return
    this.#reportedPolicies = digest
    for (const p of invalid) this.#log.error({ policy: p.policy, field: p.field, code: p.code }, `policy rejected: ${p.message}`)
    for (const p of [...ignored, ...warnings]) this.#log.warn({ policy: p.policy, field: p.field, code: p.code }, p.message)
  }
}
