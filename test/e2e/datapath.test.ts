// The datapath end to end on the netns testbed, real kernel, real packets:
// outbound capture with the original destination recovered and restored to the
// application, inbound steering with the client address preserved, what must not
// be captured, enrolling running pods, adoption by a new loader process, and bad input.
import t from 'tap'
import { Datapath } from '../../datapath/datapath.js'
import { BpfMap } from '../../native/index.js'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { unprivilegedView } from '../../testbed/unprivileged.js'
import { loadOrCreateCacerts } from '../../common/identity/cacerts.js'
import { Testbed } from '../../testbed/testbed.js'
import { CaptureLog, datapathSettings, enrollWithProxy, startProxy } from './datapath-fixture.js'
import { connectMany, holdConnection, startServer, waitFor } from '../../testbed/pod-clients.js'

const tb = await Testbed.create({
  name: 'datapath',
  nodes: [
    { name: 'n1', pods: ['a', 'b', 'd', 'e'] },
    { name: 'n2', pods: ['c'] },
  ],
})
t.teardown(() => tb.destroy())

const settings = datapathSettings(tb)
const datapath = Datapath.load(settings, tb.node('n1').podsCgroup)
t.teardown(() => {
  datapath.close()
  Datapath.unload(settings.pinRoot)
})
const log = new CaptureLog()
const a = tb.pod('a')
const b = tb.pod('b')
const c = tb.pod('c')
const d = tb.pod('d')
const e = tb.pod('e')

// Servers in every pod: each reports the peer address it saw.
for (const pod of [a, b, c, d, e]) await startServer(tb, pod, 8080)

const proxyA = await enrollWithProxy(datapath, a, log)
t.teardown(() => proxyA.stop())

t.test('outbound: 500 concurrent connections captured, original destination recovered and restored', async (t) => {
  const before = log.count('outbound', a.ip)
  const result = await connectMany(tb, a, `${c.ip}:8080`, { count: 500, concurrency: 500 })
  t.equal(result.ok, 500, `all 500 connections completed with their echo (errors: ${JSON.stringify(result.errors)})`)
  t.equal(result.failed, 0, 'none lost')
  t.equal(log.count('outbound', a.ip) - before, 500, 'each one went through the proxy')
  t.ok(
    result.connections.every((conn) => conn.peer === `${c.ip}:8080`),
    'getpeername shows the original destination',
  )
  t.ok(
    result.connections.every((conn) => conn.serverSawRemoteIp === a.ip),
    "the server sees the client pod's address",
  )
  await waitFor(() => {
    const occupancy = Object.fromEntries(datapath.occupancy().map((m) => [m.name, m.entries]))
    return occupancy.ambient_orig_by_cookie === 0 && occupancy.ambient_orig_by_tuple === 0
  }, 'no original-destination entry left once they closed')
  t.pass('no map entry left after close')
})

t.test('inbound: a connection from an unenrolled pod reaches the listener first; the app sees the real client', async (t) => {
  const proxyB = await enrollWithProxy(datapath, b, log)
  t.teardown(() => proxyB.stop())
  const before = log.count('inbound', b.ip)
  const result = await connectMany(tb, c, `${b.ip}:8080`, { count: 20, concurrency: 5 })
  t.equal(result.ok, 20)
  t.equal(log.count('inbound', b.ip) - before, 20, "every connection passed ztunnel's inbound listener")
  t.ok(
    result.connections.every((conn) => conn.serverSawRemoteIp === c.ip),
    'the app sees the client pod address, not the proxy',
  )
})

t.test('not redirected: an unenrolled pod, a process of an enrolled cgroup in another netns, the proxy itself', async (t) => {
  const before = log.entries.length
  const plain = await connectMany(tb, d, `${c.ip}:8080`, { count: 5, concurrency: 1 })
  t.equal(plain.ok, 5)
  t.ok(plain.connections.every((conn) => conn.serverSawRemoteIp === d.ip))

  const elsewhere = await connectMany(tb, a, `${c.ip}:8080`, { count: 5, concurrency: 1, netnsOf: tb.node('n1') })
  t.equal(elsewhere.ok, 5, "a process in a's cgroup but in the node's netns connects directly")
  t.ok(elsewhere.connections.every((conn) => conn.serverSawRemoteIp === tb.node('n1').ip))

  const skippedBefore = datapath.counters().connect_skip_mark
  const marked = await connectMany(tb, a, `${c.ip}:8080`, { count: 5, concurrency: 1, mark: settings.proxyMark })
  t.equal(marked.ok, 5, "a socket with the proxy's mark inside the enrolled pod is not redirected")
  t.equal(datapath.counters().connect_skip_mark - skippedBefore, 5n)
  t.equal(log.entries.length, before, 'none of them reached the proxy')
})

t.test('enrolling and un-enrolling a running pod affects new connections only', async (t) => {
  const hold = await holdConnection(tb, e, `${c.ip}:8080`)
  const beforeEnroll = await connectMany(tb, e, `${c.ip}:8080`, { count: 3, concurrency: 1 })
  t.equal(log.count('outbound', e.ip), 0, 'not captured before enrolling')
  t.equal(beforeEnroll.ok, 3)

  const proxyE = await enrollWithProxy(datapath, e, log)
  const enrolled = await connectMany(tb, e, `${c.ip}:8080`, { count: 3, concurrency: 1 })
  t.equal(enrolled.ok, 3)
  t.equal(log.count('outbound', e.ip), 3, 'captured once enrolled, without restarting the pod')

  await datapath.unenrollPod({ netnsCookie: (await datapath.enrolledPods()).find((p) => p.ip === e.ip)!.netnsCookie, ip: e.ip, netnsPath: e.netnsPath })
  await proxyE.stop({ drain: true })
  const after = await connectMany(tb, e, `${c.ip}:8080`, { count: 3, concurrency: 1 })
  t.equal(after.ok, 3)
  t.equal(log.count('outbound', e.ip), 3, 'no longer captured after un-enrolling')

  const held = await hold.stop()
  t.ok(held.sent > 0 && held.sent === held.echoed, `the connection opened before enrolling kept flowing (${held.sent} lines echoed)`)
})

t.test('the loader exits and a new one adopts the datapath: open connections flow, new ones are captured', async (t) => {
  const cli = join(import.meta.dirname, '..', '..', 'bin', 'ambient.js')
  const flags = ['--pin-root', settings.pinRoot]
  // A connection through the capture, open across the restart.
  const hold = await holdConnection(tb, a, `${c.ip}:8080`)
  const load = await tb.execHost(process.execPath, [cli, 'datapath', 'load', ...flags, '--cgroup', tb.node('n1').podsCgroup])
  t.equal(load.code, 0, `a new loader process adopts the pinned datapath: ${load.stderr}`)
  const enroll = await tb.execHost(process.execPath, [cli, 'datapath', 'enroll', ...flags, '--netns', d.netnsPath, '--ip', d.ip])
  t.equal(enroll.code, 0, `and enrolls another pod: ${enroll.stderr}`)
  const proxyD = await startProxy(datapath, d, log)
  t.teardown(() => proxyD.stop())
  const before = log.count('outbound', d.ip)
  const fresh = await connectMany(tb, d, `${c.ip}:8080`, { count: 5, concurrency: 1 })
  t.equal(fresh.ok, 5)
  t.equal(log.count('outbound', d.ip) - before, 5, 'new connections are captured')
  const held = await hold.stop()
  t.ok(held.sent > 0 && held.sent === held.echoed, `the open connection kept flowing (${held.sent} lines echoed)`)
})

t.test('adopting the datapath with another proxy mark or HBONE port is refused, naming both values', async (t) => {
  const adopted = Datapath.open(settings)
  t.teardown(() => adopted.close())
  t.doesNotThrow(() => adopted.verifySettings(), 'the settings it was loaded with pass')
  const mark = `0x${settings.proxyMark.toString(16)}`
  const otherMark = `0x${(settings.proxyMark + 1).toString(16)}`
  t.throws(() => Datapath.load({ ...settings, proxyMark: settings.proxyMark + 1 }, tb.node('n1').podsCgroup), {
    code: 'AMBIENT_ERR_DATAPATH_SETTINGS_MISMATCH',
    message: new RegExp(`the proxy mark is ${mark} in the program of link cg\\d+-ambient_connect4, not ${otherMark}.*ambient datapath unload`),
  })
  // Another cgroup with the wrong mark: refused before anything is attached there.
  const linksBefore = readdirSync(join(adopted.dir, 'links')).sort()
  t.throws(() => Datapath.load({ ...settings, proxyMark: settings.proxyMark + 1 }, tb.node('n2').podsCgroup), {
    code: 'AMBIENT_ERR_DATAPATH_SETTINGS_MISMATCH',
  })
  t.same(readdirSync(join(adopted.dir, 'links')).sort(), linksBefore, 'no link was added for the other cgroup')
  const otherPort = Datapath.open({ ...settings, hbonePort: settings.hbonePort + 1 })
  t.teardown(() => otherPort.close())
  t.throws(() => otherPort.verifySettings(), {
    code: 'AMBIENT_ERR_DATAPATH_SETTINGS_MISMATCH',
    message: new RegExp(`the HBONE port is ${settings.hbonePort} in the program of link netns\\d+, not ${settings.hbonePort + 1}`),
  })
  // ztunnel started with another mark than the agent's refuses to run.
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-mark-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  loadOrCreateCacerts(join(dir, 'cacerts'))
  writeFileSync(join(dir, 'local.yaml'), 'workloads: []\n')
  const cli = join(import.meta.dirname, '..', '..', 'bin', 'ambient.js')
  const ztunnel = await tb.execHost(process.execPath, [
    cli,
    'ztunnel',
    '--node',
    'n1',
    '--local-config',
    join(dir, 'local.yaml'),
    '--cacerts',
    join(dir, 'cacerts'),
    '--pin-root',
    settings.pinRoot,
    '--proxy-mark',
    otherMark,
    '--metrics-addr',
    '127.0.0.1:0',
    '--readiness-addr',
    '127.0.0.1:0',
    '--admin-addr',
    '127.0.0.1:0',
  ])
  t.equal(ztunnel.code, 1, 'ztunnel with another --proxy-mark exits 1')
  t.match(ztunnel.stderr, new RegExp(`the proxy mark is ${mark} in the program of link .*, not ${otherMark}`), 'and says which value differs')
  t.ok(adopted.enrolledPods().length >= 1, 'the loaded datapath is untouched')
})

t.test('bad input gives clear errors and crashes nothing', async (t) => {
  t.throws(() => Datapath.open({ ...settings, pinRoot: '/sys/fs/bpf/ambient-no-such-dir' }), {
    code: 'AMBIENT_ERR_DATAPATH_NOT_LOADED',
    message: /no datapath pinned at \/sys\/fs\/bpf\/ambient-no-such-dir\/v1/,
  })
  const pods = BpfMap.openPinned(join(datapath.dir, 'ambient_pods'))
  t.teardown(() => pods.close())
  t.throws(() => pods.update(Buffer.alloc(3), Buffer.alloc(8)), { code: 'EINVAL', message: /ambient_pods: key must be 8 bytes, got 3/ })
  await t.rejects(datapath.enrollPod({ netnsPath: '/run/netns/ambient-no-such-pod', ip: '198.19.9.9', outboundPort: 15001 }), {
    code: 'AMBIENT_ERR_DATAPATH_BAD_INPUT',
    message: /no network namespace at \/run\/netns\/ambient-no-such-pod/,
  })
  // As nobody, from a view of the checkout nobody can read wherever it was cloned.
  const view = unprivilegedView(join(import.meta.dirname, '..', '..'))
  t.teardown(() => view.remove())
  const [command, ...args] = view.command([
    'env',
    '-u',
    'NODE_OPTIONS',
    process.execPath,
    join(view.root, 'bin', 'ambient.js'),
    'datapath',
    'load',
    '--pin-root',
    join(settings.pinRoot, 'unprivileged'),
    '--cgroup',
    tb.node('n1').podsCgroup,
  ])
  const unprivileged = await tb.execHost(command!, args)
  t.equal(unprivileged.code, 1, 'exits 1, no crash')
  t.match(unprivileged.stderr, /not permitted: run as root or with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN/, 'says what to do')
  t.throws(() => Datapath.load({ ...settings, pinRoot: '/tmp/ambient-not-bpffs' }, tb.node('n1').podsCgroup), {
    code: 'AMBIENT_ERR_DATAPATH_LOAD',
    message: /\/tmp\/ambient-not-bpffs is not on a bpf filesystem .*mount -t bpf bpf \/sys\/fs\/bpf/,
  })
  t.throws(() => Datapath.load(settings, join(tb.node('n1').podsCgroup, 'no-such-cgroup')), {
    code: 'AMBIENT_ERR_DATAPATH_BAD_INPUT',
    message: /no cgroup at .*no-such-cgroup/,
  })
  t.ok(datapath.enrolledPods().length >= 1, 'the loaded datapath is untouched')
})
