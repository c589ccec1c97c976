// PodProxy.stop() releases a pod at once: open connections are closed, not waited for.
// Deliveries reuse source ports that TIME_WAIT holds.
import net from 'node:net'
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { basename } from 'node:path'
import t from 'tap'
import { netnsCookie, socketInNetns } from '../../native/index.js'
import { makeNetns } from '../../native/testdata/fixtures.js'
import { silentLogger } from '../../common/log.js'
import { listenInPod } from './inpod.js'
import { dialDelivery, OUTBOUND_PORT, PodProxy } from './pod-proxy.js'

const netnsPath = makeNetns(t, 'podproxy')

t.test('stop() closes a held connection instead of waiting for the client to end it', async (t) => {
  const registered = new Map<string, bigint>()
  const proxy = new PodProxy({
    pod: { netnsPath, ip: '127.0.0.1', netnsCookie: await netnsCookie(netnsPath) },
    proxyMark: 0x539,
    deliveryMark: 0x53a,
    origins: { originalDestination: () => ({ ip: '127.0.0.1', port: 9 }) },
    listeners: {
      registerListener: (ip, fd) => {
        registered.set(ip, BigInt(fd))
        return BigInt(fd)
      },
      unregisterListener: (ip, cookie) => registered.get(ip) === cookie && registered.delete(ip),
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

t.test('a delivery reuses source ports that TIME_WAIT holds; a 4-tuple it cannot take over moves to another port', async (t) => {
  const ns = basename(netnsPath)
  const pod = { netnsPath, ip: '127.0.0.1' }
  // Each server ends after the delivery does, so the delivery side is left in TIME_WAIT.
  const listen = (): Promise<{ server: net.Server }> => listenInPod(pod, { host: '127.0.0.1', port: 0 }, (s) => s.on('end', () => s.end()).resume())
  const a = (await listen()).server
  const b = (await listen()).server
  t.teardown(() => {
    a.close()
    b.close()
  })
  const endpoint = (server: net.Server): { ip: string; port: number } => ({ ip: '127.0.0.1', port: (server.address() as net.AddressInfo).port })
  const client = { ip: '127.0.0.5', port: 1111 }
  const closeFirst = async (s: net.Socket): Promise<void> => {
    s.end()
    s.resume()
    await once(s, 'close')
  }
  const timeWaitOn = (port: number): boolean =>
    new RegExp(`${client.ip.replaceAll('.', '\\.')}(%lo)?:${port}\\s`).test(
      execFileSync('ip', ['netns', 'exec', ns, 'ss', '-Htn', 'state', 'time-wait'], { encoding: 'utf8' }),
    )

  // With TCP timestamps (the default): the same port again, to the same and to another destination.
  const port = 40404
  await closeFirst(await dialDelivery(pod, endpoint(a), client, 0x53a, () => port))
  t.ok(timeWaitOn(port), 'the first delivery left its port in TIME_WAIT')
  const again = await dialDelivery(pod, endpoint(a), client, 0x53a, () => port)
  t.equal(again.localPort, port, 'the same 4-tuple again: connect takes the TIME_WAIT one over')
  t.equal(again.localAddress, client.ip, 'delivered from the client address')
  await closeFirst(again)
  const other = await dialDelivery(pod, endpoint(b), client, 0x53a, () => port)
  t.equal(other.localPort, port, 'another destination binds the port TIME_WAIT holds')
  await closeFirst(other)

  // Without timestamps a connect may not take over a 4-tuple in TIME_WAIT: EADDRNOTAVAIL, another port.
  execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.tcp_timestamps=0'])
  t.teardown(() => execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.tcp_timestamps=1']))
  const plain = port + 10
  await closeFirst(await dialDelivery(pod, endpoint(a), client, 0x53a, () => plain))
  t.ok(timeWaitOn(plain), 'a TIME_WAIT without timestamps')
  const ports = [plain, plain + 1]
  const moved = await dialDelivery(pod, endpoint(a), client, 0x53a, () => ports.shift()!)
  t.equal(moved.localPort, plain + 1, 'the 4-tuple in TIME_WAIT (EADDRNOTAVAIL at connect) moved on to another port')
  moved.destroy()
  await t.rejects(
    dialDelivery(pod, endpoint(a), client, 0x53a, () => plain),
    { code: 'EADDRNOTAVAIL' },
    'a port that never frees up fails with the reason',
  )
})
