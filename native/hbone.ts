// Typed wrapper over the native HBONE engine (src/hbone/, raw surface in
// binding.d.ts): I/O threads that own HBONE sessions, listeners and tunnels (TLS
// 1.3 through Node's own OpenSSL, HTTP/2 through Node's own nghttp2). It decides
// nothing: callers pick sessions, identities and every answer. Events arrive in
// batches on the JS thread and are routed here to the object they name.
import { constants } from 'node:os'
import type { RawHboneEngine, RawHboneEvent } from './binding.js'
import { NativeError } from './errors.js'
import { native } from './index.js'

export interface HboneEngineOptions {
  /** I/O threads; sessions are spread over them (a session and its tunnels stay on one). */
  readonly threads: number
  /** HTTP/2 stream receive window, bytes. */
  readonly streamWindow: number
  /** HTTP/2 connection receive window, bytes. */
  readonly connectionWindow: number
  /** SETTINGS_MAX_FRAME_SIZE we advertise. */
  readonly maxFrameSize: number
  /** Server: SETTINGS_MAX_CONCURRENT_STREAMS. */
  readonly maxConcurrentStreams: number
  readonly handshakeTimeoutMs: number
}

export const HBONE_ENGINE_DEFAULTS: HboneEngineOptions = {
  threads: 1,
  streamWindow: 4 * 1024 * 1024,
  connectionWindow: 16 * 1024 * 1024,
  maxFrameSize: 1024 * 1024,
  maxConcurrentStreams: 1000,
  handshakeTimeoutMs: 10_000,
}

export interface Credentials {
  readonly keyPem: string
  readonly certPem: string
  readonly chainPem?: string
  readonly trustBundlePem: string
}

export interface Address {
  readonly ip: string
  readonly port: number
}

/** How a tunnel ended. `received`: stream -> socket bytes; `sent`: socket -> stream. */
export interface TunnelResult {
  readonly status: number
  readonly received: number
  readonly sent: number
  /** HTTP/2 error code of a reset (0 when it ended cleanly). */
  readonly resetCode: number
  /** errno name of a plain-socket failure, or null. */
  readonly socketError: string | null
  /** Why it ended, when it did not end cleanly ('' otherwise). */
  readonly message: string
}

export type RejectReason = 'tls' | 'alpn' | 'identity' | 'trust_domain'

export interface ServerSessionInfo {
  readonly session: number
  readonly peerIdentity: string
  readonly peer: Address
  readonly local: Address
}

export interface HboneRequest {
  readonly method: string
  readonly authority: string
  readonly forwarded?: string
  readonly baggage?: string
  readonly traceparent?: string
}

export interface ServerHandlers {
  onSession?(info: ServerSessionInfo): void
  onRejected?(event: { readonly reason: RejectReason; readonly peer: Address; readonly message: string }): void
  onSessionClosed?(session: number, message: string): void
  /** A CONNECT request; answer with tunnel.deliver(), tunnel.reject() or tunnel.reset(). */
  onRequest(tunnel: ServerTunnel, request: HboneRequest, session: ServerSessionInfo): void
}

const enum EventType {
  SessionReady = 1,
  SessionGoaway = 2,
  SessionClosed = 3,
  ServerSession = 4,
  Rejected = 5,
  Request = 6,
  Response = 7,
  Delivered = 8,
  DeliveryFailed = 9,
  TunnelClosed = 10,
  ServerClosed = 11,
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, value]) => [value, name]))

function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`
}

interface Deferred<T> {
  readonly promise: Promise<T>
  resolve(value: T): void
  reject(err: Error): void
}

/** A promise that never counts as unhandled (callers may or may not await it). */
function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (err: Error) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  promise.catch(() => undefined)
  return { promise, resolve, reject }
}

function resultOf(e: RawHboneEvent): TunnelResult {
  return {
    status: e.status,
    received: e.received,
    sent: e.sent,
    resetCode: e.code,
    socketError: e.err ? errnoName(e.err) : null,
    message: e.message,
  }
}

/** Base of both tunnel kinds: the id, its end, live counters and a reset. */
abstract class Tunnel {
  private readonly done = deferred<TunnelResult>()
  private result: TunnelResult | null = null

  constructor(
    protected readonly engine: HboneEngine,
    readonly id: number,
  ) {}

  /** Resolves once both the stream and the socket are done. */
  get closed(): Promise<TunnelResult> {
    return this.done.promise
  }

  get isClosed(): boolean {
    return this.result !== null
  }

  /** Bytes so far (the final ones once closed). */
  counters(): { readonly received: number; readonly sent: number } {
    return this.result ?? this.engine.raw().counters(this.id) ?? { received: 0, sent: 0 }
  }

  /** Resets the stream (RST_STREAM CONNECT_ERROR) and the socket (TCP RST). */
  reset(): void {
    if (!this.result) this.engine.raw().reset(this.id)
  }

  /** @internal */
  ended(e: RawHboneEvent): void {
    this.result = resultOf(e)
    this.done.resolve(this.result)
  }
}

/** Client side: a CONNECT stream whose socket is relayed once the server answers 200. */
export class ClientTunnel extends Tunnel {
  private readonly answer = deferred<number>()

  /** The server's status; rejects when the stream ended before one. */
  get response(): Promise<number> {
    return this.answer.promise
  }

  /** @internal */
  responded(status: number): void {
    this.answer.resolve(status)
  }

  /** @internal */
  override ended(e: RawHboneEvent): void {
    this.answer.reject(
      new NativeError(`hbone stream ended before a response: ${e.message || 'closed'}`, {
        code: 'ECONNRESET',
        errno: constants.errno.ECONNRESET,
        syscall: 'hbone',
      }),
    )
    super.ended(e)
  }
}

/** Server side: a request waiting for an answer, then a relay to the delivery socket. */
export class ServerTunnel extends Tunnel {
  private delivery: Deferred<void> | null = null

  /** Connects `fd` (configured by the caller) to `target`; 200 and the relay once connected. Rejects with the connect's errno. */
  deliver(fd: number, target: Address): Promise<void> {
    if (this.isClosed) {
      this.engine.closeFd(fd)
      return Promise.reject(NativeError.of('ECONNRESET', 'hbone', `hbone stream ${this.id} is already closed`))
    }
    this.delivery = deferred<void>()
    this.engine.raw().deliver(this.id, fd, target.ip, target.port)
    return this.delivery.promise
  }

  /** Answers `status` (4xx/5xx) and ends the stream. */
  reject(status: number): void {
    if (!this.isClosed) this.engine.raw().reject(this.id, status)
  }

  /** @internal */
  delivered(): void {
    this.delivery?.resolve()
    this.delivery = null
  }

  /** @internal */
  deliveryFailed(e: RawHboneEvent): void {
    const code = errnoName(e.err)
    this.delivery?.reject(new NativeError(e.message, { code, errno: e.err, syscall: 'connect' }))
    this.delivery = null
  }

  /** @internal */
  override ended(e: RawHboneEvent): void {
    this.delivery?.reject(NativeError.of('ECONNRESET', 'hbone', `hbone stream ${this.id} closed before delivery: ${e.message || 'closed'}`))
    this.delivery = null
    super.ended(e)
  }
}

/** A client HBONE session (TLS + HTTP/2) to one next hop. */
export class ClientSession {
  private readonly readyDeferred = deferred<{ readonly maxStreams: number }>()
  private readonly done = deferred<string>()
  private open = true
  /** Called once when the server sends GOAWAY. */
  onGoaway: (() => void) | null = null

  constructor(
    private readonly engine: HboneEngine,
    readonly id: number,
  ) {}

  /** Resolves when the server's SETTINGS arrived (TLS 1.3: it also accepted our certificate). */
  get ready(): Promise<{ readonly maxStreams: number }> {
    return this.readyDeferred.promise
  }

  /** Resolves with the reason once the session is gone. */
  get closed(): Promise<string> {
    return this.done.promise
  }

  get isOpen(): boolean {
    return this.open
  }

  /** A CONNECT to `authority` whose bytes are relayed to `fd` (the engine owns it from now on). */
  openStream(fd: number, authority: string, headers: Readonly<Record<string, string>>): ClientTunnel {
    const flat = Object.entries(headers).flat()
    const id = this.engine.raw().openStream(this.id, fd, authority, flat)
    const tunnel = new ClientTunnel(this.engine, id)
    this.engine.track(id, tunnel)
    return tunnel
  }

  /** Graceful (GOAWAY, then close) or at once (resetting its tunnels). */
  close(graceful: boolean): void {
    if (this.open) this.engine.raw().closeSession(this.id, graceful)
  }

  /** @internal */
  event(e: RawHboneEvent): void {
    if (e.type === EventType.SessionReady) this.readyDeferred.resolve({ maxStreams: e.count })
    else if (e.type === EventType.SessionGoaway) this.onGoaway?.()
    else if (e.type === EventType.SessionClosed) {
      this.open = false
      this.readyDeferred.reject(
        new NativeError(`hbone session failed: ${e.message}`, { code: 'ECONNREFUSED', errno: constants.errno.ECONNREFUSED, syscall: 'hbone' }),
      )
      this.done.resolve(e.message)
    }
  }
}

/** An HBONE listener: TLS handshakes and HTTP/2 on the engine, requests to `handlers`. */
export class HboneListener {
  private done = deferred<void>()
  private draining = false
  private readonly sessions = new Map<number, ServerSessionInfo>()

  constructor(
    private readonly engine: HboneEngine,
    readonly id: number,
    private readonly handlers: ServerHandlers,
  ) {}

  /** Sessions open now (a drain waits for their peers to close them). */
  get openSessions(): number {
    return this.sessions.size
  }

  /** Uses `context` (a server context) for new handshakes; open sessions keep theirs. */
  setContext(context: number): void {
    this.engine.raw().setServerContext(this.id, context)
  }

  /** Stops listening and closes every session at once (also after drain()); resolves when done. */
  close(): Promise<void> {
    if (this.draining) {
      this.draining = false
      this.done = deferred<void>()
    }
    this.engine.raw().closeServer(this.id, false)
    return this.done.promise
  }

  /**
   * Stops listening; every session gets a GOAWAY shutdown notice (its peer opens no
   * new streams here, none in flight is refused) and keeps its open streams until
   * they end or close() cuts them. Resolves once the listener is closed and the
   * notices are out.
   */
  drain(): Promise<void> {
    this.draining = true
    this.engine.raw().closeServer(this.id, true)
    return this.done.promise
  }

  /** @internal */
  event(e: RawHboneEvent): void {
    switch (e.type) {
      case EventType.ServerSession: {
        const info: ServerSessionInfo = {
          session: e.id,
          peerIdentity: e.fields[0]!,
          peer: { ip: e.fields[1]!, port: e.status },
          local: { ip: e.fields[2]!, port: e.count },
        }
        this.sessions.set(e.id, info)
        this.engine.route(e.id, this)
        this.handlers.onSession?.(info)
        return
      }
      case EventType.Rejected:
        this.handlers.onRejected?.({ reason: e.fields[0] as RejectReason, peer: { ip: e.fields[1] ?? '', port: e.status }, message: e.message })
        return
      case EventType.SessionClosed:
        if (this.sessions.delete(e.id)) this.handlers.onSessionClosed?.(e.id, e.message)
        this.engine.unroute(e.id)
        return
      case EventType.Request: {
        const session = this.sessions.get(e.owner)
        const tunnel = new ServerTunnel(this.engine, e.id)
        this.engine.track(e.id, tunnel)
        if (!session) return tunnel.reset()
        const [method, authority, forwarded, baggage, traceparent] = e.fields as [string, string, string, string, string]
        const request: HboneRequest = {
          method,
          authority,
          ...(e.status & 1 && { forwarded }),
          ...(e.status & 2 && { baggage }),
          ...(e.status & 4 && { traceparent }),
        }
        this.handlers.onRequest(tunnel, request, session)
        return
      }
      case EventType.ServerClosed:
        if (!this.draining) this.engine.unroute(this.id) // drained: close() still cuts the open sessions
        this.done.resolve()
        return
    }
  }
}

type Routed = ClientSession | HboneListener
type Tracked = ClientTunnel | ServerTunnel

/** One engine per process: its threads, its contexts and the routing of its events. */
export class HboneEngine {
  private readonly engine: RawHboneEngine
  private readonly routes = new Map<number, Routed>()
  private readonly tunnels = new Map<number, Tracked>()
  /** Contexts by role and credentials, with how many holders each has; and the reverse. */
  private readonly contexts = new Map<string, { readonly id: number; refs: number }>()
  private readonly contextKeys = new Map<number, string>()
  private closedEngine = false

  constructor(
    readonly options: HboneEngineOptions = HBONE_ENGINE_DEFAULTS,
    private readonly onError: (err: unknown) => void = (err) => {
      throw err
    },
  ) {
    if (!Number.isInteger(options.threads) || options.threads < 1 || options.threads > 64)
      throw NativeError.invalid(`hbone engine threads ${options.threads} is not an integer in 1-64`)
    for (const name of ['streamWindow', 'connectionWindow'] as const) {
      const v = options[name]
      if (!Number.isInteger(v) || v < 65535 || v > 2 ** 31 - 1) throw NativeError.invalid(`hbone ${name} ${v} is not in 65535-2147483647`)
    }
    if (!Number.isInteger(options.maxFrameSize) || options.maxFrameSize < 16384 || options.maxFrameSize > 16777215)
      throw NativeError.invalid(`hbone maxFrameSize ${options.maxFrameSize} is not in 16384-16777215`)
    try {
      this.engine = new (native().HboneEngine)({ ...options }, (events) => this.dispatch(events))
    } catch (err) {
      throw NativeError.from(err, 'cannot start the hbone engine')
    }
  }

  /** @internal the raw engine, for the objects it made. */
  raw(): RawHboneEngine {
    if (this.closedEngine) throw NativeError.of('EBADF', 'hbone', 'the hbone engine is closed')
    return this.engine
  }

  /**
   * A TLS context (TLS 1.3, ALPN h2, the bundle as the only roots) for one identity;
   * release it when replaced. The same credentials share one context (building one
   * parses the key, chain and bundle: milliseconds, paid once per identity rather
   * than once per pod), counted: each createContext needs its releaseContext.
   */
  createContext(role: 'client' | 'server', credentials: Credentials): number {
    const chain = credentials.chainPem ? `${credentials.certPem.trim()}\n${credentials.chainPem.trim()}\n` : credentials.certPem
    const key = `${role}\0${credentials.keyPem}\0${chain}\0${credentials.trustBundlePem}`
    const shared = this.contexts.get(key)
    if (shared !== undefined) {
      shared.refs += 1
      return shared.id
    }
    let id: number
    try {
      id = this.raw().createContext(role, credentials.keyPem, chain, credentials.trustBundlePem)
    } catch (err) {
      throw NativeError.from(err)
    }
    this.contexts.set(key, { id, refs: 1 })
    this.contextKeys.set(id, key)
    return id
  }

  /** Drops one reference; the last drops the engine's, and sessions that handshook with it keep theirs. */
  releaseContext(context: number): void {
    const key = this.contextKeys.get(context)
    const shared = key === undefined ? undefined : this.contexts.get(key)
    if (shared !== undefined && --shared.refs > 0) return
    this.contextKeys.delete(context)
    if (key !== undefined) this.contexts.delete(key)
    if (!this.closedEngine) this.engine.releaseContext(context)
  }

  /** Serves HBONE on a listening socket (the engine owns `fd`); clients must be of `trustDomain`. */
  listen(fd: number, context: number, trustDomain: string, handlers: ServerHandlers): HboneListener {
    const id = this.call(() => this.raw().listen(fd, context, trustDomain))
    const listener = new HboneListener(this, id, handlers)
    this.routes.set(id, listener)
    return listener
  }

  /** Connects `fd` (created and configured by the caller) to `nextHop` and handshakes; the server must prove `expectedIdentity`. */
  openSession(fd: number, nextHop: Address, context: number, expectedIdentity: string): ClientSession {
    const id = this.call(() => this.raw().openSession(fd, nextHop.ip, nextHop.port, context, expectedIdentity))
    const session = new ClientSession(this, id)
    this.routes.set(id, session)
    return session
  }

  stats(): ReturnType<RawHboneEngine['stats']> {
    return this.raw().stats()
  }

  /** Stops the threads; every session and tunnel is closed at once. */
  close(): void {
    if (this.closedEngine) return
    this.closedEngine = true
    this.engine.close()
  }

  /** @internal */
  closeFd(fd: number): void {
    try {
      native().closeFd(fd)
    } catch {
      // already gone
    }
  }

  /** @internal */
  track(id: number, tunnel: Tracked): void {
    this.tunnels.set(id, tunnel)
  }

  /** @internal */
  route(id: number, to: Routed): void {
    this.routes.set(id, to)
  }

  /** @internal */
  unroute(id: number): void {
    this.routes.delete(id)
  }

  private call<T>(fn: () => T): T {
    try {
      return fn()
    } catch (err) {
      throw NativeError.from(err)
    }
  }

  private dispatch(events: RawHboneEvent[]): void {
    for (const e of events) {
      try {
        this.deliver(e)
      } catch (err) {
        this.onError(err)
      }
    }
  }

  private deliver(e: RawHboneEvent): void {
    switch (e.type) {
      case EventType.Response:
        return (this.tunnels.get(e.id) as ClientTunnel | undefined)?.responded(e.status)
      case EventType.Delivered:
        return (this.tunnels.get(e.id) as ServerTunnel | undefined)?.delivered()
      case EventType.DeliveryFailed:
        return (this.tunnels.get(e.id) as ServerTunnel | undefined)?.deliveryFailed(e)
      case EventType.TunnelClosed: {
        const tunnel = this.tunnels.get(e.id)
        this.tunnels.delete(e.id)
        return tunnel?.ended(e)
      }
      case EventType.ServerSession:
      case EventType.Rejected:
      case EventType.Request:
        return (this.routes.get(e.owner) as HboneListener | undefined)?.event(e)
      case EventType.SessionClosed: {
        const target = this.routes.get(e.id) ?? (e.owner ? this.routes.get(e.owner) : undefined)
        if (target instanceof ClientSession) this.routes.delete(e.id)
        return target?.event(e)
      }
      case EventType.SessionReady:
      case EventType.SessionGoaway:
        return (this.routes.get(e.id) as ClientSession | undefined)?.event(e)
      case EventType.ServerClosed:
        return (this.routes.get(e.id) as HboneListener | undefined)?.event(e)
    }
  }
}
