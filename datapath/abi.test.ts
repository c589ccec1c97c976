import t from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import * as abi from './abi.js'

// The layout the C compiler gives abi.h (bpf/abi-layout.c, built by scripts/build-bpf.sh).
const probe = 'build/bpf/abi-layout'

t.test('codec sizes and offsets match abi.h as compiled', async (t) => {
  t.ok(existsSync(probe), `${probe} exists (run scripts/build-bpf.sh)`)
  const layout = JSON.parse(execFileSync(probe, { encoding: 'utf8' }))
  t.equal(layout.abiVersion, abi.ABI_VERSION, 'ABI version')
  t.equal(layout.sizes.ambient_pod, abi.SIZES.pod)
  t.equal(layout.sizes.ambient_inbound, abi.SIZES.inbound)
  t.equal(layout.sizes.ambient_orig_dst, abi.SIZES.origDst)
  t.equal(layout.sizes.ambient_tuple_key, abi.SIZES.tupleKey)
  t.same(layout.fields['ambient_pod.outbound_port'], [4, 2])
  t.same(layout.fields['ambient_pod.flags'], [6, 2])
  t.same(layout.fields['ambient_orig_dst.port'], [4, 2])
  t.same(layout.fields['ambient_orig_dst.netns_cookie'], [8, 8])
  t.same(layout.fields['ambient_tuple_key.src_ip4'], [8, 4])
  t.same(layout.fields['ambient_tuple_key.dst_ip4'], [12, 4])
  t.same(layout.fields['ambient_tuple_key.src_port'], [16, 2])
  t.same(layout.fields['ambient_tuple_key.dst_port'], [18, 2])
  t.equal(layout.constants.maxPods, abi.MAX_PODS)
  t.equal(layout.constants.maxConns, abi.MAX_CONNS)
  t.equal(layout.constants.counterMax, abi.COUNTER_SLOTS)
  t.equal(layout.constants.podOutbound, abi.POD_FLAG_OUTBOUND)
  t.equal(layout.constants.proxyMark, abi.DEFAULT_PROXY_MARK)
  t.equal(layout.constants.hbonePort, abi.DEFAULT_HBONE_PORT)
  t.same(
    layout.constants.counters,
    abi.COUNTERS.map((_, i) => i),
    'counter indexes in order',
  )
})

t.test('round trips', async (t) => {
  const pod = { ip: '198.19.1.2', outboundPort: 15001, flags: abi.POD_FLAG_OUTBOUND }
  t.same(abi.decodePod(abi.encodePod(pod)), pod)
  const orig = { ip: '198.19.2.3', port: 8080, netnsCookie: 0x1234567890abn }
  t.same(abi.decodeOrigDst(abi.encodeOrigDst(orig)), orig)
  const tuple = { netnsCookie: 42n, srcIp: '198.19.1.2', srcPort: 40000, dstIp: '198.19.1.2', dstPort: 15001 }
  t.same(abi.decodeTupleKey(abi.encodeTupleKey(tuple)), tuple)
})

t.test('network order where the kernel uses it', async (t) => {
  const orig = abi.encodeOrigDst({ ip: '1.2.3.4', port: 0x1f90, netnsCookie: 1n })
  t.same([...orig.subarray(0, 6)], [1, 2, 3, 4, 0x1f, 0x90])
  const key = abi.encodeIp4Key('198.19.1.2')
  t.same([...key], [198, 19, 1, 2])
})

t.test('bad values are named', async (t) => {
  t.throws(() => abi.encodePod({ ip: 'fe80::1', outboundPort: 1, flags: 0 }), /not an IPv4 address: "fe80::1"/)
  t.throws(() => abi.encodePod({ ip: '1.2.3.4', outboundPort: 70000, flags: 0 }), /outbound port must be an integer 0-65535, got 70000/)
  t.throws(() => abi.decodeOrigDst(Buffer.alloc(3)), /ambient_orig_dst: expected 16 bytes, got 3/)
  t.throws(() => abi.sumPerCpu(Buffer.alloc(9)), /not a multiple of 8/)
  t.equal(abi.sumPerCpu(Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])), 3n)
})
