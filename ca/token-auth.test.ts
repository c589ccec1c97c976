// `ambient ca` in a cluster (the fake API server): callers authenticate with
// service-account tokens checked by TokenReview. ztunnel's token is its node
// (named by the token, or before Kubernetes 1.30 found through the bound pod) and
// gets only that node's pods' identities; another service account (a waypoint)
// gets only its own; expired, unknown and wrong-audience tokens are refused; a
// rotated token file is used at the next request; the root is published as a
// ConfigMap in every namespace and restored when edited.
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../common/log.js'
import { createCsr, generateKeyPair, spiffeIdOf } from '../common/identity/pki.js'
import { CaClient } from '../common/identity/ca-client.js'
import { FakeKubeApiServer, type TokenSpec } from '../testbed/kube-api-server.js'
import { parseCaConfig } from './config.js'
import { CaProcess } from './main.js'

const TD = 'cluster.local'
const id = (ns: string, sa: string): string => `spiffe://${TD}/ns/${ns}/sa/${sa}`
const dir = mkdtempSync(join(tmpdir(), 'ambient-ca-token-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const until = async (what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> => {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out waiting for ${what}`)
}

t.test('service-account tokens: nodes, waypoints, refusals, rotation, root ConfigMaps', async (t) => {
  const fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 100 })
  t.teardown(() => fake.stop())
  for (const ns of ['ambient-system', 'shop', 'data']) fake.create('Namespace', { metadata: { name: ns } })
  const pod = (ns: string, name: string, node: string, sa: string): string =>
    fake.create('Pod', { metadata: { name, namespace: ns }, spec: { nodeName: node, serviceAccountName: sa }, status: { phase: 'Running', podIP: '10.0.0.1' } })
      .metadata!['uid'] as string
  const zt1 = pod('ambient-system', 'ztunnel-n1', 'n1', 'ztunnel')
  pod('shop', 'web-1', 'n1', 'web')
  pod('data', 'db-1', 'n2', 'db')
  const wp = pod('shop', 'shop-waypoint-1', 'n2', 'shop-waypoint')

  const config = {
    ...parseCaConfig({
      listen: '127.0.0.1:0',
      cacerts: join(dir, 'cacerts'),
      trustDomain: TD,
      certTtl: '1h',
      maxCertTtl: '24h',
      kubeServer: fake.url,
      kubeInsecure: true,
      dnsName: [],
      logLevel: 'info',
    }),
    rootCertResyncMs: 200,
  }
  t.equal(config.tokenAudience, 'istio-ca')
  t.same(config.ztunnelServiceAccount, { namespace: 'ambient-system', name: 'ztunnel' })
  const ca = new CaProcess(config, silentLogger())
  await ca.start()
  t.teardown(() => ca.stop())

  // The root is in every namespace, and a new namespace gets it too.
  const rootOf = (ns: string): string | undefined =>
    (fake.get('ConfigMap', ns, 'istio-ca-root-cert')?.['data'] as Record<string, string> | undefined)?.['root-cert.pem']
  await until('root ConfigMaps', () => ['ambient-system', 'shop', 'data'].every((ns) => rootOf(ns) !== undefined))
  const root = rootOf('shop')!
  t.match(root, /BEGIN CERTIFICATE/)
  fake.create('Namespace', { metadata: { name: 'late' } })
  await until('a new namespace gets the root', () => rootOf('late') === root)
  fake.update('ConfigMap', { metadata: { name: 'istio-ca-root-cert', namespace: 'shop' }, data: { 'root-cert.pem': 'edited' } })
  await until('an edited copy is restored', () => rootOf('shop') === root)

  let n = 0
  const clientWith = (spec: TokenSpec): { client: CaClient; file: string } => {
    const file = join(dir, `token-${n++}`)
    writeFileSync(file, fake.issueToken({ audiences: ['istio-ca'], ...spec }))
    const client = new CaClient({ address: ca.server!.address, trustDomain: TD, tokenFile: file, trustBundlePem: root })
    t.teardown(() => client.close())
    return { client, file }
  }
  const ask = (client: CaClient, identity: string): Promise<string> =>
    client
      .requestCertificate(createCsr({ spiffeId: identity, ...generateKeyPair() }), identity)
      .then((c) => spiffeIdOf(new X509Certificate(c.certChainPem[0]!))!)
  const ztunnel = { namespace: 'ambient-system', serviceAccount: 'ztunnel', pod: { name: 'ztunnel-n1', uid: zt1 } }

  // Kubernetes >= 1.30: the token names its node.
  const node1 = clientWith({ ...ztunnel, node: 'n1' })
  t.equal(await ask(node1.client, id('shop', 'web')), id('shop', 'web'), "a pod on the token's node")
  await t.rejects(ask(node1.client, id('data', 'db')), {
    code: 'AMBIENT_ERR_CA_PERMISSION_DENIED',
    message: /node n1 may not get a certificate for spiffe:\/\/cluster.local\/ns\/data\/sa\/db: no pod with that identity is scheduled on it/,
  })
  // Before 1.30: the node of the bound pod.
  const older = clientWith(ztunnel)
  t.equal(await ask(older.client, id('shop', 'web')), id('shop', 'web'), 'node found through the bound pod')
  await t.rejects(ask(older.client, id('data', 'db')), { code: 'AMBIENT_ERR_CA_PERMISSION_DENIED' })
  const replaced = clientWith({ ...ztunnel, pod: { name: 'ztunnel-n1', uid: 'an-old-uid' } })
  await t.rejects(ask(replaced.client, id('shop', 'web')), {
    code: 'AMBIENT_ERR_CA_UNAUTHENTICATED',
    message: /pod "ztunnel-n1" \(an-old-uid\) does not exist any more/,
  })
  const unbound = clientWith({ namespace: 'ambient-system', serviceAccount: 'ztunnel' })
  await t.rejects(ask(unbound.client, id('shop', 'web')), { code: 'AMBIENT_ERR_CA_PERMISSION_DENIED', message: /not bound to a pod/ })

  // Any other service account: its own identity only, wherever it runs.
  const waypoint = clientWith({ namespace: 'shop', serviceAccount: 'shop-waypoint', pod: { name: 'shop-waypoint-1', uid: wp }, node: 'n2' })
  t.equal(await ask(waypoint.client, id('shop', 'shop-waypoint')), id('shop', 'shop-waypoint'))
  await t.rejects(ask(waypoint.client, id('shop', 'web')), {
    code: 'AMBIENT_ERR_CA_PERMISSION_DENIED',
    message: /service account spiffe:\/\/cluster.local\/ns\/shop\/sa\/shop-waypoint may get a certificate only for its own identity/,
  })

  // Refused tokens.
  await t.rejects(ask(clientWith({ ...ztunnel, node: 'n1', audiences: ['https://kubernetes.default.svc.cluster.local'] }).client, id('shop', 'web')), {
    code: 'AMBIENT_ERR_CA_UNAUTHENTICATED',
    message: /token audiences .* is invalid for the target audiences \["istio-ca"\]/,
  })
  await t.rejects(ask(clientWith({ ...ztunnel, node: 'n1', expiresInSeconds: -5 }).client, id('shop', 'web')), {
    code: 'AMBIENT_ERR_CA_UNAUTHENTICATED',
    message: /expired/,
  })
  const unknown = clientWith(ztunnel)
  writeFileSync(unknown.file, 'not-a-token')
  await t.rejects(ask(unknown.client, id('shop', 'web')), { code: 'AMBIENT_ERR_CA_UNAUTHENTICATED', message: /token lookup failed/ })

  // Rotation: the kubelet swaps the file; the next request carries the new token.
  const rotating = clientWith({ namespace: 'data', serviceAccount: 'db' })
  t.equal(await ask(rotating.client, id('data', 'db')), id('data', 'db'))
  writeFileSync(`${rotating.file}.new`, fake.issueToken({ namespace: 'shop', serviceAccount: 'shop-waypoint', audiences: ['istio-ca'] }))
  renameSync(`${rotating.file}.new`, rotating.file)
  t.equal(await ask(rotating.client, id('shop', 'shop-waypoint')), id('shop', 'shop-waypoint'), 'the rotated token is used')
  rmSync(rotating.file)
  await t.rejects(ask(rotating.client, id('shop', 'shop-waypoint')), { message: /cannot read the CA token file/ })
})

t.test('config: sources are exclusive; the service account and ConfigMap names are checked', async (t) => {
  const base = { listen: '127.0.0.1:0', cacerts: dir, trustDomain: TD, certTtl: '1h', maxCertTtl: '24h', dnsName: [], logLevel: 'info' }
  t.throws(() => parseCaConfig({ ...base, manifests: dir, kubeServer: 'http://127.0.0.1:1', kubeInsecure: true }), {
    message: /--kube-server: give one source of pods, not --manifests and --kube-server/,
  })
  t.throws(() => parseCaConfig({ ...base, kubeServer: 'http://127.0.0.1:1', kubeInsecure: true, ztunnelServiceAccount: 'ztunnel' }), {
    message: /--ztunnel-service-account: "ztunnel" is not NAMESPACE\/NAME/,
  })
  t.throws(() => parseCaConfig({ ...base, kubeServer: 'http://127.0.0.1:1' }), { message: /--kube-server: http:\/\/127.0.0.1:1 is plain http/ })
  t.match(parseCaConfig(base, { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }), {
    kube: { kind: 'in-cluster', server: 'https://10.96.0.1:443' },
  })
  t.equal(parseCaConfig({ ...base, manifests: dir }, { KUBERNETES_SERVICE_HOST: '10.96.0.1' }).kube, null, 'a folder wins over the pod environment')
  t.equal(parseCaConfig({ ...base, rootCertConfigmap: false }, {}).rootCertConfigMap, null)
})
