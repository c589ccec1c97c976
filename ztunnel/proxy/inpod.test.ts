// Spare sockets per pod netns: made in batches on first use, configured per dial on
// the main thread, gone when idle or closed; a dial without spares still works.
import net from 'node:net'
import { once } from 'node:events'
import { readdirSync, readlinkSync } from 'node:fs'
import t from 'tap'
import { makeNetns } from '../../native/testdata/fixtures.js'
import { dialFromPod, listenInPod, PodSockets, SPARE_SOCKETS } from './inpod.js'

const hostNetns = readlinkSync('/proc/self/ns/net')
const nsPath = makeNetns(t, 'spares')

/** Open socket descriptors of this process. */
function socketFds(): number {
  let n = 0
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')) n++
    } catch {
      // closed meanwhile
    }
  }
  return n
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (check()) return
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error(`timed out waiting for ${what}`)
}

t.test('the first dial makes its own socket and fills the spares; later dials use them, inside the pod netns', async (t) => {
  const pod = { netnsPath: nsPath, ip: '127.0.0.1' }
  const { server } = await listenInPod(pod, { host: '127.0.0.1', port: 0 }, (s) => s.end(`hi ${s.remotePort}`))
  t.teardown(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  const sockets = new PodSockets(nsPath)
  t.teardown(() => sockets.close())
  const withSpares = { ...pod, sockets }

  const read = async (s: net.Socket): Promise<string> => {
    let data = ''
    s.on('data', (d) => (data += d))
    await once(s, 'end')
    s.destroy()
    return data
  }
  t.match(await read(await dialFromPod(withSpares, { ip: '127.0.0.1', port }, { mark: 0x539 })), /^hi \d+$/, 'first dial (no spare yet) connects')
  t.equal(sockets.misses, 1, 'the first dial found no spare')
  await until(() => sockets.available === SPARE_SOCKETS, 'the refill')
  for (let i = 0; i < 3 * SPARE_SOCKETS; i++) {
    // 127.0.0.1:port exists only in the pod netns: reaching it proves each spare was made there.
    t.match(await read(await dialFromPod(withSpares, { ip: '127.0.0.1', port }, { mark: 0x539 })), /^hi \d+$/)
  }
  t.ok(sockets.misses < 1 + SPARE_SOCKETS, `most of ${3 * SPARE_SOCKETS} dials used spares (misses ${sockets.misses})`)
  t.equal(readlinkSync('/proc/self/ns/net'), hostNetns, 'the main thread stayed in the host netns')
})

t.test('a configure error closes the spare and names the value; close() releases every spare', async (t) => {
  const sockets = new PodSockets(nsPath)
  sockets.take()
  await until(() => sockets.available === SPARE_SOCKETS, 'the refill')
  const before = socketFds()
  await t.rejects(dialFromPod({ netnsPath: nsPath, ip: '127.0.0.1', sockets }, { ip: '127.0.0.1', port: 1 }, { mark: 1, bindToDevice: 'eth9' }), {
    code: 'ENODEV',
    message: `no device eth9 in network namespace ${nsPath}`,
  })
  t.equal(socketFds(), before - 1, 'the spare that failed to configure was closed')
  sockets.close()
  t.equal(socketFds(), before - SPARE_SOCKETS, 'close() closed the remaining spares')
  t.equal(sockets.take(), null, 'a closed pool hands out nothing')
})

t.test('spares of a pod that stopped dialing are closed', async (t) => {
  const sockets = new PodSockets(nsPath, undefined, 100)
  t.teardown(() => sockets.close())
  const before = socketFds()
  sockets.take()
  await until(() => sockets.available === SPARE_SOCKETS, 'the refill')
  t.equal(socketFds(), before + SPARE_SOCKETS)
  await until(() => sockets.available === 0, 'the idle close')
  t.equal(socketFds(), before, 'no spare left open')
})

t.test('a netns that is gone: the refill error is reported and dials fail with a clear error', async (t) => {
  const missing = `/run/netns/ambnat-${process.pid}-gone`
  const errors: string[] = []
  const sockets = new PodSockets(missing, (err) => errors.push(err.message))
  t.teardown(() => sockets.close())
  await t.rejects(dialFromPod({ netnsPath: missing, ip: '127.0.0.1', sockets }, { ip: '127.0.0.1', port: 1 }, { mark: 1 }), {
    code: 'ENOENT',
    message: /no network namespace at /,
  })
  await until(() => errors.length > 0, 'the refill error')
  t.match(errors[0], /no network namespace at /)
})
