// A pod's HBONE server on the native engine (--hbone-engine native): the engine
// does TLS (the client certificate checked against the mesh roots and the trust
// domain), HTTP/2 and the relay; each CONNECT's headers come here, and this code
// makes the decisions common/hbone/server.ts makes (method, authority, target,
// policy), answers 4xx/5xx through the engine, or has it connect the delivery
// socket and answer 200. Same options and observer as HboneServer, except that
// the upstream is connected by `deliver` through the tunnel.
import type { Logger } from 'pino'
import { silentLogger } from '../../common/log.js'
import { HboneBadMethodError, HboneClosedError, HboneDeniedError, statusFor, type HboneOutcome } from '../../common/hbone/errors.js'
import { generateTraceparent, isTraceparent, parseAuthority, parseForwardedFor, type SocketAddress } from '../../common/hbone/headers.js'
import type { AuthorizationDecision, ConnectionInfo, HboneServerObserver } from '../../common/hbone/server.js'
import type { IdentityCredentials } from '../../common/hbone/tls.js'
import type { HboneEngine, HboneListener, HboneRequest, ServerSessionInfo, ServerTunnel } from '../../native/hbone.js'

export interface NativeHboneServerOptions<T> {
  readonly engine: HboneEngine
  readonly credentials: IdentityCredentials
  readonly trustDomain: string
  readonly resolveTarget: (destination: SocketAddress, info: ConnectionInfo) => T | Promise<T>
  readonly authorize?: (info: ConnectionInfo, target: T) => AuthorizationDecision | Promise<AuthorizationDecision>
  /** Connects the delivery socket through `tunnel.deliver`; the engine answers 200 once it is connected. */
  readonly deliver: (tunnel: ServerTunnel, target: T, info: ConnectionInfo) => Promise<void>
  readonly observer?: HboneServerObserver<T>
  readonly log?: Logger
}

export class NativeHboneServer<T> {
  private readonly log: Logger
  private listener: HboneListener | null = null
  private context: number
  private nextId = 1
  private stopped = false
  /** Streams accepted and not yet closed (what a drain waits for). */
  private active = 0

  constructor(private readonly options: NativeHboneServerOptions<T>) {
    this.log = (options.log ?? silentLogger()).child({ component: 'hbone-server', engine: 'native' })
    this.context = options.engine.createContext('server', options.credentials)
  }

  /** Serves on a listening fd (the engine owns it from now on). */
  async start(listen: { readonly kind: 'fd'; readonly fd: number }): Promise<void> {
    if (this.stopped) throw new HboneClosedError('hbone server')
    const { observer } = this.options
    this.listener = this.options.engine.listen(listen.fd, this.context, this.options.trustDomain, {
      onSession: (s) => this.notify(() => observer?.sessionOpened?.({ peerIdentity: s.peerIdentity, peerAddress: s.peer })),
      onRejected: (r) => {
        this.log.debug({ reason: r.reason, peer: r.peer, err: r.message }, 'hbone connection rejected')
        this.notify(() => observer?.connectionRejected?.({ reason: r.reason, peerAddress: r.peer, error: new Error(r.message) }))
      },
      onRequest: (tunnel, request, session) => void this.onRequest(tunnel, request, session),
    })
    this.log.debug('hbone server listening') // one per pod: 'workload captured' says it at info
  }

  /** Rotation: new handshakes use these credentials; open sessions keep theirs. */
  updateCredentials(credentials: IdentityCredentials): void {
    const next = this.options.engine.createContext('server', credentials)
    this.listener?.setContext(next)
    this.options.engine.releaseContext(this.context)
    this.context = next
  }

  /**
   * Stops listening and closes every session; with `drainMs`, sessions first get a
   * GOAWAY shutdown notice, and up to drainMs for their peers to finish their streams
   * and close them (an HBONE client retires a session on GOAWAY and closes it once idle).
   */
  async stop(options: { readonly drainMs?: number } = {}): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    const drainMs = options.drainMs ?? 0
    if (drainMs > 0 && this.listener) {
      await this.listener.drain()
      const deadline = Date.now() + drainMs
      const listener = this.listener
      while ((listener.openSessions > 0 || this.active > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      if (listener.openSessions > 0)
        this.log.info({ sessions: listener.openSessions, streams: this.active }, 'hbone drain deadline reached: closing the open sessions')
    }
    await this.listener?.close()
    this.listener = null
    this.options.engine.releaseContext(this.context)
    this.log.debug('hbone server stopped') // one per pod: 'workload released' says it at info
  }

  private notify(call: () => void): void {
    try {
      call()
    } catch (err) {
      this.log.warn({ err }, 'hbone observer threw')
    }
  }

  private async onRequest(tunnel: ServerTunnel, request: HboneRequest, session: ServerSessionInfo): Promise<void> {
    this.active += 1
    try {
      await this.serve(tunnel, request, session)
    } finally {
      this.active -= 1
    }
  }

  private async serve(tunnel: ServerTunnel, request: HboneRequest, session: ServerSessionInfo): Promise<void> {
    const id = this.nextId++
    const started = Date.now()
    const { authority } = request
    let info: ConnectionInfo | null = null
    let target: T | null = null
    const record = (status: number, outcome: HboneOutcome, bytes: { received: number; sent: number }, error: Error | null): void => {
      const durationMs = Date.now() - started
      this.notify(() =>
        this.options.observer?.streamClosed?.({
          id,
          peerIdentity: session.peerIdentity,
          authority,
          info,
          target,
          status,
          outcome,
          ...bytes,
          durationMs,
          error,
        }),
      )
    }
    try {
      if (request.method !== 'CONNECT') throw new HboneBadMethodError(request.method)
      const destination = parseAuthority(authority)
      info = {
        id,
        peerIdentity: session.peerIdentity,
        peerAddress: session.peer,
        localAddress: session.local,
        sourceIp: parseForwardedFor(request.forwarded) ?? session.peer.ip,
        destination,
        authority,
        ...(request.forwarded !== undefined && { forwarded: request.forwarded }),
        ...(request.baggage !== undefined && { baggage: request.baggage }),
        traceparent: isTraceparent(request.traceparent) ? request.traceparent : generateTraceparent(),
      }
      target = await this.options.resolveTarget(destination, info)
      const decision = this.options.authorize ? await this.options.authorize(info, target) : { allowed: true }
      if (!decision.allowed) throw new HboneDeniedError(authority, session.peerIdentity, decision.policy)
      await this.options.deliver(tunnel, target, info)
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err))
      const { status, outcome } = statusFor(error)
      this.log.debug({ id, peer: session.peerIdentity, authority, status, err: error.message }, 'hbone stream refused')
      tunnel.reject(status)
      record(status, outcome, { received: 0, sent: 0 }, error)
      return
    }
    this.log.debug({ id, peer: session.peerIdentity, authority, source: info.sourceIp }, 'hbone stream open')
    this.notify(() => this.options.observer?.streamOpened?.(info!, target!))
    const result = await tunnel.closed
    const error = result.message ? new Error(result.message) : null
    this.log.debug({ id, received: result.received, sent: result.sent, err: result.message || undefined }, 'hbone stream closed')
    record(200, 'ok', { received: result.received, sent: result.sent }, error)
  }
}
