// Sockets made inside another network namespace and adopted by Node, netns
// cookies, and proof that neither the main thread nor a libuv pool thread is left
// in another namespace.
import t from 'tap'
import net from 'node:net'
import { execFileSync } from 'node:child_process'
import { readFileSync, readlinkSync } from 'node:fs'
import { basename } from 'node:path'
import { closeFd, configureSocket, netnsCookie, podRouting, podSockets, socketInNetns, socketsInNetns } from './index.js'
import { makeNetns } from './testdata/fixtures.js'

const nsA = makeNetns(t, 'a')
const nsB = makeNetns(t, 'b')

const readAll = (socket: net.Socket): Promise<string> =>
  new Promise((resolve, reject) => {
    let data = ''
    socket
      .on('data', (d) => (data += d))
      .on('end', () => resolve(data))
      .on('error', reject)
  })

t.test('a listener made in a netns is adopted by net.Server and reached from a socket made in the same netns', async (t) => {
  const listenFd = await socketInNetns(nsA, { family: 4, reuseAddr: true, bindAddress: '127.0.0.1', bindPort: 0, listenBacklog: 16 })
  t.ok(Number.isInteger(listenFd) && listenFd > 2)
  const seen: string[] = []
  const server = net.createServer((s) => {
    seen.push(`${s.remoteAddress}->${s.localAddress}:${s.localPort}`)
    s.end('hello from netns a')
  })
  await new Promise<void>((resolve) => server.listen({ fd: listenFd }, resolve))
  t.teardown(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  t.ok(port > 0, 'the kernel picked a port')

  const fd = await socketInNetns(nsA, { family: 4, mark: 0x539 })
  const client = new net.Socket({ fd, readable: true, writable: true })
  client.connect(port, '127.0.0.1') // same tick as the adoption
  t.equal(await readAll(client), 'hello from netns a')
  t.same(seen, [`127.0.0.1->127.0.0.1:${port}`])

  // The port is in netns a only: from netns b the same connect is refused.
  const other = new net.Socket({ fd: await socketInNetns(nsB, { family: 4 }), readable: true, writable: true })
  other.connect(port, '127.0.0.1')
  await t.rejects(readAll(other), { code: 'ECONNREFUSED' }, 'netns b has no such listener')
})

t.test('socket options: IPv6, reusePort, transparent, bindToDevice, a foreign address', async (t) => {
  const v6 = await socketInNetns(nsA, { family: 6, bindAddress: '::1', bindPort: 0, listenBacklog: 4, reusePort: true })
  const server6 = net.createServer((s) => s.end('v6'))
  await new Promise<void>((resolve) => server6.listen({ fd: v6 }, resolve))
  t.teardown(() => server6.close())
  const port6 = (server6.address() as net.AddressInfo).port
  const twin = await socketInNetns(nsA, { family: 6, bindAddress: '::1', bindPort: port6, reusePort: true })
  closeFd(twin)
  t.pass('a second socket binds the same port with reusePort')
  const c6 = new net.Socket({ fd: await socketInNetns(nsA, { family: 6, bindToDevice: 'lo' }), readable: true, writable: true })
  c6.connect(port6, '::1')
  t.equal(await readAll(c6), 'v6')

  // IP_TRANSPARENT lets a socket bind an address the namespace does not own.
  const foreign = await socketInNetns(nsA, { family: 4, transparent: true, bindAddress: '198.18.0.77', bindPort: 0 })
  closeFd(foreign)
  await t.rejects(socketInNetns(nsA, { family: 4, bindAddress: '198.18.0.77', bindPort: 0 }), {
    code: 'EADDRNOTAVAIL',
    syscall: 'bind',
    message: /bind\(198\.18\.0\.77:0\) in network namespace .* use an address of that namespace, or transparent: true/,
  })
  await t.rejects(socketInNetns(nsA, { family: 4, bindToDevice: 'eth9' }), { code: 'ENODEV', message: `no device eth9 in network namespace ${nsA}` })
  const taken = await socketInNetns(nsA, { family: 4, bindAddress: '127.0.0.1', bindPort: 0, listenBacklog: 1 })
  const takenServer = net.createServer()
  await new Promise<void>((resolve) => takenServer.listen({ fd: taken }, resolve))
  t.teardown(() => takenServer.close())
  const takenPort = (takenServer.address() as net.AddressInfo).port
  await t.rejects(socketInNetns(nsA, { family: 4, bindAddress: '127.0.0.1', bindPort: takenPort }), { code: 'EADDRINUSE', message: /address already in use/ })
})

t.test('netns cookies: equal for one namespace, distinct across namespaces', async (t) => {
  const a1 = await netnsCookie(nsA)
  const a2 = await netnsCookie(nsA)
  const b = await netnsCookie(nsB)
  const host = await netnsCookie('/proc/self/ns/net')
  t.type(a1, 'bigint')
  t.ok(a1 > 0n)
  t.equal(a1, a2, 'stable for one namespace')
  t.not(a1, b, 'distinct across namespaces')
  t.not(a1, host)
  t.not(b, host)
  t.equal(await netnsCookie(`/proc/${process.pid}/ns/net`), host, 'a /proc path names the same namespace')
})

t.test('sockets made in a batch keep their netns; configured later on the main thread', async (t) => {
  const fds = await socketsInNetns(nsA, 4, 8)
  t.equal(fds.length, 8)
  t.equal(new Set(fds).size, 8, 'eight distinct fds')
  // One becomes a listener in netns a, configured from this (host-netns) thread.
  configureSocket(fds[0]!, nsA, { family: 4, reuseAddr: true, bindAddress: '127.0.0.1', bindPort: 0, listenBacklog: 4 })
  const server = net.createServer((s) => s.end('batch'))
  await new Promise<void>((resolve) => server.listen({ fd: fds[0]! }, resolve))
  t.teardown(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  // Another, marked, bound to lo and to a source address, reaches it: bind and
  // SO_BINDTODEVICE resolved in netns a, where the socket was made.
  configureSocket(fds[1]!, nsA, { family: 4, mark: 0x539, bindToDevice: 'lo', bindAddress: '127.0.0.1', bindPort: 0 })
  const client = new net.Socket({ fd: fds[1]!, readable: true, writable: true })
  client.connect(port, '127.0.0.1')
  t.equal(await readAll(client), 'batch')
  // The same port in the host netns: nothing listens there.
  const host = new net.Socket()
  await t.rejects(readAll(host.connect(port, '127.0.0.1')), { code: 'ECONNREFUSED' }, 'the listener is not in the host netns')
  // Errors name the value and the namespace, with socketInNetns's codes.
  t.throws(() => configureSocket(fds[2]!, nsA, { family: 4, bindAddress: '198.18.0.79', bindPort: 0 }), {
    code: 'EADDRNOTAVAIL',
    syscall: 'bind',
    message: `bind(198.18.0.79:0) in network namespace ${nsA} failed: address not available there: use an address of that namespace, or transparent: true`,
  })
  configureSocket(fds[5]!, nsA, { family: 4, transparent: true, bindAddress: '198.18.0.79', bindPort: 0 })
  t.pass('with transparent the same foreign address binds')
  t.throws(() => configureSocket(fds[3]!, nsA, { family: 4, bindToDevice: 'eth9' }), { code: 'ENODEV', message: `no device eth9 in network namespace ${nsA}` })
  t.throws(() => configureSocket(fds[4]!, nsA, { family: 4, bindPort: 80 }), { code: 'EINVAL', message: 'bindPort needs bindAddress' })
  t.throws(() => configureSocket(-1, nsA, { family: 4 }), { code: 'EINVAL', message: /fd must be a non-negative integer/ })
  for (const fd of fds.slice(2)) closeFd(fd)
  await t.rejects(socketsInNetns(nsA, 4, 0), { code: 'EINVAL', message: 'count must be 1-64, got 0' })
  await t.rejects(socketsInNetns(nsA, 4, 65), { code: 'EINVAL', message: 'count must be 1-64, got 65' })
  await t.rejects(socketsInNetns(`/run/netns/ambnat-${process.pid}-missing`, 4, 2), { code: 'ENOENT', message: /no network namespace at / })
})

t.test('no thread of this process is left in another namespace', async (t) => {
  const mainBefore = readlinkSync('/proc/self/ns/net')
  const host = await netnsCookie('/proc/self/ns/net')
  // Many concurrent calls keep every libuv pool thread busy with other namespaces.
  const fds = await Promise.all(Array.from({ length: 64 }, (_, i) => socketInNetns(i % 2 ? nsA : nsB, { family: 4 })))
  for (const fd of fds) closeFd(fd)
  const cookies = await Promise.all(Array.from({ length: 64 }, (_, i) => netnsCookie(i % 2 ? nsA : nsB)))
  t.equal(new Set(cookies).size, 2)
  t.equal(readlinkSync('/proc/self/ns/net'), mainBefore, 'the main thread never changed namespace')
  // /proc/thread-self is opened by the pool thread that runs the call: each must
  // still be in the host namespace.
  const poolThreads = await Promise.all(Array.from({ length: 16 }, () => netnsCookie('/proc/thread-self/ns/net')))
  t.same(new Set(poolThreads), new Set([host]), 'every pool thread is still in the host namespace')
  t.equal(readlinkSync('/proc/self/task/' + process.pid + '/ns/net'), mainBefore)
})

t.test('bad input: clear errors, no crash', async (t) => {
  const missing = `/run/netns/ambnat-${process.pid}-missing`
  await t.rejects(netnsCookie(missing), { code: 'ENOENT', errno: 2, syscall: 'open', message: `no network namespace at ${missing}: is the pod still running?` })
  await t.rejects(socketInNetns(missing, { family: 4 }), { code: 'ENOENT', message: /no network namespace at / })
  await t.rejects(socketInNetns('/tmp', { family: 4 }), {
    code: 'EINVAL',
    syscall: 'setns',
    message: '/tmp is not a network namespace: pass /proc/PID/ns/net or /run/netns/NAME',
  })
  await t.rejects(netnsCookie('/proc/self/ns/uts'), { code: 'EINVAL', syscall: 'setns' })
  await t.rejects(socketInNetns(nsA, { family: 5 as 4 }), { code: 'EINVAL', message: 'family must be 4 or 6, got 5' })
  await t.rejects(socketInNetns(nsA, { family: 4, bindAddress: '127.0.0.1', bindPort: 70000 }), { code: 'EINVAL', message: /bindPort must be 0-65535/ })
  await t.rejects(socketInNetns(nsA, { family: 4, bindPort: 80 }), { code: 'EINVAL', message: 'bindPort needs bindAddress' })
  await t.rejects(socketInNetns(nsA, { family: 4, mark: -1 }), { code: 'EINVAL', message: /mark must be a 32-bit/ })
  await t.rejects(socketInNetns(nsA, { family: 4, bindAddress: 'not-an-ip', bindPort: 1 }), {
    code: 'EINVAL',
    syscall: 'inet_pton',
    message: /not-an-ip is not a numeric IPv4 address/,
  })
  await t.rejects(netnsCookie(''), { code: 'EINVAL' })
  const high = await socketInNetns(nsA, { family: 4, mark: 0xfffffff0 })
  closeFd(high)
  t.pass('a mark above 2^31 is accepted')
})

t.test('podSockets: every pod of a batch in one trip, its cookie, one failing pod fails alone', async (t) => {
  const missing = `/run/netns/ambnat-${process.pid}-gone`
  const listen = { family: 4 as const, reuseAddr: true, bindAddress: '127.0.0.1', bindPort: 0, listenBacklog: 8 }
  const [a, gone, b] = await podSockets([
    { netnsPath: nsA, sockets: [listen, listen, { family: 4, mark: 0x539 }] },
    { netnsPath: missing, sockets: [listen] },
    { netnsPath: nsB, sockets: [] },
  ])
  if (a instanceof Error || b instanceof Error) throw a instanceof Error ? a : b
  t.equal(a!.netnsCookie, await netnsCookie(nsA), "the first pod's namespace cookie")
  t.equal(b!.netnsCookie, await netnsCookie(nsB), 'a request without sockets still gets the cookie')
  t.equal(a!.fds.length, 3)
  t.match(gone, { code: 'ENOENT', message: `no network namespace at ${missing}: is the pod still running?` }, 'the missing pod fails alone')
  const server = net.createServer((s) => s.end('made in a'))
  await new Promise<void>((resolve) => server.listen({ fd: a!.fds[0]! }, resolve))
  t.teardown(() => server.close())
  closeFd(a!.fds[1]!)
  const client = new net.Socket({ fd: a!.fds[2]!, readable: true, writable: true })
  client.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  t.equal(await readAll(client), 'made in a', 'the listener is in netns a and accepts')

  const port = (server.address() as net.AddressInfo).port
  const [clash] = await podSockets([{ netnsPath: nsA, sockets: [{ family: 4 }, { ...listen, reuseAddr: false, bindPort: port }] }])
  t.match(clash, { code: 'EADDRINUSE', syscall: 'bind', message: new RegExp(`bind\\(127\\.0\\.0\\.1:${port}\\) in network namespace ${nsA}`) })
  await t.rejects(podSockets([]), { code: 'EINVAL' })
  await t.rejects(podSockets([{ netnsPath: nsA, sockets: [{ family: 5 as 4 }] }]), { code: 'EINVAL', message: /family must be 4 or 6/ })
})

t.test('podRouting: the in-pod reply route over rtnetlink, idempotent both ways', async (t) => {
  const ns = basename(nsA)
  const settings = { mark: 0x111, table: 133, priority: 100 }
  const show = (): { rules: string; routes: string; sysctl: string } => ({
    rules: execFileSync('ip', ['-n', ns, '-4', 'rule', 'show'], { encoding: 'utf8' }),
    routes: execFileSync('ip', ['-n', ns, '-4', 'route', 'show', 'table', '133'], { encoding: 'utf8' }),
    sysctl: execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-n', 'net.ipv4.tcp_fwmark_accept'], { encoding: 'utf8' }).trim(),
  })
  const hostBefore = readFileSync('/proc/sys/net/ipv4/tcp_fwmark_accept', 'utf8').trim()
  t.same(await podRouting([nsA, nsA], settings, true), [null, null], 'added (twice in one batch)')
  let now = show()
  t.equal(now.rules.match(/fwmark 0x111 lookup 133/g)?.length, 1, 'one rule')
  t.match(now.rules, /^100:\s+from all fwmark 0x111 lookup 133/m)
  t.match(now.routes, /^local default dev lo/m)
  t.equal(now.sysctl, '1', 'tcp_fwmark_accept set in the pod')
  t.equal(readFileSync('/proc/sys/net/ipv4/tcp_fwmark_accept', 'utf8').trim(), hostBefore, "the machine's own sysctl untouched")
  t.same(await podRouting([nsA], settings, false), [null], 'removed')
  now = show()
  t.notMatch(now.rules, /fwmark 0x111/)
  t.equal(now.routes.trim(), '')
  t.same(await podRouting([nsA], settings, false), [null], 'removing what is gone is success')
  const missing = `/run/netns/ambnat-${process.pid}-gone`
  const [gone] = await podRouting([missing], settings, true)
  t.match(gone, { code: 'ENOENT', message: `no network namespace at ${missing}: is the pod still running?` })
  await t.rejects(podRouting([nsA], { ...settings, table: 0 }, true), { code: 'EINVAL' })
})
