// Where a proxy's workload certificates come from, declared and parsed once for
// every process that holds them (ztunnel for its pods, a waypoint for itself):
// `ambient ca` over gRPC as this node (--ca-address with --node-cert-dir), or, in a
// cluster, with a service-account token (--ca-address with --ca-token-file, the
// roots from --ca-root-cert), or, in local mode, signed in-process from cacerts
// held here (--cacerts). Either way an IdentityManager renews them at half-life;
// with `ambient ca` the node's credentials (or the token, read for every request)
// and the root are watched on disk, so re-issuing them rotates without a restart.
import { readFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import type { Command } from 'commander'
import { ConfigError, parseDuration, requireString } from '../config.js'
import type { Logger } from '../log.js'
import { CaClient, DEFAULT_CA_ROOT_CERT } from './ca-client.js'
import { parseBundle } from './chain.js'
import { InProcessCertificateSource } from './certificate-source.js'
import { IdentityManager } from './manager.js'
import { NODE_CREDENTIAL_FILES, NodeCredentialFiles, parseNodeCredentials, type NodeCredentials } from './node-credential-files.js'
import { TrustBundleFile } from './trust-bundle-file.js'

export type CertificateSourceConfig =
  | { readonly kind: 'ca'; readonly caAddress: string; readonly nodeCertDir: string }
  /** A service-account token (projected, audience istio-ca) read for every request; the roots from a mounted file. */
  | { readonly kind: 'ca-token'; readonly caAddress: string; readonly tokenFile: string; readonly rootCertFile: string }
  | { readonly kind: 'cacerts'; readonly cacertsDir: string }

export interface CertificateFlags {
  readonly caAddress?: string
  readonly nodeCertDir?: string
  readonly caTokenFile?: string
  readonly caRootCert?: string
  readonly cacerts?: string
  readonly certTtl: string
}

export const CERTIFICATE_DEFAULTS = { certTtl: '24h' } as const

/** Adds the certificate flags to a proxy's command. */
export function addCertificateOptions(command: Command): Command {
  return command
    .option('--ca-address <host:port>', 'get workload certificates from `ambient ca` at this address (with --node-cert-dir or --ca-token-file)')
    .option('--node-cert-dir <dir>', "this node's CA credentials: node-cert.pem, node-key.pem, node-chain.pem, root-cert.pem (from `ambient ca node-cert`)")
    .option(
      '--ca-token-file <file>',
      "or: authenticate to the CA with this service-account token (a projected token for the CA's audience, istio-ca), re-read for every request as the kubelet rotates it; the CA gives ztunnel's account the identities of its node's pods, any other account its own",
    )
    .option(
      '--ca-root-cert <file>',
      `with --ca-token-file: the mesh roots that check the CA and peers (the istio-ca-root-cert ConfigMap, mounted), watched (default ${DEFAULT_CA_ROOT_CERT})`,
    )
    .option('--cacerts <dir>', "local mode instead of --ca-address: sign workload certificates from ca-cert.pem and ca-key.pem in DIR (Istio's cacerts layout)")
    .option('--cert-ttl <duration>', 'workload certificate lifetime (renewed at half-life)', CERTIFICATE_DEFAULTS.certTtl)
}

export function parseCertificateSource(flags: CertificateFlags): { readonly certificates: CertificateSourceConfig; readonly certTtlMs: number } {
  const certTtlMs = parseDuration('--cert-ttl', flags.certTtl)
  if (flags.caAddress !== undefined && flags.cacerts !== undefined)
    throw new ConfigError('--ca-address', 'give either --ca-address (with --node-cert-dir or --ca-token-file) or --cacerts (local mode), not both')
  if (flags.caAddress === undefined) {
    for (const [flag, value] of [
      ['--node-cert-dir', flags.nodeCertDir],
      ['--ca-token-file', flags.caTokenFile],
      ['--ca-root-cert', flags.caRootCert],
    ] as const)
      if (value !== undefined) throw new ConfigError(flag, 'is for calling `ambient ca`: give --ca-address too')
    if (flags.cacerts === undefined)
      throw new ConfigError('--ca-address', 'workload certificates need --ca-address with --node-cert-dir or --ca-token-file, or --cacerts for local mode')
    return { certificates: { kind: 'cacerts', cacertsDir: flags.cacerts }, certTtlMs }
  }
  const caAddress = flags.caAddress
  if (!/^[^\s:]+:\d+$/.test(caAddress)) throw new ConfigError('--ca-address', `${JSON.stringify(caAddress)} is not host:port`)
  if (flags.nodeCertDir !== undefined && flags.caTokenFile !== undefined)
    throw new ConfigError('--ca-token-file', 'give either --node-cert-dir (a node certificate) or --ca-token-file (a service-account token), not both')
  if (flags.caTokenFile !== undefined) {
    const tokenFile = requireString('--ca-token-file', flags.caTokenFile)
    const rootCertFile = requireString('--ca-root-cert', flags.caRootCert ?? DEFAULT_CA_ROOT_CERT)
    return { certificates: { kind: 'ca-token', caAddress, tokenFile, rootCertFile }, certTtlMs }
  }
  if (flags.caRootCert !== undefined) throw new ConfigError('--ca-root-cert', 'goes with --ca-token-file; with --node-cert-dir the roots are its root-cert.pem')
  if (flags.nodeCertDir === undefined)
    throw new ConfigError(
      '--node-cert-dir',
      '--ca-address needs credentials: --node-cert-dir DIR (ambient ca node-cert) or --ca-token-file FILE (a projected service-account token)',
    )
  return { certificates: { kind: 'ca', caAddress, nodeCertDir: requireString('--node-cert-dir', flags.nodeCertDir) }, certTtlMs }
}

function readPems(setting: string, dir: string, files: readonly string[]): string[] {
  try {
    return files.map((f) => readFileSync(join(dir, f), 'utf8'))
  } catch (err) {
    throw new ConfigError(setting, `cannot read ${files.join(', ')} in ${dir}: ${(err as Error).message}`)
  }
}

export interface WorkloadIdentitiesOptions {
  readonly certificates: CertificateSourceConfig
  readonly certTtlMs: number
  readonly trustDomain: string
  /** This node's name: the node certificate must name it. */
  readonly node: string
  readonly log: Logger
}

/** The IdentityManager of a proxy and, with `ambient ca`, the watchers that rotate its node credentials and roots. */
export class WorkloadIdentities {
  readonly identities: IdentityManager
  /** With `ambient ca`: the client, the node credentials (null with a token) and the roots file. */
  private readonly ca: { readonly client: CaClient; readonly node: NodeCredentials | null; readonly dir: string | null; readonly rootCertFile: string } | null
  private readonly watchers: { stop(): void }[] = []

  constructor(private readonly options: WorkloadIdentitiesOptions) {
    const log = options.log.child({ component: 'identity' })
    const c = options.certificates
    if (c.kind === 'ca') {
      const [certPem, keyPem, chainPem, rootPem] = readPems('--node-cert-dir', c.nodeCertDir, [...NODE_CREDENTIAL_FILES, 'root-cert.pem'])
      let node: NodeCredentials
      try {
        node = parseNodeCredentials([certPem!, keyPem!, chainPem!], { trustDomain: options.trustDomain, node: options.node })
      } catch (err) {
        throw new ConfigError('--node-cert-dir', `${c.nodeCertDir}: ${(err as Error).message}`)
      }
      const client = new CaClient({ address: c.caAddress, trustDomain: options.trustDomain, node, trustBundlePem: rootPem! })
      this.identities = new IdentityManager({ source: client, trustBundlePem: rootPem!, certTtlMs: options.certTtlMs, log })
      this.ca = { client, node, dir: c.nodeCertDir, rootCertFile: join(c.nodeCertDir, 'root-cert.pem') }
    } else if (c.kind === 'ca-token') {
      const [token] = readPems('--ca-token-file', dirname(c.tokenFile), [basename(c.tokenFile)])
      if (token!.trim() === '') throw new ConfigError('--ca-token-file', `${c.tokenFile} is empty`)
      const [rootPem] = readPems('--ca-root-cert', dirname(c.rootCertFile), [basename(c.rootCertFile)])
      try {
        parseBundle(rootPem!, `--ca-root-cert ${c.rootCertFile}`)
      } catch (err) {
        throw new ConfigError('--ca-root-cert', (err as Error).message)
      }
      const client = new CaClient({ address: c.caAddress, trustDomain: options.trustDomain, tokenFile: c.tokenFile, trustBundlePem: rootPem! })
      this.identities = new IdentityManager({ source: client, trustBundlePem: rootPem!, certTtlMs: options.certTtlMs, log })
      this.ca = { client, node: null, dir: null, rootCertFile: c.rootCertFile }
    } else {
      const [certPem, keyPem] = readPems('--cacerts', c.cacertsDir, ['ca-cert.pem', 'ca-key.pem'])
      const source = new InProcessCertificateSource({ ca: { certPem: certPem!, keyPem: keyPem! }, trustDomain: options.trustDomain })
      this.identities = new IdentityManager({ source, trustBundlePem: certPem!, certTtlMs: options.certTtlMs, log })
      this.ca = null
    }
  }

  async start(): Promise<void> {
    await this.identities.start()
    const ca = this.ca
    // In local mode the signer is the bundle: fixed for the process.
    if (ca === null) return
    const log = this.options.log.child({ component: 'identity' })
    // With `ambient ca` the roots can rotate under us (Istio publishes old + new, then new alone).
    const apply = (pem: string): void => {
      this.identities.setTrustBundle(pem) // workload contexts (peers' roots)
      ca.client.setTrustBundle(pem) // and the channel to the CA, whose serving certificate may move to the new root
    }
    const bundle = new TrustBundleFile(ca.rootCertFile, this.identities.trustBundle, apply, log)
    bundle.start()
    this.watchers.push(bundle)
    // A token file is read for every request; node credentials are watched and re-applied.
    if (ca.node === null || ca.dir === null) return
    const node = ca.node
    const expected = { trustDomain: this.options.trustDomain, node: this.options.node }
    const nodeFiles = new NodeCredentialFiles(ca.dir, expected, node, (next) => ca.client.setNodeCredentials(next), log)
    nodeFiles.start()
    this.watchers.push(nodeFiles)
  }

  async stop(): Promise<void> {
    for (const w of this.watchers.splice(0).reverse()) w.stop()
    await this.identities.stop()
  }
}
