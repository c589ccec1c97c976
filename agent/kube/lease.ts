// One writer among the node agents, through a coordination.k8s.io/v1 Lease (the
// way client-go's leader election and istiod's status writer do it). Every agent
// computes the same policy status; without this, each of N agents patched every
// policy on every change. The holder renews the lease every retry period and
// stops counting itself the holder once it has not renewed for the renew deadline
// (shorter than the lease duration, so it steps down before anyone can take
// over); another agent takes the lease once it has seen no renewal for the
// duration the lease states (measured on its own clock: clock skew between nodes
// does not matter). Updates carry the resourceVersion they read: of two agents
// racing, one wins.
import type { Logger } from '../../common/log.js'
import { statusMessage, type KubeApi, type KubeReply } from '../../common/kube/kube-client.js'

/** The Lease (in the root namespace) whose holder writes policy status. */
export const POLICY_STATUS_LEASE = 'ambient-policy-status'

/** The part of the API client the elector needs (KubeSource.api). */
export type LeaseApi = KubeApi

export interface LeaseElectorOptions {
  readonly api: LeaseApi
  readonly namespace: string
  readonly name: string
  /** This agent's identity in the lease (its node name). */
  readonly identity: string
  /** Without a renewal for this long the lease is free; default 15 s. */
  readonly leaseDurationMs?: number
  /** The holder steps down when it has not renewed for this long; default 10 s. */
  readonly renewDeadlineMs?: number
  /** How often the holder renews and the others try; default 2 s. */
  readonly retryMs?: number
  /** Bound on each request to the API server; default 5 s. */
  readonly requestTimeoutMs?: number
  readonly log: Logger
  /** Called when this agent gains or loses the lease. */
  readonly onChange?: (leading: boolean) => void
  readonly now?: () => number
}

interface Lease {
  apiVersion?: string
  kind?: string
  metadata?: Record<string, unknown> & { resourceVersion?: string }
  spec?: Record<string, unknown> & {
    holderIdentity?: string
    leaseDurationSeconds?: number
    acquireTime?: string
    renewTime?: string
    leaseTransitions?: number
  }
}

/** RFC 3339 with microseconds, as MicroTime serializes. */
const microTime = (ms: number): string => new Date(ms).toISOString().replace(/Z$/, '000Z')

export class LeaseElector {
  /** When our last acquire or renewal succeeded (our clock); null when not holding. */
  #renewedAt: number | null = null
  #wasLeading = false
  #timer: NodeJS.Timeout | null = null
  #stopped = true
  #attempt: Promise<void> | null = null
  #lastError = ''
  /** The holder and renewTime last read, and when (our clock) they last changed. */
  #observed: { holder: string; renewTime: string; at: number } | null = null
  readonly #o: LeaseElectorOptions
  readonly #path: string

  constructor(options: LeaseElectorOptions) {
    this.#o = options
    this.#path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(options.namespace)}/leases/${encodeURIComponent(options.name)}`
  }

  /** True while this agent holds the lease and renewed it within the renew deadline. */
  get leading(): boolean {
    return this.#renewedAt !== null && this.#now() - this.#renewedAt < (this.#o.renewDeadlineMs ?? 10_000)
  }

  start(): void {
    if (!this.#stopped) return
    this.#stopped = false
    this.#tick()
  }

  /** Stops trying; gives the lease up when this agent holds it, so another agent takes over at once. */
  async stop(): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    await this.#attempt // an attempt in flight may still acquire: release after it
    this.#renewedAt = null
    this.#notify('lease released: this agent is stopping')
    try {
      const lease = await this.#get()
      if (lease?.spec?.holderIdentity !== this.#o.identity) return
      const reply = await this.#put(lease, { holderIdentity: '', renewTime: microTime(this.#now()) })
      if (reply.status < 200 || reply.status > 299) throw new Error(`${reply.status} ${statusMessage(reply.body)}`)
    } catch (err) {
      this.#o.log.warn({ lease: this.#label(), err: (err as Error).message }, 'cannot release the lease; another agent takes it once it expires')
    }
  }

  /** One acquire-or-renew attempt; true when this agent holds the lease after it. */
  async tryOnce(): Promise<boolean> {
    const now = this.#now()
    const lease = await this.#get()
    if (lease === null) {
      const created = await this.#request('POST', this.#path.slice(0, this.#path.lastIndexOf('/')), {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.#o.name, namespace: this.#o.namespace },
        spec: this.#spec({}, now),
      })
      if (created.status === 409) return this.#lost() // another agent created it first
      this.#check('POST', created)
      return this.#held(now)
    }
    const spec = lease.spec ?? {}
    const holder = spec.holderIdentity ?? ''
    const renewTime = spec.renewTime ?? ''
    if (this.#observed === null || this.#observed.holder !== holder || this.#observed.renewTime !== renewTime) {
      this.#observed = { holder, renewTime, at: now }
    }
    const duration = (spec.leaseDurationSeconds ?? 0) > 0 ? spec.leaseDurationSeconds! * 1000 : (this.#o.leaseDurationMs ?? 15_000)
    const ours = holder === this.#o.identity
    const expired = holder === '' || now - this.#observed.at >= duration
    if (!ours && !expired) return this.#lost()
    const reply = await this.#put(lease, this.#spec(spec, now))
    if (reply.status === 409) return this.#lost() // renewed or taken by someone else meanwhile
    this.#check('PUT', reply)
    return this.#held(now)
  }

  #held(at: number): boolean {
    this.#renewedAt = at
    return true
  }

  #lost(): boolean {
    this.#renewedAt = null
    return false
  }

  /** The spec this agent writes: holder, duration, times; transitions counted when the holder changes. */
  #spec(previous: NonNullable<Lease['spec']>, now: number): NonNullable<Lease['spec']> {
    const acquiring = previous.holderIdentity !== this.#o.identity
    return {
      holderIdentity: this.#o.identity,
      leaseDurationSeconds: Math.ceil((this.#o.leaseDurationMs ?? 15_000) / 1000),
      acquireTime: acquiring ? microTime(now) : previous.acquireTime,
      renewTime: microTime(now),
      leaseTransitions: (previous.leaseTransitions ?? 0) + (acquiring && previous.holderIdentity !== undefined ? 1 : 0),
    }
  }

  #tick(): void {
    if (this.#stopped) return
    this.#attempt = this.#once().finally(() => {
      this.#attempt = null
      if (this.#stopped) return
      this.#timer = setTimeout(() => this.#tick(), this.#o.retryMs ?? 2000)
      this.#timer.unref()
    })
  }

  async #once(): Promise<void> {
    try {
      await this.tryOnce()
      this.#lastError = ''
    } catch (err) {
      // A failed attempt keeps a holder holding until its renew deadline. Logged once
      // per distinct problem (a missing RBAC rule would otherwise log every retry).
      const message = (err as Error).message
      if (message !== this.#lastError) this.#o.log.warn({ lease: this.#label(), err: message }, 'lease attempt failed; retrying')
      this.#lastError = message
    }
    if (!this.#stopped) this.#notify()
  }

  /** Tells onChange (and the log) when `leading` changed since the last call. */
  #notify(message?: string): void {
    const leading = this.leading
    if (leading === this.#wasLeading) return
    this.#wasLeading = leading
    this.#o.log.info(
      { lease: this.#label(), identity: this.#o.identity },
      message ?? (leading ? 'lease acquired: this agent writes policy status' : 'lease lost: another agent writes policy status'),
    )
    this.#o.onChange?.(leading)
  }

  async #get(): Promise<Lease | null> {
    const reply = await this.#request('GET', this.#path)
    if (reply.status === 404) return null
    this.#check('GET', reply)
    return reply.body as Lease
  }

  /** The lease as read, with only the spec fields this agent owns replaced (labels, annotations and other fields kept). */
  #put(lease: Lease, spec: NonNullable<Lease['spec']>): Promise<KubeReply> {
    return this.#request('PUT', this.#path, { ...lease, spec: { ...lease.spec, ...spec } })
  }

  #request(method: string, path: string, body?: unknown): Promise<KubeReply> {
    return this.#o.api.request(method, path, { ...(body !== undefined && { body }), timeoutMs: this.#o.requestTimeoutMs ?? 5000 })
  }

  #check(method: string, reply: KubeReply): void {
    if (reply.status < 200 || reply.status > 299) {
      const hint = reply.status === 403 ? ' (the agent needs get, create and update on coordination.k8s.io leases there)' : ''
      throw new Error(`${method} lease ${this.#label()}: ${reply.status} ${statusMessage(reply.body)}${hint}`)
    }
  }

  #label(): string {
    return `${this.#o.namespace}/${this.#o.name}`
  }

  #now(): number {
    return (this.#o.now ?? Date.now)()
  }
}
