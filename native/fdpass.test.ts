// Descriptors over a Unix stream socket (SCM_RIGHTS), as a ztunnel handoff uses
// them: a listening TCP socket sent by one side is the same socket on the other
// (same cookie) and accepts there; frames keep their bounds and descriptors; end
// of stream, a deadline and a missing peer are clear results.
import t from 'tap'
import net from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { closeFd, recvFrame, sendFrame, socketCookie, unixConnect } from './index.js'

const dir = mkdtempSync(join(tmpdir(), 'ambient-fdpass-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

/** A Unix listener whose accepted connection's fd is handed to `onFd` (the socket stays paused: Node never reads it). */
async function unixServer(path: string, onFd: (fd: number, socket: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer({ pauseOnConnect: true }, (socket) => onFd((socket as unknown as { _handle: { fd: number } })._handle.fd, socket))
  await new Promise<void>((resolve) => server.listen(path, resolve))
  return server
}

t.test('a listening socket crosses over and accepts on the other side; frames keep bounds and order', async (t) => {
  const path = join(dir, 'a.sock')
  const tcp = net.createServer((s) => s.end('served by the receiver'))
  const original = net.createServer()
  await new Promise<void>((resolve) => original.listen(0, '127.0.0.1', resolve))
  t.teardown(() => original.close())
  const fdOf = (original as unknown as { _handle: { fd: number } })._handle.fd
  const sentCookie = socketCookie(fdOf)
  const server = await unixServer(path, (fd, socket) => {
    sendFrame(fd, Buffer.from('first'), [fdOf, fdOf])
    sendFrame(fd, Buffer.from('second'))
    sendFrame(fd, Buffer.alloc(0), [fdOf])
    setTimeout(() => socket.destroy(), 50)
  })
  t.teardown(() => server.close())
  const fd = unixConnect(path)
  t.teardown(() => closeFd(fd))
  const first = await recvFrame(fd, 5000)
  t.equal(first!.data.toString(), 'first')
  t.equal(first!.fds.length, 2, 'two descriptors with the first frame')
  t.equal(socketCookie(first!.fds[0]!), sentCookie, 'the same socket (same cookie)')
  t.equal(socketCookie(first!.fds[1]!), sentCookie)
  const second = await recvFrame(fd, 5000)
  t.same([second!.data.toString(), second!.fds], ['second', []], 'a frame without descriptors')
  const third = await recvFrame(fd, 5000)
  t.same([third!.data.length, third!.fds.length], [0, 1], 'an empty frame with one descriptor')
  t.equal(await recvFrame(fd, 5000), null, 'end of stream')
  closeFd(first!.fds[1]!)
  closeFd(third!.fds[0]!)
  // The sender stops listening on its copy; the received one still holds the socket and accepts.
  await new Promise<void>((resolve) => original.close(() => resolve()))
  await new Promise<void>((resolve) => tcp.listen({ fd: first!.fds[0]! }, resolve))
  t.teardown(() => tcp.close())
  const port = (tcp.address() as net.AddressInfo).port
  const got = await new Promise<string>((resolve, reject) => {
    let text = ''
    net
      .connect(port, '127.0.0.1')
      .on('data', (d) => (text += d))
      .on('end', () => resolve(text))
      .on('error', reject)
  })
  t.equal(got, 'served by the receiver')
})

t.test('deadline, missing peer and bad input', async (t) => {
  const path = join(dir, 'quiet.sock')
  const server = await unixServer(path, () => undefined)
  t.teardown(() => server.close())
  const fd = unixConnect(path)
  t.teardown(() => closeFd(fd))
  await t.rejects(recvFrame(fd, 100), { code: 'ETIMEDOUT', message: /no handover frame within 100 ms/ })
  t.throws(() => unixConnect(join(dir, 'nobody.sock')), { code: 'ENOENT', syscall: 'connect' })
  t.throws(() => unixConnect('x'.repeat(200)), { code: 'EINVAL' })
  t.throws(
    () =>
      sendFrame(
        fd,
        Buffer.alloc(1),
        Array.from({ length: 254 }, () => 0),
      ),
    { code: 'EINVAL' },
  )
  await t.rejects(recvFrame(fd, 0), { code: 'EINVAL' })
})
