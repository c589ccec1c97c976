import { request, type IncomingMessage } from 'node:http'
import t from 'tap'
import { FakeKubeApiServer, mergePatch } from './kube-api-server.js'

interface Reply {
  status: number
  body: any
}

function call(base: string, method: string, path: string, options: { body?: string; contentType?: string; token?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {}
    if (options.contentType) headers['content-type'] = options.contentType
    if (options.token) headers.authorization = `Bearer ${options.token}`
    const req = request(`${base}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString() || 'null') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

/** Opens a watch and collects its events; next(n) waits (bounded) for n events in total. */
function openWatch(base: string, path: string) {
  const events: any[] = []
  let ended = false
  let waiter: (() => void) | undefined
  let buffer = ''
  let response: IncomingMessage | undefined
  const req = request(`${base}${path}`, (res) => {
    response = res
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => {
      buffer += chunk
      let nl: number
      while ((nl = buffer.indexOf('\n')) >= 0) {
        events.push(JSON.parse(buffer.slice(0, nl)))
        buffer = buffer.slice(nl + 1)
      }
      waiter?.()
    })
    res.on('end', () => {
      ended = true
      waiter?.()
    })
    res.on('error', () => {
      ended = true
      waiter?.()
    })
  })
  req.on('error', () => {
    ended = true
    waiter?.()
  })
  req.end()
  return {
    events,
    get ended() {
      return ended
    },
    async until(predicate: () => boolean, what: string): Promise<void> {
      const deadline = Date.now() + 5000
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(events)}`)
        await new Promise<void>((resolve) => {
          waiter = resolve
          setTimeout(resolve, 50)
        })
      }
    },
    close() {
      req.destroy()
      response?.destroy()
    },
  }
}

const pod = (name: string, node: string, labels: Record<string, string> = {}) => ({
  metadata: { name, namespace: 'default', labels },
  spec: { nodeName: node },
  status: { phase: 'Running', podIP: '198.18.0.10' },
})

t.test('list returns a typed list with the global resourceVersion', async (t) => {
  const fake = await FakeKubeApiServer.start()
  t.teardown(() => fake.stop())
  fake.create('Namespace', { metadata: { name: 'default' } })
  fake.create('Pod', pod('a', 'node-1'))
  fake.create('Pod', pod('b', 'node-2'))
  const all = await call(fake.url, 'GET', '/api/v1/pods')
  t.equal(all.status, 200)
  t.equal(all.body.kind, 'PodList')
  t.equal(all.body.apiVersion, 'v1')
  t.equal(all.body.metadata.resourceVersion, fake.resourceVersion)
  t.same(all.body.items.map((p: any) => p.metadata.name).sort(), ['a', 'b'])
  t.equal(all.body.items[0].kind, undefined, 'built-in list items carry no kind')
  t.match(all.body.items[0].metadata, { uid: String, resourceVersion: String })
  const mine = await call(fake.url, 'GET', '/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1')
  t.same(
    mine.body.items.map((p: any) => p.metadata.name),
    ['a'],
  )
  const namespaced = await call(fake.url, 'GET', '/api/v1/namespaces/other/pods')
  t.same(namespaced.body.items, [])
  const namespaces = await call(fake.url, 'GET', '/api/v1/namespaces')
  t.equal(namespaces.body.kind, 'NamespaceList')
  const ap = await call(fake.url, 'GET', '/apis/security.istio.io/v1/authorizationpolicies')
  t.equal(ap.body.kind, 'AuthorizationPolicyList')
  const eps = await call(fake.url, 'GET', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices')
  t.equal(eps.body.apiVersion, 'discovery.k8s.io/v1')
  t.equal((await call(fake.url, 'GET', '/apis/nope/v1/things')).status, 404)
  t.same(fake.counts('pods'), { list: 3, watch: 0, get: 0, patch: 0, create: 0, update: 0, delete: 0 })
})

t.test('watch streams from the given resourceVersion, honours field selectors, and sends bookmarks', async (t) => {
  const fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 20 })
  t.teardown(() => fake.stop())
  fake.create('Pod', pod('before', 'node-1'))
  const rv = fake.resourceVersion
  fake.create('Pod', pod('after', 'node-1'))
  fake.create('Pod', pod('elsewhere', 'node-2'))
  const w = openWatch(fake.url, `/api/v1/pods?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true&fieldSelector=spec.nodeName%3Dnode-1`)
  t.teardown(() => w.close())
  await w.until(() => w.events.some((e) => e.type === 'ADDED'), 'replayed ADDED')
  t.same(
    w.events.filter((e) => e.type !== 'BOOKMARK').map((e) => [e.type, e.object.metadata.name]),
    [['ADDED', 'after']],
  )
  fake.update('Pod', { ...pod('after', 'node-1', { app: 'x' }) })
  fake.delete('Pod', { metadata: { name: 'after', namespace: 'default' } })
  fake.delete('Pod', { metadata: { name: 'elsewhere', namespace: 'default' } })
  await w.until(() => w.events.some((e) => e.type === 'DELETED'), 'DELETED')
  await w.until(() => w.events.some((e) => e.type === 'BOOKMARK'), 'a bookmark')
  const objectEvents = w.events.filter((e) => e.type !== 'BOOKMARK')
  t.same(
    objectEvents.map((e) => [e.type, e.object.metadata.name]),
    [
      ['ADDED', 'after'],
      ['MODIFIED', 'after'],
      ['DELETED', 'after'],
    ],
  )
  t.equal(objectEvents[0].object.kind, 'Pod', 'watch objects carry their kind')
  const rvs = objectEvents.map((e) => Number(e.object.metadata.resourceVersion))
  t.ok(rvs[0]! < rvs[1]! && rvs[1]! < rvs[2]!, 'resourceVersions increase')
  const bookmark = w.events.find((e) => e.type === 'BOOKMARK')
  t.ok(Number(bookmark.object.metadata.resourceVersion) >= rvs[0]!)
  t.equal(fake.counts('pods').watch, 1)
})

t.test('watch from a compacted resourceVersion gets 410 Expired, and compaction expires open watches', async (t) => {
  const fake = await FakeKubeApiServer.start()
  t.teardown(() => fake.stop())
  fake.create('Namespace', { metadata: { name: 'a' } })
  const old = fake.resourceVersion
  const open = openWatch(fake.url, `/api/v1/namespaces?watch=true&resourceVersion=${old}`)
  t.teardown(() => open.close())
  await t.resolves(
    new Promise<void>((resolve) => {
      const check = () => (fake.activeWatches('namespaces') === 1 ? resolve() : setTimeout(check, 5))
      check()
    }),
  )
  fake.create('Namespace', { metadata: { name: 'b' } })
  fake.compactHistory()
  await open.until(() => open.ended, 'the open watch to end')
  t.match(open.events.at(-1), { type: 'ERROR', object: { code: 410, reason: 'Expired' } })
  const late = openWatch(fake.url, `/api/v1/namespaces?watch=true&resourceVersion=${old}`)
  t.teardown(() => late.close())
  await late.until(() => late.ended, 'the stale watch to end')
  t.same(
    late.events.map((e) => [e.type, e.object.code]),
    [['ERROR', 410]],
  )
  const fresh = openWatch(fake.url, `/api/v1/namespaces?watch=true&resourceVersion=${fake.resourceVersion}`)
  t.teardown(() => fresh.close())
  fake.create('Namespace', { metadata: { name: 'c' } })
  await fresh.until(() => fresh.events.length === 1, 'an event after compaction')
  t.equal(fresh.events[0].object.metadata.name, 'c')
})

t.test('dropWatches ends streams abruptly; failNext and latency', async (t) => {
  const fake = await FakeKubeApiServer.start()
  t.teardown(() => fake.stop())
  const w = openWatch(fake.url, `/api/v1/services?watch=true&resourceVersion=${fake.resourceVersion}`)
  t.teardown(() => w.close())
  await t.resolves(
    new Promise<void>((resolve) => {
      const check = () => (fake.activeWatches('services') === 1 ? resolve() : setTimeout(check, 5))
      check()
    }),
  )
  t.equal(fake.dropWatches(), 1)
  await w.until(() => w.ended, 'the dropped watch to end')
  t.equal(fake.activeWatches(), 0)

  fake.failNext('/api/v1/services', 500)
  const failed = await call(fake.url, 'GET', '/api/v1/services')
  t.equal(failed.status, 500)
  t.match(failed.body, { kind: 'Status', code: 500 })
  t.equal((await call(fake.url, 'GET', '/api/v1/services')).status, 200, 'only the next request fails')

  fake.setLatency(60)
  const started = process.hrtime.bigint()
  t.equal((await call(fake.url, 'GET', '/api/v1/serviceaccounts')).status, 200)
  t.ok(process.hrtime.bigint() - started >= 50_000_000n, 'the response was delayed')
})

t.test('PATCH merges pod annotations and bumps the resourceVersion', async (t) => {
  const fake = await FakeKubeApiServer.start({ token: 'secret' })
  t.teardown(() => fake.stop())
  const created = fake.create('Pod', { metadata: { name: 'web', namespace: 'ns', annotations: { keep: 'me' } } })
  t.equal((await call(fake.url, 'GET', '/api/v1/pods')).status, 401, 'the token is required')
  for (const contentType of ['application/merge-patch+json', 'application/strategic-merge-patch+json']) {
    const before = fake.resourceVersion
    const reply = await call(fake.url, 'PATCH', '/api/v1/namespaces/ns/pods/web', {
      token: 'secret',
      contentType,
      body: JSON.stringify({ metadata: { annotations: { 'ambient.istio.io/redirection': 'enabled' } } }),
    })
    t.equal(reply.status, 200, contentType)
    t.same(reply.body.metadata.annotations, { keep: 'me', 'ambient.istio.io/redirection': 'enabled' })
    t.ok(Number(reply.body.metadata.resourceVersion) > Number(before))
    t.equal(reply.body.metadata.uid, (created.metadata as any).uid)
  }
  const removed = await call(fake.url, 'PATCH', '/api/v1/namespaces/ns/pods/web', {
    token: 'secret',
    contentType: 'application/merge-patch+json',
    body: JSON.stringify({ metadata: { annotations: { keep: null } } }),
  })
  t.same(removed.body.metadata.annotations, { 'ambient.istio.io/redirection': 'enabled' })
  t.equal(
    (await call(fake.url, 'PATCH', '/api/v1/namespaces/ns/pods/web', { token: 'secret', contentType: 'application/json-patch+json', body: '[]' })).status,
    415,
  )
  t.equal(
    (await call(fake.url, 'PATCH', '/api/v1/namespaces/ns/pods/gone', { token: 'secret', contentType: 'application/merge-patch+json', body: '{}' })).status,
    404,
  )
  t.equal(
    (await call(fake.url, 'GET', '/api/v1/namespaces/ns/pods/web', { token: 'secret' })).body.metadata.annotations['ambient.istio.io/redirection'],
    'enabled',
  )
  t.equal(fake.counts('pods').patch, 5)
})

t.test('mergePatch follows RFC 7386', async (t) => {
  t.same(mergePatch({ a: 'b', c: { d: 'e', f: 'g' } }, { a: 'z', c: { f: null } }), { a: 'z', c: { d: 'e' } })
  t.same(mergePatch({ a: [1] }, { a: [2, 3] }), { a: [2, 3] })
  t.same(mergePatch({ a: 1 }, null), null)
})

t.test('custom resources change status only through /status', async (t) => {
  const fake = await FakeKubeApiServer.start({ token: 'secret' })
  t.teardown(() => fake.stop())
  fake.create('AuthorizationPolicy', {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'p', namespace: 'ns' },
    spec: { action: 'ALLOW' },
  })
  const path = '/apis/security.istio.io/v1/namespaces/ns/authorizationpolicies/p'
  const body = JSON.stringify({ spec: { action: 'DENY' }, status: { conditions: [{ type: 'ZtunnelAccepted', status: 'True' }] } })
  t.equal((await call(fake.url, 'PATCH', `${path}/status`, { token: 'secret', contentType: 'application/merge-patch+json', body })).status, 200)
  t.match(
    fake.get('AuthorizationPolicy', 'ns', 'p'),
    { spec: { action: 'ALLOW' }, status: { conditions: [{ type: 'ZtunnelAccepted' }] } },
    '/status changes the status only',
  )
  t.equal(
    (
      await call(fake.url, 'PATCH', path, {
        token: 'secret',
        contentType: 'application/merge-patch+json',
        body: JSON.stringify({ spec: { action: 'DENY' }, status: null }),
      })
    ).status,
    200,
  )
  t.match(
    fake.get('AuthorizationPolicy', 'ns', 'p'),
    { spec: { action: 'DENY' }, status: { conditions: [{ type: 'ZtunnelAccepted' }] } },
    'the main resource ignores status',
  )
  t.equal(
    (await call(fake.url, 'PATCH', '/api/v1/namespaces/ns/pods/x/status', { token: 'secret', contentType: 'application/merge-patch+json', body: '{}' })).status,
    404,
  )
})

t.test('Lease: POST creates once, PUT needs the resourceVersion it read, mismatches are refused as the real server does', async (t) => {
  const fake = await FakeKubeApiServer.start()
  t.teardown(() => fake.stop())
  const base = '/apis/coordination.k8s.io/v1/namespaces/ops/leases'
  const lease = (extra: Record<string, unknown> = {}): string => JSON.stringify({ metadata: { name: 'l1', ...extra }, spec: { holderIdentity: 'a' } })
  const json = 'application/json'
  const created = await call(fake.url, 'POST', base, { body: lease(), contentType: json })
  t.equal(created.status, 201)
  t.equal(created.body.metadata.namespace, 'ops', 'namespace from the URL')
  t.equal((await call(fake.url, 'POST', base, { body: lease(), contentType: json })).status, 409, 'AlreadyExists')
  t.equal(
    (await call(fake.url, 'POST', base, { body: lease({ name: 'l2', resourceVersion: '5' }), contentType: json })).status,
    400,
    'resourceVersion on create',
  )
  t.equal((await call(fake.url, 'POST', base, { body: lease({ name: 'l3', namespace: 'other' }), contentType: json })).status, 400, 'namespace mismatch')
  t.equal((await call(fake.url, 'POST', '/apis/coordination.k8s.io/v1/leases', { body: lease(), contentType: json })).status, 405, 'no namespace')
  const rv = created.body.metadata.resourceVersion as string
  const put = (body: string) => call(fake.url, 'PUT', `${base}/l1`, { body, contentType: json })
  t.equal((await put(lease())).status, 422, 'an update without resourceVersion')
  t.equal((await put(lease({ resourceVersion: '1' }))).status, 409, 'a stale resourceVersion conflicts')
  t.equal((await put(JSON.stringify({ metadata: { name: 'l9', resourceVersion: rv } }))).status, 400, 'name mismatch')
  const updated = await put(JSON.stringify({ metadata: { name: 'l1', resourceVersion: rv }, spec: { holderIdentity: 'b' } }))
  t.equal(updated.status, 200)
  t.equal(updated.body.spec.holderIdentity, 'b')
  t.not(updated.body.metadata.resourceVersion, rv, 'a new resourceVersion')
  t.equal(fake.counts('leases').update, 4, 'every PUT counted')
})

t.test('tokens: TokenReview checks expiry, audience and the bound pod; requests need a token, and RBAC rules', async (t) => {
  const fake = await FakeKubeApiServer.start({ authenticate: true, token: 'admin' })
  t.teardown(() => fake.stop())
  const pod = fake.create('Pod', { metadata: { name: 'zt-1', namespace: 'ambient-system' }, spec: { nodeName: 'n1' } })
  const uid = pod.metadata?.['uid'] as string
  const bound = { namespace: 'ambient-system', serviceAccount: 'ztunnel', pod: { name: 'zt-1', uid } }
  const caToken = fake.issueToken({ ...bound, node: 'n1', audiences: ['istio-ca'] })
  const review = (token: string, audiences: string[]): Promise<Reply> =>
    call(fake.url, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
      token: 'admin',
      body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } }),
    })
  const ok = await review(caToken, ['istio-ca'])
  t.equal(ok.status, 201)
  t.match(ok.body.status, {
    authenticated: true,
    audiences: ['istio-ca'],
    user: {
      username: 'system:serviceaccount:ambient-system:ztunnel',
      extra: {
        'authentication.kubernetes.io/node-name': ['n1'],
        'authentication.kubernetes.io/pod-name': ['zt-1'],
        'authentication.kubernetes.io/pod-uid': [uid],
      },
    },
  })
  t.match((await review(caToken, ['other'])).body.status, {
    authenticated: false,
    error: /token audiences \["istio-ca"\] is invalid for the target audiences \["other"\]/,
  })
  t.match((await review(fake.issueToken({ ...bound, audiences: ['istio-ca'], expiresInSeconds: -1 }), ['istio-ca'])).body.status, {
    authenticated: false,
    error: /expired/,
  })
  t.match((await review('made-up', ['istio-ca'])).body.status, { authenticated: false, error: /token lookup failed/ })
  const older = await review(fake.issueToken({ ...bound, audiences: ['istio-ca'] }), ['istio-ca'])
  t.notOk(older.body.status.user.extra['authentication.kubernetes.io/node-name'], 'a server before 1.30 names no node')

  // Requests: no token or a token for another audience is 401; a valid one is subject to RBAC.
  const apiToken = fake.issueToken({ namespace: 'ambient-system', serviceAccount: 'ambient-agent' })
  t.equal((await call(fake.url, 'GET', '/api/v1/pods')).status, 401)
  t.equal((await call(fake.url, 'GET', '/api/v1/pods', { token: caToken })).status, 401, 'a CA token is no API token')
  t.equal((await call(fake.url, 'GET', '/api/v1/pods', { token: apiToken })).status, 200, 'no RBAC loaded: allowed')
  fake.loadRbac([
    { kind: 'ClusterRole', metadata: { name: 'agent' }, rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] }] },
    {
      kind: 'ClusterRoleBinding',
      metadata: { name: 'agent' },
      roleRef: { kind: 'ClusterRole', name: 'agent' },
      subjects: [{ kind: 'ServiceAccount', name: 'ambient-agent', namespace: 'ambient-system' }],
    },
    {
      kind: 'Role',
      metadata: { name: 'lease', namespace: 'istio-system' },
      rules: [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get'], resourceNames: ['l'] }],
    },
    {
      kind: 'RoleBinding',
      metadata: { name: 'lease', namespace: 'istio-system' },
      roleRef: { kind: 'Role', name: 'lease' },
      subjects: [{ kind: 'ServiceAccount', name: 'ambient-agent', namespace: 'ambient-system' }],
    },
  ])
  t.equal((await call(fake.url, 'GET', '/api/v1/pods', { token: apiToken })).status, 200)
  const patch = await call(fake.url, 'PATCH', '/api/v1/namespaces/ambient-system/pods/zt-1', {
    token: apiToken,
    body: '{}',
    contentType: 'application/merge-patch+json',
  })
  t.equal(patch.status, 403)
  t.equal(
    patch.body.message,
    'pods "zt-1" is forbidden: User "system:serviceaccount:ambient-system:ambient-agent" cannot patch resource "pods" in API group "" in the namespace "ambient-system"',
  )
  t.equal((await call(fake.url, 'GET', '/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/l', { token: apiToken })).status, 404, 'allowed, absent')
  t.equal((await call(fake.url, 'GET', '/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/other', { token: apiToken })).status, 403, 'another name')
  t.equal((await call(fake.url, 'GET', '/apis/coordination.k8s.io/v1/namespaces/default/leases/l', { token: apiToken })).status, 403, 'another namespace')
  t.equal((await call(fake.url, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews', { token: apiToken, body: '{}' })).status, 403, 'no tokenreviews rule')
  t.equal(fake.denied().length, 4)
})
