// Copies bytes both ways between an HTTP/2 CONNECT stream and a TCP socket, the
// way RFC 9113 §8.5 asks: END_STREAM <-> FIN (half-close), a TCP error or reset
// becomes RST_STREAM(CONNECT_ERROR), and a stream reset resets the TCP socket.
import http2 from 'node:http2'
import type net from 'node:net'
import { abortSocket } from '../net/relay.js'
import { pump } from '../net/socket-pump.js'

const { NGHTTP2_CONNECT_ERROR, NGHTTP2_NO_ERROR } = http2.constants

export interface PipeResult {
  /** Bytes from the stream (the HBONE client) to the socket: source → destination. */
  readonly received: number
  /** Bytes from the socket to the stream: destination → source. */
  readonly sent: number
  readonly error: Error | null
}

export function pipeStream(stream: http2.Http2Stream, socket: net.Socket): Promise<PipeResult> {
  return new Promise((resolve) => {
    let received = 0
    let sent = 0
    let error: Error | null = null
    let closed = 0
    const onClosed = (): void => {
      if (++closed === 2) resolve({ received, sent, error })
    }
    // Half-close needs the socket to stay writable after the destination's FIN.
    socket.allowHalfOpen = true
    pump(stream, socket, (n) => (received += n))
    pump(socket, stream, (n) => (sent += n))

    socket.on('error', (err) => {
      error ??= err
      if (!stream.closed && !stream.destroyed) stream.close(NGHTTP2_CONNECT_ERROR)
    })
    stream.on('error', (err) => {
      error ??= err
    })
    socket.on('close', (hadError) => {
      // A socket that went away without a clean FIN in both directions.
      if ((hadError || !socket.readableEnded) && !stream.closed && !stream.destroyed) stream.close(NGHTTP2_CONNECT_ERROR)
      onClosed()
    })
    // RST_STREAM (any code, NO_ERROR included) while our side was still open: Node
    // emits 'aborted' before it ends the readable side, so reset before a FIN goes out.
    stream.on('aborted', () => {
      error ??= new Error(`hbone stream reset by the client (code ${stream.rstCode})`)
      abortSocket(socket)
    })
    stream.on('close', () => {
      const clean = stream.rstCode === NGHTTP2_NO_ERROR && stream.readableEnded
      if (!clean) abortSocket(socket)
      onClosed()
    })
  })
}
