// The datapath's listener registry on a real SOCKHASH: a pod's inbound listener
// entry is removed only by whoever registered that socket.
import net from 'node:net'
import { once } from 'node:events'
import t, { type Test } from 'tap'
import { Datapath } from './datapath.js'
import { DEFAULT_DELIVERY_MARK, DEFAULT_HBONE_PORT, DEFAULT_PROXY_MARK } from './abi.js'
import { BPF_OBJECTS_DIR } from '../common/paths.js'
import { makeCgroup, pinDir } from '../native/testdata/fixtures.js'
import { socketCookie } from '../native/index.js'

const settings = {
  pinRoot: pinDir(t, 'datapath-unit'),
  objectsDir: BPF_OBJECTS_DIR,
  proxyMark: DEFAULT_PROXY_MARK,
  deliveryMark: DEFAULT_DELIVERY_MARK,
  hbonePort: DEFAULT_HBONE_PORT,
}
const cgroup = makeCgroup(t, 'datapath-unit')
const datapath = Datapath.load(settings, cgroup)
t.teardown(() => {
  datapath.close()
  Datapath.unload(settings.pinRoot)
})

async function listener(t: Test): Promise<{ server: net.Server; fd: number }> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd
  return { server, fd }
}

t.test('a listener entry is removed only by the owner of the socket it holds', async (t) => {
  const ip = '198.19.250.1'
  const old = await listener(t)
  const successor = await listener(t)
  const oldCookie = datapath.registerListener(ip, old.fd)
  t.equal(oldCookie, socketCookie(old.fd), 'registering returns the socket cookie')
  t.equal(datapath.listenerCookie(ip), oldCookie, 'the SOCKHASH holds the first socket')
  const successorCookie = datapath.registerListener(ip, successor.fd)
  t.not(successorCookie, oldCookie)
  t.equal(datapath.listenerCookie(ip), successorCookie, 'a second registration replaces the entry')

  t.equal(datapath.unregisterListener(ip, oldCookie), false, 'the first owner cannot remove an entry that is no longer its own')
  t.equal(datapath.listenerCookie(ip), successorCookie, "the successor's entry is still there")

  t.equal(datapath.unregisterListener(ip, successorCookie), true, 'its owner removes it')
  t.equal(datapath.hasListener(ip), false)
  t.equal(datapath.unregisterListener(ip, successorCookie), false, 'removing it again is a no-op')
})

t.test("closing a registered listening socket drops its entry, not another pod's", async (t) => {
  const [a, b] = [await listener(t), await listener(t)]
  datapath.registerListener('198.19.250.2', a.fd)
  const cookieB = datapath.registerListener('198.19.250.3', b.fd)
  await new Promise<void>((resolve) => a.server.close(() => resolve()))
  t.equal(datapath.hasListener('198.19.250.2'), false, 'the closed socket left the map with it')
  t.equal(datapath.listenerCookie('198.19.250.3'), cookieB)
  datapath.unregisterListener('198.19.250.3', cookieB)
})
