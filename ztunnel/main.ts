// `ambient ztunnel`: wiring only. Starts, in order: workload state (local config),
// identities, the pinned datapath, metrics, the node proxy (on a running
// predecessor's sockets with --handoff-socket) and the admin endpoints; stops in
// reverse, also after a partial start. SIGTERM, or handing over to a successor,
// drains first (handoff.ts).
import { watchFile, unwatchFile } from 'node:fs'
import type { Command } from 'commander'
import { addNodeOptions } from '../common/node-settings.js'
import { runUntilSignal, StopStack } from '../common/lifecycle.js'
import { createLogger, type Logger } from '../common/log.js'
import { Datapath } from '../datapath/datapath.js'
import { BPF_OBJECTS_DIR } from '../common/paths.js'
import { AdminServers } from '../common/admin-server.js'
import { parseZtunnelConfig, ZTUNNEL_DEFAULTS, type ZtunnelConfig, type ZtunnelFlags } from './config.js'
import { addCertificateOptions, WorkloadIdentities } from '../common/identity/workload-identities.js'
import { ZtunnelMetrics } from './metrics.js'
import { NodeProxy } from './node-proxy.js'
import { readLocalConfig } from './state/local-config.js'
import { WorkloadStore } from '../common/model/workload-store.js'
import { PolicyStore } from '../common/policy/policy-store.js'
import { XdsClient, type XdsState } from './state/xds-client.js'
import { HandoffServer, Predecessor, type HandedPod } from './handoff.js'

/** Same length and the same objects in order (the xDS client keeps unchanged resources' identity). */
function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

export class Ztunnel {
  private readonly stops = new StopStack()
  private ready = false
  admin: AdminServers | null = null
  private xds: XdsClient | null = null
  private proxy: NodeProxy | null = null
  private handoff: HandoffServer | null = null
  private draining: Promise<void> | null = null
  private finish: () => void = () => undefined
  /** Resolves once this ztunnel handed its pods to a successor and drained: the process is done. */
  readonly finished = new Promise<void>((resolve) => (this.finish = resolve))

  constructor(
    private readonly config: ZtunnelConfig,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const { config, log } = this
    try {
      const store = new WorkloadStore()
      const policies = new PolicyStore(config.rootNamespace)
      const metrics = new ZtunnelMetrics()
      if (config.localConfig !== null) this.watchLocalConfig(config.localConfig, store, policies, metrics)
      else {
        let last: XdsState = { workloads: [], services: [], authorizations: [] }
        const xds = new XdsClient({
          address: config.xdsAddress!,
          node: { id: config.node },
          log: log.child({ component: 'xds' }),
          // Called once per changed resource type; what did not change is not applied again
          // (rebuilding the policy set re-evaluates every open connection).
          onUpdate: (state) => {
            if (!sameItems(state.workloads, last.workloads)) {
              const result = store.replaceAll(state.workloads)
              for (const r of result.rejected) log.error({ uid: r.uid, error: r.error }, 'workload rejected')
              log.info({ workloads: result.applied }, 'workloads from the agent applied')
            }
            if (!sameItems(state.services, last.services)) store.replaceServices(state.services)
            if (!sameItems(state.authorizations, last.authorizations)) {
              const update = policies.replaceAuthorizations(state.authorizations)
              log.info({ authorizations: update.authorizations, peerAuthentications: update.peerAuthentications }, 'policies from the agent applied')
            }
            last = state
          },
        })
        xds.start()
        this.xds = xds
        this.stops.push(() => xds.stop())
      }
      const workloadIdentities = new WorkloadIdentities({
        certificates: config.certificates,
        certTtlMs: config.certTtlMs,
        trustDomain: config.trustDomain,
        node: config.node,
        log,
      })
      await workloadIdentities.start()
      this.stops.push(() => workloadIdentities.stop())
      const { identities } = workloadIdentities
      // Declared with the other metrics but never set before: each held certificate's expiry, as issued or renewed.
      identities.on('certificate', (c) => metrics.certificateExpiry.set({ identity: c.identity }, Math.floor(c.notAfter.getTime() / 1000)))
      const datapath = Datapath.open({
        pinRoot: config.pinRoot,
        objectsDir: BPF_OBJECTS_DIR,
        proxyMark: config.proxyMark,
        deliveryMark: config.deliveryMark,
        hbonePort: config.hbonePort,
      })
      this.stops.push(() => datapath.close())
      // The agent loaded the programs: refuse to run with a mark or port they do not know.
      datapath.verifySettings()
      const proxy = new NodeProxy({
        node: config.node,
        datapath,
        store,
        identities,
        policies,
        trustDomain: config.trustDomain,
        metrics,
        hboneEngine: config.hboneEngine === 'native' ? { threads: config.hboneThreads } : null,
        log: log.child({ component: 'proxy' }),
      })
      // A running ztunnel at the handoff socket: take its sockets once our state is
      // complete (serving its pods with an empty store would allow what policy denies).
      const predecessor = config.handoffSocket !== null ? Predecessor.connect(config.handoffSocket) : null
      let handed: HandedPod[] = []
      try {
        if (predecessor) {
          await this.synced()
          handed = await predecessor.takeOver()
          log.info({ predecessor: config.handoffSocket, pods: handed.length }, 'taking over the pods of the running ztunnel')
        }
        await proxy.start(handed)
        this.proxy = proxy
        this.stops.push(() => proxy.stop())
        // It stops accepting and frees the node ports (metrics, readiness, admin) before answering.
        if (predecessor) await predecessor.adopted(handed.length)
      } finally {
        predecessor?.close()
      }
      this.admin = new AdminServers({
        registry: metrics.registry,
        ready: () => this.ready && (this.xds === null || this.xds.status().updates > 0),
        configDump: () => ({
          node: config.node,
          xds: this.xds?.status() ?? null,
          workloads: store.all(),
          policies: policies.lastUpdate,
          localPods: proxy.status(),
          certificates: identities.describe(),
          datapath: { dir: datapath.dir, maps: datapath.occupancy() },
        }),
      })
      await this.admin.start({ metrics: config.metrics, readiness: config.readiness, admin: config.admin })
      this.stops.push(() => this.admin?.stop())
      if (config.handoffSocket !== null) {
        const handoff = new HandoffServer({
          path: config.handoffSocket,
          log: log.child({ component: 'handoff' }),
          pods: () => proxy.listening(),
          release: () => this.handOver(),
        })
        await handoff.start()
        this.handoff = handoff
        this.stops.push(() => handoff.stop())
      }
      this.ready = true
      log.info({ node: config.node, ...this.admin.bound }, 'ztunnel ready')
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  /** The first state from the agent is applied (at once with a local config file). */
  private async synced(): Promise<void> {
    const deadline = Date.now() + 60_000
    while (this.xds !== null && this.xds.status().updates === 0) {
      if (Date.now() > deadline) throw new Error('no workloads from the agent within 60 s: cannot take over the running ztunnel without them')
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  /** A successor serves on our sockets: stop accepting, free the node ports, drain, then finish. */
  private async handOver(): Promise<void> {
    this.ready = false
    const admin = this.admin
    this.admin = null
    await admin?.stop()
    this.draining = this.proxy!.drain({ handedOver: true, drainMs: this.config.drainTimeoutMs })
    void this.draining.then(() => this.finish())
  }

  /** SIGTERM: stop accepting, let open connections finish up to --drain-timeout (or finish the drain a handoff began). */
  async drain(): Promise<void> {
    this.ready = false
    if (this.draining === null) {
      await this.handoff?.stop()
      this.handoff = null
      this.draining = this.proxy?.drain({ handedOver: false, drainMs: this.config.drainTimeoutMs }) ?? Promise.resolve()
    }
    await this.draining
  }

  /** Workloads and policies from a static file, re-read when it changes; a bad file keeps the previous state. */
  private watchLocalConfig(path: string, store: WorkloadStore, policies: PolicyStore, metrics: ZtunnelMetrics): void {
    const { config, log } = this
    const load = (): void => {
      const local = readLocalConfig(path, { trustDomain: config.trustDomain })
      for (const error of local.errors) log.error({ error }, 'workload rejected')
      const result = store.replaceAll(local.workloads)
      for (const r of result.rejected) log.error({ uid: r.uid, error: r.error }, 'workload rejected')
      const update = policies.replaceAll(local.policies)
      for (const p of update.invalid) log.error({ policy: p.policy, field: p.field, code: p.code }, `policy rejected: ${p.message}`)
      for (const p of [...update.warnings, ...update.ignored]) log.warn({ policy: p.policy, field: p.field, code: p.code }, p.message)
      metrics.setPolicyProblems([
        ...update.invalid.map((p) => ({ ...p, kind: 'invalid' as const })),
        ...update.ignored.map((p) => ({ ...p, kind: 'ignored' as const })),
        ...update.warnings.map((p) => ({ ...p, kind: 'warning' as const })),
      ])
      log.info({ workloads: result.applied, authorizations: update.authorizations, peerAuthentications: update.peerAuthentications }, 'local config applied')
    }
    load()
    watchFile(path, { interval: 500 }, () => {
      try {
        load()
      } catch (err) {
        log.error({ err: (err as Error).message }, 'local config not applied; keeping the previous workloads')
      }
    })
    this.stops.push(() => unwatchFile(path))
  }

  async stop(): Promise<void> {
    this.ready = false
    await this.stops.run(this.log)
  }
}

export function registerZtunnelCommand(program: Command): void {
  addCertificateOptions(addNodeOptions(program.command('ztunnel')))
    .description("the node's shared L4 proxy: carries enrolled pods' traffic in HBONE mutual-TLS tunnels")
    .option('--xds-address <path>', 'get workloads and policies from the node agent over this Unix socket (delta xDS; `ambient agent --xds-socket`)')
    .option(
      '--local-config <file>',
      "or: workloads and policies from a YAML file (Istio ztunnel's LOCAL_XDS_PATH shape, plus a netns path for this node's pods), watched",
    )
    .option('--metrics-addr <ip:port>', 'Prometheus metrics endpoint (/metrics)', ZTUNNEL_DEFAULTS.metricsAddr)
    .option('--readiness-addr <ip:port>', 'readiness endpoint (/healthz/ready)', ZTUNNEL_DEFAULTS.readinessAddr)
    .option('--admin-addr <127.0.0.1:port>', 'admin endpoint (/config_dump), localhost only', ZTUNNEL_DEFAULTS.adminAddr)
    .option(
      '--hbone-engine <native|node>',
      `who carries HBONE's bytes: the native addon (TLS, HTTP/2 and the relay on its own I/O threads) or Node's TLS and HTTP/2 (the reference) (default: $AMBIENT_HBONE_ENGINE, else ${ZTUNNEL_DEFAULTS.hboneEngine})`,
    )
    .option('--hbone-threads <n>', 'I/O threads of the native HBONE engine (sessions spread over them)', ZTUNNEL_DEFAULTS.hboneThreads)
    .option(
      '--handoff-socket <path>',
      "upgrade without refusing or resetting a connection: a new ztunnel started with the same path takes over the running one's listening sockets; the old one drains and exits",
    )
    .option('--drain-timeout <duration>', 'after SIGTERM or a handoff, how long open connections may finish before they are cut', ZTUNNEL_DEFAULTS.drainTimeout)
    .action(async (flags: ZtunnelFlags) => {
      const config = parseZtunnelConfig(flags, process.env)
      const log = createLogger({ name: 'ztunnel', level: config.logLevel })
      await runUntilSignal(new Ztunnel(config, log), log)
    })
}
