import { randomBytes } from 'node:crypto'
import http2 from 'node:http2'
import type net from 'node:net'
import type { Duplex } from 'node:stream'
import t from 'tap'
import { formatAuthority, type SocketAddress } from './headers.js'
import { HbonePool, type HbonePoolOptions } from './pool.js'
import { CLIENT_ID, createMesh, echoServer, readAll, SERVER_ID, startServer, tcpServer, waitFor } from './test-fixtures.js'

const mesh = createMesh()

function request(nextHop: SocketAddress, upstream: SocketAddress) {
  return { sourceIdentity: CLIENT_ID, destinationIdentity: SERVER_ID, nextHop, authority: formatAuthority(upstream) }
}

async function setup(t: { teardown(fn: () => unknown): void }, poolOptions: Partial<HbonePoolOptions> = {}) {
  const echo = await echoServer()
  let serverSessions = 0
  const { server, address } = await startServer(mesh, { observer: { sessionOpened: () => serverSessions++ } })
  const pool = new HbonePool({ contextFor: (id) => mesh.context(id), ...poolOptions })
  t.teardown(async () => {
    await pool.stop()
    await server.stop()
    await echo.close()
  })
  return { echo, server, address, pool, serverSessions: () => serverSessions }
}

t.test('round trip keeps every byte, both directions, with half-close', async (t) => {
  const { echo, address, pool } = await setup(t)
  const payload = randomBytes(4 * 1024 * 1024 + 17)
  const stream = await pool.connect(request(address, echo.address))
  const back = readAll(stream)
  stream.end(payload)
  t.ok((await back).equals(payload), 'echoed 4 MiB intact, end after our end')
})

t.test('half-close: the destination ends first, the source keeps sending', async (t) => {
  let gotAfterFin: Promise<Buffer> | null = null
  const upstream = await tcpServer((socket) => {
    socket.end('bye')
    gotAfterFin = readAll(socket)
  })
  const { address, pool } = await setup(t)
  t.teardown(() => upstream.close())
  const stream = await pool.connect(request(address, upstream.address))
  t.equal((await readAll(stream)).toString(), 'bye', 'destination FIN arrives as end of stream')
  stream.end('still talking')
  t.ok(await waitFor(() => gotAfterFin !== null))
  t.equal((await gotAfterFin!)!.toString(), 'still talking', 'destination reads after its own FIN')
})

t.test('resets travel both ways', async (t) => {
  const upstreamSockets: net.Socket[] = []
  const upstream = await tcpServer((socket) => upstreamSockets.push(socket))
  const { address, pool } = await setup(t)
  t.teardown(() => upstream.close())

  const first = await pool.connect(request(address, upstream.address))
  await waitFor(() => upstreamSockets.length === 1)
  const closed = new Promise<boolean>((resolve) => upstreamSockets[0]!.once('close', (hadError) => resolve(hadError)))
  first.destroy()
  t.equal(await closed, true, 'source reset -> destination socket reset')

  const second = (await pool.connect(request(address, upstream.address))) as http2.ClientHttp2Stream
  await waitFor(() => upstreamSockets.length === 2)
  const errored = new Promise<number>((resolve) => second.once('close', () => resolve(second.rstCode)))
  second.on('error', () => undefined)
  upstreamSockets[1]!.resetAndDestroy()
  t.equal(await errored, http2.constants.NGHTTP2_CONNECT_ERROR, 'destination reset -> RST_STREAM(CONNECT_ERROR)')
})

async function concurrent(pool: HbonePool, address: SocketAddress, upstream: SocketAddress, count: number): Promise<Duplex[]> {
  return Promise.all(Array.from({ length: count }, () => pool.connect(request(address, upstream))))
}

async function echoAll(streams: readonly Duplex[]): Promise<number> {
  const results = await Promise.all(
    streams.map((stream, i) => {
      const back = readAll(stream)
      stream.end(`stream ${i}`)
      return back.then((b) => (b.toString() === `stream ${i}` ? 1 : 0))
    }),
  )
  return results.reduce<number>((a, b) => a + b, 0)
}

t.test('200 concurrent streams share sessions up to the cap', async (t) => {
  for (const [cap, sessions] of [
    [250, 1],
    [100, 2],
    [64, 4],
  ] as const) {
    const { echo, address, pool, serverSessions } = await setup(t, { maxStreamsPerSession: cap })
    const streams = await concurrent(pool, address, echo.address, 200)
    t.equal(pool.sessionCount, sessions, `cap ${cap}: client sessions`)
    t.equal(serverSessions(), sessions, `cap ${cap}: server sessions`)
    t.equal(await echoAll(streams), 200, `cap ${cap}: every stream echoed its own bytes`)
  }
})

t.test('TLS context built once per source identity', async (t) => {
  let built = 0
  const { echo, address, pool } = await setup(t, {
    maxStreamsPerSession: 1,
    contextFor: (id) => {
      built++
      return mesh.context(id)
    },
  })
  const streams = await concurrent(pool, address, echo.address, 5)
  t.equal(pool.sessionCount, 5)
  t.equal(built, 1)
  await echoAll(streams)
})

t.test('idle sessions close after the timeout and are dialed again on demand', async (t) => {
  let opened = 0
  let closed = 0
  const { echo, address, pool } = await setup(t, {
    idleTimeoutMs: 200,
    observer: { sessionOpened: () => opened++, sessionClosed: () => closed++ },
  })
  const stream = await pool.connect(request(address, echo.address))
  await echoAll([stream])
  t.equal(pool.sessionCount, 1)
  t.ok(await waitFor(() => pool.sessionCount === 0, 2000), 'closed when idle')
  t.equal(closed, 1)
  const again = await pool.connect(request(address, echo.address))
  t.equal(await echoAll([again]), 1)
  t.equal(opened, 2, 'a new session was dialed')
})

t.test('a busy session is not closed by the idle timer', async (t) => {
  const { echo, address, pool } = await setup(t, { idleTimeoutMs: 100 })
  const stream = await pool.connect(request(address, echo.address))
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.equal(pool.sessionCount, 1)
  t.equal(await echoAll([stream]), 1)
})

t.test('non-200 answers reject with the status', async (t) => {
  const { address, pool } = await setup(t)
  await t.rejects(pool.connect({ ...request(address, { ip: '127.0.0.1', port: 1 }), authority: 'example.com:80' }), {
    code: 'AMBIENT_ERR_HBONE_STATUS',
    status: 400,
  })
  await t.rejects(pool.connect(request(address, { ip: '127.0.0.1', port: 1 })), { code: 'AMBIENT_ERR_HBONE_STATUS', status: 503 })
  t.equal(pool.sessionCount, 1, 'refused streams leave the session usable')
})

t.test('the client refuses a server with another identity', async (t) => {
  const { echo, address, pool, serverSessions } = await setup(t)
  const wrong = { ...request(address, echo.address), destinationIdentity: 'spiffe://cluster.local/ns/default/sa/someone-else' }
  const err = await pool.connect(wrong).then(
    () => null,
    (e: unknown) => e as Error & { code: string; cause: { code: string } },
  )
  t.equal(err?.code, 'AMBIENT_ERR_HBONE_SESSION')
  t.equal(err?.cause.code, 'AMBIENT_ERR_HBONE_PEER_IDENTITY')
  t.match(err?.message, /someone-else/)
  t.equal(pool.sessionCount, 0)
  t.equal(serverSessions(), 0)
})

t.test('sessions closed by the server leave the pool', async (t) => {
  const { echo, address, pool, server } = await setup(t)
  const stream = await pool.connect(request(address, echo.address))
  await echoAll([stream])
  t.equal(pool.sessionCount, 1)
  await server.stop()
  t.ok(await waitFor(() => pool.sessionCount === 0), 'removed after the server went away')
  await t.rejects(pool.connect(request(address, echo.address)), { code: 'AMBIENT_ERR_HBONE_SESSION' })
})

t.test('stop closes everything and refuses new connects', async (t) => {
  const { echo, address, pool } = await setup(t)
  const stream = await pool.connect(request(address, echo.address))
  stream.on('error', () => undefined)
  await pool.stop()
  t.equal(pool.sessionCount, 0)
  t.ok(stream.destroyed, 'open stream destroyed')
  await t.rejects(pool.connect(request(address, echo.address)), { code: 'AMBIENT_ERR_HBONE_CLOSED' })
})

t.test('many reset streams rotate sessions before the server refuses them', async (t) => {
  let opened = 0
  let closed = 0
  const { echo, address, pool } = await setup(t, { observer: { sessionOpened: () => opened++, sessionClosed: () => closed++ } })
  let ok = 0
  for (let i = 0; i < 1500; i++) {
    const stream = await pool.connect(request(address, echo.address))
    stream.destroy()
    ok++
    await new Promise((resolve) => setImmediate(resolve))
  }
  t.equal(ok, 1500, 'every connect got its 200')
  t.equal(opened, 2, 'a second session took over after ~800 resets')
  t.ok(await waitFor(() => closed === 1), 'the retired session closed once its streams were gone')
})
