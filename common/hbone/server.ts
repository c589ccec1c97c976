// The HBONE server (ztunnel inbound and the waypoint, port 15008): mutual TLS 1.3
// + HTTP/2, one CONNECT stream per proxied TCP connection. A stream gets 200 only
// once its authority parsed, its target resolved and policy allowed it, and then,
// in relay mode (connectUpstream), once the upstream connect succeeded, after which
// bytes flow both ways (pipe.ts); in stream mode (handleStream) the stream itself
// is handed to other code (the waypoint parses HTTP inside it).
import http2 from 'node:http2'
import type net from 'node:net'
import tls from 'node:tls'
import type { Logger } from 'pino'
import { silentLogger } from '../log.js'
import { HboneBadMethodError, HboneClosedError, HboneDeniedError, HboneTimeoutError, HboneUpstreamError, statusFor, type HboneOutcome } from './errors.js'
import { isTraceparent, generateTraceparent, parseAuthority, parseForwardedFor, type SocketAddress } from './headers.js'
import { pipeStream, type PipeResult } from './pipe.js'
import { DEFAULT_WINDOW, sessionMemoryMb, MAX_FRAME_SIZE } from './flow-control.js'
import { listenTls, type HboneListen, type RejectReason } from './server-listener.js'
import { contextOptions, HBONE_ALPN, peerIdentity, trustDomainOf, type IdentityCredentials } from './tls.js'

export type { HboneListen, RejectReason }

/** What the server knows about one CONNECT stream, handed to every hook. */
export interface ConnectionInfo {
  /** Server-wide sequence number, for correlating logs. */
  readonly id: number
  /** SPIFFE id of the client certificate. */
  readonly peerIdentity: string
  /** The TCP peer of the HBONE connection. */
  readonly peerAddress: SocketAddress
  /** The address the HBONE connection arrived at. */
  readonly localAddress: SocketAddress
  /** The original client: the `forwarded` header's `for=` when present, else the TCP peer. */
  readonly sourceIp: string
  /** The parsed `:authority`. */
  readonly destination: SocketAddress
  readonly authority: string
  readonly forwarded?: string
  readonly baggage?: string
  /** The request's traceparent, or a generated one when it sent none (or an invalid one). */
  readonly traceparent: string
}

export interface AuthorizationDecision {
  readonly allowed: boolean
  /** Name of the deciding policy, for logs and the 401 record. */
  readonly policy?: string
}

export interface StreamRecord<T> {
  readonly id: number
  readonly peerIdentity: string
  readonly authority: string | undefined
  /** Null when the request was rejected before its authority parsed. */
  readonly info: ConnectionInfo | null
  readonly target: T | null
  readonly status: number
  readonly outcome: HboneOutcome
  /** Bytes source → destination (Istio's `received`). */
  readonly received: number
  /** Bytes destination → source (Istio's `sent`). */
  readonly sent: number
  readonly durationMs: number
  readonly error: Error | null
}

export interface SessionInfo {
  readonly peerIdentity: string
  readonly peerAddress: SocketAddress
}

/** Metrics hooks; every callback is optional and must not throw (errors are logged and dropped). */
export interface HboneServerObserver<T> {
  connectionRejected?(event: { readonly reason: RejectReason; readonly peerAddress: SocketAddress | null; readonly error?: Error }): void
  sessionOpened?(session: SessionInfo): void
  sessionClosed?(session: SessionInfo): void
  /** A stream was answered 200 and now carries bytes. */
  streamOpened?(info: ConnectionInfo, target: T): void
  /** Every stream, accepted or not, once it is over. */
  streamClosed?(record: StreamRecord<T>): void
}

export interface HboneServerOptions<T> {
  /** This listener's identity (the local workload's certificate) and the mesh trust bundle. */
  readonly credentials: IdentityCredentials
  /** Client certificates must carry a SPIFFE id of this trust domain. */
  readonly trustDomain: string
  /** Maps the authority to a local target; throw HboneNotLocalError (400) or HboneUnknownDestinationError (503). */
  readonly resolveTarget: (destination: SocketAddress, info: ConnectionInfo) => T | Promise<T>
  /** Policy; absent means allow. */
  readonly authorize?: (info: ConnectionInfo, target: T) => AuthorizationDecision | Promise<AuthorizationDecision>
  /** Relay mode: opens the TCP connection to the target (the socket is switched to allowHalfOpen). */
  readonly connectUpstream?: (target: T, info: ConnectionInfo) => Promise<net.Socket>
  /**
   * Stream mode, instead of connectUpstream: called after the 200 with the open
   * stream, a Duplex of the tunnelled bytes; resolves with the bytes counted when
   * the stream is over (its error, if any, is logged and recorded, not thrown).
   */
  readonly handleStream?: (stream: http2.ServerHttp2Stream, target: T, info: ConnectionInfo) => Promise<PipeResult>
  readonly observer?: HboneServerObserver<T>
  readonly log?: Logger
  readonly handshakeTimeoutMs?: number
  readonly upstreamTimeoutMs?: number
  /** HTTP/2 stream and connection receive windows, bytes. */
  readonly windowSize?: number
  readonly maxConcurrentStreams?: number
}

const { NGHTTP2_NO_ERROR } = http2.constants

function address(ip: string | undefined, port: number | undefined): SocketAddress {
  return { ip: (ip ?? '').replace(/^::ffff:(?=\d+\.)/, ''), port: port ?? 0 }
}

function one(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

export class HboneServer<T> {
  private readonly log: Logger
  private readonly tlsServer: tls.Server
  private readonly sessions = new Set<http2.ServerHttp2Session>()
  private readonly rawSockets = new Set<net.Socket>()
  private detach: (() => Promise<void>) | null = null
  private bound: SocketAddress | null = null
  private nextId = 1
  private stopped = false
  /** Streams open now (what a drain waits for). */
  private active = 0
  private draining = false

  constructor(private readonly options: HboneServerOptions<T>) {
    if ((options.connectUpstream === undefined) === (options.handleStream === undefined)) {
      throw new TypeError('HboneServer needs exactly one of connectUpstream (relay mode) and handleStream (stream mode)')
    }
    this.log = (options.log ?? silentLogger()).child({ component: 'hbone-server' })
    this.tlsServer = tls.createServer({
      ...contextOptions(options.credentials),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: [HBONE_ALPN],
      handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
    })
    this.tlsServer.on('connection', (socket: net.Socket) => {
      socket.setNoDelay(true)
      this.rawSockets.add(socket)
      socket.once('close', () => this.rawSockets.delete(socket))
    })
    this.tlsServer.on('tlsClientError', (err, socket) => {
      this.reject('tls', address(socket.remoteAddress, socket.remotePort), err)
    })
    this.tlsServer.on('secureConnection', (socket) => this.onSecureConnection(socket))
  }

  /** Starts serving on a new listener, a listening fd, or an existing net.Server's connections. */
  async start(listen: HboneListen): Promise<SocketAddress> {
    if (this.stopped) throw new HboneClosedError('hbone server')
    const { bound, detach } = await listenTls(this.tlsServer, listen)
    this.bound = bound
    this.detach = detach
    this.log.info({ address: bound }, 'hbone server listening')
    return bound
  }

  address(): SocketAddress | null {
    return this.bound
  }

  /** Replaces this listener's certificate (rotation); new handshakes use it. */
  updateCredentials(credentials: IdentityCredentials): void {
    this.tlsServer.setSecureContext(contextOptions(credentials))
  }

  /**
   * Stops accepting; with `drainMs`, open sessions first get a GOAWAY shutdown notice
   * (the peer opens no new streams here) and up to drainMs for their peers to finish
   * their streams and close them; then every session left is destroyed.
   */
  async stop(options: { readonly drainMs?: number } = {}): Promise<void> {
    this.stopped = true
    const closing = this.detach?.()
    this.detach = null
    const drainMs = options.drainMs ?? 0
    if (drainMs > 0) {
      this.draining = true
      // The highest stream id (RFC 9113 6.8): a stream the peer sent meanwhile is not refused.
      for (const session of this.sessions) if (!session.destroyed) session.goaway(http2.constants.NGHTTP2_NO_ERROR, 2 ** 31 - 1)
      const deadline = Date.now() + drainMs
      while ((this.sessions.size > 0 || this.active > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      if (this.sessions.size > 0)
        this.log.info({ sessions: this.sessions.size, streams: this.active }, 'hbone drain deadline reached: closing the open sessions')
    }
    await Promise.all(
      [...this.sessions].map(
        (session) =>
          new Promise<void>((resolve) => {
            if (session.destroyed) return resolve()
            session.once('close', () => resolve())
            session.destroy()
          }),
      ),
    )
    for (const socket of this.rawSockets) socket.destroy()
    await closing
    this.log.info('hbone server stopped')
  }

  private reject(reason: RejectReason, peer: SocketAddress | null, error?: Error): void {
    this.log.debug({ reason, peer, err: error?.message }, 'hbone connection rejected')
    this.notify(() => this.options.observer?.connectionRejected?.({ reason, peerAddress: peer, error }))
  }

  private notify(call: () => void): void {
    try {
      call()
    } catch (err) {
      this.log.warn({ err }, 'hbone observer threw')
    }
  }

  private onSecureConnection(socket: tls.TLSSocket): void {
    const peer = address(socket.remoteAddress, socket.remotePort)
    if (this.stopped && !this.draining) return void socket.destroy()
    if (socket.alpnProtocol !== HBONE_ALPN) {
      this.reject('alpn', peer)
      return void socket.destroy()
    }
    const identity = peerIdentity(socket)
    if (identity === null) {
      this.reject('identity', peer)
      return void socket.destroy()
    }
    if (trustDomainOf(identity) !== this.options.trustDomain) {
      this.reject('trust_domain', peer, new Error(`peer ${identity} is not in trust domain ${this.options.trustDomain}`))
      return void socket.destroy()
    }
    const local = address(socket.localAddress, socket.localPort)
    const windowSize = this.options.windowSize ?? DEFAULT_WINDOW
    const session = http2.performServerHandshake(socket, {
      settings: { initialWindowSize: windowSize, maxConcurrentStreams: this.options.maxConcurrentStreams ?? 1000, maxFrameSize: MAX_FRAME_SIZE },
      maxSessionMemory: sessionMemoryMb(windowSize),
    })
    session.setLocalWindowSize(windowSize)
    const info: SessionInfo = { peerIdentity: identity, peerAddress: peer }
    this.sessions.add(session)
    // Handshaken while draining: told at once, like the sessions that were open then.
    if (this.draining) session.goaway(http2.constants.NGHTTP2_NO_ERROR, 2 ** 31 - 1)
    this.notify(() => this.options.observer?.sessionOpened?.(info))
    session.on('error', (err) => this.log.debug({ err: err.message, peer: identity }, 'hbone session error'))
    session.on('close', () => {
      // Node ends the socket gracefully; a peer that never reads must not keep it open.
      if (!socket.destroyed) setTimeout(() => socket.destroy(), 1000).unref()
      this.sessions.delete(session)
      this.notify(() => this.options.observer?.sessionClosed?.(info))
    })
    session.on('stream', (stream, headers) => {
      this.active += 1
      stream.once('close', () => (this.active -= 1))
      void this.onStream(stream, headers, { identity, peer, local })
    })
  }

  private async onStream(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    conn: { readonly identity: string; readonly peer: SocketAddress; readonly local: SocketAddress },
  ): Promise<void> {
    const id = this.nextId++
    const started = Date.now()
    const authority = one(headers[':authority'])
    let info: ConnectionInfo | null = null
    let target: T | null = null
    let upstream: net.Socket | null = null
    stream.on('error', (err) => this.log.debug({ id, err: err.message }, 'hbone stream error'))
    const record = (status: number, outcome: HboneOutcome, bytes: { received: number; sent: number }, error: Error | null): void => {
      const durationMs = Date.now() - started
      this.notify(() =>
        this.options.observer?.streamClosed?.({ id, peerIdentity: conn.identity, authority, info, target, status, outcome, ...bytes, durationMs, error }),
      )
    }
    try {
      const method = one(headers[':method'])
      if (method !== 'CONNECT') throw new HboneBadMethodError(method)
      const destination = parseAuthority(authority)
      const forwarded = one(headers.forwarded)
      const traceparent = one(headers.traceparent)
      info = {
        id,
        peerIdentity: conn.identity,
        peerAddress: conn.peer,
        localAddress: conn.local,
        sourceIp: parseForwardedFor(forwarded) ?? conn.peer.ip,
        destination,
        authority: authority!,
        ...(forwarded !== undefined && { forwarded }),
        ...(headers.baggage !== undefined && { baggage: one(headers.baggage) }),
        traceparent: isTraceparent(traceparent) ? traceparent : generateTraceparent(),
      }
      target = await this.options.resolveTarget(destination, info)
      const decision = this.options.authorize ? await this.options.authorize(info, target) : { allowed: true }
      if (!decision.allowed) throw new HboneDeniedError(info.authority, conn.identity, decision.policy)
      if (this.options.connectUpstream) upstream = await this.connectUpstream(this.options.connectUpstream, target, info, stream)
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err))
      const { status, outcome } = statusFor(error)
      this.log.debug({ id, peer: conn.identity, authority, status, err: error.message }, 'hbone stream refused')
      if (!stream.closed && !stream.destroyed) {
        stream.respond({ ':status': status }, { endStream: true })
        stream.resume()
        stream.close(NGHTTP2_NO_ERROR)
      }
      record(status, outcome, { received: 0, sent: 0 }, error)
      return
    }
    stream.respond({ ':status': 200 })
    this.log.debug({ id, peer: conn.identity, authority, source: info.sourceIp }, 'hbone stream open')
    this.notify(() => this.options.observer?.streamOpened?.(info!, target!))
    const result = upstream !== null ? await pipeStream(stream, upstream) : await this.handOver(stream, target, info)
    this.log.debug({ id, received: result.received, sent: result.sent, err: result.error?.message }, 'hbone stream closed')
    record(200, 'ok', result, result.error)
  }

  /** Stream mode: the handler owns the stream until it is over; a handler that throws resets it. */
  private async handOver(stream: http2.ServerHttp2Stream, target: T, info: ConnectionInfo): Promise<PipeResult> {
    try {
      return await this.options.handleStream!(stream, target, info)
    } catch (err) {
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)
      return { received: 0, sent: 0, error: err instanceof Error ? err : new Error(String(err)) }
    }
  }

  /** Connects upstream with a timeout; a socket arriving after the stream went away is destroyed. */
  private async connectUpstream(
    connect: (target: T, info: ConnectionInfo) => Promise<net.Socket>,
    target: T,
    info: ConnectionInfo,
    stream: http2.ServerHttp2Stream,
  ): Promise<net.Socket> {
    const timeoutMs = this.options.upstreamTimeoutMs ?? 10_000
    const pending = connect(target, info)
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new HboneTimeoutError(`upstream connect to ${info.authority}`, timeoutMs)), timeoutMs)
    })
    try {
      const socket = await Promise.race([pending, timeout])
      if (stream.closed || stream.destroyed || this.stopped) {
        socket.destroy()
        throw new HboneClosedError(`hbone stream ${info.id}`)
      }
      return socket
    } catch (err) {
      void pending.then(
        (late) => late.destroy(),
        () => undefined,
      )
      if (err instanceof HboneClosedError) throw err
      throw new HboneUpstreamError(info.authority, err)
    } finally {
      clearTimeout(timer)
    }
  }
}
