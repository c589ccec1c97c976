// The policy-status Lease against the fake API server: one holder among agents,
// a race decided by resourceVersion, takeover after a missed lease duration,
// immediate handover on a clean stop, and the API's errors named.
import t from 'tap'
import { silentLogger } from '../../common/log.js'
import { FakeKubeApiServer } from '../../testbed/kube-api-server.js'
import type { KubeReply } from '../../common/kube/kube-client.js'
import { LeaseElector, type LeaseApi } from './lease.js'

const fake = await FakeKubeApiServer.start()
t.teardown(() => fake.stop())

const api: LeaseApi = {
  async request(method, path, options = {}): Promise<KubeReply> {
    const res = await fetch(fake.url + path, {
      method,
      ...(options.body !== undefined && { body: JSON.stringify(options.body), headers: { 'content-type': options.contentType ?? 'application/json' } }),
    })
    const text = await res.text()
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) }
  },
}

let clock = 1_000_000
const elector = (identity: string, name: string, extra: Partial<ConstructorParameters<typeof LeaseElector>[0]> = {}): LeaseElector =>
  new LeaseElector({ api, namespace: 'istio-system', name, identity, leaseDurationMs: 15_000, retryMs: 50, log: silentLogger(), now: () => clock, ...extra })

t.test('two agents: one holds the lease and renews it; the other takes it only after a whole lease duration without renewal', async (t) => {
  const a = elector('node-a', 'status-1')
  const b = elector('node-b', 'status-1')
  const [first, second] = await Promise.all([a.tryOnce(), b.tryOnce()])
  t.equal([first, second].filter(Boolean).length, 1, `one of two racing agents holds it (${first}, ${second})`)
  const [holder, other] = first ? [a, b] : [b, a]
  const lease = fake.get('Lease', 'istio-system', 'status-1') as { spec: { holderIdentity: string; leaseDurationSeconds: number; renewTime: string } }
  t.equal(lease.spec.holderIdentity, first ? 'node-a' : 'node-b')
  t.equal(lease.spec.leaseDurationSeconds, 15)
  t.match(lease.spec.renewTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'renewTime is a MicroTime')

  clock += 10_000
  t.equal(await other.tryOnce(), false, 'the other agent waits')
  t.equal(await holder.tryOnce(), true, 'the holder renews')
  clock += 10_000
  t.equal(await other.tryOnce(), false, 'a renewal seen 10 s ago keeps the lease')
  clock += 15_000
  t.equal(await other.tryOnce(), true, 'no renewal seen for 15 s: the other agent takes it over')
  const taken = fake.get('Lease', 'istio-system', 'status-1') as { spec: { holderIdentity: string; leaseTransitions: number } }
  t.equal(taken.spec.holderIdentity, first ? 'node-b' : 'node-a')
  t.equal(taken.spec.leaseTransitions, 1)
  t.equal(await holder.tryOnce(), false, 'the old holder sees it lost the lease')
})

t.test('a running holder hands over on stop; leading() and onChange follow', async (t) => {
  const changes: string[] = []
  const a = elector('node-a', 'status-2', { onChange: (leading) => changes.push(`a ${leading}`) })
  const b = elector('node-b', 'status-2', { onChange: (leading) => changes.push(`b ${leading}`) })
  a.start()
  for (let i = 0; i < 100 && !a.leading; i++) await new Promise((r) => setTimeout(r, 10))
  t.ok(a.leading, 'the first agent started holds the lease')
  b.start()
  t.teardown(() => b.stop())
  await new Promise((r) => setTimeout(r, 200))
  t.notOk(b.leading, 'the second one waits while it is renewed')
  await a.stop()
  t.equal((fake.get('Lease', 'istio-system', 'status-2') as { spec: { holderIdentity: string } }).spec.holderIdentity, '', 'released on stop')
  for (let i = 0; i < 100 && !b.leading; i++) await new Promise((r) => setTimeout(r, 10))
  t.ok(b.leading, 'the other agent takes it at its next try, not a lease duration later')
  t.same(changes, ['a true', 'a false', 'b true'])
})

t.test('an update that read an old resourceVersion loses (409), and API errors are named', async (t) => {
  const a = elector('node-a', 'status-3')
  t.equal(await a.tryOnce(), true)
  // Someone else renews between our read and our write.
  const lease = fake.get('Lease', 'istio-system', 'status-3')!
  const racing: LeaseApi = {
    async request(method, path, options) {
      if (method === 'PUT')
        fake.update('Lease', { ...lease, spec: { ...(lease['spec'] as object), holderIdentity: 'node-z', renewTime: new Date().toISOString() } })
      return api.request(method, path, options)
    },
  }
  t.equal(await elector('node-a', 'status-3', { api: racing }).tryOnce(), false, 'a conflicting update does not take the lease')
  fake.failNext('/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/status-4', 500)
  await t.rejects(elector('node-a', 'status-4').tryOnce(), { message: /GET lease istio-system\/status-4: 500 injected failure/ })
})

/** An API whose requests of one method wait for `open()`. */
function gated(method: string): { api: LeaseApi; open: () => void; waiting: () => number } {
  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  let waiting = 0
  return {
    api: {
      async request(m, path, options) {
        if (m === method) {
          waiting++
          await gate
        }
        return api.request(m, path, options)
      },
    },
    open: () => release(),
    waiting: () => waiting,
  }
}

t.test('both agents read no lease, then both create it: one gets 409 and does not lead', async (t) => {
  const gate = gated('POST')
  const a = elector('node-a', 'status-5', { api: gate.api })
  const b = elector('node-b', 'status-5', { api: gate.api })
  const both = Promise.all([a.tryOnce(), b.tryOnce()])
  for (let i = 0; i < 100 && gate.waiting() < 2; i++) await new Promise((r) => setTimeout(r, 5))
  t.equal(gate.waiting(), 2, 'both read 404 and are about to create')
  gate.open()
  const results = await both
  t.same(results.slice().sort(), [false, true], 'one created it, the other got 409')
  t.equal([a.leading, b.leading].filter(Boolean).length, 1)
})

t.test('a holder whose renewals fail steps down at the renew deadline, before anyone may take over', async (t) => {
  const a = elector('node-a', 'status-6', { renewDeadlineMs: 10_000 })
  const b = elector('node-b', 'status-6')
  t.equal(await a.tryOnce(), true)
  t.equal(await b.tryOnce(), false, 'b sees a holding it')
  const path = '/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/status-6'
  fake.failNext(path, 500, 2) // a's next renewal and b's next attempt
  clock += 5_000
  await t.rejects(a.tryOnce(), { message: /500/ })
  t.ok(a.leading, 'one failed renewal 5 s after the last: still the holder')
  clock += 6_000
  t.notOk(a.leading, '11 s without a renewal: no longer counts itself the holder')
  await t.rejects(b.tryOnce(), { message: /500/ })
  // b first saw the renewal at t0; 11 s later it must still wait, 15 s later it takes over.
  t.equal(await b.tryOnce(), false, 'b waits the whole lease duration')
  clock += 4_000
  t.equal(await b.tryOnce(), true, 'then takes it over')
})

t.test('stop() during the first attempt releases what that attempt acquired; a renewal keeps labels', async (t) => {
  const gate = gated('POST')
  const a = elector('node-a', 'status-7', { api: gate.api })
  a.start()
  for (let i = 0; i < 100 && gate.waiting() < 1; i++) await new Promise((r) => setTimeout(r, 5))
  const stopping = a.stop()
  gate.open()
  await stopping
  t.equal((fake.get('Lease', 'istio-system', 'status-7')?.['spec'] as { holderIdentity: string }).holderIdentity, '', 'released after the in-flight create')

  const b = elector('node-b', 'status-7')
  t.equal(await b.tryOnce(), true, 'a released lease is taken at once')
  const lease = fake.get('Lease', 'istio-system', 'status-7')!
  fake.update('Lease', { ...lease, metadata: { ...lease.metadata, labels: { owner: 'ops' } } })
  clock += 1000
  t.equal(await b.tryOnce(), true)
  t.same(
    (fake.get('Lease', 'istio-system', 'status-7')?.metadata as { labels?: unknown }).labels,
    { owner: 'ops' },
    'a renewal keeps what others put on the lease',
  )
  t.equal(
    (fake.get('Lease', 'istio-system', 'status-7')?.['spec'] as { leaseTransitions: number }).leaseTransitions,
    1,
    'taking a released lease counts a transition',
  )
})
