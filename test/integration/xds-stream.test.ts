// The agent -> ztunnel stream end to end: XdsServer and XdsClient (and hand-made
// peers built on grpc-js) over a real Unix socket in a temp dir.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import type { Authorization } from '../../common/model/authorization.js'
import type { MeshService, Workload } from '../../common/model/workload.js'
import { silentLogger } from '../../common/log.js'
import {
  DELTA_ADS_PATH,
  DELTA_ADS_SERVICE,
  decodeResponse,
  encodeRequest,
  type DeltaAdsImplementation,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
} from '../../common/xds/ads.js'
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, LOCAL_WORKLOAD_TYPE_URL, TYPE_URLS, encodeWorkloadAddress } from '../../common/xds/codec.js'
import { XdsClient, type XdsState } from '../../ztunnel/state/xds-client.js'
import { XdsServer, type XdsResources } from '../../agent/xds/server.js'

const log = silentLogger()

const workload = (name: string, ip: string, extra: Partial<Workload> = {}): Workload => ({
  uid: `Kubernetes//Pod/shop/${name}`,
  name,
  namespace: 'shop',
  ips: [ip],
  network: '',
  tunnelProtocol: 'HBONE',
  trustDomain: 'cluster.local',
  serviceAccount: name,
  waypoint: null,
  node: 'node-a',
  canonicalName: name,
  canonicalRevision: 'latest',
  workloadType: 'POD',
  workloadName: name,
  services: { 'shop/web.shop.svc.cluster.local': [{ servicePort: 80, targetPort: 8080 }] },
  authorizationPolicies: [],
  status: 'HEALTHY',
  clusterId: 'Kubernetes',
  labels: {},
  netnsPath: `/var/run/netns/${name}`,
  ...extra,
})
/** A workload on another node: no netnsPath at all. */
function remote(): Workload {
  const { netnsPath: _n, ...w } = workload('remote', '10.244.9.9', { node: 'node-b' })
  return w
}
const service = (name: string, vip: string): MeshService => ({
  name,
  namespace: 'shop',
  hostname: `${name}.shop.svc.cluster.local`,
  addresses: [{ network: '', address: vip }],
  ports: [{ servicePort: 80, targetPort: 8080 }],
  subjectAltNames: [],
  waypoint: null,
})
const authz = (name: string, action: Authorization['action'] = 'ALLOW'): Authorization => ({
  name,
  namespace: 'shop',
  scope: 'NAMESPACE',
  action,
  groups: [{ rules: [] }],
  dryRun: false,
})

const W1 = 'Kubernetes//Pod/shop/w1'
const W2 = 'Kubernetes//Pod/shop/w2'
const W3 = 'Kubernetes//Pod/shop/w3'

const S1: XdsResources = {
  workloads: [workload('w1', '10.244.0.1'), workload('w2', '10.244.0.2'), remote()],
  services: [service('web', '10.96.0.10')],
  authorizations: [authz('allow-all'), authz('deny-db', 'DENY')],
}
/** S1 with w1 changed, w2 gone, w3 new, deny-db gone, the rest unchanged. */
const S2: XdsResources = {
  workloads: [workload('w1', '10.244.0.1', { status: 'UNHEALTHY' }), S1.workloads[2]!, workload('w3', '10.244.0.3')],
  services: S1.services,
  authorizations: [authz('allow-all')],
}

/** What a client must end up with for these resources: sorted by resource name, labels {} and netns merged. */
const expected = (r: XdsResources): XdsState => ({
  workloads: [...r.workloads].sort((a, b) => (a.uid < b.uid ? -1 : 1)).map((w) => ({ ...w, labels: {} })),
  services: [...r.services],
  authorizations: [...r.authorizations].sort((a, b) => (a.name < b.name ? -1 : 1)),
})

async function waitFor(t: Test, what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) {
      t.fail(`timed out waiting for ${what}`)
      throw new Error(`timed out waiting for ${what}`)
    }
    await new Promise((r) => setTimeout(r, 10))
  }
}

async function socketDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ambient-xds-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return join(dir, 'xds.sock')
}

async function startServer(t: Test, socketPath: string): Promise<XdsServer> {
  const server = new XdsServer({ socketPath, log })
  await server.start()
  t.teardown(() => server.stop())
  return server
}

function startClient(t: Test, socketPath: string, id = 'ztunnel-a') {
  const states: XdsState[] = []
  const client = new XdsClient({ address: `unix:${socketPath}`, node: { id }, log, onUpdate: (s) => states.push(s), backoffMs: { initial: 20, max: 100 } })
  client.start()
  t.teardown(() => client.stop())
  return { client, states, last: () => states[states.length - 1] }
}

/** A bare ztunnel stand-in on grpc-js that records responses and ACKs when told to. */
function rawClient(t: Test, socketPath: string, opts: { autoAck: boolean; initial?: Partial<Record<string, Record<string, string>>> }) {
  const client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure())
  const call = client.makeBidiStreamRequest<Partial<DeltaDiscoveryRequest> & { typeUrl: string }, DeltaDiscoveryResponse>(
    DELTA_ADS_PATH,
    encodeRequest,
    decodeResponse,
  )
  const responses: DeltaDiscoveryResponse[] = []
  call.on('data', (r: DeltaDiscoveryResponse) => {
    responses.push(r)
    if (opts.autoAck) call.write({ typeUrl: r.typeUrl, responseNonce: r.nonce })
  })
  call.on('error', () => {})
  for (const typeUrl of TYPE_URLS) call.write({ node: { id: 'raw', cluster: '' }, typeUrl, initialResourceVersions: opts.initial?.[typeUrl] ?? {} })
  const close = () => {
    call.cancel()
    client.close()
  }
  t.teardown(close)
  const of = (type: string) => responses.filter((r) => r.typeUrl === type)
  const summary = (r: DeltaDiscoveryResponse) => ({ names: r.resources.map((x) => x.name).sort(), removed: [...r.removedResources].sort() })
  return { call, responses, of, summary, close }
}

t.test('streams are held until the first update, then get one response per type even when empty', async (t) => {
  const socketPath = await socketDir(t)
  const server = await startServer(t, socketPath)
  t.equal(statSync(socketPath).mode & 0o777, 0o600, 'socket is 0600')
  const { client, states } = startClient(t, socketPath)
  await waitFor(t, 'the client to connect', () => client.status().connected)
  await waitFor(t, 'the subscriptions', () => Object.keys(server.clients()[0]?.types ?? {}).length === 3)
  await new Promise((r) => setTimeout(r, 150))
  t.equal(states.length, 0, 'no state before the agent synced')
  t.equal(server.stats().pushes, 0)
  t.equal(server.clients()[0]?.nodeId, 'ztunnel-a')

  server.update({ workloads: [], services: [], authorizations: [] })
  await client.ready()
  t.equal(states.length, 3, 'one response per type')
  t.strictSame(states[2], { workloads: [], services: [], authorizations: [] })
  await waitFor(t, 'the acks', () => Object.values(server.clients()[0]!.types).every((s) => s.acks === 1 && s.pendingNonce === null))
  t.match(client.status(), { connected: true, address: `unix:${socketPath}`, updates: 3, nacks: 0, reconnects: 0, lastError: null })
})

t.test('a snapshot, then deltas: upserts and removals reach the client', async (t) => {
  const socketPath = await socketDir(t)
  const server = await startServer(t, socketPath)
  server.update(S1)
  const { client, last } = startClient(t, socketPath)
  const raw = rawClient(t, socketPath, { autoAck: true })
  await client.ready()
  t.strictSame(last(), expected(S1), 'a client that connects after the update gets everything')
  t.strictSame(
    last().workloads.map((w) => w.netnsPath),
    [undefined, '/var/run/netns/w1', '/var/run/netns/w2'],
    'netns merged from LocalWorkload',
  )
  await waitFor(t, 'raw snapshot', () => raw.responses.length === 3)
  t.strictSame(raw.summary(raw.of(ADDRESS_TYPE_URL)[0]!), { names: ['Kubernetes//Pod/shop/remote', W1, W2, 'shop/web.shop.svc.cluster.local'], removed: [] })
  t.strictSame(raw.summary(raw.of(LOCAL_WORKLOAD_TYPE_URL)[0]!), { names: [W1, W2], removed: [] })

  const updates = client.status().updates
  server.update(S2)
  await waitFor(
    t,
    'the delta',
    () => last().workloads.length === 3 && last().authorizations.length === 1 && last().workloads.some((w) => w.uid === W3 && w.netnsPath !== undefined),
  )
  t.strictSame(last(), expected(S2))
  await waitFor(t, 'raw deltas', () => raw.responses.length === 6)
  t.strictSame(raw.summary(raw.of(ADDRESS_TYPE_URL)[1]!), { names: [W1, W3], removed: [W2] }, 'only what changed')
  t.strictSame(raw.summary(raw.of(AUTHORIZATION_TYPE_URL)[1]!), { names: [], removed: ['shop/deny-db'] })
  t.strictSame(raw.summary(raw.of(LOCAL_WORKLOAD_TYPE_URL)[1]!), { names: [W3], removed: [W2] })
  t.equal(client.status().updates, updates + 3)

  server.update(S2)
  await new Promise((r) => setTimeout(r, 100))
  t.equal(raw.responses.length, 6, 'an unchanged update sends nothing')
  t.equal(server.stats().connectionsTotal, 2)
  t.equal(server.stats().nacks, 0)
})

t.test('a restarted client (empty state) gets everything', async (t) => {
  const socketPath = await socketDir(t)
  const server = await startServer(t, socketPath)
  server.update(S1)
  const first = startClient(t, socketPath)
  await first.client.ready()
  server.update(S2)
  await waitFor(t, 'S2', () => first.last().workloads.length === 3 && first.last().authorizations.length === 1)
  first.client.stop()
  const second = startClient(t, socketPath)
  await second.client.ready()
  t.strictSame(second.last(), expected(S2))
  await waitFor(t, 'the first stream to go', () => server.clients().length === 1)
})

t.test('after a server restart the client sends what it has and gets only changes and removals', async (t) => {
  const socketPath = await socketDir(t)
  const server1 = new XdsServer({ socketPath, log })
  await server1.start()
  t.teardown(() => server1.stop())
  server1.update(S1)
  const { client, last, states } = startClient(t, socketPath)
  await client.ready()
  const versions: Record<string, Record<string, string>> = {}
  // The versions as a client holding S1 would report them: taken from a raw client's snapshot.
  const probe = rawClient(t, socketPath, { autoAck: true })
  await waitFor(t, 'probe snapshot', () => probe.responses.length === 3)
  for (const r of probe.responses) versions[r.typeUrl] = Object.fromEntries(r.resources.map((x) => [x.name, x.version]))
  probe.close()

  await server1.stop()
  t.notOk(existsSync(socketPath), 'stop() removed the socket')
  await waitFor(t, 'the client to notice', () => !client.status().connected)
  t.strictSame(last(), expected(S1), 'the last state stays while disconnected')
  const seen = states.length

  const server2 = await startServer(t, socketPath)
  server2.update(S2)
  const raw = rawClient(t, socketPath, { autoAck: true, initial: versions })
  await waitFor(t, 'raw deltas', () => raw.responses.length === 3)
  t.strictSame(raw.summary(raw.of(ADDRESS_TYPE_URL)[0]!), { names: [W1, W3], removed: [W2] })
  t.strictSame(raw.summary(raw.of(AUTHORIZATION_TYPE_URL)[0]!), { names: [], removed: ['shop/deny-db'] })
  t.strictSame(raw.summary(raw.of(LOCAL_WORKLOAD_TYPE_URL)[0]!), { names: [W3], removed: [W2] })

  await waitFor(t, 'the client to resync', () => states.length >= seen + 3 && last().workloads.length === 3 && last().authorizations.length === 1)
  t.strictSame(last(), expected(S2))
  t.ok(client.status().reconnects >= 1)
  // The reconnected client sent its versions: the server believes it has everything.
  await waitFor(t, 'acks', () => server2.clients().some((c) => c.nodeId === 'ztunnel-a' && c.types[ADDRESS_TYPE_URL]?.acks === 1))
  t.equal(server2.clients().find((c) => c.nodeId === 'ztunnel-a')?.types[ADDRESS_TYPE_URL]?.resources, 4)
})

t.test('one unacked response per type: changes meanwhile fold into the next', async (t) => {
  const socketPath = await socketDir(t)
  const server = await startServer(t, socketPath)
  const raw = rawClient(t, socketPath, { autoAck: false })
  await waitFor(t, 'subscriptions', () => Object.keys(server.clients()[0]?.types ?? {}).length === 3)
  server.update(S1)
  await waitFor(t, 'snapshot', () => raw.responses.length === 3)
  server.update(S2)
  server.update({ ...S2, workloads: S2.workloads.filter((w) => w.uid !== W3) })
  await new Promise((r) => setTimeout(r, 100))
  t.equal(raw.responses.length, 3, 'nothing while unacked')
  const address = raw.of(ADDRESS_TYPE_URL)[0]!
  raw.call.write({ typeUrl: ADDRESS_TYPE_URL, responseNonce: address.nonce })
  await waitFor(t, 'the folded delta', () => raw.responses.length === 4)
  t.strictSame(raw.summary(raw.responses[3]!), { names: [W1], removed: [W2] }, 'w3 came and went while unacked: never sent')
  t.equal(server.clients()[0]?.types[ADDRESS_TYPE_URL]?.lastAckedNonce, address.nonce)
})

t.test('a NACK is counted and later updates still flow', async (t) => {
  const socketPath = await socketDir(t)
  const server = await startServer(t, socketPath)
  server.update(S1)
  const raw = rawClient(t, socketPath, { autoAck: false })
  await waitFor(t, 'snapshot', () => raw.responses.length === 3)
  const address = raw.of(ADDRESS_TYPE_URL)[0]!
  raw.call.write({ typeUrl: ADDRESS_TYPE_URL, responseNonce: address.nonce, errorDetail: { code: 3, message: 'w1: broken' } })
  await waitFor(t, 'the nack', () => server.stats().nacks === 1)
  t.match(server.clients()[0], { nacks: 1, lastError: 'w1: broken' })
  server.update(S2)
  await waitFor(t, 'the next update', () => raw.of(ADDRESS_TYPE_URL).length === 2)
  t.strictSame(raw.summary(raw.of(ADDRESS_TYPE_URL)[1]!), { names: [W1, W3], removed: [W2] })
})

t.test('a resource that does not decode is NACKed by name and the rest apply', async (t) => {
  const socketPath = await socketDir(t)
  const requests: DeltaDiscoveryRequest[] = []
  let streams = 0
  const good = encodeWorkloadAddress(workload('w1', '10.244.0.1'))
  const implementation: DeltaAdsImplementation = {
    DeltaAggregatedResources: (call) => {
      const stream = ++streams
      let answers = 0
      call.on('data', (req: DeltaDiscoveryRequest) => {
        requests.push(req)
        if (req.responseNonce !== '') {
          // Drop the first stream once the three answers are in: the client reconnects.
          if (stream === 1 && ++answers === 3) call.end()
          return
        }
        const resources =
          req.typeUrl !== ADDRESS_TYPE_URL
            ? []
            : [
                { name: W1, version: 'v1', resource: { typeUrl: ADDRESS_TYPE_URL, value: good } },
                { name: 'garbage', version: 'v1', resource: { typeUrl: ADDRESS_TYPE_URL, value: Buffer.from([0x0a, 0xff, 0xff]) } },
                { name: 'Kubernetes//Pod/shop/other', version: 'v1', resource: { typeUrl: ADDRESS_TYPE_URL, value: good } },
              ]
        if (stream === 1) call.write({ systemVersionInfo: '1', typeUrl: req.typeUrl, nonce: `n-${req.typeUrl}`, resources, removedResources: [] })
      })
      call.on('end', () => call.end())
      call.on('error', () => {})
    },
  }
  const fake = new grpc.Server()
  fake.addService(DELTA_ADS_SERVICE, implementation)
  await new Promise<void>((resolve, reject) =>
    fake.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  )
  t.teardown(() => fake.forceShutdown())

  const { client, last } = startClient(t, socketPath)
  await client.ready()
  t.strictSame(
    last().workloads.map((w) => w.uid),
    [W1],
    'the good resource applied',
  )
  await waitFor(t, 'the acks and the nack', () => requests.filter((r) => r.responseNonce !== '').length >= 3)
  const nack = requests.find((r) => r.typeUrl === ADDRESS_TYPE_URL && r.responseNonce !== '')
  t.equal(nack?.errorDetail?.code, 3)
  t.match(nack?.errorDetail?.message, /^garbage: .*not a valid istio\.workload\.Address/)
  t.match(nack?.errorDetail?.message, /Kubernetes\/\/Pod\/shop\/other: name: its content names it "Kubernetes\/\/Pod\/shop\/w1"/)
  t.equal(client.status().nacks, 1)
  t.strictSame(
    requests.filter((r) => r.typeUrl !== ADDRESS_TYPE_URL && r.responseNonce !== '').map((r) => r.errorDetail),
    [null, null],
    'the other types ACKed',
  )

  await waitFor(t, 'the resubscription', () => streams === 2 && requests.filter((r) => r.typeUrl === ADDRESS_TYPE_URL && r.responseNonce === '').length === 2)
  const resubscribe = requests.filter((r) => r.typeUrl === ADDRESS_TYPE_URL && r.responseNonce === '')[1]!
  t.strictSame(resubscribe.initialResourceVersions, { [W1]: 'v1' }, 'reports what it has, not what it rejected')
  t.strictSame(resubscribe.node, { id: 'ztunnel-a', cluster: '' })
  t.strictSame(
    last().workloads.map((w) => w.uid),
    [W1],
    'state kept across the reconnect',
  )
})

t.test('start() replaces a stale socket, not a live one nor a file; stop() removes the socket', async (t) => {
  const socketPath = await socketDir(t)
  const first = new XdsServer({ socketPath, log })
  await first.start()
  t.teardown(() => first.stop())
  await t.rejects(new XdsServer({ socketPath, log }).start(), { code: 'AMBIENT_ERR_XDS_SOCKET', message: /is in use/ }, 'a live agent keeps its socket')
  await first.stop()
  t.notOk(existsSync(socketPath), 'stop() removed the socket')

  // A crashed agent leaves its socket behind: the next one takes the path over.
  const crashed = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`])
  t.teardown(() => crashed.kill('SIGKILL'))
  await new Promise((resolve) => crashed.stdout.once('data', resolve))
  crashed.kill('SIGKILL')
  await new Promise((resolve) => crashed.once('exit', resolve))
  t.ok(statSync(socketPath).isSocket(), 'the dead agent left its socket')
  const next = new XdsServer({ socketPath, log })
  await next.start()
  t.teardown(() => next.stop())
  const { client } = startClient(t, socketPath)
  next.update({ workloads: [], services: [], authorizations: [] })
  await client.ready()
  client.stop()
  await next.stop()
  t.notOk(existsSync(socketPath))
  await writeFile(socketPath, 'not a socket')
  await t.rejects(new XdsServer({ socketPath, log }).start(), { code: 'AMBIENT_ERR_XDS_SOCKET', message: /is not a socket/ })
  t.ok(existsSync(socketPath), 'a regular file is left alone')
})
