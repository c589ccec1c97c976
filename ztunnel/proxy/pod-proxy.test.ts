// PodProxy.stop() releases a pod at once: open connections are closed, not waited for.
import net from 'node:net'
import { once } from 'node:events'
import t from 'tap'
import { netnsCookie, socketInNetns } from '../../native/index.js'
import { makeNetns } from '../../native/testdata/fixtures.js'
import { silentLogger } from '../../common/log.js'
import { OUTBOUND_PORT, PodProxy } from './pod-proxy.js'

const netnsPath = makeNetns(t, 'podproxy')

t.test('stop() closes a held connection instead of waiting for the client to end it', async (t) => {
  const registered = new Map<string, number>()
  const proxy = new PodProxy({
    pod: { netnsPath, ip: '127.0.0.1', netnsCookie: await netnsCookie(netnsPath) },
    proxyMark: 0x539,
    deliveryMark: 0x53a,
    origins: { originalDestination: () => ({ ip: '127.0.0.1', port: 9 }) },
    listeners: {
      registerListener: (ip, fd) => void registered.set(ip, fd),
      unregisterListener: (ip) => registered.delete(ip),
    },
    log: silentLogger(),
    // A connection that stays open until someone closes it (an upstream that never answers).
    outbound: () => new Promise(() => undefined),
  })
  await proxy.start()
  t.ok(registered.has('127.0.0.1'), 'the inbound listener was registered')
  const client = new net.Socket({ fd: await socketInNetns(netnsPath, { family: 4 }), readable: true, writable: true })
  client.connect(OUTBOUND_PORT, '127.0.0.1')
  await once(client, 'connect')
  for (let i = 0; i < 100 && proxy.connections === 0; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(proxy.connections, 1, 'the proxy holds the connection')
  const seen: { error: NodeJS.ErrnoException | null } = { error: null }
  const closedByProxy = new Promise<void>((resolve) => client.once('close', () => resolve()))
  client.on('error', (err) => (seen.error = err))
  const outcome = await Promise.race([proxy.stop().then(() => 'stopped'), new Promise((r) => setTimeout(() => r('still waiting after 3 s'), 3000))])
  t.equal(outcome, 'stopped', 'stop() returned while the client still held its end open')
  await closedByProxy
  t.equal(seen.error?.code, 'ECONNRESET', 'the client saw its connection reset, not a clean end')
  t.equal(proxy.connections, 0)
  t.notOk(registered.has('127.0.0.1'), 'the listener was unregistered')
  client.destroy()
})
