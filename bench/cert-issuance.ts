// Workload certificates issued per second: key generation (ECDSA P-256) + CSR +
// signing, in-process (the CA's signCsr directly, and through
// InProcessCertificateSource + IdentityManager checks) and over gRPC with mutual
// TLS to `ambient ca` (one channel, sequential and with N requests in flight).
// Also the parts: key generation, CSR, sign. Bounded: --ms per measurement.
//   node --import tsx bench/cert-issuance.ts [--ms 1000] [--concurrency 16]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { CertificateAuthority } from '../ca/authority.js'
import { loadOrCreateCacerts } from '../common/identity/cacerts.js'
import { CaClient } from '../common/identity/ca-client.js'
import { issueNodeCertificate } from '../common/identity/node-identity.js'
import { StaticPodRegistry } from '../ca/pod-registry.js'
import { CaServer } from '../ca/server.js'
import { silentLogger } from '../common/log.js'
import { InProcessCertificateSource } from '../common/identity/certificate-source.js'
import { IdentityManager } from '../common/identity/manager.js'
import { createCsr, generateKeyPair, signCsr } from '../common/identity/pki.js'

const { values } = parseArgs({ options: { ms: { type: 'string', default: '1000' }, concurrency: { type: 'string', default: '16' } } })
const budgetMs = Number(values.ms)
const concurrency = Number(values.concurrency)
const TD = 'cluster.local'
const IDENTITIES = Array.from({ length: 64 }, (_, i) => `spiffe://${TD}/ns/bench/sa/sa-${i}`)

async function measure(name: string, op: (i: number) => unknown, inFlight = 1): Promise<number> {
  for (let i = 0; i < 20; i++) await op(i) // warm-up
  let done = 0
  const deadline = performance.now() + budgetMs
  const started = performance.now()
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) await op(done++)
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
  const seconds = (performance.now() - started) / 1000
  const rate = done / seconds
  console.log(
    `${name.padEnd(58)} ${rate.toFixed(0).padStart(7)} /s   ${((seconds * 1000) / done).toFixed(3).padStart(8)} ms each   (${done} in ${seconds.toFixed(2)} s)`,
  )
  return rate
}

const dir = mkdtempSync(join(tmpdir(), 'ambient-bench-ca-'))
const { bundle } = loadOrCreateCacerts(join(dir, 'cacerts'))
const registry = new StaticPodRegistry({ 'bench-node': IDENTITIES })
const server = new CaServer({
  authority: new CertificateAuthority({ bundle, trustDomain: TD, registry }),
  bundle,
  trustDomain: TD,
  listen: { host: '127.0.0.1', port: 0 },
  log: silentLogger(),
})
await server.start()
const node = issueNodeCertificate({ bundle, trustDomain: TD, node: 'bench-node', ttlMs: 3600_000 })
const client = new CaClient({ address: server.address, trustDomain: TD, node, trustBundlePem: bundle.trustBundlePem })
try {
  console.log(`cert issuance, ${budgetMs} ms per row, node ${process.version}`)
  const keys = generateKeyPair()
  const csrPem = createCsr({ spiffeId: IDENTITIES[0]!, ...keys })
  await measure('part: generateKeyPair (P-256)', () => generateKeyPair())
  await measure('part: createCsr (key PEM parsed again, not fresh)', () => createCsr({ spiffeId: IDENTITIES[0]!, ...keys }))
  await measure('part: signCsr (verify CSR + sign X.509)', () => signCsr({ csrPem, ca: bundle.signing, ttlMs: 3600_000 }))
  const inProcess = await measure('in-process: keygen + CSR + signCsr', (i) => {
    const k = generateKeyPair()
    return signCsr({ csrPem: createCsr({ spiffeId: IDENTITIES[i % 64]!, ...k }), ca: bundle.signing, ttlMs: 3600_000 })
  })
  const source = new InProcessCertificateSource({ ca: bundle.signing, trustDomain: TD })
  await measure('in-process: IdentityManager (+ chain checks, TLS context)', async (i) => {
    const manager = new IdentityManager({ source, trustBundlePem: bundle.trustBundlePem })
    await manager.getCertificate(IDENTITIES[i % 64]!)
    await manager.stop()
  })
  const grpcSeq = await measure('gRPC mTLS: keygen + CSR + CreateCertificate, 1 in flight', (i) => {
    const id = IDENTITIES[i % 64]!
    return client.requestCertificate(createCsr({ spiffeId: id, ...generateKeyPair() }), id)
  })
  const grpcPar = await measure(
    `gRPC mTLS: same, ${concurrency} in flight`,
    (i) => {
      const id = IDENTITIES[i % 64]!
      return client.requestCertificate(createCsr({ spiffeId: id, ...generateKeyPair() }), id)
    },
    concurrency,
  )
  console.log(
    `ratios: gRPC/in-process ${(grpcSeq / inProcess).toFixed(2)} (1 in flight), ${(grpcPar / inProcess).toFixed(2)} (${concurrency} in flight); client and CA share one process and core`,
  )
} finally {
  client.close()
  await server.stop()
  rmSync(dir, { recursive: true, force: true })
}
