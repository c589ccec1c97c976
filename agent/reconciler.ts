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
import { netnsCookieOf, type Datapath } from '../datapath/datapath.js'
import { netnsCookies } from '../native/index.js'
import { podNetns } from './enroll/pod-netns.js'
import { enrolledPods, REDIRECTION_ANNOTATION, REDIRECTION_ENABLED } from '../common/model/enrollment.js'
import { meshResources, type MeshResources } from '../common/model/mesh-resources.js'
import type { Snapshot } from '../common/model/snapshot.js'
import type { Pod } from '../common/model/workload.js'
import type { AgentMetrics } from './metrics.js'
import { policyStatusPatches, waypointStatusPatches } from './policy-status.js'
import { convertWaypointPolicies, type ConvertedWaypointPolicies } from '../common/model/convert/waypoint-authorization.js'
import type { WaypointTarget } from '../common/model/waypoint-authorization.js'
import { serviceGateway, waypointIndex } from '../common/model/waypoint.js'

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
  /** False while another agent holds the policy-status lease: nothing is written. */
  writing?(): boolean
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
  /** How long to wait for ztunnel's in-pod listener before capturing a pod anyway (fail closed), from its last new listener of the pass. */
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

/** A pod's network namespace as found this pass. */
interface Located {
  readonly netnsPath: string
  readonly cookie: bigint
}

const key = (p: Pick<Pod, 'namespace' | 'name'>): string => `${p.namespace}/${p.name}`

/** What a pass changed and how long each of its phases took (ms), for its log line. */
interface PassWork {
  readonly captured: number
  readonly released: number
  readonly phasesMs: Readonly<Record<string, number>>
}

/** Milliseconds between successive marks, by the name of the phase each ends. */
class PhaseTimer {
  readonly ms: Record<string, number> = {}
  #last: bigint

  constructor(start: bigint) {
    this.#last = start
  }

  end(phase: string): void {
    const now = process.hrtime.bigint()
    this.ms[phase] = Math.round(Number(now - this.#last) / 1e5) / 10
    this.#last = now
  }
}

/** Stale pods released at once (each leaves its netns: a thread trip). */
const ENROLL_CONCURRENCY = 32
/** Pod annotations written at once. */
const ANNOTATE_CONCURRENCY = 16

export class Reconciler {
  readonly #o: ReconcilerOptions
  readonly #log: Logger
  /** Pod uid -> its netns path, found once per pod (a pod keeps its netns while its sandbox lives). */
  readonly #netns = new Map<string, string>()
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
          try {
            await this.#pass()
          } catch (err) {
            // Not one pod's problem (those are handled per pod): log, count, and try again shortly.
            this.#o.metrics.reconcileErrors.inc({ reason: 'pass' })
            this.#log.error({ err: (err as Error).message }, 'reconcile pass failed; retrying')
            this.#retryLater()
          }
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
    const phases = new PhaseTimer(started)
    const snapshot = this.#o.source.snapshot()
    const desired = enrolledPods(snapshot, this.#o.node)
    this.#errors.clear()
    phases.end('select')
    const located = await this.#locate(desired)
    phases.end('locate')
    const released = await this.#release(snapshot, desired, located)
    phases.end('release')
    const resources = this.#publish(snapshot, desired, located)
    phases.end('publish')
    const captured = await this.#capture(desired, located)
    phases.end('capture')
    this.#removeStaleLinks()
    this.#showStatus(desired) // what `ambient status` shows, before the writes to the source below
    await this.#writePolicyStatus(snapshot, resources) // off the capture path
    await this.#annotate(snapshot, new Set(desired.filter((p) => located.has(p.uid) && !this.#errors.has(p.uid)).map((p) => p.uid)))
    phases.end('annotate')
    this.#record(snapshot, started, { captured, released, phasesMs: phases.ms })
  }

  /**
   * Each desired pod's netns and cookie (the path cached per pod uid; looked up
   * again when it no longer answers). The cookies of every pod come from one trip
   * through their namespaces, not one per pod.
   */
  async #locate(desired: readonly Pod[]): Promise<Map<string, Located>> {
    const desiredUids = new Set(desired.map((p) => p.uid))
    for (const uid of this.#netns.keys()) if (!desiredUids.has(uid)) this.#netns.delete(uid)
    const located = new Map<string, Located>()
    const tries: { pod: Pod; path: string; cached: boolean }[] = []
    for (const pod of desired) {
      const cached = this.#netns.get(pod.uid)
      const path = cached ?? this.#findNetns(pod)
      if (path !== undefined) tries.push({ pod, path, cached: cached !== undefined })
    }
    const cookies = tries.length > 0 ? await netnsCookies(tries.map((t) => t.path)) : []
    for (const [i, { pod, path, cached }] of tries.entries()) {
      const cookie = cookies[i]!
      if (typeof cookie === 'bigint') {
        located.set(pod.uid, { netnsPath: path, cookie })
        this.#netns.set(pod.uid, path)
        this.#errors.delete(pod.uid)
        continue
      }
      this.#netns.delete(pod.uid)
      this.#errors.set(pod.uid, cookie.message)
      // A cached path whose process is gone (a recreated sandbox) is looked up afresh once.
      const fresh = cached ? this.#findNetns(pod) : undefined
      if (fresh === undefined) continue
      try {
        located.set(pod.uid, { netnsPath: fresh, cookie: await netnsCookieOf(fresh) })
        this.#netns.set(pod.uid, fresh)
        this.#errors.delete(pod.uid)
      } catch (err) {
        this.#errors.set(pod.uid, (err as Error).message)
      }
    }
    for (const pod of desired) {
      const error = this.#errors.get(pod.uid)
      if (!located.has(pod.uid) && error !== undefined) {
        this.#o.metrics.reconcileErrors.inc({ reason: 'netns' })
        this.#log.warn({ pod: key(pod), uid: pod.uid, err: error }, 'pod not captured yet: its network namespace was not found')
      }
    }
    return located
  }

  /** The pod's netns path from its cgroup, or undefined with the reason recorded. */
  #findNetns(pod: Pod): string | undefined {
    try {
      return podNetns(this.#o.cgroupRoot, pod.uid).netnsPath
    } catch (err) {
      this.#errors.set(pod.uid, (err as Error).message)
      return undefined
    }
  }

  /** Releases from the datapath what should no longer be captured (or is captured under another netns), many at once. */
  async #release(snapshot: Snapshot, desired: readonly Pod[], located: ReadonlyMap<string, Located>): Promise<number> {
    const byIp = new Map(desired.map((p) => [p.podIP, p]))
    const local = new Map([...snapshot.pods.values()].filter((p) => p.nodeName === this.#o.node).map((p) => [p.podIP, p]))
    const stale = this.#o.datapath.enrolledPods().filter((entry) => {
      const pod = byIp.get(entry.ip)
      if (pod !== undefined && !located.has(pod.uid)) return false // netns not found now: leave it as it is
      return pod === undefined || located.get(pod.uid)!.cookie !== entry.netnsCookie
    })
    await eachLimited(stale, ENROLL_CONCURRENCY, async (entry) => {
      const stillThere = local.get(entry.ip)
      try {
        const netnsPath = stillThere ? this.#tryNetns(stillThere.uid) : undefined
        await this.#o.datapath.unenrollPod({ netnsCookie: entry.netnsCookie, ip: entry.ip, ...(netnsPath ? { netnsPath } : {}) })
        this.#log.info({ ip: entry.ip, netnsCookie: String(entry.netnsCookie), pod: stillThere ? key(stillThere) : null }, 'pod released from the datapath')
      } catch (err) {
        this.#o.metrics.reconcileErrors.inc({ reason: 'unenroll' })
        this.#log.error({ ip: entry.ip, err: (err as Error).message }, 'cannot release pod from the datapath')
      }
    })
    return stale.length
  }

  /** Tells ztunnel every workload and policy, with this node's located pods' netns. */
  #publish(snapshot: Snapshot, desired: readonly Pod[], located: ReadonlyMap<string, Located>): MeshResources {
    const localNetns = new Map(desired.filter((p) => located.has(p.uid)).map((p) => [p.uid, located.get(p.uid)!.netnsPath]))
    const resources = meshResources(snapshot, {
      trustDomain: this.#o.trustDomain,
      rootNamespace: this.#o.rootNamespace,
      clusterDomain: this.#o.clusterDomain,
      localNetns,
    })
    this.#o.sink.update(resources)
    this.#reportPolicies(resources)
    this.#reportWaypoints(resources)
    return resources
  }

  /**
   * Captures each located pod not captured yet, once ztunnel listens in it: every
   * 10 ms the pods whose listener appeared are captured together (their in-pod
   * routing in one trip through their namespaces). A pod whose listener has not
   * appeared listenerWaitMs after ztunnel last opened one for this pass is
   * captured anyway (fail closed): a stuck ztunnel does not hold pods open, a busy
   * one opening many pods' listeners is waited for.
   */
  async #capture(desired: readonly Pod[], located: ReadonlyMap<string, Located>): Promise<number> {
    const captured = new Map(this.#o.datapath.enrolledPods().map((e) => [e.ip, e]))
    const todo = desired.filter((p) => located.has(p.uid) && captured.get(p.podIP)?.netnsCookie !== located.get(p.uid)!.cookie)
    const waiting = new Map(todo.map((p) => [p.podIP, p]))
    let progress = Date.now()
    while (waiting.size > 0) {
      const listening = this.#o.datapath.listenerIps()
      const ready = [...waiting.values()].filter((p) => listening.has(p.podIP))
      if (ready.length > 0) progress = Date.now()
      const late = this.#stopped || Date.now() - progress >= this.#o.listenerWaitMs ? [...waiting.values()].filter((p) => !listening.has(p.podIP)) : []
      for (const pod of late) {
        this.#log.warn(
          { pod: key(pod), waitedMs: this.#o.listenerWaitMs },
          'ztunnel has no listener in the pod yet: capturing anyway, its connections fail until ztunnel serves it',
        )
      }
      const batch = [...ready, ...late]
      for (const pod of batch) waiting.delete(pod.podIP)
      if (batch.length > 0) await this.#enroll(batch, located)
      if (waiting.size > 0) await new Promise((r) => setTimeout(r, 10))
    }
    return todo.length
  }

  /** Puts pods in the datapath together; a pod that fails is recorded and retried on a later pass. */
  async #enroll(pods: readonly Pod[], located: ReadonlyMap<string, Located>): Promise<void> {
    const results = await this.#o.datapath
      .enrollPods(
        pods.map((pod) => {
          const { netnsPath, cookie } = located.get(pod.uid)!
          return { netnsPath, netnsCookie: cookie, ip: pod.podIP, outboundPort: this.#o.outboundPort }
        }),
      )
      .catch((err: Error) => pods.map(() => err))
    for (const [i, pod] of pods.entries()) {
      const result = results[i]!
      if (!(result instanceof Error)) {
        this.#log.info({ pod: key(pod), ip: pod.podIP, netnsPath: located.get(pod.uid)!.netnsPath }, 'pod captured')
        continue
      }
      this.#errors.set(pod.uid, result.message)
      this.#netns.delete(pod.uid) // look it up again next time: the pod may have been recreated
      this.#o.metrics.reconcileErrors.inc({ reason: 'enroll' })
      this.#log.error({ pod: key(pod), err: result.message }, 'cannot capture pod')
    }
  }

  #removeStaleLinks(): void {
    for (const link of this.#o.datapath.removeStaleNetnsLinks()) this.#log.info({ link }, 'removed the sk_lookup link of a pod that is gone')
  }

  /** What `ambient status` shows: each desired pod, captured or pending (and why). */
  #showStatus(desired: readonly Pod[]): void {
    const now = new Map(this.#o.datapath.enrolledPods().map((e) => [e.ip, e]))
    this.#pods = desired.map((pod) => {
      const entry = now.get(pod.podIP)
      const netnsPath = this.#netns.get(pod.uid)
      return {
        namespace: pod.namespace,
        name: pod.name,
        uid: pod.uid,
        ip: pod.podIP,
        identity: `spiffe://${this.#o.trustDomain}/ns/${pod.namespace}/sa/${pod.serviceAccount}`,
        netnsPath: netnsPath ?? null,
        netnsCookie: entry ? String(entry.netnsCookie) : null,
        state: entry !== undefined && netnsPath !== undefined && !this.#errors.has(pod.uid) ? 'captured' : 'pending',
        error: this.#errors.get(pod.uid) ?? null,
      }
    })
  }

  /** The pass's metrics and log line; retries pending pods later. */
  #record(snapshot: Snapshot, started: bigint, work: PassWork): void {
    const desired = this.#pods.length
    this.#passes += 1
    this.#lastSnapshotVersion = snapshot.version
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    const pending = this.#pods.filter((p) => p.state === 'pending').length
    this.#o.metrics.recordPass({ seconds, enrolled: desired - pending, pending, occupancy: this.#o.datapath.occupancy() })
    // A pass that captured or released pods says where its time went; an idle one only at debug.
    const fields = { version: snapshot.version, desired, pending, seconds, ...work }
    if (work.captured > 0 || work.released > 0) this.#log.info(fields, 'reconciled')
    else this.#log.debug(fields, 'reconciled')
    if (pending > 0) this.#retryLater()
  }

  /** Another pass after retryMs (one timer at a time). */
  #retryLater(): void {
    if (this.#stopped) return
    if (this.#retry) clearTimeout(this.#retry)
    this.#retry = setTimeout(() => void this.schedule(), this.#o.retryMs)
    this.#retry.unref()
  }

  #tryNetns(uid: string): string | undefined {
    try {
      return podNetns(this.#o.cgroupRoot, uid).netnsPath
    } catch {
      return undefined
    }
  }

  /** Sets the redirection annotation on captured pods and removes it from this node's other pods. */
  async #annotate(snapshot: Snapshot, captured: ReadonlySet<string>): Promise<void> {
    const changes = [...snapshot.pods.values()].filter(
      (pod) => pod.nodeName === this.#o.node && (pod.annotations[REDIRECTION_ANNOTATION] === REDIRECTION_ENABLED) !== captured.has(pod.uid),
    )
    // Several at once: a PATCH each in a cluster (one at a time paced 1,000 pods by the API server's round trip).
    await eachLimited(changes, ANNOTATE_CONCURRENCY, async (pod) => {
      const want = captured.has(pod.uid)
      try {
        await this.#o.source.annotatePod(pod.namespace, pod.name, { [REDIRECTION_ANNOTATION]: want ? REDIRECTION_ENABLED : null })
      } catch (err) {
        this.#o.metrics.reconcileErrors.inc({ reason: 'annotate' })
        this.#log.warn({ pod: key(pod), err: (err as Error).message }, 'cannot update the redirection annotation')
      }
    })
  }

  #reportedPolicies = ''
  #reportedWaypoints = '[[],[],[]]'
  #lastPolicies: MeshResources['policies'] | null = null

  #waypointPolicies: { readonly objects: readonly unknown[]; readonly converted: ConvertedWaypointPolicies } | null = null

  /** The waypoints' view of the AuthorizationPolicies, converted once per change of them. */
  #convertedWaypointPolicies(snapshot: Snapshot): ConvertedWaypointPolicies {
    if (this.#waypointPolicies?.objects !== snapshot.authorizationPolicies) {
      this.#waypointPolicies = {
        objects: snapshot.authorizationPolicies,
        converted: convertWaypointPolicies(snapshot.authorizationPolicies, this.#o.rootNamespace),
      }
    }
    return this.#waypointPolicies.converted
  }

  /** Puts each policy's ZtunnelAccepted (or, for a waypoint's, WaypointAccepted) condition on the object when it differs. */
  async #writePolicyStatus(snapshot: Snapshot, resources: MeshResources): Promise<void> {
    const writer = this.#o.policyStatus
    if (writer === undefined || writer.writing?.() === false) return
    const index = waypointIndex(snapshot)
    const targetProblem = (target: WaypointTarget): string | null => {
      if (target.kind === 'GatewayClass') return null
      const key = `${target.namespace}/${target.name}`
      if (target.kind === 'Gateway') return index.gateways.has(key) ? null : `Gateway ${key} is not a waypoint (class istio-waypoint)`
      const service = snapshot.services.get(key)
      if (service === undefined) return `no Service ${key}`
      return serviceGateway(snapshot, index, service).kind === 'bound' ? null : `Service ${key} does not use a waypoint`
    }
    const patches = [
      ...policyStatusPatches([...snapshot.authorizationPolicies, ...snapshot.peerAuthentications], resources.policies),
      ...waypointStatusPatches(snapshot.authorizationPolicies, this.#convertedWaypointPolicies(snapshot), targetProblem),
    ]
    for (const patch of patches) {
      if (writer.writing?.() === false) return // the lease moved on mid-pass
      try {
        await writer.patchPolicyStatus(patch.kind, patch.namespace, patch.name, patch.conditions)
        this.#log.info(
          {
            policy: `${patch.namespace}/${patch.name}`,
            kind: patch.kind,
            condition: patch.condition.type,
            status: patch.condition.status,
            reason: patch.condition.reason,
          },
          'policy status written',
        )
      } catch (err) {
        this.#o.metrics.reconcileErrors.inc({ reason: 'policy-status' })
        this.#log.warn({ policy: `${patch.namespace}/${patch.name}`, err: (err as Error).message }, 'cannot write policy status')
      }
    }
  }

  /** Logs policy problems once per change (ztunnel never sees invalid or ignored policies). */
  #reportPolicies(resources: MeshResources): void {
    // The conversion is reused while the policies are unchanged: nothing new to count or log.
    if (resources.policies === this.#lastPolicies) return
    this.#lastPolicies = resources.policies
    const { invalid, ignored, warnings } = resources.policies
    const digest = JSON.stringify([invalid, ignored, warnings])
    this.#o.metrics.setPolicyProblems(resources.policies)
    if (digest === this.#reportedPolicies) return
    this.#reportedPolicies = digest
    for (const p of invalid) this.#log.error({ policy: p.policy, field: p.field, code: p.code }, `policy rejected: ${p.message}`)
    for (const p of [...ignored, ...warnings]) this.#log.warn({ policy: p.policy, field: p.field, code: p.code }, p.message)
  }

  /** Malformed waypoint Gateways and bindings that cannot be honoured: logged when they change, counted always. */
  #reportWaypoints(resources: MeshResources): void {
    const { invalid, problems, warnings } = resources.waypoints
    this.#o.metrics.setWaypointProblems(problems, invalid)
    const digest = JSON.stringify([invalid, problems, warnings])
    if (digest === this.#reportedWaypoints) return
    this.#reportedWaypoints = digest
    for (const g of invalid) this.#log.error({ gateway: g.gateway, field: g.field }, `waypoint gateway rejected: ${g.message}`)
    for (const w of warnings) this.#log.warn({ gateway: `${w.policy.namespace}/${w.policy.name}`, field: w.field, code: w.code }, w.message)
    for (const p of problems) this.#log.warn({ object: p.object, waypoint: p.waypoint }, `waypoint not used: ${p.message}`)
  }
}
