import { X509Certificate } from 'node:crypto'
import http2 from 'node:http2'
import net from 'node:net'
import tls from 'node:tls'
import t from 'tap'
import { HboneNotLocalError, HboneUnknownDestinationError } from './errors.js'
import { formatAuthority, type SocketAddress } from './headers.js'
import { HbonePool } from './pool.js'
import { HboneServer, type ConnectionInfo, type StreamRecord } from './server.js'
import { CLIENT_ID, createMesh, dialTcp, echoServer, readAll, SERVER_ID, startServer, TRUST_DOMAIN, waitFor, type TestTarget } from './test-fixtures.js'
import { createIdentityContext } from './tls.js'

const mesh = createMesh()

/** A raw HTTP/2 client with the client identity, for requests the pool would never send. */
async function rawSession(address: SocketAddress, context = mesh.context(CLIENT_ID)): Promise<http2.ClientHttp2Session> {
  const socket = tls.connect({ host: address.ip, port: address.port, secureContext: context, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined })
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject))
  const session = http2.connect(`https://${formatAuthority(address)}`, { createConnection: () => socket })
  session.on('error', () => undefined)
  return session
}

function status(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<number> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: false })
    stream.on('response', (h) => {
      resolve(Number(h[':status']))
      stream.close()
    })
    stream.on('error', reject)
    stream.on('close', () => reject(new Error(`closed without response, code ${stream.rstCode}`)))
  })
}

async function closedPort(): Promise<SocketAddress> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return { ip: '127.0.0.1', port }
}

t.test('each refusal gets its status, recorded once per stream', async (t) => {
  const echo = await echoServer()
  const refused = await closedPort()
  const records: StreamRecord<TestTarget>[] = []
  const { server, address } = await startServer(mesh, {
    resolveTarget: (destination) => {
      if (destination.ip === '10.9.9.9') throw new HboneNotLocalError(formatAuthority(destination))
      if (destination.ip === '10.9.9.8') throw new HboneUnknownDestinationError(formatAuthority(destination))
      return destination
    },
    authorize: (info) => (info.destination.port === 4011 ? { allowed: false, policy: 'default/deny-4011' } : { allowed: true }),
    connectUpstream: (target) => dialTcp(target.port === 4011 ? echo.address : target),
    observer: { streamClosed: (r) => records.push(r) },
  })
  t.teardown(async () => {
    await server.stop()
    await echo.close()
  })
  const session = await rawSession(address)
  t.teardown(() => session.destroy())
  const cases: ReadonlyArray<readonly [http2.OutgoingHttpHeaders, number, string]> = [
    [{ ':method': 'GET', ':path': '/' }, 400, 'bad_request'],
    [{ ':method': 'POST', ':path': '/', ':authority': formatAuthority(echo.address) }, 400, 'bad_request'],
    [{ ':method': 'CONNECT', ':authority': 'example.com:80' }, 400, 'bad_request'],
    [{ ':method': 'CONNECT', ':authority': '10.0.0.1' }, 400, 'bad_request'],
    [{ ':method': 'CONNECT', ':authority': '10.0.0.1:0' }, 400, 'bad_request'],
    [{ ':method': 'CONNECT', ':authority': '10.0.0.1:65536' }, 400, 'bad_request'],
    [{ ':method': 'CONNECT', ':authority': '[::1]' }, 400, 'bad_request'],
    [{ ':method': 'CONNECT', ':authority': '10.9.9.9:80' }, 400, 'not_local'],
    [{ ':method': 'CONNECT', ':authority': '10.9.9.8:80' }, 503, 'unknown_destination'],
    [{ ':method': 'CONNECT', ':authority': '127.0.0.1:4011' }, 401, 'denied'],
    [{ ':method': 'CONNECT', ':authority': formatAuthority(refused) }, 503, 'upstream_failure'],
    [{ ':method': 'CONNECT', ':authority': formatAuthority(echo.address) }, 200, 'ok'],
  ]
  for (const [headers, expected] of cases) t.equal(await status(session, headers), expected, `${headers[':method']} ${headers[':authority'] ?? ''}`)
  t.ok(await waitFor(() => records.length === cases.length), 'one record per stream')
  t.same(records.map((r) => [r.status, r.outcome]).sort(), cases.map(([, s, o]) => [s, o]).sort())
  const denied = records.find((r) => r.status === 401)!
  t.match(denied.error?.message, /denied by policy default\/deny-4011/)
  t.equal(denied.peerIdentity, CLIENT_ID)
})

t.test('traceparent, baggage and forwarded reach the hooks', async (t) => {
  const echo = await echoServer()
  const seen: ConnectionInfo[] = []
  const { server, address } = await startServer(mesh, {
    authorize: (info) => {
      seen.push(info)
      return { allowed: true }
    },
  })
  const pool = new HbonePool({ contextFor: (id) => mesh.context(id) })
  t.teardown(async () => {
    await pool.stop()
    await server.stop()
    await echo.close()
  })
  const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
  const request = { sourceIdentity: CLIENT_ID, destinationIdentity: SERVER_ID, nextHop: address, authority: formatAuthority(echo.address) }
  const first = await pool.connect({ ...request, headers: { traceparent, baggage: 'k1=v1,k2=v2', forwarded: 'for=198.18.0.7' } })
  first.end()
  const second = await pool.connect(request)
  second.end()
  t.equal(seen.length, 2)
  t.match(seen[0], {
    peerIdentity: CLIENT_ID,
    traceparent,
    baggage: 'k1=v1,k2=v2',
    forwarded: 'for=198.18.0.7',
    sourceIp: '198.18.0.7',
    destination: echo.address,
    authority: formatAuthority(echo.address),
    peerAddress: { ip: '127.0.0.1' },
    localAddress: address,
  })
  t.match(seen[1]!.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, 'traceparent generated')
  t.not(seen[1]!.traceparent, traceparent)
  t.equal(seen[1]!.sourceIp, '127.0.0.1', 'source falls back to the TCP peer')
  t.equal(seen[1]!.baggage, undefined)
})

t.test('clients without an acceptable certificate are refused at the handshake', async (t) => {
  const echo = await echoServer()
  const rejected: string[] = []
  let sessions = 0
  const { server, address } = await startServer(mesh, {
    observer: { connectionRejected: (e) => rejected.push(e.reason), sessionOpened: () => sessions++ },
  })
  t.teardown(async () => {
    await server.stop()
    await echo.close()
  })
  const otherMesh = createMesh('another root')
  const otherDomain = 'spiffe://other.example/ns/default/sa/client'
  // Valid from two hours ago for a minute (pki adds a minute of skew): expired an hour and more ago.
  const expired = mesh.credentials(CLIENT_ID, { ttlMs: 60_000, notBefore: new Date(Date.now() - 2 * 3600_000) })
  t.ok(Date.parse(new X509Certificate(expired.certPem).validTo) < Date.now(), 'the certificate is expired')
  const contexts: ReadonlyArray<readonly [string, tls.SecureContext, string]> = [
    ['no certificate', tls.createSecureContext({ ca: mesh.trustBundlePem, minVersion: 'TLSv1.3' }), 'tls'],
    ['expired certificate', createIdentityContext(expired), 'tls'],
    ['another trust domain, same root', mesh.context(otherDomain), 'trust_domain'],
    ['another root', createIdentityContext({ ...otherMesh.credentials(CLIENT_ID), trustBundlePem: mesh.trustBundlePem }), 'tls'],
  ]
  for (const [name, context, reason] of contexts) {
    const pool = new HbonePool({ contextFor: () => context, connectTimeoutMs: 3000 })
    const attempt = pool.connect({ sourceIdentity: CLIENT_ID, destinationIdentity: SERVER_ID, nextHop: address, authority: formatAuthority(echo.address) })
    await t.rejects(attempt, { code: 'AMBIENT_ERR_HBONE_SESSION' }, name)
    t.ok(await waitFor(() => rejected.length > 0), `${name}: server saw a rejection`)
    t.equal(rejected.shift(), reason, `${name}: reason`)
    t.equal(pool.sessionCount, 0)
    await pool.stop()
  }
  t.equal(sessions, 0, 'no HTTP/2 session was ever set up')
})

t.test('garbage closes only its own connection', async (t) => {
  const echo = await echoServer()
  const rejected: string[] = []
  const { server, address } = await startServer(mesh, { observer: { connectionRejected: (e) => rejected.push(e.reason) } })
  const pool = new HbonePool({ contextFor: (id) => mesh.context(id) })
  t.teardown(async () => {
    await pool.stop()
    await server.stop()
    await echo.close()
  })
  const good = await pool.connect({ sourceIdentity: CLIENT_ID, destinationIdentity: SERVER_ID, nextHop: address, authority: formatAuthority(echo.address) })
  const echoed = (text: string): Promise<string> =>
    new Promise((resolve) => {
      good.once('data', (chunk: Buffer) => resolve(chunk.toString()))
      good.write(text)
    })
  t.equal(await echoed('before'), 'before')

  const closedAfter = (socket: net.Socket | tls.TLSSocket, write: () => void): Promise<boolean> =>
    new Promise((resolve) => {
      socket.on('error', () => undefined)
      socket.resume()
      socket.once('close', () => resolve(true))
      write()
    })
  // Plain text on the TLS port.
  const plain = net.connect(address.port, address.ip)
  t.ok(await closedAfter(plain, () => plain.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), 'plaintext closed')
  // TLS with a good certificate but no h2.
  const http1 = tls.connect({
    host: address.ip,
    port: address.port,
    secureContext: mesh.context(CLIENT_ID),
    ALPNProtocols: ['http/1.1'],
    checkServerIdentity: () => undefined,
  })
  t.ok(await closedAfter(http1, () => http1.write('GET / HTTP/1.1\r\n\r\n')), 'tls without h2 closed')
  // TLS + h2, then bytes that are not HTTP/2 frames.
  const junk = tls.connect({
    host: address.ip,
    port: address.port,
    secureContext: mesh.context(CLIENT_ID),
    ALPNProtocols: ['h2'],
    checkServerIdentity: () => undefined,
  })
  t.ok(await closedAfter(junk, () => junk.once('secureConnect', () => junk.write(Buffer.alloc(256, 0xab)))), 'h2 garbage closed')
  // h2 that sends no CONNECT: that stream gets 400, the connection stays usable.
  const raw = await rawSession(address)
  t.equal(await status(raw, { ':method': 'GET', ':path': '/' }), 400)
  t.equal(await status(raw, { ':method': 'CONNECT', ':authority': formatAuthority(echo.address) }), 200, 'same session still serves')
  raw.destroy()

  t.equal(await echoed('after'), 'after', 'the concurrent good stream kept working')
  good.end()
  t.ok(rejected.includes('tls'), `rejections seen: ${rejected.join(',')}`)
})

t.test('serves connections of an existing net.Server', async (t) => {
  const echo = await echoServer()
  const listener = net.createServer()
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const server = new HboneServer<TestTarget>({
    credentials: mesh.credentials(SERVER_ID),
    trustDomain: TRUST_DOMAIN,
    resolveTarget: (destination) => destination,
    connectUpstream: (target) => dialTcp(target),
  })
  const bound = await server.start({ kind: 'server', server: listener })
  t.same(bound, { ip: '127.0.0.1', port: (listener.address() as net.AddressInfo).port })
  const pool = new HbonePool({ contextFor: (id) => mesh.context(id) })
  t.teardown(async () => {
    await pool.stop()
    await server.stop()
    await new Promise((resolve) => listener.close(resolve))
    await echo.close()
  })
  const stream = await pool.connect({ sourceIdentity: CLIENT_ID, destinationIdentity: SERVER_ID, nextHop: bound, authority: formatAuthority(echo.address) })
  stream.end('via handed-over listener')
  t.equal((await readAll(stream)).toString(), 'via handed-over listener')
})

t.test('stream mode: an allowed stream is handed to the handler after the 200; denied ones never reach it', async (t) => {
  const records: StreamRecord<TestTarget>[] = []
  const handled: string[] = []
  const server = new HboneServer<TestTarget>({
    credentials: mesh.credentials(SERVER_ID),
    trustDomain: TRUST_DOMAIN,
    resolveTarget: (destination) => destination,
    authorize: (info) => ({ allowed: info.destination.port !== 4011, policy: 'default/deny-4011' }),
    // A tiny server of its own inside the tunnel: upper-cases what it reads.
    handleStream: async (stream, _target, info) => {
      handled.push(info.authority)
      let received = 0
      let sent = 0
      for await (const chunk of stream) {
        received += (chunk as Buffer).length
        const out = Buffer.from((chunk as Buffer).toString().toUpperCase())
        sent += out.length
        stream.write(out)
      }
      stream.end()
      return { received, sent, error: null }
    },
    observer: { streamClosed: (r) => records.push(r) },
  })
  t.throws(
    () => new HboneServer<TestTarget>({ credentials: mesh.credentials(SERVER_ID), trustDomain: TRUST_DOMAIN, resolveTarget: (d) => d }),
    /exactly one of connectUpstream/,
  )
  const address = await server.start({ kind: 'address', host: '127.0.0.1', port: 0 })
  const pool = new HbonePool({ contextFor: (id) => mesh.context(id) })
  t.teardown(async () => {
    await pool.stop()
    await server.stop()
  })
  const request = { sourceIdentity: CLIENT_ID, destinationIdentity: SERVER_ID, nextHop: address }
  const stream = await pool.connect({ ...request, authority: '10.1.2.3:8080' })
  stream.end('hello through the tunnel')
  t.equal((await readAll(stream)).toString(), 'HELLO THROUGH THE TUNNEL')
  await t.rejects(pool.connect({ ...request, authority: '10.1.2.3:4011' }), { code: 'AMBIENT_ERR_HBONE_STATUS' }, 'denied: 401, no handler')
  t.ok(await waitFor(() => records.length === 2))
  t.same(handled, ['10.1.2.3:8080'])
  const ok = records.find((r) => r.status === 200)!
  t.match(ok, { received: 24, sent: 24, error: null, outcome: 'ok' })
  t.equal(records.find((r) => r.status !== 200)?.status, 401)
})
