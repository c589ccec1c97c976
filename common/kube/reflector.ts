// One resource's list+watch, as client-go's Reflector does it: list, then watch
// from the list's resourceVersion with bookmarks; a clean end of the stream (server
// timeout) re-watches from the last seen resourceVersion; 410 Gone (an ERROR event
// or the status) relists and turns what disappeared into deletes; any other error
// (failed list, refused or reset watch, silence past the timeout) retries with
// jittered exponential backoff. Its cache exists only to compute those deletes.
import type { IncomingMessage } from 'node:http'
import type { Logger } from '../log.js'
import { objectKey, type ResourceKind } from '../model/snapshot.js'
import type { RawEvent } from './batch.js'
import { errorMessage, InvalidObjectError, SourceError } from './errors.js'
import { KubeRequestError, statusMessage, type KubeClient } from './kube-client.js'

export interface Backoff {
  readonly initialMs: number
  readonly maxMs: number
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 500, maxMs: 30_000 }

/** Exponential backoff with "equal jitter": half fixed, half random. */
export function backoffDelay(backoff: Backoff, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30))
  return Math.round(ceiling / 2 + (random() * ceiling) / 2)
}

export interface ResourceSpec {
  readonly kind: ResourceKind
  /** Collection path, e.g. `/api/v1/pods`. */
  readonly path: string
  readonly fieldSelector?: string
  /** A missing API (CRD not installed, 404) counts as synced and empty; retried with backoff. */
  readonly optional?: boolean
}

export interface InformerStats {
  readonly kind: ResourceKind
  readonly synced: boolean
  readonly lists: number
  /** Watches opened again after the first (after errors, drops, 410 relists, timeouts). */
  readonly watchRestarts: number
  /** Relists after 410 Gone. */
  readonly expired: number
  readonly errors: number
  readonly lastError?: string
  readonly events: number
}

export interface ReflectorOptions {
  readonly spec: ResourceSpec
  readonly client: KubeClient
  readonly logger: Logger
  readonly backoff?: Backoff
  readonly onEvent: (event: RawEvent) => void
  /** Objects that cannot even be named (no metadata.name): reported, never cached. */
  readonly onInvalid: (error: InvalidObjectError) => void
  readonly onSynced: () => void
  readonly random?: () => number
  /** Server-side watch timeout; default 300-600 s, randomized like client-go. */
  readonly watchTimeoutSeconds?: number
}

type Raw = { metadata?: { name?: unknown; namespace?: unknown; resourceVersion?: unknown } }

class Expired extends Error {}

export class Reflector {
  readonly #o: ReflectorOptions
  readonly #log: Logger
  readonly #backoff: Backoff
  readonly #cache = new Map<string, Raw>()
  #rv = ''
  #attempt = 0
  #stopped = false
  #running: Promise<void> | undefined
  #abort: (() => void) | undefined
  #wake: (() => void) | undefined
  #synced = false
  #lists = 0
  #watches = 0
  #expired = 0
  #errors = 0
  #events = 0
  #lastError: string | undefined

  constructor(options: ReflectorOptions) {
    this.#o = options
    this.#log = options.logger.child({ resource: options.spec.kind })
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF
  }

  start(): void {
    if (this.#running || this.#stopped) return
    this.#running = this.#loop().catch((err: unknown) => this.#log.error({ err: errorMessage(err) }, 'reflector loop failed'))
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#abort?.()
    this.#wake?.()
    await this.#running
  }

  get synced(): boolean {
    return this.#synced
  }

  stats(): InformerStats {
    return {
      kind: this.#o.spec.kind,
      synced: this.#synced,
      lists: this.#lists,
      watchRestarts: Math.max(0, this.#watches - 1),
      expired: this.#expired,
      errors: this.#errors,
      ...(this.#lastError !== undefined && { lastError: this.#lastError }),
      events: this.#events,
    }
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      try {
        if (this.#rv === '') await this.#list()
        const delivered = await this.#watch()
        if (!delivered && !this.#stopped) await this.#sleep(this.#nextDelay()) // empty clean ends: do not spin
      } catch (err) {
        if (this.#stopped) return
        if (err instanceof Expired) {
          this.#expired += 1
          this.#rv = ''
          this.#log.info('resource version expired (410); relisting')
          continue
        }
        this.#errors += 1
        this.#lastError = errorMessage(err)
        const delay = this.#nextDelay()
        if (err instanceof KubeRequestError && err.statusCode === 403) {
          // A missing RBAC rule does not heal by itself: say which one, loudly, and keep retrying (a fixed ClusterRole applies at once).
          this.#log.error({ ...err.fields, err: this.#lastError, retryInMs: delay }, 'forbidden: an RBAC rule is missing; retrying')
        } else this.#log.warn({ err: this.#lastError, retryInMs: delay }, 'list/watch failed; retrying')
        await this.#sleep(delay)
      }
    }
  }

  async #list(): Promise<void> {
    const { path, fieldSelector, optional } = this.#o.spec
    this.#lists += 1
    let body: unknown
    try {
      body = await this.#o.client.getJson(path + (fieldSelector === undefined ? '' : `?fieldSelector=${encodeURIComponent(fieldSelector)}`))
    } catch (err) {
      if (optional && err instanceof KubeRequestError && err.statusCode === 404 && !this.#synced) {
        this.#log.warn({ path }, 'api not served (crd not installed?); empty until it is')
        this.#markSynced()
      }
      throw err
    }
    if (this.#stopped) return
    const list = body as { items?: unknown; metadata?: { resourceVersion?: unknown } } | null
    if (list === null || typeof list !== 'object' || !Array.isArray(list.items))
      throw new SourceError('AMBIENT_ERR_SOURCE_REQUEST', `GET ${path}: reply is not a list`)
    const seen = new Set<string>()
    for (const item of list.items as unknown[]) {
      const key = this.#keyOf(item)
      if (key === undefined) continue
      seen.add(key)
      const old = this.#cache.get(key)
      if (old !== undefined && rvOf(old) !== '' && rvOf(old) === rvOf(item as Raw)) continue
      this.#cache.set(key, item as Raw)
      this.#emit('upsert', item)
    }
    for (const [key, old] of [...this.#cache]) {
      if (seen.has(key)) continue
      this.#cache.delete(key)
      this.#emit('delete', old)
    }
    this.#rv = typeof list.metadata?.resourceVersion === 'string' ? list.metadata.resourceVersion : ''
    this.#attempt = 0
    this.#markSynced()
  }

  /** Streams one watch to its end; true when it delivered anything (events or bookmarks). */
  async #watch(): Promise<boolean> {
    if (this.#stopped) return false
    const { path, fieldSelector } = this.#o.spec
    const timeoutSeconds = this.#o.watchTimeoutSeconds ?? Math.round(300 * (1 + (this.#o.random ?? Math.random)()))
    const query = new URLSearchParams({ watch: 'true', resourceVersion: this.#rv, allowWatchBookmarks: 'true', timeoutSeconds: String(timeoutSeconds) })
    if (fieldSelector !== undefined) query.set('fieldSelector', fieldSelector)
    this.#watches += 1
    if (this.#watches > 1) this.#log.debug({ resourceVersion: this.#rv }, 'watch restarting')
    // no data for a while past the server timeout means a dead connection
    const request = this.#o.client.open('GET', `${path}?${query}`, { timeoutMs: (timeoutSeconds + 30) * 1000 })
    this.#abort = () => request.destroy(new SourceError('AMBIENT_ERR_SOURCE_STOPPED', 'stopped'))
    try {
      const res = await request.response
      if (res.statusCode !== 200) {
        const body = await readAll(res)
        if (res.statusCode === 410) throw new Expired()
        throw new KubeRequestError('GET', `${path}?${query}`, res.statusCode ?? 0, statusMessage(body))
      }
      let delivered = false
      let buffer = ''
      for await (const chunk of res) {
        buffer += (chunk as Buffer).toString('utf8')
        let nl: number
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).trim()
          buffer = buffer.slice(nl + 1)
          if (line === '') continue
          delivered = true
          this.#handle(line)
        }
      }
      if (!res.complete && !this.#stopped) throw new SourceError('AMBIENT_ERR_SOURCE_REQUEST', `watch ${path}: connection closed mid-stream`)
      if (delivered) this.#attempt = 0
      return delivered
    } finally {
      this.#abort = undefined
      request.destroy()
    }
  }

  #handle(line: string): void {
    let event: { type?: unknown; object?: unknown }
    try {
      event = JSON.parse(line) as typeof event
    } catch {
      throw new SourceError('AMBIENT_ERR_SOURCE_REQUEST', `watch ${this.#o.spec.path}: event is not json`)
    }
    const object = event.object as Raw | undefined
    switch (event.type) {
      case 'ADDED':
      case 'MODIFIED': {
        const key = this.#keyOf(object)
        if (key !== undefined) {
          this.#cache.set(key, object as Raw)
          this.#emit('upsert', object)
        }
        break
      }
      case 'DELETED': {
        const key = this.#keyOf(object)
        if (key !== undefined && this.#cache.delete(key)) this.#emit('delete', object)
        break
      }
      case 'BOOKMARK':
        break
      case 'ERROR': {
        const status = object as { code?: unknown; message?: unknown } | undefined
        if (status?.code === 410) throw new Expired()
        throw new SourceError('AMBIENT_ERR_SOURCE_REQUEST', `watch ${this.#o.spec.path}: ${statusMessage(status)}`)
      }
      default:
        throw new SourceError('AMBIENT_ERR_SOURCE_REQUEST', `watch ${this.#o.spec.path}: unknown event type ${JSON.stringify(event.type)}`)
    }
    const rv = rvOf(object)
    if (rv !== '') this.#rv = rv
  }

  #keyOf(item: unknown): string | undefined {
    const metadata = (item as Raw | null)?.metadata
    if (
      metadata &&
      typeof metadata === 'object' &&
      typeof metadata.name === 'string' &&
      metadata.name !== '' &&
      (metadata.namespace === undefined || typeof metadata.namespace === 'string')
    ) {
      return objectKey((metadata.namespace as string | undefined) ?? '', metadata.name)
    }
    const field =
      metadata && typeof metadata === 'object'
        ? typeof metadata.name !== 'string' || metadata.name === ''
          ? 'metadata.name'
          : 'metadata.namespace'
        : 'metadata'
    this.#o.onInvalid(new InvalidObjectError({ kind: this.#o.spec.kind, namespace: '', name: '', field, problem: 'is missing or not a string' }))
    return undefined
  }

  #emit(type: RawEvent['type'], object: unknown): void {
    this.#events += 1
    try {
      this.#o.onEvent({ type, kind: this.#o.spec.kind, object })
    } catch (err) {
      this.#log.error({ err: errorMessage(err) }, 'event handler failed')
    }
  }

  #markSynced(): void {
    if (this.#synced || this.#stopped) return
    this.#synced = true
    this.#o.onSynced()
  }

  #nextDelay(): number {
    return backoffDelay(this.#backoff, this.#attempt++, this.#o.random)
  }

  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined
        resolve()
      }, ms)
      this.#wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }
}

function rvOf(object: Raw | undefined): string {
  const rv = object?.metadata?.resourceVersion
  return typeof rv === 'string' ? rv : ''
}

async function readAll(res: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c as Buffer)
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    return undefined
  }
}
