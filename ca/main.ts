// `ambient ca`: wiring only. Loads (or creates) the cacerts directory, the node
// → identities registry, and serves IstioCertificateService; stops in reverse.
// `ambient ca node-cert` issues a node's client certificate for talking to it.
import { chmodSync, mkdirSync, unwatchFile, watchFile, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Command } from 'commander'
import { runUntilSignal, StopStack } from '../common/lifecycle.js'
import { createLogger, type Logger } from '../common/log.js'
import { ConfigError, parseDuration, requireString } from '../common/config.js'
import { CertificateAuthority } from './authority.js'
import { loadCacerts, loadOrCreateCacerts } from '../common/identity/cacerts.js'
import { CA_DEFAULTS, parseCaConfig, type CaConfig, type CaFlags } from './config.js'
import { issueNodeCertificate } from '../common/identity/node-identity.js'
import { identitiesByNode, readNodeIdentities, StaticPodRegistry } from './pod-registry.js'
import { ManifestsSource } from '../common/local/manifests-source.js'
import type { Snapshot } from '../common/model/snapshot.js'
import { CaServer } from './server.js'

export class CaProcess {
  private readonly stops = new StopStack()
  server: CaServer | null = null

  constructor(
    private readonly config: CaConfig,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const { config, log } = this
    try {
      const { bundle, created } = loadOrCreateCacerts(config.cacertsDir)
      log.info({ dir: config.cacertsDir, created, root: bundle.rootCertPem.length }, created ? 'generated a self-signed root' : 'loaded cacerts')
      const registry = new StaticPodRegistry()
      const file = config.nodeIdentitiesFile
      if (file) {
        const load = (): void => {
          try {
            registry.replaceAll(readNodeIdentities(file))
            log.info({ file }, 'node identities loaded')
          } catch (err) {
            log.error({ err: (err as Error).message }, 'node identities not applied; keeping the previous ones')
          }
        }
        registry.replaceAll(readNodeIdentities(file))
        watchFile(file, { interval: 500 }, load)
        this.stops.push(() => unwatchFile(file))
      } else if (config.manifestsDir !== null) {
        const source = new ManifestsSource({ dir: config.manifestsDir, logger: log.child({ component: 'manifests' }) })
        const apply = (snapshot: Snapshot): void => registry.replaceAll(identitiesByNode(snapshot, config.trustDomain))
        source.onChange(apply)
        await source.start()
        apply(await source.ready())
        this.stops.push(() => source.stop())
        log.info({ dir: config.manifestsDir }, 'node identities follow the pods in the manifests')
      } else {
        log.warn('no --node-identities or --manifests: every request is refused until a pod registry is attached')
      }
      const authority = new CertificateAuthority({
        bundle,
        trustDomain: config.trustDomain,
        registry,
        defaultTtlMs: config.certTtlMs,
        maxTtlMs: config.maxCertTtlMs,
      })
      this.server = new CaServer({
        authority,
        bundle,
        trustDomain: config.trustDomain,
        listen: config.listen,
        dnsNames: config.dnsNames,
        log: log.child({ component: 'server' }),
      })
      await this.server.start()
      this.stops.push(() => this.server!.stop())
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  async stop(): Promise<void> {
    await this.stops.run(this.log)
  }
}

interface NodeCertFlags {
  readonly node?: string
  readonly out?: string
  readonly ttl: string
}

export function registerCaCommand(program: Command): void {
  const ca = program
    .command('ca')
    .description("issues workload certificates over Istio's CA API (IstioCertificateService/CreateCertificate); a node gets only its pods' identities")
    .option('--listen <ip:port>', 'gRPC (TLS) listen address', CA_DEFAULTS.listen)
    .option(
      '--cacerts <dir>',
      "Istio's cacerts layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem); a self-signed root is generated there if empty",
    )
    .option('--trust-domain <td>', 'SPIFFE trust domain of the mesh', CA_DEFAULTS.trustDomain)
    .option('--cert-ttl <duration>', 'workload certificate lifetime when the request names none', CA_DEFAULTS.certTtl)
    .option('--max-cert-ttl <duration>', 'longest workload certificate lifetime granted', CA_DEFAULTS.maxCertTtl)
    .option('--node-identities <file>', 'YAML map of node name to the SPIFFE ids of its pods (re-read on change)')
    .option('--manifests <dir>', "or: the pods' spec.nodeName in this manifests folder (the one `ambient agent --manifests` reads, watched)")
    .option('--dns-name <name>', 'DNS SAN of the serving certificate (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--log-level <level>', 'debug, info, warn or error', CA_DEFAULTS.logLevel)
    .action(async (flags: CaFlags) => {
      const config = parseCaConfig(flags)
      const log = createLogger({ name: 'ca', level: config.logLevel })
      await runUntilSignal(new CaProcess(config, log), log)
    })

  ca.command('node-cert')
    .description("issues a node's client certificate for calling the CA (URI SAN spiffe://<td>/node/<name>); uses the parent's --cacerts and --trust-domain")
    .option('--node <name>', 'node name')
    .option('--out <dir>', 'writes node-cert.pem, node-key.pem (0600), node-chain.pem and root-cert.pem there')
    .option('--ttl <duration>', 'lifetime of the node certificate', '8760h')
    .action((flags: NodeCertFlags, command: Command) => {
      const parent = command.optsWithGlobals() as CaFlags & NodeCertFlags
      const bundle = loadCacerts(requireString('--cacerts', parent.cacerts))
      const node = requireString('--node', flags.node)
      const out = requireString('--out', flags.out)
      let issued
      try {
        issued = issueNodeCertificate({ bundle, trustDomain: parent.trustDomain, node, ttlMs: parseDuration('--ttl', flags.ttl) })
      } catch (err) {
        if (err instanceof ConfigError) throw err
        throw new ConfigError('--node', (err as Error).message)
      }
      mkdirSync(out, { recursive: true, mode: 0o700 })
      writeFileSync(join(out, 'node-key.pem'), issued.keyPem, { mode: 0o600 })
      chmodSync(join(out, 'node-key.pem'), 0o600)
      writeFileSync(join(out, 'node-cert.pem'), issued.certPem)
      writeFileSync(join(out, 'node-chain.pem'), issued.chainPem)
      writeFileSync(join(out, 'root-cert.pem'), bundle.trustBundlePem)
      process.stdout.write(`${join(out, 'node-cert.pem')}\n`)
    })
}
