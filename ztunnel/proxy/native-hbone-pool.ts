// The outbound HBONE pool on the native engine (--hbone-engine native): the same
// keying and policy as common/hbone/pool.ts (one session per source identity,
// destination identity, next hop and source ip; concurrent first dials share one
// handshake; idle sessions close; a session whose server reset budget runs low
// retires), plus spreading: while every session of a key carries streams, one
// more is dialed in the background, up to the engine's thread count, so parallel
// streams use every I/O thread. The bytes never enter Node.
import type { Logger } from 'pino'
import { HboneClosedError, HboneSessionError, HboneStatusError, HboneStreamError, HboneTimeoutError } from '../../common/hbone/errors.js'
import { formatAuthority, requestHeaders, type HboneHeaders, type SocketAddress } from '../../common/hbone/headers.js'
import type { ClientSession, HboneEngine, TunnelResult } from '../../native/hbone.js'

export interface NativeConnectRequest {
  readonly sourceIdentity: string
  readonly destinationIdentity: string
  readonly nextHop: SocketAddress
  readonly authority: string
  readonly headers?: HboneHeaders
  readonly sourceIp?: string
}

export interface NativeHbonePoolOptions {
  readonly engine: HboneEngine
  /** The native client context of an identity (cached until invalidateIdentity). */
  readonly contextFor: (identity: string) => Promise<number>
  /** A TCP socket fd (not connected) for a session to `nextHop` from `sourceIp`. */
  readonly socketFor: (nextHop: SocketAddress, sourceIp?: string) => Promise<number>
  readonly maxStreamsPerSession?: number
  readonly idleTimeoutMs?: number
  readonly connectTimeoutMs?: number
  readonly observer?: { sessionOpened?(): void; sessionClosed?(): void }
  readonly log: Logger
}

/** As in common/hbone/client.ts: the server's nghttp2 ends a session after too many resets. */
const RESET_BURST = 1000
const RESET_RATE_PER_SECOND = 33
const RESET_RESERVE = 200

interface PooledSession {
  readonly session: ClientSession
  active: number
  capacity: number
  retired: boolean
  idleTimer: NodeJS.Timeout | null
  resetTokens: number
  resetStamp: number
}

interface Entry {
  readonly sessions: PooledSession[]
  dialing: Promise<PooledSession> | null
}

export class NativeHbonePool {
  private readonly entries = new Map<string, Entry>()
  private readonly contexts = new Map<string, Promise<number>>()
  private readonly live = new Set<PooledSession>()
  private readonly maxStreams: number
  private stopped = false

  constructor(private readonly options: NativeHbonePoolOptions) {
    this.maxStreams = options.maxStreamsPerSession ?? 100
  }

  get sessionCount(): number {
    return this.live.size
  }

  /**
   * Relays the application's socket `takeFd()` returns (called once a session is
   * ready, so a failed dial leaves the socket to the caller) through a CONNECT
   * stream. Resolves with the tunnel's end once a 200 was answered; rejects with
   * HboneStatusError and the like otherwise (the engine has reset the socket).
   * `onOpen` runs when the 200 arrives; `onTunnel` gets a reset for the tunnel once it exists.
   */
  async relay(request: NativeConnectRequest, takeFd: () => number, onOpen: () => void, onTunnel?: (reset: () => void) => void): Promise<TunnelResult> {
    if (this.stopped) throw new HboneClosedError('hbone pool')
    const pooled = await this.reserve(request)
    let tunnel
    try {
      tunnel = pooled.session.openStream(takeFd(), request.authority, requestHeaders(request.headers))
    } catch (err) {
      this.release(pooled, false)
      throw new HboneStreamError(request.authority, err)
    }
    onTunnel?.(() => tunnel.reset())
    let timer: NodeJS.Timeout | undefined
    const timeoutMs = this.timeoutMs
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        tunnel.reset()
        reject(new HboneTimeoutError(`connect to ${request.authority}`, timeoutMs))
      }, timeoutMs)
    })
    void tunnel.closed.then((result) => this.release(pooled, result.resetCode === 0 && result.status === 200 && result.socketError === null))
    let status: number
    try {
      status = await Promise.race([tunnel.response, timedOut])
    } catch (err) {
      throw err instanceof HboneTimeoutError ? err : new HboneStreamError(request.authority, err)
    } finally {
      clearTimeout(timer)
    }
    if (status !== 200) throw new HboneStatusError(request.authority, status)
    onOpen()
    return tunnel.closed
  }

  /** A rotated certificate: new sessions of that identity use a fresh context. */
  invalidateIdentity(identity: string): void {
    const context = this.contexts.get(identity)
    this.contexts.delete(identity)
    void context?.then(
      (id) => this.options.engine.releaseContext(id),
      () => undefined,
    )
  }

  async stop(): Promise<void> {
    this.stopped = true
    const closing = [...this.live].map((p) => p.session.closed)
    for (const p of this.live) p.session.close(false)
    await Promise.all(closing)
    this.entries.clear()
    for (const identity of [...this.contexts.keys()]) this.invalidateIdentity(identity)
  }

  private get timeoutMs(): number {
    return this.options.connectTimeoutMs ?? 10_000
  }

  private keyOf(r: NativeConnectRequest): string {
    return JSON.stringify([r.sourceIdentity, r.destinationIdentity, formatAuthority(r.nextHop), r.sourceIp ?? ''])
  }

  /** The least-loaded live session of the key, a shared dial, or a new one. */
  private async reserve(request: NativeConnectRequest): Promise<PooledSession> {
    const id = this.keyOf(request)
    let entry = this.entries.get(id)
    if (!entry) this.entries.set(id, (entry = { sessions: [], dialing: null }))
    const usable = entry.sessions.filter((s) => !s.retired && s.active < s.capacity)
    const best = usable.sort((a, b) => a.active - b.active)[0]
    if (best) {
      // Every session busy: one more in the background, so parallel streams spread over the threads.
      if (best.active > 0 && entry.sessions.length < this.options.engine.options.threads && entry.dialing === null) {
        void this.dial(id, entry, request).catch(() => undefined)
      }
      this.claim(best)
      return best
    }
    for (;;) {
      const pooled = await (entry.dialing ?? this.dial(id, entry, request))
      if (!pooled.retired && pooled.active < pooled.capacity) {
        this.claim(pooled)
        return pooled
      }
      if (this.stopped) throw new HboneClosedError('hbone pool')
    }
  }

  private dial(id: string, entry: Entry, request: NativeConnectRequest): Promise<PooledSession> {
    const hop = formatAuthority(request.nextHop)
    const dialing = (async (): Promise<PooledSession> => {
      let session: ClientSession | null = null
      let timer: NodeJS.Timeout | undefined
      try {
        const context = await this.contextFor(request.sourceIdentity)
        const fd = await this.options.socketFor(request.nextHop, request.sourceIp)
        session = this.options.engine.openSession(fd, request.nextHop, context, request.destinationIdentity)
        const opened = session
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new HboneTimeoutError(`session to ${hop}`, this.timeoutMs)), this.timeoutMs)
        })
        const { maxStreams } = await Promise.race([opened.ready, timeout])
        return this.adopt(id, entry, opened, maxStreams)
      } catch (err) {
        session?.close(false)
        this.options.log.debug({ nextHop: hop, err: (err as Error).message }, 'hbone session dial failed')
        throw new HboneSessionError(hop, err)
      } finally {
        clearTimeout(timer)
      }
    })()
    entry.dialing = dialing
    const done = (): void => {
      if (entry.dialing === dialing) entry.dialing = null
      if (entry.sessions.length === 0 && entry.dialing === null && this.entries.get(id) === entry) this.entries.delete(id)
    }
    dialing.then(done, done)
    return dialing
  }

  private adopt(id: string, entry: Entry, session: ClientSession, maxStreams: number): PooledSession {
    const pooled: PooledSession = {
      session,
      active: 0,
      capacity: Math.min(this.maxStreams, maxStreams || Infinity),
      retired: false,
      idleTimer: null,
      resetTokens: RESET_BURST,
      resetStamp: Date.now(),
    }
    this.live.add(pooled)
    entry.sessions.push(pooled)
    this.options.observer?.sessionOpened?.()
    session.onGoaway = () => this.retire(id, entry, pooled)
    void session.closed.then(() => {
      this.retire(id, entry, pooled)
      this.clearIdle(pooled)
      if (this.live.delete(pooled)) this.options.observer?.sessionClosed?.()
    })
    this.armIdle(pooled)
    if (this.stopped) session.close(false)
    return pooled
  }

  private claim(pooled: PooledSession): void {
    pooled.active++
    this.clearIdle(pooled)
  }

  private release(pooled: PooledSession, clean: boolean): void {
    pooled.active--
    if (!clean) {
      const now = Date.now()
      pooled.resetTokens = Math.min(RESET_BURST, pooled.resetTokens + ((now - pooled.resetStamp) / 1000) * RESET_RATE_PER_SECOND) - 1
      pooled.resetStamp = now
      if (pooled.resetTokens < RESET_RESERVE) pooled.retired = true
    }
    if (pooled.active > 0) return
    if (pooled.retired) pooled.session.close(true)
    else this.armIdle(pooled)
  }

  private retire(id: string, entry: Entry, pooled: PooledSession): void {
    pooled.retired = true
    const index = entry.sessions.indexOf(pooled)
    if (index >= 0) entry.sessions.splice(index, 1)
    if (entry.sessions.length === 0 && entry.dialing === null && this.entries.get(id) === entry) this.entries.delete(id)
    if (pooled.active === 0) pooled.session.close(true)
  }

  private armIdle(pooled: PooledSession): void {
    if (pooled.retired || pooled.idleTimer) return
    pooled.idleTimer = setTimeout(() => {
      pooled.idleTimer = null
      if (pooled.active === 0) {
        pooled.retired = true
        pooled.session.close(true)
      }
    }, this.options.idleTimeoutMs ?? 60_000)
    pooled.idleTimer.unref()
  }

  private clearIdle(pooled: PooledSession): void {
    if (pooled.idleTimer) clearTimeout(pooled.idleTimer)
    pooled.idleTimer = null
  }

  private contextFor(identity: string): Promise<number> {
    let context = this.contexts.get(identity)
    if (!context) {
      context = this.options.contextFor(identity)
      this.contexts.set(identity, context)
      context.catch(() => this.contexts.delete(identity))
    }
    return context
  }
}
