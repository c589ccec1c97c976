// The native HBONE engine (native/hbone.ts) against the TypeScript HBONE client
// and server (common/hbone), and against itself: real TLS 1.3 on loopback, real
// sockets. Interop both ways, half-close, flow control with more than a window
// in flight, statuses, identity checks, resets and certificate rotation.
import t from 'tap'
import net from 'node:net'
import { createHash } from 'node:crypto'
import { HboneEngine, type ClientSession, type HboneListener, type ServerHandlers, type TunnelResult } from '../../native/hbone.js'
import { dupFd, socketInNetns, takeSocketFd } from '../../native/index.js'
import { createMesh, CLIENT_ID, SERVER_ID, TRUST_DOMAIN } from '../../common/hbone/test-fixtures.js'
import { HbonePool } from '../../common/hbone/pool.js'
import { HboneServer } from '../../common/hbone/server.js'
import { HboneStatusError } from '../../common/hbone/errors.js'
import type { Duplex } from 'node:stream'

const mesh = createMesh('native hbone test root')
const engine = new HboneEngine({
  threads: 2,
  streamWindow: 256 * 1024,
  connectionWindow: 1024 * 1024,
  maxFrameSize: 1 << 20,
  maxConcurrentStreams: 100,
  handshakeTimeoutMs: 5000,
})
t.teardown(() => engine.close())
const clientContext = engine.createContext('client', mesh.credentials(CLIENT_ID))
const serverContext = engine.createContext('server', mesh.credentials(SERVER_ID))
const ownNetns = '/proc/self/ns/net'

/** A loopback TCP server that echoes, and keeps half-open sockets writable. */
async function echoServer(onSocket?: (s: net.Socket) => void): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => undefined)
    if (onSocket) onSocket(s)
    else s.pipe(s)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy()
      server.close()
    },
  }
}

/** A listening socket on 127.0.0.1 handed to the engine as an fd. */
async function listenFd(): Promise<{ fd: number; port: number }> {
  const server = net.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  const fd = dupFd((server as unknown as { _handle: { fd: number } })._handle.fd)
  server.close()
  return { fd, port }
}

/** An application connection: `app` is its end, `fd` ztunnel's accepted end (moved out of Node). */
async function appConnection(): Promise<{ app: net.Socket; fd: number }> {
  const server = net.createServer({ pauseOnConnect: true })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
  const app = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  app.on('error', () => undefined)
  const fd = takeSocketFd(await accepted)
  server.close()
  return { app, fd }
}

/** Writes `data`, ends, and collects what comes back until the peer closes. */
function exchange(socket: net.Socket | Duplex, data: Buffer): Promise<{ back: Buffer; error: Error | null }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let error: Error | null = null
    socket.on('data', (d: Buffer) => chunks.push(d))
    socket.on('error', (e: Error) => (error = e))
    socket.on('close', () => resolve({ back: Buffer.concat(chunks), error }))
    socket.end(data)
  })
}

const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function nativeServer(handlers: Partial<ServerHandlers> & { target?: number } = {}): Promise<{ listener: HboneListener; port: number }> {
  const { fd, port } = await listenFd()
  const listener = engine.listen(fd, serverContext, TRUST_DOMAIN, {
    onRequest: async (tunnel, request) => {
      if (request.method !== 'CONNECT') return tunnel.reject(400)
      const [, portText] = request.authority.split(':')
      try {
        await tunnel.deliver(await socketInNetns(ownNetns, { family: 4 }), { ip: '127.0.0.1', port: Number(portText) })
      } catch {
        tunnel.reject(503)
      }
    },
    ...handlers,
  })
  return { listener, port }
}

async function nativeSession(port: number, expected = SERVER_ID, context = clientContext): Promise<ClientSession> {
  return engine.openSession(await socketInNetns(ownNetns, { family: 4 }), { ip: '127.0.0.1', port }, context, expected)
}

t.test('typescript client -> native server: headers, echo of 6 MiB with half-close, counters', async (t) => {
  const upstream = await echoServer()
  const requests: Record<string, string | undefined>[] = []
  let serverResult: Promise<TunnelResult> | null = null
  const { listener, port } = await nativeServer({
    onRequest: async (tunnel, request) => {
      requests.push({ ...request })
      serverResult = tunnel.closed
      await tunnel.deliver(await socketInNetns(ownNetns, { family: 4 }), { ip: '127.0.0.1', port: upstream.port })
    },
  })
  const pool = new HbonePool({ contextFor: () => mesh.context(CLIENT_ID) })
  t.teardown(async () => {
    await pool.stop()
    await listener.close()
    upstream.close()
  })
  const stream = await pool.connect({
    sourceIdentity: CLIENT_ID,
    destinationIdentity: SERVER_ID,
    nextHop: { ip: '127.0.0.1', port },
    authority: `127.0.0.1:${upstream.port}`,
    headers: { forwarded: 'for=198.19.0.7', baggage: 'k=v' },
  })
  const data = Buffer.alloc(6 << 20, 'x')
  const { back, error } = await exchange(stream as Duplex as net.Socket, data)
  t.equal(error, null)
  t.equal(digest(back), digest(data), 'every byte came back through the native server')
  const result = await serverResult!
  t.same([result.received, result.sent, result.resetCode], [6 << 20, 6 << 20, 0], 'the server tunnel counted both ways and ended cleanly')
  t.equal(requests[0]!.authority, `127.0.0.1:${upstream.port}`)
  t.equal(requests[0]!.forwarded, 'for=198.19.0.7')
  t.equal(requests[0]!.baggage, 'k=v')
  t.match(requests[0]!.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
})

t.test('native client -> typescript server: 8 MiB both ways, then the server half-closes later', async (t) => {
  // Echoes, and after the client's FIN sends a trailer: half-close in both directions.
  const upstream = await echoServer((s) => {
    s.on('data', (d) => s.write(d))
    s.on('end', () => setTimeout(() => s.end('trailer'), 50))
  })
  const records: { status: number; received: number; sent: number }[] = []
  const server = new HboneServer({
    credentials: mesh.credentials(SERVER_ID),
    trustDomain: TRUST_DOMAIN,
    resolveTarget: (d) => d,
    connectUpstream: (target) =>
      new Promise((resolve, reject) =>
        net
          .connect(target.port, target.ip)
          .once('connect', function (this: net.Socket) {
            resolve(this)
          })
          .once('error', reject),
      ),
    observer: { streamClosed: (r) => records.push({ status: r.status, received: r.received, sent: r.sent }) },
  })
  const bound = await server.start({ kind: 'address', host: '127.0.0.1', port: 0 })
  const session = await nativeSession(bound.port)
  t.teardown(async () => {
    session.close(false)
    await server.stop()
    upstream.close()
  })
  t.ok((await session.ready).maxStreams >= 1, 'ready once the server settings arrived')
  const { app, fd } = await appConnection()
  const tunnel = session.openStream(fd, `127.0.0.1:${upstream.port}`, { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' })
  t.equal(await tunnel.response, 200)
  const data = Buffer.alloc(8 << 20, 'y')
  const { back, error } = await exchange(app, data)
  t.equal(error, null, 'no error on the application socket')
  t.equal(back.length, data.length + 'trailer'.length)
  t.equal(back.subarray(data.length).toString(), 'trailer', 'bytes after our FIN still arrive')
  const result = await tunnel.closed
  t.same([result.status, result.resetCode, result.sent, result.received], [200, 0, data.length, back.length])
  await new Promise((r) => setTimeout(r, 50))
  t.same(records, [{ status: 200, received: data.length, sent: back.length }], 'the typescript server saw the same bytes')
})

t.test('native client -> native server: statuses, identities, resets', async (t) => {
  const upstream = await echoServer()
  let policyDenies = false
  const sessions: string[] = []
  const rejected: string[] = []
  const { listener, port } = await nativeServer({
    onSession: (info) => sessions.push(info.peerIdentity),
    onRejected: (r) => rejected.push(r.reason),
    onRequest: async (tunnel, request) => {
      if (policyDenies) return tunnel.reject(401)
      const [, portText] = request.authority.split(':')
      try {
        await tunnel.deliver(await socketInNetns(ownNetns, { family: 4 }), { ip: '127.0.0.1', port: Number(portText) })
      } catch {
        tunnel.reject(503)
      }
    },
  })
  t.teardown(async () => {
    await listener.close()
    upstream.close()
  })
  const session = await nativeSession(port)
  await session.ready
  t.same(sessions, [CLIENT_ID], 'the server saw the client identity')

  // Many streams on one session at once.
  const results = await Promise.all(
    Array.from({ length: 40 }, async (_, i) => {
      const { app, fd } = await appConnection()
      const tunnel = session.openStream(fd, `127.0.0.1:${upstream.port}`, {})
      await tunnel.response
      return (await exchange(app, Buffer.from(`ping-${i}`))).back.toString()
    }),
  )
  t.same(
    results,
    Array.from({ length: 40 }, (_, i) => `ping-${i}`),
    '40 concurrent streams echoed',
  )

  // An upstream that refuses: 503, and the application sees a reset.
  const refused = await echoServer()
  refused.close()
  {
    const { app, fd } = await appConnection()
    const tunnel = session.openStream(fd, `127.0.0.1:${refused.port}`, {})
    t.equal(await tunnel.response, 503, 'refused upstream: 503')
    const { error } = await exchange(app, Buffer.from('x'))
    t.match(error?.message ?? '', /ECONNRESET|EPIPE/, 'the application connection is reset')
  }

  // Policy: 401.
  policyDenies = true
  {
    const { app, fd } = await appConnection()
    const tunnel = session.openStream(fd, `127.0.0.1:${upstream.port}`, {})
    t.equal(await tunnel.response, 401, 'denied: 401')
    app.destroy()
    t.equal((await tunnel.closed).status, 401)
  }
  policyDenies = false

  // A reset from the server side (a policy change) resets the application's connection.
  {
    let serverTunnel: { reset(): void } | null = null
    const { listener: l2, port: p2 } = await nativeServer({
      onRequest: async (tunnel) => {
        serverTunnel = tunnel
        await tunnel.deliver(await socketInNetns(ownNetns, { family: 4 }), { ip: '127.0.0.1', port: upstream.port })
      },
    })
    const s2 = await nativeSession(p2)
    await s2.ready
    const { app, fd } = await appConnection()
    const tunnel = s2.openStream(fd, `127.0.0.1:${upstream.port}`, {})
    await tunnel.response
    app.write('before')
    await new Promise((r) => app.once('data', r))
    const closed = new Promise<Error | null>((resolve) => {
      let error: Error | null = null
      app.on('error', (e) => (error = e))
      app.on('close', () => resolve(error))
    })
    serverTunnel!.reset()
    t.match((await closed)?.message ?? 'closed without error', /ECONNRESET/, 'the application saw a reset')
    t.not((await tunnel.closed).resetCode, 0, 'the client tunnel ended with a stream reset')
    s2.close(false)
    await l2.close()
  }

  // The wrong server identity: the session never becomes ready.
  const wrong = await nativeSession(port, 'spiffe://cluster.local/ns/default/sa/someone-else')
  await t.rejects(wrong.ready, /does not match the destination identity/, 'a server with another identity is refused')

  // A client from another trust domain: refused by the server.
  const foreign = engine.createContext('client', mesh.credentials('spiffe://other.domain/ns/default/sa/client'))
  const outsider = await nativeSession(port, SERVER_ID, foreign)
  await t.rejects(outsider.ready, /hbone session failed/)
  engine.releaseContext(foreign)
  await new Promise((r) => setTimeout(r, 50))
  t.ok(rejected.includes('trust_domain'), `the server rejected it for its trust domain (${rejected.join(',')})`)
  session.close(true)
  t.equal(await session.closed, '', 'a graceful close')
})

t.test('rotation: new handshakes use the new certificate, an open session keeps going', async (t) => {
  const upstream = await echoServer()
  const { listener, port } = await nativeServer()
  t.teardown(async () => {
    await listener.close()
    upstream.close()
  })
  const old = await nativeSession(port)
  await old.ready
  const rotatedId = 'spiffe://cluster.local/ns/default/sa/server-rotated'
  const next = engine.createContext('server', mesh.credentials(rotatedId))
  listener.setContext(next)
  engine.releaseContext(next)
  await new Promise((r) => setTimeout(r, 20))
  const fresh = await nativeSession(port, rotatedId)
  t.ok(await fresh.ready, 'a new session sees the rotated certificate')
  for (const session of [old, fresh]) {
    const { app, fd } = await appConnection()
    const tunnel = session.openStream(fd, `127.0.0.1:${upstream.port}`, {})
    t.equal(await tunnel.response, 200)
    t.equal((await exchange(app, Buffer.from('still here'))).back.toString(), 'still here')
  }
  old.close(false)
  fresh.close(false)
})

t.test('typescript pool -> native server: a denied stream is a status error', async (t) => {
  const { listener, port } = await nativeServer({ onRequest: (tunnel) => tunnel.reject(401) })
  const pool = new HbonePool({ contextFor: () => mesh.context(CLIENT_ID) })
  t.teardown(async () => {
    await pool.stop()
    await listener.close()
  })
  const attempt = pool.connect({ sourceIdentity: CLIENT_ID, destinationIdentity: SERVER_ID, nextHop: { ip: '127.0.0.1', port }, authority: '127.0.0.1:9' })
  await t.rejects(attempt, HboneStatusError)
  await attempt.catch((err: HboneStatusError) => t.equal(err.status, 401))
})
