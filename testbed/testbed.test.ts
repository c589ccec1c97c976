// The testbed itself: connectivity, isolation from the machine's network, cgroup
// and netns placement, and that nothing is left behind, even by a killed run.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Testbed, cleanupStale } from './testbed.js'
import { connectMany, startServer } from './pod-clients.js'

function netnsList(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean)
}

t.test('pods talk on one node and across nodes; processes land in their cgroup and netns', async (t) => {
  const tb = await Testbed.create({
    name: 'harness',
    nodes: [
      { name: 'n1', pods: ['a', 'b'] },
      { name: 'n2', pods: ['c'] },
    ],
  })
  t.teardown(() => tb.destroy())
  t.match(tb.pod('a').netns, /^amb[0-9a-z]+x[0-9a-f]{4}-harness-n1-a$/, 'the netns name carries the run, test, node and pod')
  await startServer(tb, tb.pod('b'), 8080)
  await startServer(tb, tb.pod('c'), 8080)
  const same = await connectMany(tb, tb.pod('a'), `${tb.pod('b').ip}:8080`, { count: 3, concurrency: 1 })
  t.equal(same.ok, 3, 'same node')
  const across = await connectMany(tb, tb.pod('a'), `${tb.pod('c').ip}:8080`, { count: 3, concurrency: 1 })
  t.equal(across.ok, 3, 'across nodes')
  t.ok(
    across.connections.every((c) => c.serverSawRemoteIp === tb.pod('a').ip),
    'no NAT: the server sees the pod address',
  )

  const where = await tb.exec(tb.pod('a'), 'sh', ['-c', 'cat /proc/self/cgroup; readlink /proc/self/ns/net'])
  const [cgroupLine, netnsLink] = where.stdout
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('0::') || l.startsWith('net:'))
  t.equal(cgroupLine, `0::${tb.pod('a').cgroup.replace('/sys/fs/cgroup/unified', '')}`, 'in the pod cgroup')
  const podNetns = execFileSync('stat', ['-L', '-c', '%i', tb.pod('a').netnsPath], { encoding: 'utf8' }).trim()
  t.equal(netnsLink, `net:[${podNetns}]`, 'in the pod netns')
})

t.test('no route out of the testbed', async (t) => {
  const tb = await Testbed.create({ name: 'isolation', nodes: [{ name: 'n1', pods: ['a'] }] })
  t.teardown(() => tb.destroy())
  const hostAddresses = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => /inet (\S+)\//.exec(l)?.[1])
    .filter((a): a is string => !!a && !a.startsWith('127.'))
  for (const target of [tb.pod('a'), tb.node('n1')]) {
    for (const dst of ['1.1.1.1', '10.0.0.1', '192.168.1.1', ...hostAddresses]) {
      // `ip route get` asks the routing table only; no packet is sent.
      const r = await tb.exec(target, 'ip', ['route', 'get', dst])
      const routedOut = r.code === 0 && !/unreachable/.test(r.stdout) && (target === tb.node('n1') || !/via 198\.18\.255\.254/.test(r.stdout))
      t.notOk(routedOut, `${target.name} has no route to ${dst}: ${r.stdout.trim() || r.stderr.trim()}`)
    }
  }
})

t.test('destroy removes everything by name; a killed run is cleaned up by cleanupStale', async (t) => {
  const tb = await Testbed.create({ name: 'destroy', nodes: [{ name: 'n1', pods: ['a'] }] })
  const prefix = tb.prefix
  tb.spawnInPod(tb.pod('a'), 'sleep', ['60'])
  await tb.destroy()
  await tb.destroy()
  t.equal(netnsList().filter((n) => n.startsWith(prefix)).length, 0, 'no netns left')
  t.notOk(existsSync(tb.cgroupRoot), 'cgroup tree removed')

  const script = join(import.meta.dirname, 'testdata', 'create-and-hang.ts')
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  const childPrefix = await new Promise<string>((resolve) => child.stdout.once('data', (d) => resolve(String(d).trim())))
  t.ok(
    netnsList().some((n) => n.startsWith(childPrefix)),
    'the child built a testbed',
  )
  child.kill('SIGKILL')
  await new Promise((r) => child.once('exit', r))
  t.ok(
    netnsList().some((n) => n.startsWith(childPrefix)),
    'SIGKILL left it behind',
  )
  const removed = cleanupStale()
  t.ok(
    removed.some((r) => r.startsWith(childPrefix)),
    'cleanupStale removed the dead run',
  )
  t.equal(netnsList().filter((n) => n.startsWith(childPrefix)).length, 0)
  t.notOk(readFileSync('/proc/self/cgroup', 'utf8').includes(childPrefix))
})
