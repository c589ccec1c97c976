// Copies what a TCP socket reads into a writable without a fresh buffer per read.
//
// Node's default read path allocates a 64 KiB ArrayBuffer for every read and
// shrinks it to the bytes read. At relay rates those buffers are external memory
// V8 must collect: the client-side ztunnel ran a full mark-compact about every
// 120 ms (--trace-gc, "external memory pressure"), 12-15% of its CPU, and bulk
// throughput swung between 140 and 290 MiB/s from run to run.
//
// Here every socket reads through Node's `onread` user buffer, one buffer shared by
// the whole process: libuv allocates, reads and calls back synchronously, so no
// two reads can overlap. Each read is copied into a chunk from a small free list
// and written; the chunk returns to the list when the write completes. An idle
// connection holds no buffer; a busy one holds the chunks its sink has not taken.
// 256 KiB reads measured best (bench/mesh-vs-stunnel.ts; 64 KiB and 1 MiB less).
import net from 'node:net'
import tls from 'node:tls'
import type { Readable, Writable } from 'node:stream'

export const READ_CHUNK_BYTES = 256 * 1024
/** Free chunks kept for reuse; more in flight than this are left to the GC once written. */
const MAX_FREE_CHUNKS = 64

// `onread` is public for sockets Node creates from options, but an accepted
// socket already exists: its user buffer is set the way Node's own constructor
// does, through the symbols that constructor uses (read off a probe socket).
function onreadSymbols(): { readonly buffer: symbol; readonly callback: symbol } {
  const probe = new net.Socket({ onread: { buffer: Buffer.alloc(1), callback: () => true } } as net.SocketConstructorOpts)
  const byName = new Map(Object.getOwnPropertySymbols(probe).map((s) => [s.description, s]))
  probe.destroy()
  const buffer = byName.get('kBuffer')
  const callback = byName.get('kBufferCb')
  if (!buffer || !callback) throw new Error(`this Node (${process.version}) has no onread symbols on net.Socket; socket-pump needs Node 20`)
  return { buffer, callback }
}

const SYMBOLS = onreadSymbols()
const shared = Buffer.allocUnsafeSlow(READ_CHUNK_BYTES)
const free: Buffer[] = []

function takeChunk(): Buffer {
  return free.pop() ?? Buffer.allocUnsafeSlow(READ_CHUNK_BYTES)
}

function giveChunk(chunk: Buffer): void {
  if (free.length < MAX_FREE_CHUNKS) free.push(chunk)
}

interface UserBufferHandle {
  useUserBuffer(buffer: Uint8Array): void
}

/**
 * Reads `source` until EOF and writes everything to `sink`, ending it on EOF
 * (TCP half-close). Pauses while the sink is full (write returned false) until it
 * drains. `onBytes` sees each read's length. Errors and closes are the caller's to
 * handle, as with `pipe`.
 */
export function pumpSocket(source: net.Socket, sink: Writable, onBytes: (bytes: number) => void): void {
  const handle = (source as unknown as { _handle: UserBufferHandle | null })._handle
  if (!handle) throw new Error('pumpSocket: the source socket has no handle (not connected or already closed)')
  // Data read before the switch, still buffered in the readable side, goes first.
  const early: Buffer[] = []
  for (let chunk = source.read() as Buffer | null; chunk !== null; chunk = source.read() as Buffer | null) early.push(chunk)

  let waitingForDrain = false
  const onDrain = (): void => {
    waitingForDrain = false
    source.resume()
  }
  const write = (chunk: Buffer, done?: () => void): void => {
    onBytes(chunk.length)
    if (!sink.write(chunk, done) && !waitingForDrain) {
      waitingForDrain = true
      source.pause()
      sink.once('drain', onDrain)
    }
  }
  const fields = source as unknown as Record<symbol, unknown>
  fields[SYMBOLS.buffer] = shared
  fields[SYMBOLS.callback] = (bytes: number, buffer: Buffer): boolean => {
    const chunk = takeChunk()
    buffer.copy(chunk, 0, 0, bytes)
    write(chunk.subarray(0, bytes), () => giveChunk(chunk))
    return !waitingForDrain
  }
  handle.useUserBuffer(shared)
  for (const chunk of early) write(chunk)
  source.once('end', () => sink.end())
  // Flowing mode: reads start, and EOF is delivered as 'end'.
  if (!waitingForDrain) source.resume()
}

/** `pumpSocket` for a plain TCP socket; anything else (TLS, HTTP/2 streams) is piped. */
export function pump(from: Readable, to: Writable, onBytes: (bytes: number) => void): void {
  if (from instanceof net.Socket && !(from instanceof tls.TLSSocket)) return pumpSocket(from, to, onBytes)
  from.on('data', (chunk: Buffer) => onBytes(chunk.length))
  from.pipe(to)
}
