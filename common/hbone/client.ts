// The HBONE client side of one HTTP/2 session: dialing it (TLS 1.3 with the
// source identity's context, the server's SPIFFE id checked), counting its
// streams, closing it when idle, and opening CONNECT streams that resolve on 200.
import http2 from 'node:http2'
import net from 'node:net'
import tls from 'node:tls'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { HboneSessionError, HboneStatusError, HboneStreamError, HboneTimeoutError } from './errors.js'
import { sessionMemoryMb, MAX_FRAME_SIZE } from './flow-control.js'
import { formatAuthority, requestHeaders, type HboneHeaders, type SocketAddress } from './headers.js'
import { expectServerIdentity, HBONE_ALPN } from './tls.js'

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR } = http2.constants

/**
 * nghttp2 (1.57+, the "rapid reset" fix) ends a server session with GOAWAY
 * INTERNAL_ERROR once its peer reset more streams than a token bucket allows
 * (burst 1000, refill 33/s); Node 20 cannot configure that on the server. The
 * client mirrors the bucket per session and retires a session while budget is
 * left, so short-lived reset streams move to a fresh session instead of killing
 * in-flight ones.
 */
const RESET_BURST = 1000
const RESET_RATE_PER_SECOND = 33
const RESET_RESERVE = 200

/** Opens the TCP connection to a next hop (e.g. from a pod's netns, or marked); default net.connect. */
export type Dialer = (request: { readonly nextHop: SocketAddress; readonly sourceIp?: string }) => Promise<net.Socket>

export interface DialSessionOptions {
  readonly nextHop: SocketAddress
  readonly sourceIp?: string
  readonly secureContext: tls.SecureContext
  readonly destinationIdentity: string
  readonly windowSize: number
  readonly timeoutMs: number
  readonly dial?: Dialer
}

function withTimeout<V>(promise: Promise<V>, ms: number, what: string, onTimeout: () => void): Promise<V> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout()
      reject(new HboneTimeoutError(what, ms))
    }, ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

function secureConnect(options: DialSessionOptions, raw: net.Socket | undefined): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      ...(raw ? { socket: raw } : { port: options.nextHop.port }),
      host: options.nextHop.ip,
      secureContext: options.secureContext,
      ALPNProtocols: [HBONE_ALPN],
      rejectUnauthorized: true,
      checkServerIdentity: expectServerIdentity(options.destinationIdentity),
    })
    socket.once('error', reject)
    socket.once('secureConnect', () => {
      socket.off('error', reject)
      socket.setNoDelay(true)
      if (socket.alpnProtocol !== HBONE_ALPN) {
        socket.destroy()
        reject(new Error(`server negotiated alpn ${JSON.stringify(socket.alpnProtocol)}, not ${HBONE_ALPN}`))
      } else resolve(socket)
    })
  })
}

/**
 * Dials one HBONE session; resolves once the server's SETTINGS arrived, which in
 * TLS 1.3 is also the proof that the server accepted our client certificate.
 */
export async function dialSession(options: DialSessionOptions): Promise<http2.ClientHttp2Session> {
  const hop = formatAuthority(options.nextHop)
  let raw: net.Socket | undefined
  let session: http2.ClientHttp2Session | undefined
  const abort = (): void => {
    raw?.destroy()
    session?.destroy()
  }
  const attempt = async (): Promise<http2.ClientHttp2Session> => {
    raw = options.dial ? await options.dial({ nextHop: options.nextHop, sourceIp: options.sourceIp }) : undefined
    const socket = await secureConnect(options, raw)
    session = http2.connect(`https://${hop}`, {
      createConnection: () => socket,
      settings: { initialWindowSize: options.windowSize, enablePush: false, maxFrameSize: MAX_FRAME_SIZE },
      maxSessionMemory: sessionMemoryMb(options.windowSize),
    })
    const ready = session
    return new Promise((resolve, reject) => {
      const fail = (err?: Error): void => reject(err ?? new Error('connection closed before settings (client certificate refused?)'))
      ready.once('error', fail)
      ready.once('close', fail)
      ready.once('connect', () => ready.setLocalWindowSize(options.windowSize))
      ready.once('remoteSettings', () => {
        ready.off('error', fail)
        ready.off('close', fail)
        resolve(ready)
      })
    })
  }
  try {
    return await withTimeout(attempt(), options.timeoutMs, `session to ${hop}`, abort)
  } catch (err) {
    abort()
    throw new HboneSessionError(hop, err)
  }
}

export interface HboneSessionOptions {
  readonly maxStreams: number
  readonly idleTimeoutMs: number
  /** Streams already promised to callers while the session was dialing. */
  readonly reserved: number
  /** Called once when the session stops taking new streams (idle, GOAWAY, error, close). */
  readonly onRetire: (session: HboneSession) => void
  readonly onClose: (session: HboneSession) => void
  readonly log: Logger
}

/** One pooled HTTP/2 session and its stream accounting. */
export class HboneSession {
  private active: number
  private retired = false
  private idleTimer: NodeJS.Timeout | null = null
  private resetTokens = RESET_BURST
  private resetStamp = Date.now()

  constructor(
    readonly session: http2.ClientHttp2Session,
    private readonly options: HboneSessionOptions,
  ) {
    this.active = options.reserved
    session.on('goaway', () => this.retire('goaway'))
    session.on('error', (err) => {
      options.log.debug({ err: err.message }, 'hbone session error')
      this.retire('error')
    })
    session.once('close', () => {
      this.retire('close')
      this.clearIdle()
      options.onClose(this)
    })
    if (this.active === 0) this.armIdle()
  }

  get activeStreams(): number {
    return this.active
  }

  get closed(): boolean {
    return this.retired
  }

  /** Stream limit: ours, or the server's SETTINGS_MAX_CONCURRENT_STREAMS when lower. */
  get capacity(): number {
    return Math.min(this.options.maxStreams, this.session.remoteSettings.maxConcurrentStreams ?? Infinity)
  }

  /** Claims a stream slot; false when full or retired. */
  reserve(): boolean {
    if (this.retired || this.session.destroyed || this.active >= this.capacity) return false
    this.active++
    this.clearIdle()
    return true
  }

  /** Gives back a slot that was reserved but never used for a stream. */
  release(): void {
    this.active--
    if (this.active > 0) return
    if (this.retired) this.closeWhenDone()
    else this.armIdle()
  }

  /** Opens a CONNECT stream on a reserved slot; resolves on 200, rejects with the status otherwise. */
  open(authority: string, headers: HboneHeaders | undefined, timeoutMs: number): Promise<Duplex> {
    let stream: http2.ClientHttp2Stream
    try {
      stream = this.session.request({ ':method': 'CONNECT', ':authority': authority, ...requestHeaders(headers) }, { endStream: false })
    } catch (err) {
      this.release()
      this.retire('request failed')
      return Promise.reject(new HboneStreamError(authority, err))
    }
    stream.once('close', () => {
      const clean = stream.rstCode === NGHTTP2_NO_ERROR && stream.readableEnded && stream.writableFinished
      if (!clean) this.noteReset()
      this.release()
    })
    return new Promise<Duplex>((resolve, reject) => {
      const fail = (err: Error): void => {
        clearTimeout(timer)
        reject(err)
        if (!stream.destroyed) stream.close(NGHTTP2_CANCEL)
      }
      const timer = setTimeout(() => fail(new HboneTimeoutError(`connect to ${authority}`, timeoutMs)), timeoutMs)
      const onError = (err: Error): void => fail(new HboneStreamError(authority, err))
      const onClose = (): void => fail(new HboneStreamError(authority, new Error(`stream closed with code ${stream.rstCode}`)))
      stream.once('error', onError)
      stream.once('close', onClose)
      stream.once('response', (responseHeaders) => {
        stream.off('close', onClose)
        stream.off('error', onError)
        const status = Number(responseHeaders[':status'])
        if (status !== 200) {
          stream.on('error', () => undefined)
          return fail(new HboneStatusError(authority, status))
        }
        clearTimeout(timer)
        // Errors after the 200 belong to the caller; this keeps an unobserved one from crashing the process.
        stream.on('error', (err) => this.options.log.debug({ authority, err: err.message }, 'hbone stream error'))
        resolve(stream)
      })
    })
  }

  /** Stops taking streams; closes once the open ones are done (`force` destroys now). */
  close(force = false): void {
    this.retire('closed')
    if (force) this.session.destroy()
    else if (!this.session.closed) this.session.close()
  }

  private retire(reason: string): void {
    if (this.retired) return
    this.retired = true
    this.clearIdle()
    this.options.log.debug({ reason, active: this.active }, 'hbone session retired')
    this.options.onRetire(this)
    if (this.active === 0) this.closeWhenDone()
  }

  private closeWhenDone(): void {
    if (!this.session.closed && !this.session.destroyed) this.session.close()
  }

  /** Counts a stream that did not end cleanly against the server's reset budget. */
  private noteReset(): void {
    const now = Date.now()
    this.resetTokens = Math.min(RESET_BURST, this.resetTokens + ((now - this.resetStamp) / 1000) * RESET_RATE_PER_SECOND) - 1
    this.resetStamp = now
    if (this.resetTokens < RESET_RESERVE) this.retire('reset budget spent')
  }

  private armIdle(): void {
    if (this.retired || this.idleTimer) return
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null
      if (this.active === 0) this.close()
    }, this.options.idleTimeoutMs)
    this.idleTimer.unref()
  }

  private clearIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer)
    this.idleTimer = null
  }
}
