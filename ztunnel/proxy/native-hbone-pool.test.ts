// The native outbound pool against a native HBONE server on loopback: streams of
// one key share a session, busy sessions get a second one in the background (one
// per engine thread), a refusal is an HboneStatusError and resets the
// application's socket, stop() closes every session.
import t from 'tap'
import net from 'node:net'
import { HboneEngine, HBONE_ENGINE_DEFAULTS } from '../../native/hbone.js'
import { dupFd, socketInNetns, takeSocketFd } from '../../native/index.js'
import { createMesh, CLIENT_ID, SERVER_ID, TRUST_DOMAIN } from '../../common/hbone/test-fixtures.js'
import { HboneStatusError } from '../../common/hbone/errors.js'
import { silentLogger } from '../../common/log.js'
import { NativeHbonePool } from './native-hbone-pool.js'

const mesh = createMesh('native pool test root')
const engine = new HboneEngine({ ...HBONE_ENGINE_DEFAULTS, threads: 2 })
t.teardown(() => engine.close())
const ownNetns = '/proc/self/ns/net'

const echo = net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => undefined)
  s.pipe(s)
})
await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r))
t.teardown(() => echo.close())
const echoPort = (echo.address() as net.AddressInfo).port

const probe = net.createServer()
await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r))
const hbonePort = (probe.address() as net.AddressInfo).port
const listenFd = dupFd((probe as unknown as { _handle: { fd: number } })._handle.fd)
probe.close()
const serverContext = engine.createContext('server', mesh.credentials(SERVER_ID))
let deny = false
const listener = engine.listen(listenFd, serverContext, TRUST_DOMAIN, {
  onRequest: async (tunnel) => {
    if (deny) return tunnel.reject(401)
    await tunnel.deliver(await socketInNetns(ownNetns, { family: 4 }), { ip: '127.0.0.1', port: echoPort }).catch(() => tunnel.reject(503))
  },
})
t.teardown(() => listener.close())

const contexts: string[] = []
const pool = new NativeHbonePool({
  engine,
  contextFor: async (identity) => {
    contexts.push(identity)
    return engine.createContext('client', mesh.credentials(identity))
  },
  socketFor: () => socketInNetns(ownNetns, { family: 4 }),
  log: silentLogger(),
})

async function appSocket(): Promise<{ app: net.Socket; accepted: net.Socket }> {
  const server = net.createServer({ pauseOnConnect: true })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
  const app = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  app.on('error', () => undefined)
  const socket = await accepted
  server.close()
  return { app, accepted: socket }
}

const request = { sourceIdentity: CLIENT_ID, destinationIdentity: SERVER_ID, nextHop: { ip: '127.0.0.1', port: hbonePort }, authority: `127.0.0.1:${echoPort}` }

t.test('streams share a session; a busy one gets a second in the background', async (t) => {
  const first = await appSocket()
  let opened = 0
  const relayed = pool.relay(
    request,
    () => takeSocketFd(first.accepted),
    () => opened++,
  )
  first.app.write('one')
  await new Promise((r) => first.app.once('data', r))
  t.equal(pool.sessionCount, 1, 'one session')
  const second = await appSocket()
  const relayed2 = pool.relay(
    request,
    () => takeSocketFd(second.accepted),
    () => opened++,
  )
  second.app.write('two')
  await new Promise((r) => second.app.once('data', r))
  await new Promise((r) => setTimeout(r, 200))
  t.equal(pool.sessionCount, 2, 'a second session for the second thread')
  t.same(contexts, [CLIENT_ID], 'one context for the identity')
  first.app.end()
  second.app.end()
  const [a, b] = await Promise.all([relayed, relayed2])
  t.same([a.status, a.sent, a.received, b.sent, b.received], [200, 3, 3, 3, 3], 'both tunnels relayed and counted')
  t.equal(opened, 2)
})

t.test('a refusal is a status error and resets the application socket', async (t) => {
  deny = true
  t.teardown(() => (deny = false))
  const { app, accepted } = await appSocket()
  const closed = new Promise<Error | null>((resolve) => {
    let error: Error | null = null
    app.on('error', (e) => (error = e))
    app.on('close', () => resolve(error))
  })
  await t.rejects(
    pool.relay(
      request,
      () => takeSocketFd(accepted),
      () => t.fail('never opened'),
    ),
    HboneStatusError,
  )
  t.match((await closed)?.message ?? '', /ECONNRESET/, 'the application saw a reset')
})

t.test('stop closes every session', async (t) => {
  await pool.stop()
  t.equal(pool.sessionCount, 0)
  await t.rejects(
    pool.relay(
      request,
      () => 0,
      () => undefined,
    ),
    /stopped/,
  )
})
