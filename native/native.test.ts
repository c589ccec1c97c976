// The native addon against the real kernel: objects, globals, maps of each kind,
// pins, cgroup and netns attachments, sockets made inside another network
// namespace, and the errors bad input must give.
import t from 'tap'
import net from 'node:net'
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { BpfMap, BpfObject, MapType, NativeError, netnsCookie, numPossibleCpus, socketInNetns, BPF_NOEXIST } from './index.js'
import { Testbed } from '../test/harness/testbed.js'

const OBJECT = join(import.meta.dirname, '..', 'build', 'bpf-test', 'probe.bpf.o')
const tb = await Testbed.create({ name: 'native', nodes: [{ name: 'n1', pods: ['a', 'b'] }] })
t.teardown(() => tb.destroy())
mkdirSync(tb.pinRoot, { recursive: true })

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n)
  return b
}
const u64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(n)
  return b
}

t.test('maps: update, lookup, delete, iterate, per-cpu, flags', async (t) => {
  const obj = BpfObject.open(OBJECT, { pinRoot: tb.pinRoot })
  t.teardown(() => obj.close())
  obj.load()
  t.same(obj.programs().map((p) => p.name).sort(), ['probe_connect4', 'probe_sk_lookup'])
  const hash = obj.map('probe_hash')
  t.equal(hash.info.type, MapType.HASH)
  t.equal(hash.info.keySize, 4)
  t.equal(hash.lookup(u32(1)), null, 'absent key is null')
  hash.update(u32(1), u64(11n))
  hash.update(u32(2), u64(22n))
  t.equal(hash.lookup(u32(1))?.readBigUInt64LE(), 11n)
  t.throws(() => hash.update(u32(1), u64(0n), BPF_NOEXIST), { code: 'EEXIST', syscall: 'bpf_map_update_elem' })
  t.same([...hash.keys()].map((k) => k.readUInt32LE()).sort(), [1, 2])
  t.equal(hash.delete(u32(1)), true)
  t.equal(hash.delete(u32(1)), false, 'deleting what is gone is not an error')
  const percpu = obj.map('probe_percpu')
  t.equal(percpu.lookupSize, 8 * numPossibleCpus(), 'one slot per possible CPU')
  t.equal(percpu.lookup(u32(0))?.length, 8 * numPossibleCpus())
})

t.test('a const volatile global set before load is what the program sees', async (t) => {
  const obj = BpfObject.open(OBJECT, { pinRoot: tb.pinRoot })
  t.teardown(() => obj.close())
  obj.setGlobal('probe_setting', u32(5))
  t.throws(() => obj.setGlobal('probe_setting', Buffer.alloc(2)), { code: 'EINVAL', message: /probe_setting is 4 bytes, got 2/ })
  t.throws(() => obj.setGlobal('no_such_global', u32(1)), { code: 'ENOENT', message: /no_such_global/ })
  obj.load()
  const cgroup = tb.pod('a').cgroup
  const link = obj.attachCgroup('probe_connect4', cgroup)
  t.teardown(() => link.close())
  // One connect from a process in the cgroup runs the program once.
  const run = await tb.exec(tb.pod('a'), process.execPath, ['-e', "require('net').connect(9, '127.0.0.1').on('error', () => {})"])
  t.equal(run.code, 0)
  const total = [...Array(numPossibleCpus()).keys()].reduce((sum, cpu) => sum + obj.map('probe_percpu').lookup(u32(0))!.readBigUInt64LE(cpu * 8), 0n)
  t.equal(total, 5n, 'the program added the global set before load')
})

t.test('pins: a pinned map and link outlive the object; a new loader reuses the map with its data', async (t) => {
  const pins = join(tb.pinRoot, 'pins')
  mkdirSync(pins)
  const first = BpfObject.open(OBJECT, { pinRoot: pins })
  first.load()
  first.map('probe_pinned').update(u32(9), u64(99n))
  const link = first.attachNetns('probe_sk_lookup', tb.pod('b').netnsPath)
  link.pin(join(pins, 'probe_link'))
  link.close()
  first.close()
  t.ok(existsSync(join(pins, 'probe_link')), 'the link pin outlives its object')
  const reopened = BpfMap.openPinned(join(pins, 'probe_pinned'))
  t.teardown(() => reopened.close())
  t.equal(reopened.lookup(u32(9))?.readBigUInt64LE(), 99n, 'the pinned map kept its data')
  t.equal(reopened.info.name, 'probe_pinned')
  const second = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => second.close())
  second.load()
  t.equal(second.map('probe_pinned').lookup(u32(9))?.readBigUInt64LE(), 99n, 'a new load reuses the pinned map')
  t.throws(() => BpfMap.openPinned(join(pins, 'probe_hash')), { code: 'ENOENT', syscall: 'bpf_obj_get', message: /is the datapath loaded\?/ }, 'maps without pinning are not pinned')
})

t.test('sockets inside another network namespace, adopted by Node', async (t) => {
  const pod = tb.pod('a')
  const listenFd = await socketInNetns(pod.netnsPath, { family: 4, reuseAddr: true, bindAddress: '127.0.0.1', bindPort: 0, listenBacklog: 16 })
  const server = net.createServer((s) => s.end('hello from the pod'))
  await new Promise<void>((resolve) => server.listen({ fd: listenFd }, resolve))
  t.teardown(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  t.ok(port > 0, 'listening inside the pod on 127.0.0.1')
  // Nothing listens on that port in the test's own namespace: a plain connect fails.
  const fd = await socketInNetns(pod.netnsPath, { family: 4, mark: 0x539 })
  const client = new net.Socket({ fd, readable: true, writable: true })
  client.connect(port, '127.0.0.1')
  const reply = await new Promise<string>((resolve, reject) => {
    let data = ''
    client.on('data', (d) => (data += d))
    client.on('end', () => resolve(data))
    client.on('error', reject)
  })
  t.equal(reply, 'hello from the pod')

  const sockmapObj = BpfObject.open(OBJECT, { pinRoot: tb.pinRoot })
  t.teardown(() => sockmapObj.close())
  sockmapObj.load()
  const sockmap = sockmapObj.map('probe_sockmap')
  sockmap.update(u32(0), u64(BigInt(listenFd)))
  t.ok(sockmap.lookup(u32(0)), 'a listening socket goes into a SOCKMAP')
})

t.test('netns cookies', async (t) => {
  const a1 = await netnsCookie(tb.pod('a').netnsPath)
  const a2 = await netnsCookie(tb.pod('a').netnsPath)
  const b = await netnsCookie(tb.pod('b').netnsPath)
  t.equal(a1, a2, 'stable for one namespace')
  t.not(a1, b, 'distinct across namespaces')
  t.not(a1, await netnsCookie('/proc/self/ns/net'), "the main thread's namespace is unchanged")
})

t.test('bad input: clear errors, no crash', async (t) => {
  t.throws(() => BpfObject.open('/nonexistent/x.bpf.o', { pinRoot: tb.pinRoot }), { code: 'ENOENT', message: /no BPF object at \/nonexistent\/x.bpf.o/ })
  t.throws(() => BpfMap.openPinned('/sys/fs/bpf/ambient-does-not-exist'), { code: 'ENOENT', syscall: 'bpf_obj_get' })
  t.throws(() => BpfMap.openPinned('/tmp'), NativeError, 'a path outside bpffs is refused')
  const obj = BpfObject.open(OBJECT, { pinRoot: tb.pinRoot })
  t.teardown(() => obj.close())
  obj.load()
  const hash = obj.map('probe_hash')
  t.throws(() => hash.update(Buffer.alloc(3), u64(1n)), { code: 'EINVAL', message: /probe_hash: key must be 4 bytes, got 3/ })
  t.throws(() => hash.lookup(Buffer.alloc(5)), { code: 'EINVAL' })
  t.throws(() => obj.attachCgroup('no_such_program', tb.pod('a').cgroup), { code: 'ENOENT', message: /no_such_program/ })
  t.throws(() => obj.attachNetns('probe_sk_lookup', '/run/netns/ambient-no-such-netns'), { code: 'ENOENT', syscall: 'open netns' })
  await t.rejects(netnsCookie('/run/netns/ambient-no-such-netns'), { code: 'ENOENT', syscall: 'open netns', message: /is the pod still running\?/ })
  await t.rejects(socketInNetns('/run/netns/ambient-no-such-netns', { family: 4 }), { code: 'ENOENT' })
  await t.rejects(socketInNetns(tb.pod('a').netnsPath, { family: 4, bindAddress: '203.0.113.7', bindPort: 1 }), { code: 'EADDRNOTAVAIL', syscall: 'bind' })
  await t.rejects(socketInNetns(tb.pod('a').netnsPath, { family: 4, bindPort: 70000 }), { code: 'EINVAL', message: /bindPort must be 0-65535/ })
})
