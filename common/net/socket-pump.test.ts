import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'
import { once } from 'node:events'
import { PassThrough, Writable } from 'node:stream'
import t from 'tap'
import { PAUSE_BYTES, pump, pumpSocket, pumpToSocket, READ_CHUNK_BYTES } from './socket-pump.js'

/** A loopback connection: [client side, accepted server side]. */
async function connectedPair(onAccept?: (s: net.Socket) => void): Promise<[net.Socket, net.Socket, () => void]> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const accepted = once(server, 'connection') as Promise<[net.Socket]>
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  await once(client, 'connect')
  const [socket] = await accepted
  onAccept?.(socket)
  return [client, socket, () => server.close()]
}

function sha(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Collects everything written; `delayMs` holds each write's completion (a slow peer). */
function collector(options: { highWaterMark?: number; delayMs?: number } = {}): Writable & { data(): Buffer; ended: Promise<void> } {
  const chunks: Buffer[] = []
  let resolveEnd!: () => void
  const ended = new Promise<void>((r) => (resolveEnd = r))
  const sink = new Writable({
    highWaterMark: options.highWaterMark ?? 16 * 1024,
    write(chunk: Buffer, _enc, cb) {
      // Copied only when the write completes: until then the chunk must stay untouched.
      const complete = (): void => {
        chunks.push(Buffer.from(chunk))
        cb()
      }
      if (options.delayMs) setTimeout(complete, options.delayMs)
      else setImmediate(complete)
    },
    final(cb) {
      resolveEnd()
      cb()
    },
  })
  return Object.assign(sink, { data: () => Buffer.concat(chunks), ended })
}

t.test('concurrent sockets share the read buffer without mixing their bytes', async (t) => {
  const payloads = Array.from({ length: 12 }, () => randomBytes(3 * READ_CHUNK_BYTES + 12345))
  const results = await Promise.all(
    payloads.map(async (payload) => {
      const [client, accepted, close] = await connectedPair()
      const sink = collector({ delayMs: 1 })
      let counted = 0
      pumpSocket(accepted, sink, (n) => (counted += n))
      client.end(payload)
      await sink.ended
      accepted.destroy()
      close()
      return { data: sink.data(), counted }
    }),
  )
  results.forEach((r, i) => {
    t.equal(r.data.length, payloads[i]!.length, `connection ${i}: every byte arrived`)
    t.equal(sha(r.data), sha(payloads[i]!), `connection ${i}: bytes intact and in order`)
    t.equal(r.counted, payloads[i]!.length, `connection ${i}: onBytes counted every byte`)
  })
})

t.test('a slow sink pauses the socket instead of buffering without bound', async (t) => {
  const payload = randomBytes(16 * 1024 * 1024)
  const [client, accepted, close] = await connectedPair()
  const sink = collector({ highWaterMark: 1024, delayMs: 5 })
  let maxInFlight = 0
  const tracked = new Proxy(sink, {
    get(target, prop, receiver) {
      if (prop === 'write')
        return (chunk: Buffer, cb?: () => void) => {
          const result = target.write(chunk, cb)
          maxInFlight = Math.max(maxInFlight, target.writableLength)
          return result
        }
      return Reflect.get(target, prop, receiver)
    },
  })
  pumpSocket(accepted, tracked, () => undefined)
  client.end(payload)
  await sink.ended
  t.equal(sha(sink.data()), sha(payload), 'all 16 MiB arrived intact')
  t.ok(maxInFlight <= PAUSE_BYTES + READ_CHUNK_BYTES, `at most PAUSE_BYTES and one read waited in the sink (${maxInFlight} bytes)`)
  accepted.destroy()
  close()
})

t.test('bytes read before the pump started go first; EOF ends the sink', async (t) => {
  const [client, accepted, close] = await connectedPair()
  client.write('early bytes|')
  // The accepted socket reads them into its readable buffer before anyone pumps.
  await new Promise((r) => setTimeout(r, 50))
  t.ok(accepted.readableLength > 0, 'the early bytes were buffered by Node before the switch')
  const sink = collector()
  pumpSocket(accepted, sink, () => undefined)
  client.end('late bytes')
  await sink.ended
  t.equal(sink.data().toString(), 'early bytes|late bytes')
  accepted.destroy()
  close()
})

t.test('a socket keeps writing after its read side ended (half-close)', async (t) => {
  const [client, accepted, close] = await connectedPair()
  accepted.allowHalfOpen = true
  const sink = collector()
  pumpSocket(accepted, sink, () => undefined)
  client.end('request')
  await sink.ended
  accepted.end('response after the FIN')
  const [reply] = (await once(client, 'data')) as [Buffer]
  t.equal(reply.toString(), 'response after the FIN')
  accepted.destroy()
  client.destroy()
  close()
})

t.test('chunks a stream hands over in one event-loop turn leave the socket in one writev', async (t) => {
  const [client, accepted, close] = await connectedPair()
  const calls = { write: 0, writev: [] as number[] }
  const sink = client as net.Socket & { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void }
  const write = sink._write.bind(sink)
  const writev = sink._writev.bind(sink)
  sink._write = (...a) => {
    calls.write++
    write(...a)
  }
  sink._writev = (...a) => {
    calls.writev.push((a[0] as unknown[]).length)
    writev(...a)
  }
  const source = new PassThrough()
  let counted = 0
  pumpToSocket(source, client, (n) => (counted += n))
  const received: Buffer[] = []
  accepted.on('data', (d: Buffer) => received.push(d))
  for (let i = 0; i < 10; i++) source.write(Buffer.alloc(1000, 48 + i))
  source.end()
  await once(accepted, 'end')
  t.same(calls, { write: 0, writev: [10] }, 'ten chunks, one writev')
  t.equal(Buffer.concat(received).toString(), Array.from({ length: 10 }, (_, i) => String(i).repeat(1000)).join(''), 'in order, then FIN')
  t.equal(counted, 10_000)
  accepted.destroy()
  close()
})

t.test('a socket that does not drain pauses the stream feeding it', async (t) => {
  const [client, accepted, close] = await connectedPair()
  accepted.pause() // the peer reads nothing: the kernel buffers fill, then the socket's own
  const source = new PassThrough({ highWaterMark: 64 * 1024 })
  pumpToSocket(source, client, () => undefined)
  const payload = randomBytes(64 * 1024 * 1024)
  let offered = 0
  // Offer data as long as the source takes it; stop once pumpToSocket has paused it.
  for (let taken = true; taken && offered < payload.length;) {
    taken = source.write(payload.subarray(offered, offered + 64 * 1024))
    offered += 64 * 1024
    if (!taken) await Promise.race([once(source, 'drain').then(() => (taken = true)), new Promise((r) => setTimeout(r, 100))])
  }
  await new Promise((r) => setTimeout(r, 100))
  t.ok(source.isPaused(), 'the stream is paused')
  t.ok(offered < payload.length, `the stream stopped taking data after ${offered} of ${payload.length} bytes`)
  t.ok(client.writableLength < PAUSE_BYTES + 256 * 1024, `the socket holds about PAUSE_BYTES, not everything (${client.writableLength})`)
  const received: Buffer[] = []
  accepted.on('data', (d: Buffer) => received.push(d))
  accepted.resume()
  const rest = async (): Promise<void> => {
    while (offered < payload.length) {
      const slice = payload.subarray(offered, offered + 64 * 1024)
      offered += slice.length
      if (!source.write(slice)) await once(source, 'drain')
    }
    source.end()
  }
  await Promise.all([rest(), once(accepted, 'end')])
  t.equal(sha(Buffer.concat(received)), sha(payload), 'all 64 MiB arrived intact once the peer read')
  accepted.destroy()
  close()
})

t.test('pump pipes anything that is not a plain TCP socket', async (t) => {
  const source = new PassThrough()
  const sink = collector()
  let counted = 0
  pump(source, sink, (n) => (counted += n))
  source.end(Buffer.from('through a PassThrough'))
  await sink.ended
  t.equal(sink.data().toString(), 'through a PassThrough')
  t.equal(counted, 21)
})

t.test('a socket without a handle is refused by name', async (t) => {
  const socket = new net.Socket()
  t.throws(() => pumpSocket(socket, collector(), () => undefined), /no handle/)
})
