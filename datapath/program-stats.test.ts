// Per-program figures: every counter belongs to a datapath program, and the reader
// finds the programs behind a links folder laid out as the datapath pins it
// (cg<id>-<program>, netns<cookie>), with the kernel's run counts.
import t from 'tap'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { BpfObject } from '../native/index.js'
import { compileProbe, makeCgroup, makeNetns, pinDir, run } from '../native/testdata/fixtures.js'
import { COUNTERS } from './abi.js'
import { counterProgram, enableRunTimeStats, PROGRAMS, ProgramStatsReader } from './program-stats.js'

t.test('every counter of ambient_counters names the program that counts it', async (t) => {
  t.equal(counterProgram('connect_redirected'), 'ambient_connect4')
  t.equal(counterProgram('sockops_tuple_failed'), 'ambient_sockops')
  t.equal(counterProgram('getpeername_restored'), 'ambient_getpeername4')
  t.equal(counterProgram('sk_lookup_no_listener'), 'ambient_sk_lookup')
  for (const counter of COUNTERS) t.ok(PROGRAMS.includes(counterProgram(counter)), counter)
  t.throws(() => counterProgram('bogus' as never), /counter bogus names no datapath program/)
})

t.test('the programs behind the pinned links, one entry per loaded program, with their run counts', async (t) => {
  const object = compileProbe(t)
  const links = pinDir(t, 'program-stats')
  const reader = new ProgramStatsReader(links)
  t.same(reader.read(), [], 'no links yet')
  t.same(new ProgramStatsReader(join(links, 'absent')).read(), [], 'no links folder yet (nothing attached)')

  const cg = makeCgroup(t, 'program-stats')
  const netns = makeNetns(t, 'program-stats')
  const obj = BpfObject.open(object, { pinRoot: links })
  t.teardown(() => obj.close())
  obj.load()
  rmSync(join(links, 'probe_pinned')) // a map the probe pins by name: not a link, and not named like one
  const pin = (link: { pin(p: string): void; close(): void }, name: string): void => {
    link.pin(join(links, name))
    link.close()
  }
  pin(obj.attachCgroup('probe_connect4', cg), 'cg1-ambient_connect4')
  pin(obj.attachNetns('probe_sk_lookup', netns), 'netns42')
  pin(obj.attachNetns('probe_sk_lookup', makeNetns(t, 'program-stats-2')), 'netns43')

  const stats = enableRunTimeStats()
  t.teardown(() => stats.close())
  const before = reader.read()
  t.same(
    before.map((p) => p.program),
    ['ambient_connect4', 'ambient_sk_lookup'],
    'the cgroup link by its pin name; both sk_lookup links share one program, listed once',
  )
  for (let i = 0; i < 2; i++) {
    const ran = await run([process.execPath, '-e', "require('net').connect(9, '127.0.0.1').on('error', () => process.exit(0))"], { cgroup: cg })
    t.equal(ran.code, 0, ran.stderr)
  }
  const after = reader.read()
  const connect = (list: typeof before) => list.find((p) => p.program === 'ambient_connect4')!
  t.ok(connect(after).runs - connect(before).runs >= 2n, `connect4's runs were counted (${connect(before).runs} -> ${connect(after).runs})`)
  t.ok(connect(after).runTimeNs > connect(before).runTimeNs, 'and its run time')
  t.equal(connect(after).id, connect(before).id)

  rmSync(join(links, 'cg1-ambient_connect4'))
  t.same(
    reader.read().map((p) => p.program),
    ['ambient_sk_lookup'],
    'an unpinned link is forgotten',
  )
})
