// `ambient ca`: wiring only. Loads (or creates) the cacerts directory, the node
// → identities registry (a file, a manifests folder, or the cluster's pods), with
// a cluster the token authenticator and the root-certificate ConfigMaps, and
// serves IstioCertificateService; stops in reverse.
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
import { KubeSource } from '../common/kube/kube-source.js'
import { KubeClient } from '../common/kube/kube-client.js'
import { loadClientNode } from '../common/kube/kube-config.js'
import { TokenAuthenticator } from './token-auth.js'
import { RootCertPublisher } from './root-cert-publisher.js'

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
      let tokens: TokenAuthenticator | undefined
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
      } else if (config.kube !== null) {
        tokens = await this.startCluster(config.kube, registry, bundle.trustBundlePem)
      } else {
        log.warn('no --node-identities, --manifests or Kubernetes API: every request is refused until a pod registry is attached')
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
        ...(tokens !== undefined && { tokens }),
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

  /** Pods (node identities) and namespaces from the API; token callers; the root published in every namespace. */
  private async startCluster(connection: NonNullable<CaConfig['kube']>, registry: StaticPodRegistry, trustBundlePem: string): Promise<TokenAuthenticator> {
    const { config, log } = this
    await loadClientNode()
    const client = KubeClient.for(connection)
    this.stops.push(() => client.close())
    const source = new KubeSource({ connection, nodeName: 'ambient-ca', logger: log.child({ component: 'kube' }), resources: ['Pod', 'Namespace'] })
    this.stops.push(() => source.stop())
    let namespaces: readonly string[] = []
    const publisher =
      config.rootCertConfigMap === null
        ? null
        : new RootCertPublisher({
            client,
            name: config.rootCertConfigMap,
            rootCertPem: trustBundlePem,
            namespaces: () => namespaces,
            log: log.child({ component: 'root-cert' }),
            resyncMs: config.rootCertResyncMs,
          })
    const apply = (snapshot: Snapshot): void => {
      registry.replaceAll(identitiesByNode(snapshot, config.trustDomain))
      const next = [...snapshot.namespaces.keys()].sort()
      if (next.join('\n') !== namespaces.join('\n')) {
        namespaces = next
        publisher?.sync()
      }
    }
    source.onChange(apply)
    await source.start()
    log.info({ server: client.server }, 'waiting for the pods and namespaces of the cluster')
    apply(await source.ready())
    if (publisher !== null) {
      publisher.start()
      this.stops.push(() => publisher.stop())
    }
    log.info(
      {
        audience: config.tokenAudience,
        ztunnel: `${config.ztunnelServiceAccount.namespace}/${config.ztunnelServiceAccount.name}`,
        rootCertConfigMap: config.rootCertConfigMap,
      },
      'node identities follow the pods in the cluster; service-account tokens accepted',
    )
    return new TokenAuthenticator({
      client,
      trustDomain: config.trustDomain,
      audience: config.tokenAudience,
      nodeServiceAccount: config.ztunnelServiceAccount,
      log: log.child({ component: 'token-auth' }),
    })
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
    .option(
      '--kubeconfig <file>',
      "or: the cluster's pods from the Kubernetes API this kubeconfig names (in a pod, without any of these, its service account is used); enables token callers and the root ConfigMaps",
    )
    .option('--context <name>', 'kubeconfig context (default: its current-context)')
    .option('--kube-server <url>', 'or: the Kubernetes API at this URL, without credentials (tests)')
    .option('--kube-insecure', 'allow a plain http:// --kube-server (tests only)')
    .option(
      '--token-audience <aud>',
      'with a Kubernetes API: callers may authenticate with a service-account token for this audience (checked by TokenReview)',
      CA_DEFAULTS.tokenAudience,
    )
    .option(
      '--ztunnel-service-account <ns/name>',
      "tokens of this service account stand for the node their pod runs on (its pods' identities); any other service account gets only its own identity",
      CA_DEFAULTS.ztunnelServiceAccount,
    )
    .option(
      '--root-cert-configmap <name>',
      'with a Kubernetes API: publish the trust bundle as this ConfigMap (key root-cert.pem) in every namespace',
      CA_DEFAULTS.rootCertConfigMap,
    )
    .option('--no-root-cert-configmap', 'do not publish the root ConfigMaps')
    .option('--dns-name <name>', 'DNS SAN of the serving certificate (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--log-level <level>', 'debug, info, warn or error', CA_DEFAULTS.logLevel)
    .action(async (flags: CaFlags) => {
      const config = parseCaConfig(flags, process.env)
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
