// Node and CA serving certificates: their SANs and usages, as OpenSSL reads them.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { createRootCa, parseSpiffeId, spiffeIdOf } from './pki.js'
import type { CaBundle } from './cacerts.js'
import { caSpiffeId, issueNodeCertificate, issueServingCertificate, nodeSpiffeId, parseNodeSpiffeId } from './node-identity.js'

const root = createRootCa()
const bundle: CaBundle = { signing: root, intermediatesPem: [], rootCertPem: root.certPem, trustBundlePem: root.certPem }
const text = (pem: string): string => execFileSync('openssl', ['x509', '-noout', '-text'], { input: pem, encoding: 'utf8' })

t.test('a node certificate is a TLS client certificate naming the node, never a workload', async (t) => {
  const node = issueNodeCertificate({ bundle, trustDomain: 'cluster.local', node: 'worker-1.example', ttlMs: 60_000 })
  const x509 = new X509Certificate(node.certPem)
  t.equal(spiffeIdOf(x509), 'spiffe://cluster.local/node/worker-1.example')
  t.same(parseNodeSpiffeId(spiffeIdOf(x509)!), { trustDomain: 'cluster.local', node: 'worker-1.example' })
  t.throws(() => parseSpiffeId(spiffeIdOf(x509)!), { code: 'AMBIENT_ERR_IDENTITY_BAD_SPIFFE_ID' }, 'not a workload identity')
  const out = text(node.certPem)
  t.match(out, /Extended Key Usage: \n\s+TLS Web Client Authentication\n/)
  t.notMatch(out, /Server Authentication/)
  t.equal(node.chainPem, '', 'no intermediates under a root')
  t.throws(() => nodeSpiffeId('cluster.local', 'Node_1'), /not a DNS subdomain/)
  t.equal(parseNodeSpiffeId('spiffe://cluster.local/ns/a/sa/b'), null)
  t.equal(parseNodeSpiffeId('spiffe://cluster.local/node/a/b'), null)
})

t.test("the CA's serving certificate carries its SPIFFE id and DNS names", async (t) => {
  const serving = issueServingCertificate({ bundle, trustDomain: 'cluster.local', dnsNames: ['localhost', 'ambient-ca.ambient-system.svc'], ttlMs: 60_000 })
  const x509 = new X509Certificate(serving.certPem)
  t.equal(spiffeIdOf(x509), caSpiffeId('cluster.local'))
  t.equal(x509.checkHost('ambient-ca.ambient-system.svc'), 'ambient-ca.ambient-system.svc')
  t.match(text(serving.certPem), /TLS Web Server Authentication, TLS Web Client Authentication/)
})
