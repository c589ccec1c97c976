// Loaded programs as the kernel reports them, against the real kernel: a pinned
// link's program, that program's name and type by id, and its run count and run
// time while run-time statistics are enabled.
import t from 'tap'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { BpfLink, BpfObject, loadedProgram, RunTimeStats } from './index.js'
import { compileProbe, makeCgroup, pinDir, run, sumPerCpu, u32 } from './testdata/fixtures.js'

const OBJECT = compileProbe(t)
const pins = pinDir(t, 'programs')
const BPF_LINK_TYPE_CGROUP = 3
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18

const connectFrom = (cgroup: string) => run([process.execPath, '-e', "require('net').connect(9, '127.0.0.1').on('error', () => process.exit(0))"], { cgroup })

t.test("a pinned link's program, by id, with its run count and run time while stats are enabled", async (t) => {
  const cg = makeCgroup(t, 'programs')
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.load()
  const link = obj.attachCgroup('probe_connect4', cg)
  const pin = join(pins, 'connect4_link')
  link.pin(pin)
  link.close()
  t.teardown(() => rmSync(pin, { force: true }))

  const info = BpfLink.pinnedInfo(pin)
  t.equal(info.type, BPF_LINK_TYPE_CGROUP, 'a cgroup link')
  t.ok(info.id > 0 && info.programId > 0, `link ${info.id} runs program ${info.programId}`)
  const before = loadedProgram(info.programId)
  t.ok(before, 'the program is loaded')
  t.equal(before!.name, 'probe_connect4')
  t.equal(before!.type, BPF_PROG_TYPE_CGROUP_SOCK_ADDR)
  t.equal(typeof before!.runCount, 'bigint')

  const stats = RunTimeStats.enable()
  t.teardown(() => stats.close())
  t.ok(stats.enabled)
  const counter = obj.map('probe_percpu')
  const ranBefore = sumPerCpu(counter.lookup(u32(0)))
  for (let i = 0; i < 3; i++) t.equal((await connectFrom(cg)).code, 0)
  const ran = sumPerCpu(counter.lookup(u32(0))) - ranBefore
  const after = loadedProgram(info.programId)!
  // The program adds a setting per run to its own counter: the kernel's run count moved as often as the program ran.
  t.ok(ran > 0n, 'the program ran')
  t.ok(after.runCount - before!.runCount >= 3n, `the kernel counted the runs (${before!.runCount} -> ${after.runCount})`)
  t.ok(after.runTimeNs > before!.runTimeNs, `and their time (${before!.runTimeNs} -> ${after.runTimeNs} ns)`)
  stats.close()
  stats.close()
  t.notOk(stats.enabled, 'closed, idempotently')

  rmSync(pin)
  obj.close()
  // The program is freed once the link (pin) and the object let go of it.
  let gone = loadedProgram(info.programId)
  for (let i = 0; i < 50 && gone !== null; i++) {
    await new Promise((r) => setTimeout(r, 20))
    gone = loadedProgram(info.programId)
  }
  t.equal(gone, null, 'an unloaded program is null, not an error')
})

t.test('errors name the bad value', async (t) => {
  const obj = BpfObject.open(OBJECT, { pinRoot: pins })
  t.teardown(() => obj.close())
  obj.load() // pins probe_pinned under `pins`
  t.throws(() => BpfLink.pinnedInfo(join(pins, 'probe_pinned')), { code: 'EINVAL', message: /is not a BPF link \(a map or a program\?\)/ })
  t.throws(() => BpfLink.pinnedInfo(join(pins, 'no-such-link')), { code: 'ENOENT' })
  t.throws(() => BpfLink.pinnedInfo('/tmp/x'), { code: 'EINVAL', message: /is not a bpf filesystem/ })
  t.throws(() => loadedProgram(0), { code: 'EINVAL', message: /program id must be a positive integer, got 0/ })
  t.throws(() => loadedProgram(1.5), { code: 'EINVAL' })
  t.equal(loadedProgram(0x7ffffffe), null, 'an id no program has')
})
