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
 * Writes handed to a sink but not completed, per direction, before its source
 * pauses. A socket's or HTTP/2 stream's own high-water mark (16 KiB) is smaller
 * than one read: pausing on it would stop and restart reading (two epoll_ctl
 * calls) after every chunk.
 */
export const PAUSE_BYTES = 1024 * 1024

/** Pauses `source` while `sink` holds PAUSE_BYTES or more; resumes once it drained. */
function backpressure(source: Readable, sink: Writable): { readonly paused: () => boolean; readonly check: () => void } {
  let paused = false
  const onDrain = (): void => {
    paused = false
    source.resume()
  }
  return {
    paused: () => paused,
    check: () => {
      // A write that filled the sink past its high-water mark returned false, so 'drain' will come.
      if (paused || sink.writableLength < PAUSE_BYTES) return
      paused = true
      source.pause()
      sink.once('drain', onDrain)
    },
  }
}

/**
 * Reads `source` until EOF and writes everything to `sink`, ending it on EOF
 * (TCP half-close). `onBytes` sees each read's length. Errors and closes are the
 * caller's to handle, as with `pipe`.
 */
export function pumpSocket(source: net.Socket, sink: Writable, onBytes: (bytes: number) => void): void {
  const handle = (source as unknown as { _handle: UserBufferHandle | null })._handle
  if (!handle) throw new Error('pumpSocket: the source socket has no handle (not connected or already closed)')
  // Data read before the switch, still buffered in the readable side, goes first.
  const early: Buffer[] = []
  for (let chunk = source.read() as Buffer | null; chunk !== null; chunk = source.read() as Buffer | null) early.push(chunk)

  const flow = backpressure(source, sink)
  const write = (chunk: Buffer, done?: () => void): void => {
    onBytes(chunk.length)
    sink.write(chunk, done)
    flow.check()
  }
  const fields = source as unknown as Record<symbol, unknown>
  fields[SYMBOLS.buffer] = shared
  fields[SYMBOLS.callback] = (bytes: number, buffer: Buffer): boolean => {
    const chunk = takeChunk()
    buffer.copy(chunk, 0, 0, bytes)
    write(chunk.subarray(0, bytes), () => giveChunk(chunk))
    return !flow.paused()
  }
  handle.useUserBuffer(shared)
  for (const chunk of early) write(chunk)
  source.once('end', () => sink.end())
  // Flowing mode: reads start, and EOF is delivered as 'end'.
  if (!flow.paused()) source.resume()
}

/**
 * Copies a readable (an HTTP/2 stream) into a TCP socket, one write per event-loop
 * turn: the stream hands over each TLS record's worth (16 KiB, often split in
 * two at frame boundaries) as its own chunk, and writing each at once cost a
 * syscall and a trip through the TCP stack apiece. The socket is corked on the
 * first chunk of a turn and uncorked right after the poll phase (setImmediate), so
 * all of that turn's chunks leave in one writev.
 */
export function pumpToSocket(source: Readable, sink: net.Socket, onBytes: (bytes: number) => void): void {
  const flow = backpressure(source, sink)
  let corked = false
  const flush = (): void => {
    corked = false
    sink.uncork()
  }
  source.on('data', (chunk: Buffer) => {
    onBytes(chunk.length)
    if (!corked) {
      corked = true
      sink.cork()
      setImmediate(flush)
    }
    sink.write(chunk)
    flow.check()
  })
  // end() uncorks fully, so what this turn gathered goes out before the FIN.
  source.once('end', () => sink.end())
}

/**
 * Copies `from` into `to` until EOF, ending `to` (half-close): a plain TCP source
 * reads through the shared buffer, a plain TCP sink gathers each turn's chunks
 * into one write, anything else is piped.
 */
export function pump(from: Readable, to: Writable, onBytes: (bytes: number) => void): void {
  if (isPlainSocket(from)) return pumpSocket(from, to, onBytes)
  if (isPlainSocket(to)) return pumpToSocket(from, to, onBytes)
  from.on('data', (chunk: Buffer) => onBytes(chunk.length))
  from.pipe(to)
}

function isPlainSocket(stream: Readable | Writable): stream is net.Socket {
  return stream instanceof net.Socket && !(stream instanceof tls.TLSSocket)
}
