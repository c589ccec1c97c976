// The PKI against OpenSSL itself: chains verify with `openssl verify`, a mutual
// TLS 1.3 handshake works with issued certificates, and bad input is refused.
import t from 'tap'
import tls from 'node:tls'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { createCsr, createRootCa, generateKeyPair, issueWorkloadCertificate, parseCsr, parseSpiffeId, signCsr, spiffeIdOf } from './pki.js'

const dir = mkdtempSync(join(tmpdir(), 'ambient-pki-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const ca = createRootCa({ commonName: 'test root' })
const WEB = 'spiffe://cluster.local/ns/shop/sa/web'

t.test('a workload certificate verifies with OpenSSL and carries exactly its SPIFFE id', async (t) => {
  const leaf = issueWorkloadCertificate({ spiffeId: WEB, ca, ttlMs: 3600_000 })
  writeFileSync(join(dir, 'ca.pem'), ca.certPem)
  writeFileSync(join(dir, 'leaf.pem'), leaf.certPem)
  t.match(execFileSync('openssl', ['verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' }), /leaf.pem: OK/)
  const text = execFileSync('openssl', ['x509', '-in', join(dir, 'leaf.pem'), '-noout', '-text'], { encoding: 'utf8' })
  t.match(text, /CA:FALSE/)
  t.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/)
  t.match(text, /ASN1 OID: prime256v1/)
  const x509 = new X509Certificate(leaf.certPem)
  t.equal(spiffeIdOf(x509), WEB)
  t.ok(x509.checkIssued(new X509Certificate(ca.certPem)))
  t.notOk(x509.ca)
  t.ok(new X509Certificate(ca.certPem).ca, 'the root is a CA')
})

t.test('mutual TLS 1.3 with issued certificates', async (t) => {
  const server = issueWorkloadCertificate({ spiffeId: WEB, ca, ttlMs: 3600_000 })
  const client = issueWorkloadCertificate({ spiffeId: 'spiffe://cluster.local/ns/shop/sa/client', ca, ttlMs: 3600_000 })
  const srv = tls.createServer(
    { key: server.keyPem, cert: server.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' },
    (s) => {
      s.end(spiffeIdOf(s.getPeerX509Certificate()!) ?? 'none')
    },
  )
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.teardown(() => srv.close())
  const port = (srv.address() as { port: number }).port
  const seen = await new Promise<string>((resolve, reject) => {
    const c = tls.connect({ host: '127.0.0.1', port, key: client.keyPem, cert: client.certPem, ca: ca.certPem, checkServerIdentity: () => undefined }, () => {
      t.equal(c.getProtocol(), 'TLSv1.3')
      t.equal(spiffeIdOf(c.getPeerX509Certificate()!), WEB)
    })
    let data = ''
    c.on('data', (d) => (data += d))
    c.on('end', () => resolve(data))
    c.on('error', reject)
  })
  t.equal(seen, 'spiffe://cluster.local/ns/shop/sa/client', 'the server saw the client identity')
})

t.test('an expired certificate is refused by the handshake', async (t) => {
  const server = issueWorkloadCertificate({ spiffeId: WEB, ca, ttlMs: 3600_000 })
  const expired = issueWorkloadCertificate({ spiffeId: WEB, ca, ttlMs: 1000, notBefore: new Date(Date.now() - 3600_000) })
  const srv = tls.createServer({ key: server.keyPem, cert: server.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true }, (s) => s.end('x'))
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.teardown(() => srv.close())
  const port = (srv.address() as { port: number }).port
  const outcome = await new Promise<string>((resolve) => {
    const c = tls.connect({ host: '127.0.0.1', port, key: expired.keyPem, cert: expired.certPem, ca: ca.certPem, checkServerIdentity: () => undefined })
    c.on('data', () => resolve('accepted'))
    c.on('error', (err) => resolve((err as NodeJS.ErrnoException).code ?? err.message))
    c.on('close', () => resolve('closed'))
  })
  t.not(outcome, 'accepted', `refused (${outcome})`)
})

t.test('CSRs: round trip, malformed, foreign key type, not allowed', async (t) => {
  const keys = generateKeyPair()
  const csr = createCsr({ spiffeId: WEB, ...keys })
  writeFileSync(join(dir, 'req.pem'), csr)
  const verified = spawnSync('openssl', ['req', '-in', join(dir, 'req.pem'), '-noout', '-verify'], { encoding: 'utf8' })
  t.equal(verified.status, 0)
  t.match(verified.stdout + verified.stderr, /verify OK/, 'OpenSSL verifies the self-signature')
  t.equal(parseCsr(csr).spiffeId, WEB)
  t.throws(() => parseCsr('garbage'), { code: 'AMBIENT_ERR_IDENTITY_BAD_CSR', message: /no CERTIFICATE REQUEST PEM block/ })
  const tampered = csr.replace(/A/, 'B')
  t.throws(() => parseCsr(tampered), { code: 'AMBIENT_ERR_IDENTITY_BAD_CSR' })
  const rsa = execFileSync(
    'openssl',
    ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=x', '-addext', `subjectAltName=URI:${WEB}`],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  )
  t.throws(() => parseCsr(rsa), { code: 'AMBIENT_ERR_IDENTITY_BAD_CSR', message: /signature algorithm is not ecdsa-with-SHA256|not ECDSA P-256/ })
  t.throws(() => signCsr({ csrPem: csr, ca, ttlMs: 1000, allowedSpiffeIds: new Set(['spiffe://cluster.local/ns/other/sa/x']) }), {
    code: 'AMBIENT_ERR_IDENTITY_NOT_ALLOWED',
    message: /spiffe:\/\/cluster.local\/ns\/shop\/sa\/web is not allowed/,
  })
})

t.test('SPIFFE ids are parsed strictly', async (t) => {
  t.same(parseSpiffeId(WEB), { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web' })
  for (const bad of ['spiffe://cluster.local/ns/shop', 'http://cluster.local/ns/a/sa/b', 'spiffe://cluster.local/ns/A/sa/b', 'spiffe:///ns/a/sa/b']) {
    t.throws(() => parseSpiffeId(bad), { code: 'AMBIENT_ERR_IDENTITY_BAD_SPIFFE_ID' }, bad)
  }
})
