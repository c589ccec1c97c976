// One writer among the node agents, through a coordination.k8s.io/v1 Lease (the
// way client-go's leader election and istiod's status writer do it). Every agent
// computes the same policy status; without this, each of N agents patched every
// policy on every change. The holder renews the lease every retry period; another
// agent takes it over once it has seen no renewal for a whole lease duration
// (measured on its own clock, so clock skew between nodes does not matter).
// Updates name the resourceVersion they read: of two agents racing, one wins.
import type { Logger } from '../../common/log.js'
import { statusMessage, type KubeReply } from './kube-client.js'

/** The Lease (in the root namespace) whose holder writes policy status. */
export const POLICY_STATUS_LEASE = 'ambient-policy-status'

/** The part of the API client the elector needs (KubeSource.api). */
export interface LeaseApi {
  request(method: string, path: string, options?: { readonly body?: unknown; readonly contentType?: string }): Promise<KubeReply>
}

export interface LeaseElectorOptions {
  readonly api: LeaseApi
  readonly namespace: string
  readonly name: string
  /** This agent's identity in the lease (its node name). */
  readonly identity: string
  /** Without a renewal for this long the lease is free; default 15 s. */
  readonly leaseDurationMs?: number
  /** How often the holder renews and the others try; default 2 s. */
  readonly retryMs?: number
  readonly log: Logger
  /** Called when this agent gains or loses the lease. */
  readonly onChange?: (leading: boolean) => void
  readonly now?: () => number
}

interface LeaseSpec {
  holderIdentity?: string
  leaseDurationSeconds?: number
  acquireTime?: string
  renewTime?: string
  leaseTransitions?: number
}

interface Lease {
  metadata?: { resourceVersion?: string }
  spec?: LeaseSpec
}

/** RFC 3339 with microseconds, as MicroTime serializes. */
const microTime = (ms: number): string => new Date(ms).toISOString().replace(/Z$/, '000Z')

export class LeaseElector {
  #leading = false
  #timer: NodeJS.Timeout | null = null
  #stopped = false
  #lastError = ''
  /** The holder and renewTime last read, and when (our clock) they last changed. */
  #observed: { holder: string; renewTime: string; at: number } | null = null
  readonly #o: LeaseElectorOptions
  readonly #path: string

  constructor(options: LeaseElectorOptions) {
    this.#o = options
    this.#path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(options.namespace)}/leases`
  }

  get leading(): boolean {
    return this.#leading
  }

  start(): void {
    this.#stopped = false
    void this.#loop()
  }

  /** Stops trying; a holder gives the lease up so another agent takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    if (!this.#leading) return
    this.#set(false, 'lease released: this agent is stopping')
    try {
      const lease = await this.#get()
      if (lease?.spec?.holderIdentity === this.#o.identity) {
        await this.#put(lease, { ...lease.spec, holderIdentity: '', renewTime: microTime(this.#now()) })
      }
    } catch (err) {
      this.#o.log.warn({ lease: this.#o.name, err: (err as Error).message }, 'cannot release the lease; another agent takes it once it expires')
    }
  }

  /** One acquire-or-renew attempt; true when this agent holds the lease after it. */
  async tryOnce(): Promise<boolean> {
    const now = this.#now()
    const duration = this.#o.leaseDurationMs ?? 15_000
    const lease = await this.#get()
    if (lease === null) {
      const created = await this.#o.api.request('POST', this.#path, {
        body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.#o.name }, spec: this.#spec({}, now, true) },
      })
      if (created.status === 409) return false // another agent created it first
      this.#check('POST', created)
      return true
    }
    const spec = lease.spec ?? {}
    const holder = spec.holderIdentity ?? ''
    const renewTime = spec.renewTime ?? ''
    if (this.#observed === null || this.#observed.holder !== holder || this.#observed.renewTime !== renewTime) {
      this.#observed = { holder, renewTime, at: now }
    }
    const ours = holder === this.#o.identity
    const expired = holder === '' || now - this.#observed.at >= duration
    if (!ours && !expired) return false
    const reply = await this.#put(lease, this.#spec(spec, now, !ours))
    if (reply.status === 409) return false // someone else renewed or took it meanwhile
    this.#check('PUT', reply)
    return true
  }

  #spec(previous: LeaseSpec, now: number, acquiring: boolean): LeaseSpec {
    return {
      holderIdentity: this.#o.identity,
      leaseDurationSeconds: Math.ceil((this.#o.leaseDurationMs ?? 15_000) / 1000),
      acquireTime: acquiring ? microTime(now) : previous.acquireTime,
      renewTime: microTime(now),
      leaseTransitions: (previous.leaseTransitions ?? 0) + (acquiring && previous.holderIdentity ? 1 : 0),
    }
  }

  async #loop(): Promise<void> {
    if (this.#stopped) return
    let leading = false
    try {
      leading = await this.tryOnce()
      this.#lastError = ''
    } catch (err) {
      // Once per distinct problem (a missing RBAC rule would otherwise log every retry).
      const message = (err as Error).message
      if (message !== this.#lastError) this.#o.log.warn({ lease: `${this.#o.namespace}/${this.#o.name}`, err: message }, 'lease attempt failed; retrying')
      this.#lastError = message
    }
    if (this.#stopped) return
    this.#set(leading)
    this.#timer = setTimeout(() => void this.#loop(), this.#o.retryMs ?? 2000)
    this.#timer.unref()
  }

  #set(leading: boolean, message = leading ? 'lease acquired: this agent writes policy status' : 'lease lost: another agent writes policy status'): void {
    if (leading === this.#leading) return
    this.#leading = leading
    this.#o.log.info({ lease: `${this.#o.namespace}/${this.#o.name}`, identity: this.#o.identity }, message)
    this.#o.onChange?.(leading)
  }

  async #get(): Promise<Lease | null> {
    const reply = await this.#o.api.request('GET', `${this.#path}/${encodeURIComponent(this.#o.name)}`)
    if (reply.status === 404) return null
    this.#check('GET', reply)
    return reply.body as Lease
  }

  #put(lease: Lease, spec: LeaseSpec): Promise<KubeReply> {
    return this.#o.api.request('PUT', `${this.#path}/${encodeURIComponent(this.#o.name)}`, {
      body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.#o.name, resourceVersion: lease.metadata?.resourceVersion }, spec },
    })
  }

  #check(method: string, reply: KubeReply): void {
    if (reply.status < 200 || reply.status > 299) {
      throw new Error(`${method} lease ${this.#o.namespace}/${this.#o.name}: ${reply.status} ${statusMessage(reply.body)}`)
    }
  }

  #now(): number {
    return (this.#o.now ?? Date.now)()
  }
}
