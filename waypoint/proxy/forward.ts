// One try of a request to one backend endpoint, over HTTP/1.1 (a keep-alive
// agent) or h2c (a cached session), with its own deadline. Hop-by-hop headers are
// not forwarded in either direction (RFC 9110 §7.6.1; HTTP/2 forbids them).
import http from 'node:http'
import type http2 from 'node:http2'
import type { Readable } from 'node:stream'
import { AmbientError } from '../../common/errors.js'
import type { RouteRequest } from '../route/request.js'
import type { Endpoint, Upstreams } from './upstream.js'

export type UpstreamProtocol = 'http1' | 'h2c'

export interface UpstreamResponse {
  readonly status: number
  readonly headers: Record<string, string | string[]>
  readonly body: Readable
  /** Resolves with the trailers once the body ended ({} when none came). */
  readonly trailers: Promise<Record<string, string | string[]>>
  /** Aborts the exchange (the client went away, or the request's deadline passed). */
  abort(): void
}

/** Why a try failed without a response, with the Envoy response flag that names it (UF connect failure, UT timeout, UC reset). */
export class ForwardError extends AmbientError<'AMBIENT_ERR_WAYPOINT_UPSTREAM'> {
  constructor(
    readonly flag: 'UF' | 'UT' | 'UC',
    message: string,
    options?: { cause?: unknown },
  ) {
    super('AMBIENT_ERR_WAYPOINT_UPSTREAM', message, options)
  }
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'http2-settings', 'host'])

/** Headers safe to send on: no pseudo-headers, no hop-by-hop ones (nor those the Connection header names). */
export function forwardable(headers: Readonly<Record<string, string | readonly string[] | undefined>>): Record<string, string | string[]> {
  const named = String(headers['connection'] ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean)
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':') || HOP_BY_HOP.has(name) || named.includes(name)) continue
    out[name] = Array.isArray(value) ? [...value] : (value as string)
  }
  return out
}

/**
 * Sends the request and resolves with the response head; the body streams. The
 * deadline covers the wait for the response head (Gateway API backendRequest
 * timeout); a body already buffered is sent whole, else `body` is piped.
 */
export async function forward(
  upstreams: Upstreams,
  endpoint: Endpoint,
  protocol: UpstreamProtocol,
  request: RouteRequest,
  body: Buffer | Readable,
  timeoutMs: number | null,
): Promise<UpstreamResponse> {
  const headers = forwardable(request.headers)
  if (protocol === 'h2c') return forwardH2(await connectOrFail(() => upstreams.h2Session(endpoint)), request, headers, body, timeoutMs)
  return forwardH1(upstreams.http1Agent(endpoint), request, headers, body, timeoutMs)
}

async function connectOrFail<T>(connect: () => Promise<T>): Promise<T> {
  try {
    return await connect()
  } catch (err) {
    throw new ForwardError('UF', `upstream connect failed: ${(err as Error).message}`, { cause: err })
  }
}

function deadline(timeoutMs: number | null, onTimeout: () => void): () => void {
  if (timeoutMs === null) return () => undefined
  const timer = setTimeout(onTimeout, timeoutMs)
  return () => clearTimeout(timer)
}

function forwardH1(
  agent: http.Agent,
  request: RouteRequest,
  headers: Record<string, string | string[]>,
  body: Buffer | Readable,
  timeoutMs: number | null,
): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({ agent, method: request.method, path: request.path, headers: { ...headers, host: request.host }, setHost: false })
    let answered = false
    const cancel = deadline(timeoutMs, () => {
      if (!answered) req.destroy(new ForwardError('UT', `upstream request timeout after ${timeoutMs} ms`))
    })
    req.once('response', (res) => {
      answered = true
      cancel()
      const trailers = new Promise<Record<string, string | string[]>>((done) => {
        res.once('end', () => done({ ...(res.trailers as Record<string, string>) }))
        res.once('close', () => done({}))
      })
      resolve({
        status: res.statusCode ?? 502,
        headers: forwardable(res.headers as Record<string, string | string[]>),
        body: res,
        trailers,
        abort: () => req.destroy(),
      })
    })
    // `on`, not `once`: a destroyed request can emit more than one error (ours, then its socket's).
    req.on('error', (err) => {
      cancel()
      if (!answered) reject(err instanceof ForwardError ? err : new ForwardError('UF', `upstream connection failed: ${err.message}`, { cause: err }))
    })
    sendBody(req, body)
  })
}

function forwardH2(
  session: http2.ClientHttp2Session,
  request: RouteRequest,
  headers: Record<string, string | string[]>,
  body: Buffer | Readable,
  timeoutMs: number | null,
): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    let stream: http2.ClientHttp2Stream
    try {
      stream = session.request({ ...headers, ':method': request.method, ':path': request.path, ':authority': request.host, ':scheme': 'http' })
    } catch (err) {
      reject(new ForwardError('UF', `upstream session unusable: ${(err as Error).message}`, { cause: err }))
      return
    }
    let answered = false
    const cancel = deadline(timeoutMs, () => {
      if (!answered) stream.destroy(new ForwardError('UT', `upstream request timeout after ${timeoutMs} ms`))
    })
    stream.once('response', (head) => {
      answered = true
      cancel()
      const status = Number(head[':status'] ?? 502)
      const trailers = new Promise<Record<string, string | string[]>>((done) => {
        stream.once('trailers', (t) => done(forwardable(t as Record<string, string | string[]>)))
        stream.once('close', () => done({}))
      })
      resolve({ status, headers: forwardable(head as Record<string, string | string[]>), body: stream, trailers, abort: () => stream.close(0x8) })
    })
    stream.on('error', (err) => {
      cancel()
      if (!answered) reject(err instanceof ForwardError ? err : new ForwardError('UF', `upstream stream failed: ${err.message}`, { cause: err }))
    })
    stream.once('close', () => {
      cancel()
      if (!answered) reject(new ForwardError('UC', `upstream reset the stream (code ${stream.rstCode})`))
    })
    sendBody(stream, body)
  })
}

function sendBody(to: NodeJS.WritableStream & { end(chunk?: Buffer): unknown }, body: Buffer | Readable): void {
  if (Buffer.isBuffer(body)) to.end(body.length > 0 ? body : undefined)
  else body.pipe(to)
}
