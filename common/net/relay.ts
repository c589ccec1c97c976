// Copies bytes both ways between two sockets with TCP half-close, counting them.
// An error or reset on either side destroys the other: a broken connection is
// never left half-open.
import type net from 'node:net'
import type { Duplex } from 'node:stream'
import { pump } from './socket-pump.js'

export interface RelayResult {
  /** Bytes from `downstream` to `upstream`. */
  readonly sent: number
  /** Bytes from `upstream` to `downstream`. */
  readonly received: number
  readonly error: Error | null
}

export function relay(downstream: Duplex, upstream: Duplex): Promise<RelayResult> {
  return new Promise((resolve) => {
    let sent = 0
    let received = 0
    let error: Error | null = null
    let closed = 0
    const onClose = (): void => {
      if (++closed === 2) resolve({ sent, received, error })
    }
    const fail = (err: Error): void => {
      error ??= err
      downstream.destroy()
      upstream.destroy()
    }
    pump(downstream, upstream, (n) => (sent += n))
    pump(upstream, downstream, (n) => (received += n))
    downstream.on('error', fail)
    upstream.on('error', fail)
    // A side that closes without ending cleanly (reset) takes the other with it.
    downstream.on('close', () => {
      if (!downstream.readableEnded) upstream.destroy()
      onClose()
    })
    upstream.on('close', () => {
      if (!upstream.readableEnded) downstream.destroy()
      onClose()
    })
  })
}

/**
 * Closes a socket with a TCP RST. libuv refuses a reset once a FIN was queued
 * (Node then emits 'error' and never 'close'), so a socket already ended is
 * destroyed plainly.
 */
export function abortSocket(socket: net.Socket): void {
  if (socket.destroyed) return
  if (socket.writableEnded) socket.destroy()
  else socket.resetAndDestroy()
}
