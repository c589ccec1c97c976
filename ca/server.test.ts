// `ambient ca` over real gRPC and mutual TLS: issuance to a node's
// IdentityManager, node authorization, refusals with clear statuses, restart
// with the persisted root.
import t from 'tap'
import tls from 'node:tls'
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { silentLogger } from '../common/log.js'
import { IdentityManager } from '../common/identity/manager.js'
import { createCsr, createRootCa, generateKeyPair, issueWorkloadCertificate, spiffeIdOf } from '../common/identity/pki.js'
import { CertificateAuthority } from './authority.js'
import { loadOrCreateCacerts, type CaBundle } from '../common/identity/cacerts.js'
import { CaClient } from '../common/identity/ca-client.js'
import { issueNodeCertificate } from '../common/identity/node-identity.js'
import { StaticPodRegistry } from './pod-registry.js'
import { caService, type IstioCertificateRequest, type IstioCertificateResponse } from '../common/identity/ca-proto.js'
import { CaServer } from './server.js'

const TD = 'cluster.local'
const WEB = `spiffe://${TD}/ns/shop/sa/web`
const CLIENT = `spiffe://${TD}/ns/shop/sa/client`
const DB = `spiffe://${TD}/ns/data/sa/db`
const dir = mkdtempSync(join(tmpdir(), 'ambient-ca-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const cacerts = join(dir, 'cacerts')
const registry = new StaticPodRegistry({ 'node-a': [WEB, CLIENT], 'node-b': [DB] })

async function startCa(bundle: CaBundle): Promise<CaServer> {
  const authority = new CertificateAuthority({ bundle, trustDomain: TD, registry })
  const server = new CaServer({ authority, bundle, trustDomain: TD, listen: { host: '127.0.0.1', port: 0 }, log: silentLogger() })
  await server.start()
  return server
}

/** A raw CreateCertificate call with any credentials, for the refusals. */
function rawCall(
  address: string,
  credentials: grpc.ChannelCredentials,
  request: IstioCertificateRequest,
): Promise<{ code: grpc.status; details: string } | IstioCertificateResponse> {
  const client = new (caService().Client)(address, credentials, { 'grpc.ssl_target_name_override': 'ambient-ca' }) as unknown as grpc.Client &
    Record<string, (req: unknown, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: IstioCertificateResponse) => void) => void>
  return new Promise((resolve) => {
    client.CreateCertificate!(request, { deadline: Date.now() + 5000 }, (err, res) => {
      client.close()
      resolve(err ? { code: err.code, details: err.details } : res!)
    })
  })
}

const skipServerCheck = { checkServerIdentity: () => undefined }
const csrFor = (spiffeId: string): string => createCsr({ spiffeId, ...generateKeyPair() })

t.test('first start generates and persists a root; a restart reuses it', async (t) => {
  const first = loadOrCreateCacerts(cacerts)
  t.equal(first.created, true)
  t.equal(statSync(join(cacerts, 'ca-key.pem')).mode & 0o777, 0o600, 'the key is private')
  const again = loadOrCreateCacerts(cacerts)
  t.equal(again.created, false)
  t.equal(again.bundle.rootCertPem, first.bundle.rootCertPem, 'same root')
})

t.test('a node gets certificates for its pods over gRPC, and they work for mutual TLS 1.3', async (t) => {
  const { bundle } = loadOrCreateCacerts(cacerts)
  const server = await startCa(bundle)
  t.teardown(() => server.stop())
  const node = issueNodeCertificate({ bundle, trustDomain: TD, node: 'node-a', ttlMs: 3600_000 })
  const client = new CaClient({ address: server.address, trustDomain: TD, node, trustBundlePem: bundle.trustBundlePem })
  t.teardown(() => client.close())
  const manager = new IdentityManager({ source: client, trustBundlePem: bundle.trustBundlePem, certTtlMs: 3600_000 })
  t.teardown(() => manager.stop())
  const [web, peer] = await Promise.all([manager.getCertificate(WEB), manager.getCertificate(CLIENT)])
  const leaf = new X509Certificate(web.certPem)
  t.equal(spiffeIdOf(leaf), WEB)
  t.equal(leaf.subjectAltName, `URI:${WEB}`, 'the URI SAN only')
  const lifetime = Date.parse(leaf.validTo) - Date.now()
  t.ok(lifetime > 3500_000 && lifetime <= 3600_000, `validity_duration honoured (${lifetime} ms)`)
  writeFileSync(join(dir, 'root.pem'), bundle.rootCertPem)
  writeFileSync(join(dir, 'web.pem'), web.certPem)
  t.match(execFileSync('openssl', ['verify', '-CAfile', join(dir, 'root.pem'), join(dir, 'web.pem')], { encoding: 'utf8' }), /web.pem: OK/)
  const text = execFileSync('openssl', ['x509', '-in', join(dir, 'web.pem'), '-noout', '-text'], { encoding: 'utf8' })
  t.match(text, /Digital Signature, Key Encipherment/)
  t.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/)
  t.match(text, /CA:FALSE/)

  // tls.Server ignores a `secureContext` option: hand the context over per connection (SNI).
  const srv = tls.createServer({ SNICallback: (_name, cb) => cb(null, web.secureContext), requestCert: true, rejectUnauthorized: true }, (s) =>
    s.end(spiffeIdOf(s.getPeerX509Certificate()!) ?? ''),
  )
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.teardown(() => srv.close())
  const seen = await new Promise<string>((resolve, reject) => {
    const c = tls.connect(
      { host: '127.0.0.1', port: (srv.address() as { port: number }).port, servername: 'web', secureContext: peer.secureContext, ...skipServerCheck },
      () => {
        t.equal(c.getProtocol(), 'TLSv1.3')
        t.equal(spiffeIdOf(c.getPeerX509Certificate()!), WEB)
      },
    )
    let data = ''
    c.on('data', (d) => (data += d))
    c.on('end', () => resolve(data))
    c.on('error', reject)
  })
  t.equal(seen, CLIENT, 'the server saw the client identity')
})

t.test('a node certificate rotated under a running client is used for later requests', async (t) => {
  const { bundle } = loadOrCreateCacerts(cacerts)
  const server = await startCa(bundle)
  t.teardown(() => server.stop())
  const shortLived = issueNodeCertificate({ bundle, trustDomain: TD, node: 'node-a', ttlMs: 1000 })
  const client = new CaClient({ address: server.address, trustDomain: TD, node: shortLived, trustBundlePem: bundle.trustBundlePem })
  t.teardown(() => client.close())
  t.ok((await client.requestCertificate(csrFor(WEB), WEB)).certChainPem.length > 0, 'served with the first node certificate')
  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(new X509Certificate(shortLived.certPem).validTo) + 1100 - Date.now())))
  await t.rejects(client.requestCertificate(csrFor(WEB), WEB), { code: 'AMBIENT_ERR_CA_UNAUTHENTICATED' }, 'refused once it expired')
  client.setNodeCredentials(issueNodeCertificate({ bundle, trustDomain: TD, node: 'node-a', ttlMs: 3600_000 }))
  t.ok((await client.requestCertificate(csrFor(WEB), WEB)).certChainPem.length > 0, 'served again with the rotated one, same client')
})

t.test('refusals carry a clear gRPC status', async (t) => {
  const { bundle } = loadOrCreateCacerts(cacerts)
  const server = await startCa(bundle)
  t.teardown(() => server.stop())
  const node = issueNodeCertificate({ bundle, trustDomain: TD, node: 'node-a', ttlMs: 3600_000 })
  const nodeCreds = grpc.credentials.createSsl(Buffer.from(bundle.trustBundlePem), Buffer.from(node.keyPem), Buffer.from(node.certPem), skipServerCheck)
  const call = (request: Partial<IstioCertificateRequest>, creds = nodeCreds) => rawCall(server.address, creds, { csr: '', validity_duration: 0, ...request })

  const foreign = new CaClient({ address: server.address, trustDomain: TD, node, trustBundlePem: bundle.trustBundlePem })
  t.teardown(() => foreign.close())
  await t.rejects(
    foreign.requestCertificate(csrFor(DB), DB),
    { code: 'AMBIENT_ERR_CA_PERMISSION_DENIED', message: /node node-a may not get a certificate for spiffe:\/\/cluster.local\/ns\/data\/sa\/db/ },
    "another node's pod",
  )
  t.match(await call({ csr: csrFor(DB) }), { code: grpc.status.PERMISSION_DENIED })
  t.match(await call({ csr: 'garbage' }), { code: grpc.status.INVALID_ARGUMENT, details: /malformed CSR: no CERTIFICATE REQUEST PEM block/ }, 'malformed CSR')
  const tampered = csrFor(WEB).replace(/A/, 'B')
  t.match(await call({ csr: tampered }), { code: grpc.status.INVALID_ARGUMENT }, 'CSR with a bad signature')
  t.match(
    await call({ csr: csrFor('spiffe://evil.example/ns/shop/sa/web') }),
    { code: grpc.status.INVALID_ARGUMENT, details: /trust domain evil.example; this CA issues only for cluster.local/ },
    'another trust domain',
  )
  t.match(
    await call({ csr: csrFor(WEB), metadata: { fields: { ImpersonatedIdentity: { stringValue: CLIENT } } } }),
    { code: grpc.status.INVALID_ARGUMENT, details: /ImpersonatedIdentity/ },
    'metadata disagrees with the CSR',
  )
  t.match(await call({ csr: csrFor(WEB), validity_duration: -5 }), { code: grpc.status.INVALID_ARGUMENT }, 'negative validity')

  const anonymous = grpc.credentials.createSsl(Buffer.from(bundle.trustBundlePem), null, null, skipServerCheck)
  t.match(await call({ csr: csrFor(WEB) }, anonymous), { code: grpc.status.UNAUTHENTICATED, details: /no valid client certificate/ }, 'no client certificate')
  const stranger = issueWorkloadCertificate({ spiffeId: WEB, ca: createRootCa(), ttlMs: 3600_000 })
  const otherCa = grpc.credentials.createSsl(Buffer.from(bundle.trustBundlePem), Buffer.from(stranger.keyPem), Buffer.from(stranger.certPem), skipServerCheck)
  t.match(
    await call({ csr: csrFor(WEB) }, otherCa),
    { code: grpc.status.UNAUTHENTICATED, details: /no valid client certificate/ },
    'a certificate from another CA',
  )
  const workload = issueWorkloadCertificate({ spiffeId: WEB, ca: bundle.signing, ttlMs: 3600_000 })
  const asWorkload = grpc.credentials.createSsl(
    Buffer.from(bundle.trustBundlePem),
    Buffer.from(workload.keyPem),
    Buffer.from(workload.certPem),
    skipServerCheck,
  )
  t.match(
    await call({ csr: csrFor(WEB) }, asWorkload),
    { code: grpc.status.PERMISSION_DENIED, details: /is not a node of trust domain/ },
    'a workload certificate is not a node',
  )
  const expiredNode = issueNodeCertificate({ bundle, trustDomain: TD, node: 'node-a', ttlMs: 1000 })
  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(new X509Certificate(expiredNode.certPem).validTo) + 1100 - Date.now())))
  const expiredCreds = grpc.credentials.createSsl(
    Buffer.from(bundle.trustBundlePem),
    Buffer.from(expiredNode.keyPem),
    Buffer.from(expiredNode.certPem),
    skipServerCheck,
  )
  t.match(
    await call({ csr: csrFor(WEB) }, expiredCreds),
    { code: grpc.status.UNAUTHENTICATED, details: /no valid client certificate/ },
    'an expired node certificate',
  )

  const wrongCa = new CaClient({
    address: server.address,
    trustDomain: TD,
    node,
    trustBundlePem: bundle.trustBundlePem,
    caIdentity: `spiffe://${TD}/ns/x/sa/y`,
  })
  t.teardown(() => wrongCa.close())
  await t.rejects(wrongCa.requestCertificate(csrFor(WEB), WEB), { code: 'AMBIENT_ERR_CA_UNAVAILABLE' }, 'the client checks the CA identity')
})

t.test('after a restart the CA serves the same root to existing nodes', async (t) => {
  const before = loadOrCreateCacerts(cacerts).bundle
  const node = issueNodeCertificate({ bundle: before, trustDomain: TD, node: 'node-b', ttlMs: 3600_000 })
  const first = await startCa(before)
  await first.stop()
  const after = loadOrCreateCacerts(cacerts)
  t.equal(after.created, false)
  const server = await startCa(after.bundle)
  t.teardown(() => server.stop())
  const client = new CaClient({ address: server.address, trustDomain: TD, node, trustBundlePem: before.trustBundlePem })
  t.teardown(() => client.close())
  const chain = await client.requestCertificate(csrFor(DB), DB)
  t.equal(chain.certChainPem.length, 2, 'leaf and root')
  t.ok(new X509Certificate(chain.certChainPem[0]!).verify(new X509Certificate(before.rootCertPem).publicKey), 'signed by the persisted root')
})
