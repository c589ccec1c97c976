// Bad input and hostile environments: each gives a NativeError with code, errno,
// syscall and a message that says what to do, and never crashes the process.
// Some run in a child process: unprivileged, or in a mount namespace without bpffs.
import t from 'tap'
import { rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { BpfMap, BpfObject, NativeError } from './index.js'
import { REPO, compileObject, compileProbe, makeCgroup, pinDir, run } from './testdata/fixtures.js'
import { unprivilegedView } from '../testbed/unprivileged.js'

const OBJECT = compileProbe(t)
const REJECTED = compileObject(t, 'reject')
const pins = pinDir(t)
const CHILD = join(REPO, 'native', 'testdata', 'child.ts')
const nodeChild = (args: string[]): string[] => [process.execPath, '--import', 'tsx', CHILD, ...args]

interface Outcome {
  readonly ok?: boolean
  readonly name?: string
  readonly code?: string
  readonly errno?: number
  readonly syscall?: string
  readonly message?: string
}

async function child(argv: string[]): Promise<Outcome & { stderr: string }> {
  const result = await run(argv)
  const line = result.stdout.trim().split('\n').pop() ?? ''
  let outcome: Outcome
  try {
    outcome = JSON.parse(line) as Outcome
  } catch {
    throw new Error(`child printed no outcome (exit ${result.code}): ${result.stdout}${result.stderr}`)
  }
  return { ...outcome, stderr: result.stderr }
}

t.test('object files: missing, not ELF, rejected by the verifier', async (t) => {
  t.throws(() => BpfObject.open('/nonexistent/x.bpf.o', { pinRoot: pins }), {
    name: 'NativeError',
    code: 'ENOENT',
    errno: 2,
    message: /no BPF object at \/nonexistent\/x.bpf.o: run `npm run build:bpf`/,
  })
  const garbage = join(dirname(OBJECT), 'garbage.bpf.o')
  writeFileSync(garbage, 'not an ELF file')
  t.throws(() => BpfObject.open(garbage, { pinRoot: pins }), {
    code: 'ENOEXEC',
    errno: 8,
    syscall: 'bpf_object__open_file',
    message: /not a usable BPF ELF object.*\nlibbpf: elf: .* is not a proper ELF object/s,
  })

  const obj = BpfObject.open(REJECTED, { pinRoot: pins })
  t.teardown(() => obj.close())
  const err = t.throws(() => obj.load(), { code: 'EACCES', errno: 13, syscall: 'bpf_object__load' }) as NativeError
  t.match(err.message, /the verifier rejected a program/)
  t.match(err.message, /R0 invalid mem access 'map_value_or_null'/, "the verifier's own words are in the message")
  t.match(err.message, /reject\.bpf\.c:21/, 'with the source line')
  t.throws(() => obj.load(), { code: 'EINVAL', message: /already loaded/ }, 'a second load is refused, not attempted')

  const outcome = await child(nodeChild(['load', REJECTED, pins]))
  t.equal(outcome.code, 'EACCES')
  t.equal(outcome.stderr, '', 'libbpf prints nothing to stderr: its lines go into the error')
})

t.test('pin paths: missing, not on bpffs, occupied', async (t) => {
  const missing = join(pins, 'no_such_map')
  t.throws(() => BpfMap.openPinned(missing), {
    name: 'NativeError',
    code: 'ENOENT',
    errno: 2,
    syscall: 'bpf_obj_get',
    message: `no pinned object at ${missing}: is the datapath loaded?`,
  })
  t.throws(() => BpfMap.openPinned('/tmp/ambient-no-such-pin'), {
    code: 'ENOENT',
    message: /\/tmp\/ambient-no-such-pin is not on a bpf filesystem \(\/tmp is not bpffs\)/,
  })
  t.throws(() => BpfMap.openPinned(OBJECT), { code: 'EACCES', message: /is not on a bpf filesystem/ }, 'an existing file outside bpffs')
  t.throws(() => BpfObject.open(OBJECT, { pinRoot: '/tmp' }), {
    code: 'EINVAL',
    message: 'pinRoot /tmp: /tmp is not a bpf filesystem: use a folder under a bpffs mount such as /sys/fs/bpf',
  })
  t.throws(() => BpfObject.open(OBJECT, { pinRoot: '' }), { code: 'EINVAL', message: /pinRoot must be a folder on bpffs/ })

  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.load()
  t.throws(() => BpfMap.openPinned(join(pins, 'probe_pinned', 'x')), NativeError, 'a path below a pinned map')
  const map = BpfMap.openPinned(join(pins, 'probe_pinned'))
  t.teardown(() => map.close())
  t.equal(map.info.name, 'probe_pinned')
})

t.test('a pinned link is not a map', async (t) => {
  const cg = makeCgroup(t, 'errors')
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.load()
  const link = obj.attachCgroup('probe_connect4', cg)
  const linkPin = join(pins, 'a_link')
  link.pin(linkPin)
  t.teardown(() => rmSync(linkPin, { force: true }))
  link.close()
  t.throws(() => BpfMap.openPinned(linkPin), { code: 'EINVAL', message: new RegExp(`^${linkPin}: fd \\d+ is not a BPF map`) })
  t.throws(() => link.pin(join(pins, 'again')), { code: 'EBADF', message: /is closed/ })
  t.throws(() => obj.attachToMap('probe_connect4', obj.map('probe_hash'), 'sk_msg_verdict'), {
    code: 'EINVAL',
    message: /only attach to a SOCKMAP or SOCKHASH/,
  })
})

t.test('unprivileged: EPERM/EACCES with the capabilities to add', async (t) => {
  // As nobody, from a view of the checkout nobody can read wherever it was cloned.
  const view = unprivilegedView(REPO)
  t.teardown(() => view.remove())
  const asNobody = (args: string[]): string[] => view.command([process.execPath, '--import', 'tsx', join(view.root, 'native', 'testdata', 'child.ts'), ...args])
  const load = await child(asNobody(['load', OBJECT, pins]))
  t.equal(load.name, 'NativeError', load.message ?? '')
  t.equal(load.code, 'EPERM')
  t.equal(load.errno, 1)
  t.equal(load.syscall, 'bpf_object__load')
  t.match(load.message, /operation not permitted: run as root or with CAP_BPF and CAP_NET_ADMIN/)
  t.equal(load.stderr, '', "nothing printed on stderr (libbpf's lines are in the message)")

  const pinned = await child(asNobody(['open-pinned', join(pins, 'probe_pinned')]))
  t.equal(pinned.code, 'EACCES', pinned.message ?? '')
  t.equal(pinned.syscall, 'bpf_obj_get')
  t.match(pinned.message, /run as root or with CAP_BPF and CAP_NET_ADMIN/)

  const cookie = await child(asNobody(['cookie', '/proc/1/ns/net']))
  t.ok(cookie.code === 'EPERM' || cookie.code === 'EACCES', `${cookie.code}: ${cookie.message}`)
  t.match(cookie.message, /run as root/)
})

t.test('bpffs not mounted: says how to mount it', async (t) => {
  // A private mount namespace where /sys/fs/bpf is unmounted; the machine's mount stays.
  const unmounted = (args: string[]): string[] => [
    'unshare',
    '--mount',
    '--propagation',
    'private',
    'sh',
    '-c',
    'while [ "$(stat -f -c %T /sys/fs/bpf)" = bpf_fs ]; do umount -l /sys/fs/bpf || exit 9; done; exec "$@"',
    'sh',
    ...nodeChild(args),
  ]
  const pinned = await child(unmounted(['open-pinned', '/sys/fs/bpf/ambient/v1/ambient_pods']))
  t.equal(pinned.code, 'ENOENT', pinned.message ?? '')
  t.equal(pinned.message, '/sys/fs/bpf is not a bpf filesystem: mount -t bpf bpf /sys/fs/bpf (needed for /sys/fs/bpf/ambient/v1/ambient_pods)')
  const load = await child(unmounted(['load', OBJECT, '/sys/fs/bpf/ambient/v1']))
  t.equal(load.code, 'EINVAL', load.message ?? '')
  t.equal(load.message, 'pinRoot /sys/fs/bpf/ambient/v1: /sys/fs/bpf is not a bpf filesystem: mount -t bpf bpf /sys/fs/bpf')
})

t.test('the raw binding rejects wrong argument types without crashing', async (t) => {
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.load()
  t.throws(() => obj.setGlobal('probe_setting', 5 as unknown as Buffer), { code: 'EINVAL', message: /value must be a Buffer/ })
  t.throws(() => obj.attachCgroup(7 as unknown as string, '/sys/fs/cgroup/unified'), { code: 'EINVAL', message: /program must be a string/ })
  obj.close()
  t.throws(() => obj.programs(), { code: 'EBADF', message: /is closed/ })
})
