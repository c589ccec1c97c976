// The outbound HBONE connection pool (Istio ztunnel's pool): one HTTP/2 session
// per (source identity, destination identity, next hop[, source ip]) carrying
// many CONNECT streams, another session for the same key only when the first is
// full. Concurrent first dials share one handshake; idle sessions close.
import type { ClientHttp2Session } from 'node:http2'
import type { Duplex } from 'node:stream'
import type tls from 'node:tls'
import type { Logger } from 'pino'
import { silentLogger } from '../log.js'
import { dialSession, HboneSession, type Dialer } from './client.js'
import { HboneClosedError } from './errors.js'
import { DEFAULT_WINDOW } from './flow-control.js'
import { formatAuthority, type HboneHeaders, type SocketAddress } from './headers.js'

export interface HboneConnectRequest {
  /** SPIFFE id of the source workload: picks the client certificate. */
  readonly sourceIdentity: string
  /** SPIFFE id the server's certificate must carry. */
  readonly destinationIdentity: string
  /** Where the HBONE connection goes (node or pod IP, port 15008). */
  readonly nextHop: SocketAddress
  /** The CONNECT `:authority`: the destination `ip:port` (format with formatAuthority). */
  readonly authority: string
  readonly headers?: HboneHeaders
  /** Source address the dialer should use; part of the pool key when set. */
  readonly sourceIp?: string
}

export interface PoolKey {
  readonly sourceIdentity: string
  readonly destinationIdentity: string
  readonly nextHop: SocketAddress
  readonly sourceIp?: string
}

export interface HbonePoolObserver {
  sessionOpened?(key: PoolKey): void
  sessionClosed?(key: PoolKey): void
}

export interface HbonePoolOptions {
  /** The client TLS context of an identity; called once per identity (cached until invalidateIdentity). */
  readonly contextFor: (identity: string) => tls.SecureContext | Promise<tls.SecureContext>
  readonly dial?: Dialer
  /** Streams per session before another session is opened for the same key. */
  readonly maxStreamsPerSession?: number
  readonly idleTimeoutMs?: number
  /** Bound on dialing a session and, separately, on waiting for a stream's response. */
  readonly connectTimeoutMs?: number
  /** HTTP/2 stream and connection receive windows, bytes. */
  readonly windowSize?: number
  readonly observer?: HbonePoolObserver
  readonly log?: Logger
}

interface Dialing {
  reserved: number
  readonly promise: Promise<HboneSession>
}

interface Entry {
  readonly key: PoolKey
  readonly sessions: HboneSession[]
  readonly dialing: Dialing[]
}

function keyString(key: PoolKey): string {
  return JSON.stringify([key.sourceIdentity, key.destinationIdentity, formatAuthority(key.nextHop), key.sourceIp ?? ''])
}

export class HbonePool {
  private readonly entries = new Map<string, Entry>()
  private readonly live = new Set<HboneSession>()
  private readonly contexts = new Map<string, Promise<tls.SecureContext>>()
  private readonly log: Logger
  private readonly maxStreams: number
  private stopped = false

  constructor(private readonly options: HbonePoolOptions) {
    this.log = (options.log ?? silentLogger()).child({ component: 'hbone-pool' })
    this.maxStreams = options.maxStreamsPerSession ?? 100
  }

  /** Nothing to start: sessions are dialed on demand. Present for the start/stop contract. */
  async start(): Promise<void> {}

  /** Open sessions (including ones draining after GOAWAY or retirement). */
  get sessionCount(): number {
    return this.live.size
  }

  /** Opens a CONNECT stream; resolves with it once the server answered 200. */
  async connect(request: HboneConnectRequest): Promise<Duplex> {
    if (this.stopped) throw new HboneClosedError('hbone pool')
    const key: PoolKey = {
      sourceIdentity: request.sourceIdentity,
      destinationIdentity: request.destinationIdentity,
      nextHop: request.nextHop,
      ...(request.sourceIp !== undefined && { sourceIp: request.sourceIp }),
    }
    const session = await this.reserve(key)
    return session.open(request.authority, request.headers, this.timeoutMs)
  }

  /** Forgets the cached TLS context of an identity (certificate rotated); live sessions keep theirs. */
  invalidateIdentity(identity: string): void {
    this.contexts.delete(identity)
  }

  /** Closes every session now. */
  async stop(): Promise<void> {
    this.stopped = true
    const closing = [...this.live].map((s) => new Promise<void>((resolve) => (s.session.closed ? resolve() : s.session.once('close', () => resolve()))))
    for (const session of this.live) session.close(true)
    await Promise.all(closing)
    this.entries.clear()
  }

  private get timeoutMs(): number {
    return this.options.connectTimeoutMs ?? 10_000
  }

  /** A session with a slot claimed for the caller: a live one, one being dialed, or a new dial. */
  private reserve(key: PoolKey): Promise<HboneSession> {
    const id = keyString(key)
    let entry = this.entries.get(id)
    if (!entry) {
      entry = { key, sessions: [], dialing: [] }
      this.entries.set(id, entry)
    }
    for (const session of entry.sessions) if (session.reserve()) return Promise.resolve(session)
    const joinable = entry.dialing.find((d) => d.reserved < this.maxStreams)
    if (joinable) {
      joinable.reserved++
      return joinable.promise
    }
    return this.startDial(id, entry).promise
  }

  private startDial(id: string, entry: Entry): Dialing {
    const dialing: Dialing = {
      reserved: 1,
      promise: this.dial(entry.key).then(
        (h2) => this.dialed(id, entry, dialing, h2),
        (err: unknown) => {
          this.forgetDial(id, entry, dialing)
          this.log.debug({ key: entry.key, err: (err as Error).message }, 'hbone session dial failed')
          throw err
        },
      ),
    }
    entry.dialing.push(dialing)
    return dialing
  }

  private dialed(id: string, entry: Entry, dialing: Dialing, h2: ClientHttp2Session): HboneSession {
    entry.dialing.splice(entry.dialing.indexOf(dialing), 1)
    const session = new HboneSession(h2, {
      maxStreams: this.maxStreams,
      idleTimeoutMs: this.options.idleTimeoutMs ?? 60_000,
      reserved: dialing.reserved,
      log: this.log.child({ nextHop: formatAuthority(entry.key.nextHop) }),
      onRetire: (s) => this.retire(id, entry, s),
      onClose: (s) => this.closed(entry, s),
    })
    this.live.add(session)
    if (!session.closed) entry.sessions.push(session)
    this.log.debug({ key: entry.key }, 'hbone session opened')
    this.notify(() => this.options.observer?.sessionOpened?.(entry.key))
    if (this.stopped) session.close(true)
    return session
  }

  private forgetDial(id: string, entry: Entry, dialing: Dialing): void {
    const index = entry.dialing.indexOf(dialing)
    if (index >= 0) entry.dialing.splice(index, 1)
    if (entry.sessions.length === 0 && entry.dialing.length === 0 && this.entries.get(id) === entry) this.entries.delete(id)
  }

  private async dial(key: PoolKey): Promise<ClientHttp2Session> {
    const secureContext = await this.contextFor(key.sourceIdentity)
    return dialSession({
      nextHop: key.nextHop,
      ...(key.sourceIp !== undefined && { sourceIp: key.sourceIp }),
      secureContext,
      destinationIdentity: key.destinationIdentity,
      windowSize: this.options.windowSize ?? DEFAULT_WINDOW,
      timeoutMs: this.timeoutMs,
      ...(this.options.dial && { dial: this.options.dial }),
    })
  }

  private contextFor(identity: string): Promise<tls.SecureContext> {
    let context = this.contexts.get(identity)
    if (!context) {
      context = Promise.resolve().then(() => this.options.contextFor(identity))
      this.contexts.set(identity, context)
      context.catch(() => this.contexts.delete(identity))
    }
    return context
  }

  private retire(id: string, entry: Entry, session: HboneSession): void {
    const index = entry.sessions.indexOf(session)
    if (index >= 0) entry.sessions.splice(index, 1)
    if (entry.sessions.length === 0 && entry.dialing.length === 0 && this.entries.get(id) === entry) this.entries.delete(id)
  }

  private closed(entry: Entry, session: HboneSession): void {
    if (!this.live.delete(session)) return
    this.log.debug({ key: entry.key }, 'hbone session closed')
    this.notify(() => this.options.observer?.sessionClosed?.(entry.key))
  }

  private notify(call: () => void): void {
    try {
      call()
    } catch (err) {
      this.log.warn({ err }, 'hbone pool observer threw')
    }
  }
}
