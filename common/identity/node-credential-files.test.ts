// Node credentials for `ambient ca`: checked at start, re-read when rotated on disk;
// a wrong, expired or half-written set is refused and the credentials in force stay.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { silentLogger } from '../log.js'
import { loadOrCreateCacerts } from './cacerts.js'
import { issueNodeCertificate } from './node-identity.js'
import { NodeCredentialFiles, parseNodeCredentials, type NodeCredentials } from './node-credential-files.js'
import { generateKeyPair } from './pki.js'

const TD = 'mesh.test'
const dir = mkdtempSync(join(tmpdir(), 'node-creds-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const { bundle } = loadOrCreateCacerts(join(dir, 'cacerts'))
const expected = { trustDomain: TD, node: 'node-a' }
const issue = (node = 'node-a', ttlMs = 3600_000): { certPem: string; keyPem: string; chainPem: string } =>
  issueNodeCertificate({ bundle, trustDomain: TD, node, ttlMs })

t.test('a node certificate is checked: its node, its validity, its key', async (t) => {
  const good = issue()
  const parsed = parseNodeCredentials([good.certPem, good.keyPem, good.chainPem], expected)
  t.equal(parsed.certPem, good.certPem)
  t.ok(Date.parse(parsed.expires) > Date.now(), `expires ${parsed.expires}`)
  const other = issue('node-b')
  t.throws(() => parseNodeCredentials([other.certPem, other.keyPem, ''], expected), {
    code: 'AMBIENT_ERR_IDENTITY_WRONG_CERT',
    message: /names "spiffe:\/\/mesh.test\/node\/node-b", not this node \(spiffe:\/\/mesh.test\/node\/node-a\)/,
  })
  t.throws(() => parseNodeCredentials([good.certPem, other.keyPem, ''], expected), { message: /node-key.pem is not the key of node-cert.pem/ })
  t.throws(() => parseNodeCredentials([good.certPem, generateKeyPair().privateKeyPem, ''], expected), {
    message: /node-key.pem is not the key of node-cert.pem/,
  })
  t.throws(() => parseNodeCredentials(['garbage', good.keyPem, ''], expected), {
    code: 'AMBIENT_ERR_IDENTITY_BAD_PEM',
    message: /node-cert.pem is not a certificate/,
  })
  t.throws(() => parseNodeCredentials([good.certPem, 'garbage', ''], expected), {
    code: 'AMBIENT_ERR_IDENTITY_BAD_PEM',
    message: /node-key.pem is not a private key/,
  })
  t.throws(() => parseNodeCredentials([good.certPem, good.keyPem, 'garbage'], expected), { message: /node-chain.pem holds no CERTIFICATE PEM block/ })
  t.throws(() => parseNodeCredentials([good.certPem, good.keyPem, ''], expected, Date.now() + 2 * 3600_000), {
    message: /node-cert.pem expired at .*ambient ca node-cert/,
  })
})

t.test('a rotation on disk is applied once both files are new; a half-written one waits', async (t) => {
  const first = issue()
  const write = (c: { certPem?: string; keyPem?: string; chainPem?: string }): void => {
    if (c.certPem !== undefined) writeFileSync(join(dir, 'node-cert.pem'), c.certPem)
    if (c.keyPem !== undefined) writeFileSync(join(dir, 'node-key.pem'), c.keyPem)
    if (c.chainPem !== undefined) writeFileSync(join(dir, 'node-chain.pem'), c.chainPem)
  }
  write(first)
  const initial = parseNodeCredentials([first.certPem, first.keyPem, first.chainPem], expected)
  const applied: NodeCredentials[] = []
  const files = new NodeCredentialFiles(dir, expected, initial, (c) => applied.push(c), silentLogger(), 20)
  t.equal(files.reload(), false, 'unchanged: nothing applied')

  const second = issue()
  write({ certPem: second.certPem })
  t.equal(files.reload(), false, 'the new certificate beside the old key is refused')
  write({ keyPem: second.keyPem })
  t.equal(files.reload(), true, 'applied once the key arrived')
  t.equal(applied[0]?.certPem, second.certPem)
  t.equal(applied[0]?.keyPem, second.keyPem)

  write(issue('node-b'))
  t.equal(files.reload(), false, "another node's certificate is refused")
  t.equal(applied.length, 1, 'the credentials in force stay')

  write(second)
  files.start()
  t.teardown(() => files.stop())
  await new Promise((r) => setTimeout(r, 100))
  const third = issue()
  write(third)
  const deadline = Date.now() + 5000
  while (applied.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  t.equal(applied[1]?.certPem, third.certPem, 'the watcher applied the next rotation')
})
