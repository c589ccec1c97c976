// The waypoint's HBONE listener (port 15008): mutual TLS with the waypoint's own
// certificate, one CONNECT stream per client connection, addressed to a service
// VIP (or a workload IP) that uses this waypoint; anything else gets 503. Each
// stream is handed over by the protocol inside it: HTTP/1.1 and h2c to Node's
// own parsers and the request pipeline, anything else to the TCP relay.
import http from 'node:http'
import http2 from 'node:http2'
import type { Duplex } from 'node:stream'
import { jsDuplex } from '../../common/net/js-duplex.js'
import type { Logger } from 'pino'
import { HboneServer, type ConnectionInfo } from '../../common/hbone/server.js'
import type { PipeResult } from '../../common/hbone/pipe.js'
import type { IdentityCredentials } from '../../common/hbone/tls.js'
import type { WaypointMetrics } from '../metrics.js'
import type { WaypointState, WaypointTarget } from '../state.js'
import type { HttpHandler } from './http-handler.js'
import { declaredProtocol, detectProtocol, type InnerProtocol } from './protocol.js'
import type { TcpHandler } from './tcp-handler.js'

export interface TunnelOptions {
  readonly credentials: IdentityCredentials
  readonly trustDomain: string
  readonly state: () => WaypointState
  readonly http: HttpHandler
  readonly tcp: TcpHandler
  readonly metrics: WaypointMetrics
  readonly log: Logger
}

/** Envoy's HTTP connection manager keeps an idle downstream connection an hour. */
const IDLE_TIMEOUT_MS = 3_600_000

export function createTunnelServer(options: TunnelOptions): HboneServer<WaypointTarget> {
  return new HboneServer<WaypointTarget>({
    credentials: options.credentials,
    trustDomain: options.trustDomain,
    resolveTarget: (destination) => options.state().target(destination),
    handleStream: (stream, target, info) => serveStream(options, stream, target, info),
    log: options.log,
  })
}

async function serveStream(options: TunnelOptions, stream: http2.ServerHttp2Stream, target: WaypointTarget, info: ConnectionInfo): Promise<PipeResult> {
  const declared = target.kind === 'service' ? declaredProtocol(target.port) : null
  const { protocol, leftover } = await detectProtocol(stream, declared)
  options.log.debug({ id: info.id, authority: info.authority, declared, protocol }, 'tunnel protocol')
  // Counted from here: the sniffed bytes were put back and are read again.
  const counted = countBytes(stream)
  options.metrics.activeStreams.inc({ protocol })
  try {
    if (protocol === 'tcp') return await options.tcp.handle(stream, target, info, leftover)
    await serveHttp(options, stream, target, info, protocol)
    return { ...counted(), error: null }
  } finally {
    options.metrics.activeStreams.dec({ protocol })
  }
}

/** Runs Node's HTTP/1.1 or h2c server over the stream until the stream closes. */
function serveHttp(
  options: TunnelOptions,
  stream: Duplex,
  target: WaypointTarget,
  info: ConnectionInfo,
  protocol: Exclude<InnerProtocol, 'tcp'>,
): Promise<void> {
  return new Promise((resolve) => {
    stream.once('close', () => resolve())
    if (protocol === 'http1') {
      const server = http.createServer({ keepAliveTimeout: IDLE_TIMEOUT_MS, requestTimeout: 0 }, (req, res) =>
        options.http.handle(req, res, target, info, 'http1'),
      )
      server.on('clientError', (err, socket) => {
        options.log.debug({ err: err.message, source: info.peerIdentity }, 'malformed HTTP/1.1 in a tunnel')
        // Node answers 400 on a parse error when it can; the stream is closed either way.
        if (!socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
      })
      // Through a JS adapter: Node's HTTP/1.1 server writing into an HTTP/2 stream corrupts bytes (js-duplex.ts).
      server.emit('connection', jsDuplex(stream))
    } else {
      const server = http2.createServer({}, (req, res) => options.http.handle(req, res, target, info, 'h2c'))
      server.on('sessionError', (err) => options.log.debug({ err: err.message, source: info.peerIdentity }, 'malformed h2c in a tunnel'))
      server.on('session', (session) => {
        session.setTimeout(IDLE_TIMEOUT_MS, () => session.close())
        session.once('close', () => stream.destroy())
      })
      server.emit('connection', jsDuplex(stream))
    }
  })
}

/** Counts the bytes that cross a stream, both ways. */
function countBytes(stream: Duplex): () => { received: number; sent: number } {
  let received = 0
  let sent = 0
  stream.on('data', (chunk: Buffer) => (received += chunk.length))
  const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean
  stream.write = ((chunk: unknown, ...rest: unknown[]) => {
    sent += typeof chunk === 'string' ? Buffer.byteLength(chunk) : ((chunk as Buffer).length ?? 0)
    return write(chunk, ...rest)
  }) as typeof stream.write
  return () => ({ received, sent })
}
