// IdentityManager against real certificates and real TLS: shared requests,
// renewal at half-life under a live connection, backoff that keeps the old
// certificate, trust bundle rotation, and refusal of wrong certificates.
import t from 'tap'
import tls from 'node:tls'
import { once } from 'node:events'
import { X509Certificate } from 'node:crypto'
import { InProcessCertificateSource, type CertificateRequestOptions, type CertificateSource, type IssuedChain } from './certificate-source.js'
import { IdentityManager, type ManagedCertificate } from './manager.js'
import { createRootCa, spiffeIdOf } from './pki.js'

const WEB = 'spiffe://cluster.local/ns/shop/sa/web'
const CLIENT = 'spiffe://cluster.local/ns/shop/sa/client'
const rootA = createRootCa({ commonName: 'root A' })
const rootB = createRootCa({ commonName: 'root B' })

/** A source that can be told to fail or to switch CA, counting requests. */
class ControlledSource implements CertificateSource {
  failing = false
  requests = 0
  constructor(public inner: CertificateSource) {}
  async requestCertificate(csrPem: string, identity: string, options?: CertificateRequestOptions): Promise<IssuedChain> {
    this.requests++
    await new Promise((r) => setTimeout(r, 20))
    if (this.failing) throw new Error('ca unavailable (test)')
    return this.inner.requestCertificate(csrPem, identity, options)
  }
}

const sourceFor = (ca = rootA, ttlMs?: number): InProcessCertificateSource =>
  new InProcessCertificateSource({ ca, trustDomain: 'cluster.local', maxTtlMs: ttlMs })

/** The next event, or a rejection after a bounded wait (a ref'd timer: the manager's are unref'd). */
function nextEvent<T extends unknown[]>(emitter: IdentityManager, name: 'certificate' | 'request-failed', timeoutMs: number): Promise<T> {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new Error(`no ${name} event within ${timeoutMs} ms`)), timeoutMs)
  return (once(emitter, name, { signal: controller.signal }) as Promise<T>).finally(() => clearTimeout(timer))
}

t.test('concurrent callers share one request and one TLS context', async (t) => {
  const source = new ControlledSource(sourceFor())
  const manager = new IdentityManager({ source, trustBundlePem: rootA.certPem })
  t.teardown(() => manager.stop())
  const all = await Promise.all(Array.from({ length: 10 }, () => manager.getCertificate(WEB)))
  t.equal(source.requests, 1, 'one CSR for ten callers')
  t.ok(
    all.every((c) => c === all[0]),
    'the same certificate object',
  )
  const again = await manager.getCertificate(WEB)
  t.equal(again.secureContext, all[0]!.secureContext, 'the context is reused')
  t.equal(spiffeIdOf(new X509Certificate(again.certPem)), WEB)
  t.ok(again.notAfter.getTime() - Date.now() > 23 * 3600_000, 'the default TTL is 24 h')
  t.equal(again.chainPem, '', 'no intermediates under a root CA')
  t.same(
    manager.describe().map((d) => d.identity),
    [WEB],
  )
  await t.rejects(manager.getCertificate('spiffe://cluster.local/bad'), { code: 'AMBIENT_ERR_IDENTITY_BAD_SPIFFE_ID' })
})

t.test('renewal at half-life keeps a long-lived TLS connection open', async (t) => {
  const manager = new IdentityManager({ source: sourceFor(rootA, 2000), trustBundlePem: rootA.certPem, certTtlMs: 2000 })
  t.teardown(() => manager.stop())
  const first = await manager.getCertificate(WEB)
  const clientCert = await manager.getCertificate(CLIENT)
  const server = tls.createServer(
    {
      SNICallback: (_name, cb) => cb(null, manager.peek(WEB)!.secureContext),
      requestCert: true,
      rejectUnauthorized: true,
    },
    (socket) => socket.pipe(socket),
  )
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const port = (server.address() as { port: number }).port
  // The peer certificate is read at handshake time (later reads may return undefined).
  const connect = (context: tls.SecureContext): Promise<{ socket: tls.TLSSocket; serverSerial: string }> =>
    new Promise((resolve, reject) => {
      const c = tls.connect({ host: '127.0.0.1', port, servername: 'hbone', secureContext: context, checkServerIdentity: () => undefined }, () =>
        resolve({ socket: c, serverSerial: c.getPeerX509Certificate()!.serialNumber }),
      )
      c.once('error', reject)
    })
  const { socket: longLived, serverSerial } = await connect(clientCert.secureContext)
  t.teardown(() => longLived.destroy())
  t.equal(serverSerial, first.serialNumber)
  const started = Date.now()
  const [renewed, reason] = await nextEvent<[ManagedCertificate, string]>(manager, 'certificate', 4000)
  t.equal(reason, 'renewed')
  const lifetime = first.notAfter.getTime() - started
  t.ok(Date.now() - started <= lifetime, `renewed before expiry (after ${Date.now() - started} ms of ${lifetime} ms)`)
  t.not(renewed.serialNumber, renewed.identity === WEB ? first.serialNumber : clientCert.serialNumber, 'a new certificate')
  // Outlive the first certificate, then use the old connection.
  await new Promise((r) => setTimeout(r, Math.max(0, first.notAfter.getTime() + 1200 - Date.now())))
  t.ok(Date.now() > first.notAfter.getTime(), 'the first certificate has expired')
  longLived.write('still here')
  const [echo] = await once(longLived, 'data', { signal: AbortSignal.timeout(2000) })
  t.equal(String(echo), 'still here', 'the long-lived connection still carries data')
  const current = manager.peek(WEB)!.serialNumber
  const fresh = await connect((await manager.getCertificate(CLIENT)).secureContext)
  fresh.socket.destroy()
  t.equal(fresh.serverSerial, current, 'a new connection sees the current certificate')
  t.not(fresh.serverSerial, first.serialNumber)
})

t.test('a failing source is retried with backoff and the old certificate kept', async (t) => {
  const source = new ControlledSource(sourceFor(rootA, 3000))
  const manager = new IdentityManager({ source, trustBundlePem: rootA.certPem, certTtlMs: 3000, retry: { initialMs: 100, maxMs: 400 }, random: () => 1 })
  t.teardown(() => manager.stop())
  const first = await manager.getCertificate(WEB)
  source.failing = true
  const delays: number[] = []
  for (let i = 0; i < 4; i++) {
    const [failure] = await nextEvent<[{ retryInMs: number; attempt: number; notAfter: Date }]>(manager, 'request-failed', 3000)
    delays.push(failure.retryInMs)
    t.equal((await manager.getCertificate(WEB)).serialNumber, first.serialNumber, `attempt ${failure.attempt}: the valid certificate is kept`)
  }
  t.same(delays, [100, 200, 400, 400], 'exponential, capped')
  source.failing = false
  const [renewed, reason] = await nextEvent<[ManagedCertificate, string]>(manager, 'certificate', 3000)
  t.equal(reason, 'renewed')
  t.not(renewed.serialNumber, first.serialNumber, 'renewed once the source is back')
})

t.test('jitter stays within half and all of the backoff step', async (t) => {
  const source = new ControlledSource(sourceFor(rootA, 2000))
  const manager = new IdentityManager({ source, trustBundlePem: rootA.certPem, certTtlMs: 2000, retry: { initialMs: 200, maxMs: 200 }, random: () => 0 })
  t.teardown(() => manager.stop())
  await manager.getCertificate(WEB)
  source.failing = true
  const [failure] = await nextEvent<[{ retryInMs: number }]>(manager, 'request-failed', 3000)
  t.equal(failure.retryInMs, 100)
})

t.test('an expired certificate is not served while the source fails', async (t) => {
  const source = new ControlledSource(sourceFor(rootA, 1000))
  const manager = new IdentityManager({ source, trustBundlePem: rootA.certPem, certTtlMs: 1000, retry: { initialMs: 5000 } })
  t.teardown(() => manager.stop())
  const first = await manager.getCertificate(WEB)
  source.failing = true
  await new Promise((r) => setTimeout(r, Math.max(0, first.notAfter.getTime() + 100 - Date.now())))
  t.equal(manager.peek(WEB), null)
  await t.rejects(manager.getCertificate(WEB), { code: 'AMBIENT_ERR_IDENTITY_SOURCE', message: /ca unavailable/ })
})

t.test('a failed first request fails fast during backoff, then retries in the background', async (t) => {
  const source = new ControlledSource(sourceFor())
  source.failing = true
  const manager = new IdentityManager({ source, trustBundlePem: rootA.certPem, retry: { initialMs: 300 }, random: () => 1 })
  t.teardown(() => manager.stop())
  const failed = nextEvent<[{ notAfter: Date | null; retryInMs: number }]>(manager, 'request-failed', 2000)
  await t.rejects(manager.getCertificate(WEB), { code: 'AMBIENT_ERR_IDENTITY_SOURCE' })
  const [failure] = await failed
  t.equal(failure.notAfter, null, 'no certificate held')
  t.equal(failure.retryInMs, 300)
  await t.rejects(manager.getCertificate(WEB), { code: 'AMBIENT_ERR_IDENTITY_SOURCE' }, 'fails closed at once')
  t.equal(source.requests, 1, 'no new request during the backoff')
  source.failing = false
  const [issued, reason] = await nextEvent<[ManagedCertificate, string]>(manager, 'certificate', 2000)
  t.equal(reason, 'issued')
  t.equal((await manager.getCertificate(WEB)).serialNumber, issued.serialNumber)
})

t.test('certificates that are not ours are refused', async (t) => {
  const untrusted = new IdentityManager({ source: sourceFor(rootB), trustBundlePem: rootA.certPem })
  t.teardown(() => untrusted.stop())
  await t.rejects(untrusted.getCertificate(WEB), { code: 'AMBIENT_ERR_IDENTITY_UNTRUSTED_CERT' })
  const inner = sourceFor()
  const swapped: CertificateSource = {
    requestCertificate: (csr, _identity, o) => inner.requestCertificate(csr, _identity, o).then(() => ({ certChainPem: [] })),
  }
  const empty = new IdentityManager({ source: swapped, trustBundlePem: rootA.certPem })
  await t.rejects(empty.getCertificate(WEB), { code: 'AMBIENT_ERR_IDENTITY_WRONG_CERT', message: /chain is empty/ })
  const other = await new IdentityManager({ source: sourceFor(), trustBundlePem: rootA.certPem }).getCertificate(CLIENT)
  const liar = new IdentityManager({
    source: { requestCertificate: async () => ({ certChainPem: [other.certPem, rootA.certPem] }) },
    trustBundlePem: rootA.certPem,
  })
  await t.rejects(liar.getCertificate(WEB), {
    code: 'AMBIENT_ERR_IDENTITY_WRONG_CERT',
    message: /carries "spiffe:\/\/cluster.local\/ns\/shop\/sa\/client" instead/,
  })
  const otherKey = await new IdentityManager({ source: sourceFor(), trustBundlePem: rootA.certPem }).getCertificate(WEB)
  const thief = new IdentityManager({ source: { requestCertificate: async () => ({ certChainPem: [otherKey.certPem] }) }, trustBundlePem: rootA.certPem })
  await t.rejects(thief.getCertificate(WEB), { code: 'AMBIENT_ERR_IDENTITY_WRONG_CERT', message: /not for the key/ })
})

t.test('trust bundle rotation rebuilds contexts and renews what no longer chains', async (t) => {
  const source = new ControlledSource(sourceFor(rootA))
  const manager = new IdentityManager({ source, trustBundlePem: rootA.certPem })
  t.teardown(() => manager.stop())
  const first = await manager.getCertificate(WEB)
  const rebuilt = nextEvent<[ManagedCertificate, string]>(manager, 'certificate', 2000)
  manager.setTrustBundle(rootA.certPem + rootB.certPem)
  const [both, reason] = await rebuilt
  t.equal(reason, 'trust-bundle')
  t.equal(both.serialNumber, first.serialNumber, 'same certificate')
  t.not(both.secureContext, first.secureContext, 'new context with the new roots')
  t.equal(source.requests, 1, 'no re-issue while the certificate still chains')
  source.inner = sourceFor(rootB)
  const events: string[] = []
  manager.on('certificate', (_c, r) => events.push(r))
  manager.setTrustBundle(rootB.certPem)
  const [renewed] = await nextEvent<[ManagedCertificate, string]>(manager, 'certificate', 2000)
  t.same(events, ['trust-bundle', 'renewed'])
  t.ok(new X509Certificate(renewed.certPem).checkIssued(new X509Certificate(rootB.certPem)), 'reissued by the new root')
  t.throws(() => manager.setTrustBundle('nothing'), { code: 'AMBIENT_ERR_IDENTITY_BAD_PEM' })
})

t.test('forget and stop', async (t) => {
  const manager = new IdentityManager({ source: sourceFor(), trustBundlePem: rootA.certPem })
  await manager.getCertificate(WEB)
  manager.forget(WEB)
  t.same(manager.describe(), [])
  t.equal(manager.peek(WEB), null)
  await manager.stop()
  await t.rejects(manager.getCertificate(WEB), { code: 'AMBIENT_ERR_IDENTITY_STOPPED' })
})
