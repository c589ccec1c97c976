import t from 'tap'
import { silentLogger } from '../log.js'
import { FakeKubeApiServer, type KubeObject } from '../../testbed/kube-api-server.js'
import { diff, enrolledPods } from '../model/enrollment.js'
import type { Snapshot } from '../model/snapshot.js'
import { KubeSource, REDIRECTION_ANNOTATION, resourceSpecs } from './kube-source.js'

const NODE = 'node-1'

const ns = (name: string, labels: Record<string, string> = {}): KubeObject => ({ metadata: { name, labels } })
const pod = (name: string, options: { ns?: string; node?: string; ip?: string; labels?: Record<string, unknown> } = {}): KubeObject => ({
  metadata: { name, namespace: options.ns ?? 'shop', labels: options.labels ?? { app: name } },
  spec: { nodeName: options.node ?? NODE, serviceAccountName: 'web' },
  status: { phase: 'Running', podIP: options.ip ?? '198.18.1.10', containerStatuses: [{ containerID: `containerd://${name}` }] },
})

async function startSource(t: any, fake: FakeKubeApiServer, extra: { debounceMs?: number } = {}) {
  const source = new KubeSource({
    connection: { kind: 'server', server: fake.url, insecure: true, token: 'tok' },
    nodeName: NODE,
    logger: silentLogger(),
    backoff: { initialMs: 10, maxMs: 100 },
    ...extra,
  })
  t.teardown(() => source.stop())
  const snapshots: Snapshot[] = []
  source.onChange((s) => snapshots.push(s))
  await source.start()
  /** Waits (bounded) until the latest snapshot satisfies the predicate. */
  const until = async (predicate: (s: Snapshot) => boolean, what: string): Promise<Snapshot> => {
    const deadline = Date.now() + 10_000
    for (;;) {
      const s = source.snapshot()
      if (source.stats().ready && predicate(s)) return s
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 10))
    }
  }
  return { source, snapshots, until }
}

const names = (pods: readonly { namespace: string; name: string }[]) => pods.map((p) => `${p.namespace}/${p.name}`)

async function seededFake(t: any): Promise<FakeKubeApiServer> {
  const fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 50, token: 'tok' })
  t.teardown(() => fake.stop())
  fake.create('Namespace', ns('shop', { 'istio.io/dataplane-mode': 'ambient' }))
  fake.create('Namespace', ns('plain'))
  fake.create('Pod', pod('web'))
  fake.create('Pod', pod('api', { ip: '198.18.1.11' }))
  fake.create('Pod', pod('far', { node: 'node-2', ip: '198.18.2.10' }))
  fake.create('Pod', pod('tool', { ns: 'plain', ip: '198.18.1.12' }))
  fake.create('Service', {
    metadata: { name: 'web', namespace: 'shop' },
    spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  })
  fake.create('ServiceAccount', { metadata: { name: 'web', namespace: 'shop' } })
  fake.create('EndpointSlice', {
    metadata: { name: 'web-abc', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['198.18.1.10'], conditions: { ready: true }, targetRef: { kind: 'Pod', namespace: 'shop', name: 'web' } }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  })
  fake.create('AuthorizationPolicy', { metadata: { name: 'allow-web', namespace: 'shop' }, spec: { action: 'ALLOW' } })
  fake.create('PeerAuthentication', { metadata: { name: 'strict', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } } })
  return fake
}

t.test("initial sync, then ready with every kind; every pod is known, only this node's enroll", async (t) => {
  const fake = await seededFake(t)
  const { source, snapshots } = await startSource(t, fake)
  const snap = await source.ready()
  t.equal(snapshots.length, 1, 'one full snapshot is emitted at ready')
  t.same([...snap.pods.keys()].sort(), ['plain/tool', 'shop/api', 'shop/far', 'shop/web'])
  t.same(names(enrolledPods(snap, NODE)), ['shop/api', 'shop/web'])
  t.match(snap.pods.get('shop/web'), { serviceAccount: 'web', podIP: '198.18.1.10', phase: 'Running', containerIDs: ['containerd://web'] })
  t.match(snap.services.get('shop/web'), { clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] })
  t.match(snap.endpointSlices.get('shop/web-abc'), { serviceName: 'web', endpoints: [{ addresses: ['198.18.1.10'], targetRef: { name: 'web' } }] })
  t.ok(snap.serviceAccounts.has('shop/web'))
  t.match(snap.authorizationPolicies, [
    { kind: 'AuthorizationPolicy', apiVersion: 'security.istio.io/v1', metadata: { name: 'allow-web' }, spec: { action: 'ALLOW' } },
  ])
  t.match(snap.peerAuthentications, [{ metadata: { name: 'strict' }, spec: { mtls: { mode: 'STRICT' } } }])
  t.ok(source.stats().resources.every((r) => r.synced && r.lists === 1))
  t.same(fake.counts('pods').list, 1)
})

t.test('namespace label and pod opt-out change the enrolled set; deleting a pod removes it', async (t) => {
  const fake = await seededFake(t)
  const { source, until } = await startSource(t, fake)
  const first = await source.ready()

  fake.update('Namespace', ns('plain', { 'istio.io/dataplane-mode': 'ambient' }))
  const labelled = await until((s) => enrolledPods(s, NODE).length === 3, 'plain/tool enrolled')
  t.same(
    diff(first, labelled, NODE).enroll.map((p) => p.name),
    ['tool'],
  )

  fake.update('Namespace', ns('plain'))
  const unlabelled = await until((s) => enrolledPods(s, NODE).length === 2, 'plain/tool un-enrolled')
  t.same(diff(labelled, unlabelled, NODE), { enroll: [], unenroll: [labelled.pods.get('plain/tool')] })

  fake.update('Pod', pod('api', { ip: '198.18.1.11', labels: { app: 'api', 'istio.io/dataplane-mode': 'none' } }))
  const optedOut = await until((s) => !enrolledPods(s, NODE).some((p) => p.name === 'api'), 'shop/api opted out')
  t.same(
    diff(unlabelled, optedOut, NODE).unenroll.map((p) => p.name),
    ['api'],
  )

  fake.delete('Pod', { metadata: { name: 'web', namespace: 'shop' } })
  const deleted = await until((s) => !s.pods.has('shop/web'), 'shop/web deleted')
  t.same(names(enrolledPods(deleted, NODE)), [])
  t.same(
    diff(optedOut, deleted, NODE).unenroll.map((p) => p.name),
    ['web'],
  )
})

t.test('410 Gone: relist and recover, counted', async (t) => {
  const fake = await seededFake(t)
  const { source, until } = await startSource(t, fake)
  await source.ready()
  fake.compactHistory()
  // changes made while the informers relist must all show up
  fake.create('Pod', pod('late', { ip: '198.18.1.20' }))
  fake.delete('Pod', { metadata: { name: 'api', namespace: 'shop' } })
  const snap = await until((s) => s.pods.has('shop/late') && !s.pods.has('shop/api'), 'relisted state')
  t.same(names(enrolledPods(snap, NODE)), ['shop/late', 'shop/web'])
  const pods = source.resourceStats('Pod')
  t.ok(pods && pods.lists >= 2, `pods relisted (lists=${pods?.lists})`)
  t.ok(pods && pods.watchRestarts >= 1, `watch restart counted (${pods?.watchRestarts})`)
  t.ok(fake.counts('namespaces').list >= 2, 'every resource relisted')
  fake.create('Pod', pod('after', { ip: '198.18.1.21' }))
  await until((s) => s.pods.has('shop/after'), 'events flow after the relist')
})

t.test('dropped watches restart with backoff and lose no event', async (t) => {
  const fake = await seededFake(t)
  const { source, until } = await startSource(t, fake)
  await source.ready()
  // One watch per kind: the core kinds, Istio's security kinds, and the Gateway API kinds.
  const kinds = resourceSpecs().length
  t.equal(kinds, 9)
  await untilTrue(() => fake.activeWatches() === kinds, 'all nine watches open')
  for (let round = 0; round < 3; round++) {
    t.equal(fake.dropWatches(), kinds, `round ${round}: nine watches dropped`)
    fake.create('Pod', pod(`p${round}`, { ip: `198.18.1.${30 + round}` }))
    fake.update('Namespace', ns('plain', { round: String(round) }))
    await until((s) => s.pods.has(`shop/p${round}`) && s.namespaces.get('plain')?.labels.round === String(round), `round ${round} events`)
    await untilTrue(() => fake.activeWatches() === kinds, 'watches reopened')
  }
  fake.dropWatches({ graceful: true })
  fake.create('Pod', pod('graceful', { ip: '198.18.1.40' }))
  await until((s) => s.pods.has('shop/graceful'), 'event after a clean end of the stream')
  const pods = source.resourceStats('Pod')
  t.ok(pods && pods.watchRestarts >= 4, `restarts counted (${pods?.watchRestarts})`)
  t.ok(pods && pods.errors >= 3, `errors counted (${pods?.errors})`)
  t.match(pods?.lastError, /./, 'last error recorded')
  t.equal(pods?.lists, 1, 'resumed from the resourceVersion, no relist')
})

t.test('slow responses and failing requests still sync', async (t) => {
  const fake = await seededFake(t)
  fake.setLatency(150)
  fake.failNext('/api/v1/services', 500, 2)
  fake.failNext('/apis/security.istio.io/v1/peerauthentications', 503)
  const { source } = await startSource(t, fake)
  const snap = await source.ready()
  t.equal(snap.services.size, 1)
  t.equal(snap.peerAuthentications.length, 1)
  t.ok((source.resourceStats('Service')?.errors ?? 0) >= 2, 'list failures counted')
  t.match(source.resourceStats('Service')?.lastError, /500/)
})

t.test('a malformed object is reported by name and field; the others apply', async (t) => {
  const fake = await seededFake(t)
  fake.create('Pod', pod('bad-label', { labels: { app: 'x', replicas: 3 } }))
  fake.create('Pod', pod('bad-ip', { ip: '300.1.2.3' }))
  const { source, until } = await startSource(t, fake)
  const snap = await source.ready()
  t.notOk(snap.pods.has('shop/bad-label'))
  t.notOk(snap.pods.has('shop/bad-ip'))
  t.ok(snap.pods.has('shop/web'))
  const errors = source.errors().map((e) => [e.code, e.objectName, e.field])
  t.same(errors.sort(), [
    ['AMBIENT_ERR_SOURCE_INVALID_OBJECT', 'bad-ip', 'status.podIP'],
    ['AMBIENT_ERR_SOURCE_INVALID_OBJECT', 'bad-label', 'metadata.labels.replicas'],
  ])
  t.match(source.errors().find((e) => e.objectName === 'bad-ip')?.message, /^pod shop\/bad-ip: status\.podIP must be an IP address/)
  fake.update('Pod', pod('bad-ip', { ip: '198.18.1.50' }))
  await until((s) => s.pods.has('shop/bad-ip'), 'the fixed pod applies')
  t.equal(source.errors().length, 1, 'the fixed pod is no longer reported')
  fake.update('Pod', pod('web', { labels: { app: { nested: true } } }))
  fake.create('Pod', pod('fine', { ip: '198.18.1.51' }))
  const later = await until((s) => s.pods.has('shop/fine'), 'a good pod in the same batch')
  t.same(later.pods.get('shop/web')?.labels, { app: 'web' }, 'a bad update keeps the last good version')
  t.equal(source.stats().rejectedObjects, 2)
})

t.test('annotatePod merge-patches the pod', async (t) => {
  const fake = await seededFake(t)
  const { source, until } = await startSource(t, fake)
  await source.ready()
  await source.annotatePod('shop', 'web', { [REDIRECTION_ANNOTATION]: 'enabled' })
  t.equal((fake.get('Pod', 'shop', 'web')?.metadata?.annotations as Record<string, string>)[REDIRECTION_ANNOTATION], 'enabled')
  await until((s) => s.pods.get('shop/web')?.annotations[REDIRECTION_ANNOTATION] === 'enabled', 'the annotation comes back through the watch')
  await t.rejects(source.annotatePod('shop', 'nope', { a: 'b' }), { code: 'AMBIENT_ERR_SOURCE_NOT_FOUND', message: /pod shop\/nope/ })
})

t.test('stop before ready rejects ready(); stop is idempotent; a bad connection throws', async (t) => {
  const fake = await seededFake(t)
  fake.setLatency(2000)
  const source = new KubeSource({ connection: { kind: 'server', server: fake.url, insecure: true, token: 'tok' }, nodeName: NODE, logger: silentLogger() })
  await source.start()
  await source.stop()
  await source.stop()
  await t.rejects(source.ready(), { code: 'AMBIENT_ERR_SOURCE_STOPPED' })
  fake.setLatency(0)
  const plain = new KubeSource({ connection: { kind: 'server', server: fake.url }, nodeName: NODE, logger: silentLogger() })
  await t.rejects(plain.start(), { code: 'AMBIENT_ERR_SOURCE_CONFIG', message: /insecure/ })
  await plain.stop()
})

async function untilTrue(predicate: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}
