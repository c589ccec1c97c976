// Attachments against the real kernel: a cgroup connect4 program that sees the
// global set before load, an sk_lookup program on a network namespace, pinned
// links that outlive their object, and a listening socket in a SOCKMAP.
import t from 'tap'
import net from 'node:net'
import { existsSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { BpfLink, BpfObject, socketInNetns } from './index.js'
import { bpftool, compileProbe, makeCgroup, makeNetns, pinDir, run, sumPerCpu, u32 } from './testdata/fixtures.js'

const OBJECT = compileProbe(t)
const pins = pinDir(t)

interface CgroupProg {
  readonly name: string
  readonly attach_type: string
}
interface LinkJson {
  readonly type: string
  readonly netns_ino?: number
  readonly attach_type?: string
}

const cgroupPrograms = (cg: string): string[] => ((bpftool(['cgroup', 'show', cg]) as CgroupProg[] | null) ?? []).map((p) => `${p.attach_type}:${p.name}`)
const netnsLinks = (netnsPath: string): LinkJson[] =>
  ((bpftool(['link', 'show']) as LinkJson[] | null) ?? []).filter((l) => l.type === 'netns' && l.netns_ino === statSync(netnsPath).ino)

/** Connects to a port in another netns through the connect4 hook of `cgroup`. */
const connectFrom = (cgroup: string) => run([process.execPath, '-e', "require('net').connect(9, '127.0.0.1').on('error', () => process.exit(0))"], { cgroup })

t.test('cgroup connect4: runs for processes of the cgroup with the global set before load; a pinned link outlives its object', async (t) => {
  const cg = makeCgroup(t, 'connect4')
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.setGlobal('probe_setting', u32(5))
  t.throws(() => obj.attachCgroup('probe_connect4', cg), { code: 'EINVAL', message: /is not loaded: call load\(\) first/ })
  obj.load()
  const counter = obj.map('probe_percpu')
  const link = obj.attachCgroup('probe_connect4', cg)
  t.same(cgroupPrograms(cg), ['cgroup_inet4_connect:probe_connect4'], 'attached to the cgroup')

  const first = await connectFrom(cg)
  t.equal(first.code, 0, first.stderr)
  t.equal(sumPerCpu(counter.lookup(u32(0))), 5n, 'one connect from the cgroup added the global set before load (5, not the default 7)')
  const outside = await run([process.execPath, '-e', "require('net').connect(9, '127.0.0.1').on('error', () => process.exit(0))"])
  t.equal(outside.code, 0)
  t.equal(sumPerCpu(counter.lookup(u32(0))), 5n, 'a process outside the cgroup does not run it')

  const pin = join(pins, 'connect4_link')
  link.pin(pin)
  t.teardown(() => rmSync(pin, { force: true }))
  t.throws(() => link.pin(join(pins, 'elsewhere')), { code: 'EBUSY', message: /this link is already pinned/ })
  link.close()
  link.close()
  obj.close()
  t.same(cgroupPrograms(cg), ['cgroup_inet4_connect:probe_connect4'], 'the pinned link keeps the program attached after the object closed')
  const loaded = BpfLink.pinnedGlobals(pin)
  t.equal(loaded.get('probe_setting')?.readUInt32LE(0), 5, 'the pinned link tells the global its program was loaded with (5, not the default 7)')
  t.throws(() => BpfLink.pinnedGlobals(join(pins, 'no-such-link')), { code: 'ENOENT', message: /no pinned link at / })
  t.throws(() => BpfLink.pinnedGlobals(join(pins, 'probe_pinned')), { code: 'EINVAL', message: /probe_pinned is pinned, but not a link/ })
  rmSync(pin)
  // The kernel frees the link once the last reference (the pin) is gone.
  for (let i = 0; i < 50 && cgroupPrograms(cg).length > 0; i++) await new Promise((r) => setTimeout(r, 20))
  t.same(cgroupPrograms(cg), [], 'removing the pin detaches it')
})

t.test('cgroup attach errors', async (t) => {
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.load()
  t.throws(() => obj.attachCgroup('probe_connect4', `/sys/fs/cgroup/unified/ambient-test-${process.pid}-missing`), {
    code: 'ENOENT',
    syscall: 'open',
    message: /no cgroup at /,
  })
  t.throws(() => obj.attachCgroup('no_such_program', '/sys/fs/cgroup/unified'), {
    code: 'ENOENT',
    message: /no program no_such_program in .* \(it has: probe_connect4, probe_sk_lookup\)/,
  })
  t.throws(() => obj.attachCgroup('probe_connect4', '/tmp'), { code: 'EBADF', message: /\/tmp is not a cgroup v2 directory/ })
})

t.test('sk_lookup on a network namespace: runs for connections there; a pinned link outlives its object', async (t) => {
  const netns = makeNetns(t, 'sklookup')
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.load()
  const counter = obj.map('probe_percpu')
  t.throws(() => obj.attachNetns('probe_connect4', netns), { code: 'EINVAL', message: /use an SEC\("sk_lookup"\) program/ })
  const link = obj.attachNetns('probe_sk_lookup', netns)
  t.equal(netnsLinks(netns).length, 1, 'one netns link on that namespace')

  const fd = await socketInNetns(netns, { family: 4, bindAddress: '127.0.0.1', bindPort: 0, listenBacklog: 8 })
  const server = net.createServer((s) => s.end('through sk_lookup'))
  await new Promise<void>((resolve) => server.listen({ fd }, resolve))
  t.teardown(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  const client = new net.Socket({ fd: await socketInNetns(netns, { family: 4 }), readable: true, writable: true })
  client.connect(port, '127.0.0.1')
  const reply = await new Promise<string>((resolve, reject) => {
    let data = ''
    client
      .on('data', (d) => (data += d))
      .on('end', () => resolve(data))
      .on('error', reject)
  })
  t.equal(reply, 'through sk_lookup', 'the program passes the connection on')
  t.ok(sumPerCpu(counter.lookup(u32(1))) >= 1n, 'the sk_lookup program ran for the connection in that namespace')

  const pin = join(pins, 'sk_lookup_link')
  t.throws(() => link.pin(join(pins, 'probe_pinned')), { code: 'EEXIST', message: /something is already pinned there: remove it or pick another path/ })
  link.pin(pin)
  t.teardown(() => rmSync(pin, { force: true }))
  link.close()
  obj.close()
  t.ok(existsSync(pin))
  t.equal(netnsLinks(netns).length, 1, 'the pinned link stays after the object closed')
  rmSync(pin)
  for (let i = 0; i < 50 && netnsLinks(netns).length > 0; i++) await new Promise((r) => setTimeout(r, 20))
  t.equal(netnsLinks(netns).length, 0, 'removing the pin detaches it')
})

t.test('netns attach errors', async (t) => {
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.load()
  const missing = `/run/netns/ambnat-${process.pid}-missing`
  t.throws(() => obj.attachNetns('probe_sk_lookup', missing), {
    code: 'ENOENT',
    errno: 2,
    syscall: 'open',
    message: `no network namespace at ${missing}: is the pod still running?`,
  })
  t.throws(() => obj.attachNetns('probe_sk_lookup', '/tmp'), { code: 'EINVAL', message: /\/tmp is not a network namespace/ })
  t.throws(() => obj.attachNetns('probe_sk_lookup', '/proc/self/ns/mnt'), { code: 'EINVAL', message: /network namespace/ })
})

t.test('a listening socket goes into a SOCKMAP (value: its fd as u32), not before listen()', async (t) => {
  const netns = makeNetns(t, 'sockmap')
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.load()
  const sockmap = obj.map('probe_sockmap')
  const unbound = await socketInNetns(netns, { family: 4 })
  const listening = await socketInNetns(netns, { family: 4, bindAddress: '127.0.0.1', bindPort: 0, listenBacklog: 8 })
  const server = net.createServer()
  t.teardown(() => server.close())
  t.throws(
    () => sockmap.update(u32(0), u32(unbound)),
    { code: 'EOPNOTSUPP', syscall: 'bpf_map_update_elem', message: /map probe_sockmap: / },
    'a socket that does not listen is refused',
  )
  new net.Socket({ fd: unbound }).destroy()
  sockmap.update(u32(0), u32(listening))
  t.throws(() => sockmap.lookup(u32(0)), { code: 'EOPNOTSUPP', message: /only readable with 8-byte values/ })
  t.same(
    [...sockmap.keys()].map((k) => k.readUInt32LE()),
    [0, 1, 2, 3],
    'an array-like map lists every index',
  )
  t.equal(sockmap.delete(u32(0)), true, 'the socket was in the map')
  t.equal(sockmap.delete(u32(0)), false, 'and is gone after delete')
  await new Promise<void>((resolve) => server.listen({ fd: listening }, resolve))
})
