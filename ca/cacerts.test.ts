// Istio's cacerts layout: a plugged-in intermediate under an offline root,
// and refusals of directories that cannot sign.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { InProcessCertificateSource } from '../common/identity/certificate-source.js'
import { IdentityManager } from '../common/identity/manager.js'
import { createCsr, createIntermediateCa, createRootCa, generateKeyPair } from '../common/identity/pki.js'
import { CertificateAuthority } from './authority.js'
import { loadCacerts, loadOrCreateCacerts } from '../common/identity/cacerts.js'
import { issueNodeCertificate } from '../common/identity/node-identity.js'
import { StaticPodRegistry } from './pod-registry.js'

const TD = 'cluster.local'
const WEB = `spiffe://${TD}/ns/shop/sa/web`
const base = mkdtempSync(join(tmpdir(), 'ambient-cacerts-'))
t.teardown(() => rmSync(base, { recursive: true, force: true }))

function layout(name: string, files: Record<string, string>): string {
  const dir = join(base, name)
  mkdirSync(dir)
  for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text)
  return dir
}

const root = createRootCa({ commonName: 'offline root' })
const intermediate = createIntermediateCa({ parent: root, commonName: 'cluster intermediate' })

t.test('a plugged-in intermediate: leaf, intermediate, root', async (t) => {
  const dir = layout('plugged', {
    'ca-cert.pem': intermediate.certPem,
    'ca-key.pem': intermediate.keyPem,
    'root-cert.pem': root.certPem,
    'cert-chain.pem': intermediate.certPem + root.certPem,
  })
  const bundle = loadCacerts(dir)
  t.same(bundle.intermediatesPem, [], 'nothing between the intermediate and the root')
  t.equal(bundle.rootCertPem, root.certPem)
  const authority = new CertificateAuthority({ bundle, trustDomain: TD, registry: new StaticPodRegistry({ n1: [WEB] }) })
  const node = issueNodeCertificate({ bundle, trustDomain: TD, node: 'n1', ttlMs: 60_000 })
  t.equal(node.chainPem, intermediate.certPem, 'the node certificate comes with its intermediate')
  const issued = authority.issue({ csrPem: createCsr({ spiffeId: WEB, ...generateKeyPair() }), callerCertificate: new X509Certificate(node.certPem) })
  t.equal(issued.node, 'n1')
  t.equal(issued.certChainPem.length, 3)
  t.equal(issued.certChainPem[1], intermediate.certPem)
  t.equal(issued.certChainPem[2], root.certPem)
  writeFileSync(join(dir, 'leaf.pem'), issued.certChainPem[0]!)
  t.match(
    execFileSync('openssl', ['verify', '-CAfile', join(dir, 'root-cert.pem'), '-untrusted', join(dir, 'ca-cert.pem'), join(dir, 'leaf.pem')], {
      encoding: 'utf8',
    }),
    /leaf.pem: OK/,
  )

  // Workloads trust only the root; the intermediate travels in the handshake.
  const source = new InProcessCertificateSource({ ca: intermediate, chainPem: root.certPem, trustDomain: TD })
  const manager = new IdentityManager({ source, trustBundlePem: root.certPem })
  t.teardown(() => manager.stop())
  const server = await manager.getCertificate(WEB)
  const client = await manager.getCertificate(`spiffe://${TD}/ns/shop/sa/client`)
  t.equal(server.chainPem, intermediate.certPem, 'the intermediate is sent after the leaf')
  const srv = tls.createServer({ SNICallback: (_n, cb) => cb(null, server.secureContext), requestCert: true, rejectUnauthorized: true }, (s) => s.end('ok'))
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.teardown(() => srv.close())
  const reply = await new Promise<string>((resolve, reject) => {
    const c = tls.connect({
      host: '127.0.0.1',
      port: (srv.address() as { port: number }).port,
      servername: 'web',
      secureContext: client.secureContext,
      checkServerIdentity: () => undefined,
    })
    let data = ''
    c.on('data', (d) => (data += d))
    c.on('end', () => resolve(data))
    c.on('error', reject)
  })
  t.equal(reply, 'ok', 'mutual TLS through the intermediate')
})

t.test('directories that cannot sign are refused, naming the problem', async (t) => {
  t.throws(() => loadCacerts(layout('empty', {})), { code: 'AMBIENT_ERR_CA_CACERTS', message: /ca-cert.pem is missing/ })
  t.throws(() => loadCacerts(layout('mismatch', { 'ca-cert.pem': root.certPem, 'ca-key.pem': intermediate.keyPem })), {
    code: 'AMBIENT_ERR_CA_CACERTS',
    message: /ca-key.pem does not match ca-cert.pem/,
  })
  const rsaKey = execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'], { encoding: 'utf8' })
  t.throws(() => loadCacerts(layout('rsa', { 'ca-cert.pem': root.certPem, 'ca-key.pem': rsaKey })), {
    code: 'AMBIENT_ERR_CA_CACERTS',
    message: /is a rsa key; ambient ca signs with ECDSA P-256 keys only/,
  })
  t.throws(() => loadCacerts(layout('noroot', { 'ca-cert.pem': intermediate.certPem, 'ca-key.pem': intermediate.keyPem })), {
    code: 'AMBIENT_ERR_CA_CACERTS',
    message: /root-cert.pem is missing/,
  })
  const otherRoot = createRootCa()
  t.throws(
    () => loadCacerts(layout('wrongroot', { 'ca-cert.pem': intermediate.certPem, 'ca-key.pem': intermediate.keyPem, 'root-cert.pem': otherRoot.certPem })),
    { code: 'AMBIENT_ERR_CA_CACERTS', message: /does not chain to root-cert.pem/ },
  )
  t.throws(
    () => loadOrCreateCacerts(layout('partial', { 'root-cert.pem': root.certPem })),
    { code: 'AMBIENT_ERR_CA_CACERTS', message: /ca-cert.pem is missing/ },
    'a partial directory is not overwritten',
  )
})
