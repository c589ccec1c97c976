import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../common/log.js'
import { XdsClient } from './xds-client.js'

t.test('without a server the client retries with backoff, and stop() ends the wait for ready()', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ambient-xds-client-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const updates: unknown[] = []
  const client = new XdsClient({
    address: join(dir, 'none.sock'),
    node: { id: 'z' },
    log: silentLogger(),
    onUpdate: (s) => updates.push(s),
    backoffMs: { initial: 10, max: 40 },
  })
  client.start()
  t.throws(() => client.start(), { code: 'AMBIENT_ERR_XDS_CLIENT_STATE' })
  const ready = client.ready()
  const deadline = Date.now() + 5000
  while (client.status().reconnects < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  t.match(client.status(), { connected: false, address: `unix:${join(dir, 'none.sock')}`, updates: 0, lastUpdateAt: null, lastError: /^UNAVAILABLE: / })
  t.ok(client.status().reconnects >= 3, 'kept retrying')
  client.stop()
  await t.rejects(ready, { code: 'AMBIENT_ERR_XDS_CLIENT_STOPPED' })
  const reconnects = client.status().reconnects
  await new Promise((r) => setTimeout(r, 100))
  t.equal(client.status().reconnects, reconnects, 'no retries after stop()')
  t.equal(updates.length, 0)
})
