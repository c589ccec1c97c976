// The cluster as a configuration source: a list+watch (reflector.ts) for every kind the agent needs
// (pods of this node only), events converted into the model and applied in
// batches, one snapshot per batch to onChange listeners, starting with the full
// initial snapshot once every informer has synced.
import type { Logger } from '../log.js'
import { REDIRECTION_ANNOTATION } from '../model/enrollment.js'
import { applyBatch, emptySnapshot, type ResourceKind, type Snapshot } from '../model/snapshot.js'
import { convertEvents, type RawEvent } from './batch.js'
import { InvalidObjectError, SourceError } from './errors.js'
import { KubeClient, KubeRequestError, statusMessage, type KubeApi, type KubeConnection } from './kube-client.js'
import { loadClientNode } from './kube-config.js'
import { DEFAULT_BACKOFF, Reflector, type Backoff, type InformerStats, type ResourceSpec } from './reflector.js'
import { RejectedObjects, type SnapshotListener } from './rejected-objects.js'

export { REDIRECTION_ANNOTATION }
export type { SnapshotListener }

export interface KubeSourceOptions {
  readonly connection: KubeConnection
  /**
   * This node's name. Every pod of the cluster is watched, not only this node's:
   * ztunnel needs remote pods' identities and enrollment to reach them in HBONE
   * (Istio's ztunnel gets every workload from istiod, too).
   */
  readonly nodeName: string
  readonly logger: Logger
  /** Events arriving within this window are applied as one batch; default 10 ms. */
  readonly debounceMs?: number
  readonly backoff?: Backoff
  readonly requestTimeoutMs?: number
  readonly random?: () => number
  /** Watch only these kinds (default: every kind the agent needs); `ambient ca` watches Pods and Namespaces. */
  readonly resources?: readonly ResourceKind[]
}

export interface KubeSourceStats {
  readonly ready: boolean
  readonly batches: number
  readonly rejectedObjects: number
  readonly resources: readonly InformerStats[]
}

export function resourceSpecs(): readonly ResourceSpec[] {
  return [
    { kind: 'Namespace', path: '/api/v1/namespaces' },
    { kind: 'Pod', path: '/api/v1/pods' },
    { kind: 'Service', path: '/api/v1/services' },
    { kind: 'ServiceAccount', path: '/api/v1/serviceaccounts' },
    { kind: 'EndpointSlice', path: '/apis/discovery.k8s.io/v1/endpointslices' },
    { kind: 'AuthorizationPolicy', path: '/apis/security.istio.io/v1/authorizationpolicies', optional: true },
    { kind: 'PeerAuthentication', path: '/apis/security.istio.io/v1/peerauthentications', optional: true },
    { kind: 'Gateway', path: '/apis/gateway.networking.k8s.io/v1/gateways', optional: true },
    { kind: 'HTTPRoute', path: '/apis/gateway.networking.k8s.io/v1/httproutes', optional: true },
  ]
}

export class KubeSource {
  readonly #o: KubeSourceOptions
  readonly #log: Logger
  readonly #informers: Reflector[] = []
  readonly #listeners = new Set<SnapshotListener>()
  readonly #rejected: RejectedObjects
  #client: KubeClient | undefined
  #snapshot: Snapshot = emptySnapshot()
  #pending: RawEvent[] = []
  #flushTimer: NodeJS.Timeout | undefined
  #ready = false
  #stopped = false
  #batches = 0
  readonly #readyPromise: Promise<Snapshot>
  #resolveReady!: (s: Snapshot) => void
  #rejectReady!: (err: Error) => void

  constructor(options: KubeSourceOptions) {
    this.#o = options
    this.#log = options.logger.child({ component: 'kube-source', node: options.nodeName })
    this.#rejected = new RejectedObjects(this.#log)
    this.#readyPromise = new Promise<Snapshot>((resolve, reject) => {
      this.#resolveReady = resolve
      this.#rejectReady = reject
    })
    this.#readyPromise.catch(() => undefined) // observed by whoever calls ready()
  }

  /** Starts every informer; does not wait for them (see ready()). Throws on a bad connection. */
  async start(): Promise<void> {
    if (this.#stopped) throw new SourceError('AMBIENT_ERR_SOURCE_STOPPED', 'kube source was stopped; create a new one')
    if (this.#client !== undefined) return
    await loadClientNode()
    this.#client = KubeClient.for(this.#o.connection, {
      ...(this.#o.requestTimeoutMs !== undefined && { timeoutMs: this.#o.requestTimeoutMs }),
    })
    const kinds = this.#o.resources
    for (const spec of resourceSpecs().filter((s) => kinds === undefined || kinds.includes(s.kind))) {
      this.#informers.push(
        new Reflector({
          spec,
          client: this.#client,
          logger: this.#log,
          backoff: this.#o.backoff ?? DEFAULT_BACKOFF,
          onEvent: (event) => this.#enqueue(event),
          onInvalid: (error) => this.#rejected.record([error]),
          onSynced: () => this.#checkReady(),
          ...(this.#o.random && { random: this.#o.random }),
        }),
      )
    }
    for (const informer of this.#informers) informer.start()
    this.#log.info({ resources: this.#informers.length }, 'kube source started')
  }

  /** Resolves with the first full snapshot once every informer has synced; rejects if stopped first. */
  ready(): Promise<Snapshot> {
    return this.#readyPromise
  }

  /** Stops every informer; safe after a partial start and when called twice. */
  async stop(): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    if (this.#flushTimer) clearTimeout(this.#flushTimer)
    await Promise.all(this.#informers.map((i) => i.stop()))
    this.#client?.close()
    if (!this.#ready) this.#rejectReady(new SourceError('AMBIENT_ERR_SOURCE_STOPPED', 'kube source stopped before every informer synced'))
    this.#listeners.clear()
    this.#log.info('kube source stopped')
  }

  snapshot(): Snapshot {
    return this.#snapshot
  }

  /** Called with every new snapshot (after ready); returns the unsubscribe function. */
  onChange(listener: SnapshotListener): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /** Objects currently rejected (by kind namespace/name), with the bad field. */
  errors(): readonly InvalidObjectError[] {
    return this.#rejected.list()
  }

  stats(): KubeSourceStats {
    return {
      ready: this.#ready,
      batches: this.#batches,
      rejectedObjects: this.#rejected.size,
      resources: this.#informers.map((i) => i.stats()),
    }
  }

  resourceStats(kind: ResourceKind): InformerStats | undefined {
    return this.#informers.find((i) => i.stats().kind === kind)?.stats()
  }

  /**
   * Merge-patches annotations onto a pod (null removes one), e.g.
   * `{ 'ambient.istio.io/redirection': 'enabled' }`. Not found is an error with
   * code AMBIENT_ERR_SOURCE_NOT_FOUND.
   */
  async annotatePod(namespace: string, name: string, annotations: Readonly<Record<string, string | null>>): Promise<void> {
    if (this.#client === undefined || this.#stopped)
      throw new SourceError('AMBIENT_ERR_SOURCE_STOPPED', `cannot annotate pod ${namespace}/${name}: kube source is not running`)
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`
    const reply = await this.#client.request('PATCH', path, {
      body: { metadata: { annotations } },
      contentType: 'application/merge-patch+json',
    })
    if (reply.status < 200 || reply.status > 299) {
      throw new KubeRequestError('PATCH', path, reply.status, `cannot annotate pod ${namespace}/${name}: ${statusMessage(reply.body)}`)
    }
    this.#log.debug({ namespace, name, annotations }, 'pod annotated')
  }

  /** Raw requests on this source's connection (the policy-status Lease); fails before start(). */
  get api(): KubeApi {
    return {
      request: (method, path, options) => {
        if (this.#client === undefined || this.#stopped)
          return Promise.reject(new SourceError('AMBIENT_ERR_SOURCE_STOPPED', `cannot ${method} ${path}: kube source is not running`))
        return this.#client.request(method, path, options)
      },
    }
  }

  /**
   * Merge-patches the status of an AuthorizationPolicy or PeerAuthentication
   * (its /status subresource): one condition, replacing the conditions list.
   */
  async patchPolicyStatus(kind: 'AuthorizationPolicy' | 'PeerAuthentication', namespace: string, name: string, conditions: readonly unknown[]): Promise<void> {
    if (this.#client === undefined || this.#stopped)
      throw new SourceError('AMBIENT_ERR_SOURCE_STOPPED', `cannot update ${kind} ${namespace}/${name}: kube source is not running`)
    const plural = kind === 'AuthorizationPolicy' ? 'authorizationpolicies' : 'peerauthentications'
    const path = `/apis/security.istio.io/v1/namespaces/${encodeURIComponent(namespace)}/${plural}/${encodeURIComponent(name)}/status`
    const reply = await this.#client.request('PATCH', path, { body: { status: { conditions } }, contentType: 'application/merge-patch+json' })
    if (reply.status < 200 || reply.status > 299) {
      throw new KubeRequestError('PATCH', path, reply.status, `cannot update the status of ${kind} ${namespace}/${name}: ${statusMessage(reply.body)}`)
    }
  }

  #enqueue(event: RawEvent): void {
    if (this.#stopped) return
    this.#pending.push(event)
    if (this.#ready && this.#flushTimer === undefined) {
      this.#flushTimer = setTimeout(() => this.#flush(), this.#o.debounceMs ?? 10)
    }
  }

  #checkReady(): void {
    if (this.#ready || this.#stopped || !this.#informers.every((i) => i.synced)) return
    this.#ready = true
    this.#flush()
    this.#log.info({ version: this.#snapshot.version, pods: this.#snapshot.pods.size }, 'kube source ready')
    this.#resolveReady(this.#snapshot)
  }

  #flush(): void {
    if (this.#flushTimer) clearTimeout(this.#flushTimer)
    this.#flushTimer = undefined
    if (this.#stopped) return
    const events = this.#pending
    this.#pending = []
    const { changes, errors } = convertEvents(events)
    this.#rejected.record(errors)
    this.#rejected.forget(changes)
    const next = applyBatch(this.#snapshot, changes)
    if (next === this.#snapshot && this.#snapshot.version > 0) return
    this.#snapshot = next
    this.#batches += 1
    this.#log.debug({ version: next.version, changes: changes.length, rejected: errors.length }, 'batch applied')
    for (const listener of [...this.#listeners]) {
      try {
        listener(next)
      } catch (err) {
        this.#log.error({ err }, 'snapshot listener failed')
      }
    }
  }
}
