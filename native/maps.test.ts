// Objects and maps against the real kernel: load, map operations of each kind,
// per-CPU values, a const volatile global set before load, pins that outlive
// their object and are reopened.
import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { BPF_EXIST, BPF_NOEXIST, BpfMap, BpfObject, MapType, NativeError, numPossibleCpus } from './index.js'
import { compileProbe, pinDir, sumPerCpu, u32, u64 } from './testdata/fixtures.js'

const OBJECT = compileProbe(t)
const pins = pinDir(t)

t.test('open and load: programs and maps are listed with their metadata', async (t) => {
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  t.same(
    obj
      .programs()
      .map((p) => [p.name, p.section, p.fd])
      .sort(),
    [
      ['probe_connect4', 'cgroup/connect4', -1],
      ['probe_sk_lookup', 'sk_lookup', -1],
    ],
    'no fd before load',
  )
  t.throws(() => obj.map('probe_hash'), { code: 'EINVAL', message: /call load\(\) first/ })
  obj.load()
  t.ok(
    obj.programs().every((p) => p.fd > 0),
    'every program has an fd after load',
  )
  const names = obj.maps().map((m) => m.info.name)
  for (const name of ['probe_hash', 'probe_percpu', 'probe_sockmap', 'probe_pinned']) t.ok(names.includes(name), name)
  t.ok(
    names.some((n) => n.endsWith('.rodata')),
    'the .rodata map of the globals',
  )
  t.same(obj.map('probe_hash').info, { name: 'probe_hash', type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 16 })
  t.equal(obj.map('probe_hash'), obj.map('probe_hash'), 'map metadata is cached per object')
  t.throws(() => obj.map('nope'), { code: 'ENOENT', message: /has no map nope \(it has: .*probe_hash/ })
  t.throws(() => obj.load(), { code: 'EINVAL', message: /already loaded/ })
})

t.test('hash map: update, lookup, flags, delete, iterate', async (t) => {
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.load()
  const hash = obj.map('probe_hash')
  t.equal(hash.lookup(u32(1)), null, 'absent key is null')
  hash.update(u32(1), u64(11n))
  hash.update(u32(2), u64(22n), BPF_NOEXIST)
  t.equal(hash.lookup(u32(1))?.readBigUInt64LE(), 11n)
  t.equal(hash.lookup(u32(2))?.readBigUInt64LE(), 22n)
  t.throws(() => hash.update(u32(1), u64(0n), BPF_NOEXIST), { code: 'EEXIST', errno: 17, syscall: 'bpf_map_update_elem', message: /^map probe_hash: / })
  t.throws(() => hash.update(u32(3), u64(0n), BPF_EXIST), { code: 'ENOENT', syscall: 'bpf_map_update_elem' })
  hash.update(u32(1), u64(12n), BPF_EXIST)
  t.equal(hash.lookup(u32(1))?.readBigUInt64LE(), 12n, 'BPF_EXIST replaces')
  t.same([...hash.keys()].map((k) => k.readUInt32LE()).sort(), [1, 2])
  t.same([...hash.entries()].map(([k, v]) => [k.readUInt32LE(), v.readBigUInt64LE()]).sort(), [
    [1, 12n],
    [2, 22n],
  ])
  t.equal(hash.delete(u32(1)), true)
  t.equal(hash.delete(u32(1)), false, 'deleting what is gone is not an error')
  t.same(
    [...hash.keys()].map((k) => k.readUInt32LE()),
    [2],
  )
  for (let i = 100; i < 114; i++) hash.update(u32(i), u64(BigInt(i)))
  t.equal([...hash.keys()].length, 15)
  t.equal(hash.count(), 15, 'count() walks the same keys')
  t.same(
    [...hash.entries()].map(([k, v]) => [k.readUInt32LE(), v.readBigUInt64LE()]).sort((a, b) => Number(a[0]) - Number(b[0])),
    [[2, 22n], ...Array.from({ length: 14 }, (_, i) => [100 + i, BigInt(100 + i)])],
    'entries() reads every key with its value in one call',
  )
  hash.update(u32(200), u64(1n))
  t.throws(() => hash.update(u32(201), u64(1n)), { code: 'E2BIG', message: /map probe_hash: .*max_entries/ }, 'a full map says so')
})

t.test('per-CPU array: one 8-byte slot per possible CPU', async (t) => {
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.load()
  const percpu = obj.map('probe_percpu')
  const cpus = numPossibleCpus()
  t.ok(cpus >= 1)
  t.equal(percpu.valueBytes, 8 * cpus)
  t.equal(sumPerCpu(percpu.lookup(u32(0))), 0n, 'starts at zero')
  const value = Buffer.alloc(8 * cpus)
  for (let cpu = 0; cpu < cpus; cpu++) value.writeBigUInt64LE(BigInt(cpu + 1), cpu * 8)
  percpu.update(u32(1), value)
  t.same(percpu.lookup(u32(1)), value, 'each CPU keeps its own value')
  t.throws(() => percpu.update(u32(1), u64(1n)), { code: 'EINVAL', message: new RegExp(`map probe_percpu: value must be ${8 * cpus} bytes, got 8`) })
  t.equal(percpu.lookup(u32(2)), null, 'an index past max_entries of an array reads as absent')
  const entries = [...percpu.entries()]
  t.equal(entries.length, percpu.info.maxEntries, 'an array has every index as a key')
  t.same(entries.find(([k]) => k.readUInt32LE() === 1)?.[1], value, 'entries() reads whole per-CPU values')
})

t.test('a const volatile global set before load is what the object holds', async (t) => {
  const defaults = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => defaults.close())
  defaults.load()
  const rodataOf = (obj: BpfObject): BpfMap => obj.maps().find((m) => m.info.name.endsWith('.rodata'))!
  t.equal(rodataOf(defaults).lookup(u32(0))?.readUInt32LE(0), 7, 'the compiled-in default')

  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.setGlobal('probe_setting', u32(5))
  t.throws(() => obj.setGlobal('probe_setting', Buffer.alloc(2)), { code: 'EINVAL', errno: 22, message: /global probe_setting of .* is 4 bytes, got 2/ })
  t.throws(() => obj.setGlobal('probe_setting', u64(1n)), { code: 'EINVAL', message: /is 4 bytes, got 8/ })
  t.throws(() => obj.setGlobal('no_such_global', u32(1)), { code: 'ENOENT', message: /no global no_such_global/ })
  obj.load()
  t.equal(rodataOf(obj).lookup(u32(0))?.readUInt32LE(0), 5, 'the value set before load')
  t.throws(() => obj.setGlobal('probe_setting', u32(6)), { code: 'EINVAL', message: /only be set before load/ })
})

t.test('pins: a pinned map outlives its object and a new load reuses it with its data', async (t) => {
  const dir = pinDir(t, 'reuse')
  const first = BpfObject.open(OBJECT, { pinRoot: dir })
  first.load()
  t.ok(existsSync(join(dir, 'probe_pinned')), 'LIBBPF_PIN_BY_NAME pinned the map under pinRoot')
  t.notOk(existsSync(join(dir, 'probe_hash')), 'maps without pinning are not pinned')
  const firstMap = first.map('probe_pinned')
  firstMap.update(u32(9), u64(99n))
  first.close()
  t.throws(() => firstMap.lookup(u32(9)), { code: 'EBADF', message: /map probe_pinned is closed/ }, 'a closed object closes its maps')

  const reopened = BpfMap.openPinned(join(dir, 'probe_pinned'))
  t.teardown(() => reopened.close())
  t.same(reopened.info, { name: 'probe_pinned', type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 16 })
  t.equal(reopened.lookup(u32(9))?.readBigUInt64LE(), 99n, 'the pinned map kept its data')
  reopened.update(u32(10), u64(100n))

  const second = BpfObject.open(OBJECT, { pinRoot: dir })
  t.teardown(() => second.close())
  second.load()
  const reused = second.map('probe_pinned')
  t.equal(reused.lookup(u32(9))?.readBigUInt64LE(), 99n, 'a new load reuses the pinned map')
  t.equal(reused.lookup(u32(10))?.readBigUInt64LE(), 100n, 'and sees writes through the reopened fd')
  reused.delete(u32(9))
  t.equal(reopened.lookup(u32(9)), null, 'one map seen through two fds')
  reopened.close()
  reopened.close()
  t.throws(() => reopened.lookup(u32(10)), { code: 'EBADF' }, 'a closed map refuses work instead of using a stale fd')
})

t.test('wrong sizes and types are refused before any system call', async (t) => {
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.load()
  const hash = obj.map('probe_hash')
  t.throws(() => hash.update(Buffer.alloc(3), u64(1n)), {
    code: 'EINVAL',
    errno: 22,
    syscall: 'validate',
    message: 'map probe_hash: key must be 4 bytes, got 3',
  })
  t.throws(() => hash.update(u32(1), u32(1)), { message: 'map probe_hash: value must be 8 bytes, got 4' })
  t.throws(() => hash.lookup(Buffer.alloc(5)), { code: 'EINVAL', message: /key must be 4 bytes, got 5/ })
  t.throws(() => hash.delete(Buffer.alloc(0)), { code: 'EINVAL' })
  t.throws(() => hash.lookup('1' as unknown as Buffer), { code: 'EINVAL', message: /key must be a Buffer/ })
  t.throws(() => hash.update(u32(1), u64(1n), -1), { code: 'EINVAL', message: /flags/ })
  const err = t.throws(() => hash.update(u32(1), u64(1n), 99)) as NativeError
  t.ok(err instanceof NativeError, 'kernel refusals are NativeErrors too')
  t.equal(err.code, 'EINVAL')
  t.equal(err.syscall, 'bpf_map_update_elem')
})
