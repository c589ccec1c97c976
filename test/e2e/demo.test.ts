// The README's main command: `ambient demo --duration N` runs the two-node mesh,
// shows mutual TLS between the nodes and HTTP routed and denied by the waypoint,
// exits 0 and leaves nothing behind.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

t.test('ambient demo --duration 12 exits 0, shows mTLS between nodes, removes everything', async (t) => {
  const cli = join(import.meta.dirname, '..', '..', 'bin', 'ambient.js')
  const child = spawn(process.execPath, [cli, 'demo', '--duration', '12'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (out += d))
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.once('exit', (c) => {
      clearTimeout(timer)
      resolve(c)
    })
  })
  t.equal(code, 0, `exit 0\n${out.slice(-1500)}`)
  t.match(out, /TLS 1\.3 records: yes/, 'the capture between the nodes saw TLS')
  t.match(out, /shop\/web\s+node2\s+\S+\s+ambient\s+spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web\s+0\s+[1-9]\d*/, 'web received connections over mutual TLS')
  t.match(out, /shop\/optout\s+node1\s+\S+\s+no\s/, 'the opted-out pod is not enrolled')
  t.match(out, /waypoint shop\/waypoint: requests by route \(denied by policy: [1-9]\d*\)/, 'the L7 policy denied the DELETEs')
  t.match(out, /shop\/web-split\s+web-v1\.shop\.svc\.cluster\.local\s+200\s+[1-9]\d*/, 'the HTTPRoute sent requests to web-v1')
  const prefix = /grep (amb[0-9a-z]+x[0-9a-f]{4}-)/.exec(out)?.[1]
  t.ok(prefix, 'the demo printed its namespace prefix')
  const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => prefix && l.startsWith(prefix))
  t.same(left, [], 'no network namespace left')
  t.notOk(existsSync(`/sys/fs/bpf/${prefix?.slice(0, -1)}`), 'no pins left')
  t.notOk(existsSync(`/sys/fs/cgroup/unified/${prefix?.slice(0, -1)}`), 'no cgroups left')
})
