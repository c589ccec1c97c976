// The `ambient ca` command: node-cert through commander, and the CA process
// serving a node listed in a --node-identities file (re-read on change).
import t from 'tap'
import { Command } from 'commander'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { silentLogger } from '../common/log.js'
import { createCsr, generateKeyPair, spiffeIdOf } from '../common/identity/pki.js'
import { loadOrCreateCacerts } from '../common/identity/cacerts.js'
import { CaClient } from '../common/identity/ca-client.js'
import { parseCaConfig } from './config.js'
import { CaProcess, registerCaCommand } from './main.js'

const dir = mkdtempSync(join(tmpdir(), 'ambient-ca-main-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const cacerts = join(dir, 'cacerts')
const WEB = 'spiffe://mesh.test/ns/shop/sa/web'

const program = (): Command => {
  const p = new Command().exitOverride()
  registerCaCommand(p)
  return p
}

t.test('node-cert writes a node certificate from the cacerts directory', async (t) => {
  loadOrCreateCacerts(cacerts)
  const out = join(dir, 'node-a')
  const write = process.stdout.write
  process.stdout.write = (() => true) as typeof process.stdout.write
  try {
    await program().parseAsync(['node', 'ambient', 'ca', '--cacerts', cacerts, '--trust-domain', 'mesh.test', 'node-cert', '--node', 'node-a', '--out', out])
    await program().parseAsync([
      'node',
      'ambient',
      'ca',
      'node-cert',
      '--node',
      'node-b',
      '--out',
      join(dir, 'node-b'),
      '--cacerts',
      cacerts,
      '--trust-domain',
      'mesh.test',
    ])
  } finally {
    process.stdout.write = write
  }
  t.equal(spiffeIdOf(new X509Certificate(readFileSync(join(out, 'node-cert.pem')))), 'spiffe://mesh.test/node/node-a')
  t.equal(
    spiffeIdOf(new X509Certificate(readFileSync(join(dir, 'node-b', 'node-cert.pem')))),
    'spiffe://mesh.test/node/node-b',
    'flags after the subcommand work too',
  )
  t.equal(statSync(join(out, 'node-key.pem')).mode & 0o777, 0o600)
  await t.rejects(program().parseAsync(['node', 'ambient', 'ca', '--cacerts', cacerts, 'node-cert', '--node', 'Bad_Name', '--out', out]), {
    code: 'AMBIENT_ERR_CONFIG',
    message: /--node: node name "Bad_Name" is not a DNS subdomain/,
  })
})

t.test('flags are checked once, naming the bad one', async (t) => {
  const flags = { listen: '127.0.0.1:0', cacerts: cacerts, trustDomain: 'mesh.test', certTtl: '1h', maxCertTtl: '24h', dnsName: [], logLevel: 'info' }
  t.match(parseCaConfig(flags), { listen: { host: '127.0.0.1', port: 0 }, certTtlMs: 3600_000, dnsNames: ['localhost'] })
  t.throws(() => parseCaConfig({ ...flags, certTtl: '48h' }), { code: 'AMBIENT_ERR_CONFIG', message: /--cert-ttl: 48h is longer than --max-cert-ttl 24h/ })
  t.throws(() => parseCaConfig({ ...flags, trustDomain: 'Mesh Test' }), { message: /--trust-domain/ })
  t.throws(() => parseCaConfig({ ...flags, cacerts: undefined }), { message: /--cacerts: is required/ })
  t.throws(() => parseCaConfig({ ...flags, certTtl: 'soon' }), { message: /--cert-ttl: "soon" is not a duration/ })
})

t.test('the CA process serves the nodes of its --node-identities file', async (t) => {
  const identities = join(dir, 'nodes.yaml')
  writeFileSync(identities, 'node-b: []\n')
  const config = parseCaConfig({
    listen: '127.0.0.1:0',
    cacerts,
    trustDomain: 'mesh.test',
    certTtl: '1h',
    maxCertTtl: '24h',
    nodeIdentities: identities,
    dnsName: [],
    logLevel: 'info',
  })
  const ca = new CaProcess(config, silentLogger())
  await ca.start()
  t.teardown(() => ca.stop())
  const read = (f: string): string => readFileSync(join(dir, 'node-a', f), 'utf8')
  const client = new CaClient({
    address: ca.server!.address,
    trustDomain: 'mesh.test',
    node: { certPem: read('node-cert.pem'), keyPem: read('node-key.pem') },
    trustBundlePem: read('root-cert.pem'),
  })
  t.teardown(() => client.close())
  const csr = (): string => createCsr({ spiffeId: WEB, ...generateKeyPair() })
  await t.rejects(client.requestCertificate(csr(), WEB), { code: 'AMBIENT_ERR_CA_PERMISSION_DENIED' }, 'node-a has no pods yet')
  writeFileSync(identities, `node-a:\n  - ${WEB}\n`)
  let chain: readonly string[] | null = null
  for (let i = 0; i < 40 && !chain; i++) {
    await new Promise((r) => setTimeout(r, 100))
    chain = await client.requestCertificate(csr(), WEB, { validityMs: 7200_000 }).then(
      (c) => c.certChainPem,
      () => null,
    )
  }
  t.ok(chain, 'issued once the file lists the pod')
  const leaf = new X509Certificate(chain![0]!)
  t.equal(spiffeIdOf(leaf), WEB)
  t.ok(Date.parse(leaf.validTo) - Date.now() > 3600_000, 'requested 2 h within the 24 h maximum')
})
