// A duplex over another stream that lives entirely in JS: writes reach the inner
// stream as Buffers, one write() per chunk, reads are pushed with backpressure,
// and ending, destroying or closing either side carries over.
//
// Why: Node 20's HTTP/1.1 server writing straight into an HTTP/2 stream (an HBONE
// tunnel) sent responses whose first 16 bytes were overwritten (reproduced in 50
// of 50 responses of a 504 written with res.end(body); the bytes looked like a
// freed allocation's list pointers), while the same bytes written as Buffers from
// JS arrive intact. HTTP carried inside HBONE therefore rides this adapter, in the
// waypoint's servers and in its upstream clients.
import { Duplex } from 'node:stream'

export function jsDuplex(inner: Duplex): Duplex {
  const outer = new Duplex({
    read: () => void inner.resume(),
    write: (chunk: Buffer, _encoding, callback) => void inner.write(chunk, callback),
    writev: (chunks, callback) => {
      for (let i = 0; i < chunks.length - 1; i++) inner.write(chunks[i]!.chunk)
      inner.write(chunks[chunks.length - 1]!.chunk, callback)
    },
    final: (callback) => {
      inner.end()
      callback()
    },
    destroy: (err, callback) => {
      inner.destroy(err ?? undefined)
      callback(err)
    },
  })
  inner.on('data', (chunk: Buffer) => {
    if (!outer.push(chunk)) inner.pause()
  })
  inner.once('end', () => outer.push(null))
  inner.once('error', (err) => outer.destroy(err))
  inner.once('close', () => outer.destroy())
  // Timeouts the HTTP stack asks for are the inner stream's to keep.
  ;(outer as Duplex & { setTimeout: (ms: number, cb?: () => void) => Duplex }).setTimeout = (ms: number, cb?: () => void) => {
    ;(inner as Duplex & { setTimeout?: (ms: number, cb?: () => void) => unknown }).setTimeout?.(ms, cb)
    return outer
  }
  return outer
}
