// `ambient agent`: wiring only. Starts, in order: the status endpoint (metrics,
// not ready yet), the pinned datapath (loaded or adopted), the xDS server ztunnel
// connects to, the configuration source, and the reconciler; stops in reverse,
// also after a partial start. Stopping the agent leaves the datapath in place:
// enrolled pods stay captured and their connections flow.
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Command } from 'commander'
import { addNodeOptions } from '../common/node-settings.js'
import { runUntilSignal, StopStack } from '../common/lifecycle.js'
import { createLogger, type Logger } from '../common/log.js'
import { BPF_OBJECTS_DIR } from '../common/paths.js'
import { AGENT_DEFAULTS, parseAgentConfig, type AgentConfig, type AgentFlags } from './config.js'
import { Datapath } from '../datapath/datapath.js'
import { enableRunTimeStats, sysctlStatsEnabled } from '../datapath/program-stats.js'
import { KubeSource } from '../common/kube/kube-source.js'
import { LeaseElector, POLICY_STATUS_LEASE } from './kube/lease.js'
import type { ManifestsSource } from '../common/local/manifests-source.js'
import { addSourceOptions, createSource } from '../common/config-source.js'
import { AgentMetrics } from './metrics.js'
import { Reconciler, type AgentSource } from './reconciler.js'
import { StatusServer } from './status-server.js'
import { XdsServer } from './xds/server.js'
import { WaypointDeployer } from './waypoint-deployer.js'

type Source = (KubeSource | ManifestsSource) & AgentSource

export class Agent {
  private readonly stops = new StopStack()
  private ready = false
  private readonly metrics = new AgentMetrics()
  private source: Source | null = null
  private datapath: Datapath | null = null
  private xds: XdsServer | null = null
  private reconciler: Reconciler | null = null
  readonly statusServer: StatusServer

  constructor(
    private readonly config: AgentConfig,
    private readonly log: Logger,
  ) {
    this.statusServer = new StatusServer({ registry: this.metrics.registry, ready: () => this.ready, status: () => this.status() }, (err) =>
      log.error({ err: err.message }, 'status endpoint error'),
    )
  }

  async start(): Promise<void> {
    const { config, log } = this
    try {
      await this.statusServer.start(config.status)
      this.stops.push(() => this.statusServer.stop())
      const datapath = Datapath.load(
        { pinRoot: config.pinRoot, objectsDir: BPF_OBJECTS_DIR, proxyMark: config.proxyMark, deliveryMark: config.deliveryMark, hbonePort: config.hbonePort },
        config.podsCgroup,
      )
      this.datapath = datapath
      this.stops.push(() => datapath.close())
      log.info({ dir: datapath.dir, podsCgroup: config.podsCgroup, adopted: datapath.enrolledPods().length }, 'datapath loaded')
      const runTimeStats = config.bpfStats ? enableRunTimeStats() : null
      if (runTimeStats !== null) this.stops.push(() => runTimeStats.close())
      this.metrics.observeDatapath({
        counters: () => datapath.counters(),
        programStats: () => datapath.programStats(),
        statsEnabled: () => runTimeStats?.enabled === true || sysctlStatsEnabled(),
      })
      this.stops.push(() => this.metrics.observeDatapath(null))
      mkdirSync(dirname(config.xdsSocket), { recursive: true, mode: 0o700 })
      const xds = new XdsServer({ socketPath: config.xdsSocket, log: log.child({ component: 'xds' }) })
      await xds.start()
      this.xds = xds
      this.stops.push(() => xds.stop())
      const source = this.createSource()
      this.source = source
      this.stops.push(() => source.stop()) // also after a partial start: its watches may be open
      await source.start()
      const elector =
        source instanceof KubeSource && config.writePolicyStatus
          ? new LeaseElector({
              api: source.api,
              namespace: config.rootNamespace,
              name: POLICY_STATUS_LEASE,
              identity: config.node,
              log: log.child({ component: 'lease' }),
              onChange: (leading) => {
                if (!leading) return
                this.reconciler?.schedule()
                void deployer?.schedule(source.snapshot())
              },
            })
          : null
      // The Lease holder also deploys waypoint Gateways, as istiod does.
      const deployer =
        elector !== null && source instanceof KubeSource
          ? new WaypointDeployer({
              api: source.api,
              writing: () => elector.leading,
              values: {
                IMAGE: config.waypointImage,
                CA_ADDRESS: config.waypointCaAddress,
                TRUST_DOMAIN: config.trustDomain,
                ROOT_NAMESPACE: config.rootNamespace,
                CLUSTER_DOMAIN: config.clusterDomain,
              },
              log: log.child({ component: 'waypoints' }),
            })
          : null
      if (deployer !== null) {
        const unsubscribe = source.onChange((snapshot) => void deployer.schedule(snapshot))
        this.stops.push(() => unsubscribe())
      }
      const reconciler = new Reconciler({
        node: config.node,
        source,
        datapath,
        sink: xds,
        cgroupRoot: config.cgroupRoot,
        trustDomain: config.trustDomain,
        rootNamespace: config.rootNamespace,
        clusterDomain: config.clusterDomain,
        outboundPort: config.outboundPort,
        listenerWaitMs: config.listenerWaitMs,
        retryMs: 1000,
        log: log.child({ component: 'reconciler' }),
        metrics: this.metrics,
        ...(elector !== null && source instanceof KubeSource
          ? { policyStatus: { patchPolicyStatus: source.patchPolicyStatus.bind(source), writing: () => elector.leading } }
          : {}),
      })
      this.reconciler = reconciler
      // Stopped after the reconciler (stops run in reverse): no write follows the release.
      if (elector !== null) this.stops.push(() => elector.stop())
      this.stops.push(() => reconciler.stop())
      await reconciler.start()
      // One agent writes policy status (every agent computes the same); a new holder writes at once.
      elector?.start()
      const sample = setInterval(() => this.sampleMetrics(), 1000)
      sample.unref()
      this.stops.push(() => clearInterval(sample))
      this.ready = true
      log.info({ node: config.node, status: this.statusServer.bound, xdsSocket: config.xdsSocket, source: config.source.kind }, 'agent ready')
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  private createSource(): Source {
    return createSource(this.config.source, { nodeName: this.config.node, log: this.log })
  }

  private sampleMetrics(): void {
    const source = this.source
    if (source instanceof KubeSource) for (const r of source.stats().resources) this.metrics.setWatchRestarts(r.kind, r.watchRestarts)
    if (source !== null) this.metrics.rejectedObjects.set(source.errors().length)
    if (this.xds !== null) {
      this.metrics.xdsClients.set(this.xds.clients().length)
      this.metrics.setXdsNacks(this.xds.stats().nacks)
    }
  }

  /** What `ambient status` shows. */
  status(): unknown {
    const datapath = this.datapath
    return {
      node: this.config.node,
      ready: this.ready,
      source: this.config.source.kind === 'manifests' ? { kind: 'manifests', dir: this.config.source.dir } : { kind: 'kubernetes' },
      pods: this.reconciler?.pods() ?? [],
      datapath:
        datapath === null
          ? null
          : {
              dir: datapath.dir,
              podsCgroup: this.config.podsCgroup,
              maps: datapath.occupancy(),
              counters: Object.fromEntries(Object.entries(datapath.counters()).map(([k, v]) => [k, String(v)])),
            },
      ztunnel: this.xds === null ? null : { socket: this.config.xdsSocket, clients: this.xds.clients(), stats: this.xds.stats() },
      rejectedObjects: (this.source?.errors() ?? []).map((e) => e.message),
      reconcile: this.reconciler?.stats() ?? null,
    }
  }

  async stop(): Promise<void> {
    this.ready = false
    await this.stops.run(this.log)
  }
}

export function registerAgentCommand(program: Command): void {
  addSourceOptions(
    addNodeOptions(program.command('agent')),
    'Namespaces, Pods, Services, EndpointSlices, ServiceAccounts, AuthorizationPolicies, PeerAuthentications, Gateways and HTTPRoutes',
  )
    .description("the node agent: enrolls this node's pods of ambient namespaces in the datapath and streams workloads and policies to ztunnel")
    .option('--cgroup-root <dir>', "cgroup v2 folder holding kubelet's pod cgroups", AGENT_DEFAULTS.cgroupRoot)
    .option('--pods-cgroup <dir>', 'cgroup the datapath attaches to (default: kubepods.slice or kubepods under --cgroup-root)')
    .option('--outbound-port <port>', "port of ztunnel's in-pod outbound listener", AGENT_DEFAULTS.outboundPort)
    .option('--xds-socket <path>', 'Unix socket ztunnel connects to for workloads and policies (delta xDS)', AGENT_DEFAULTS.xdsSocket)
    .option(
      '--status-addr <ip:port>',
      'endpoint for /status (`ambient status`), /metrics and /healthz/ready; localhost by default, the node IP (or 0.0.0.0) to let a cluster Prometheus scrape it (it shows pod names, IPs and netns paths)',
      AGENT_DEFAULTS.statusAddr,
    )
    .option('--cluster-domain <domain>', 'Kubernetes cluster domain, for service hostnames', AGENT_DEFAULTS.clusterDomain)
    .option(
      '--no-policy-status',
      'do not write policy status (ZtunnelAccepted, WaypointAccepted) nor deploy waypoints (agents that do elect one writer with the Lease ambient-policy-status in the root namespace)',
    )
    .option(
      '--waypoint-image <image>',
      'the image of the waypoint Deployments the Lease holder renders for Gateways of class istio-waypoint (default: $AMBIENT_IMAGE)',
    )
    .option('--waypoint-ca-address <host:port>', 'where rendered waypoints reach ambient ca', AGENT_DEFAULTS.waypointCaAddress)
    .option(
      '--listener-wait <duration>',
      "how long to wait for ztunnel's in-pod listener before capturing a pod anyway (its connections then fail closed), counted from the last pod of the pass ztunnel began listening in",
      AGENT_DEFAULTS.listenerWait,
    )
    .option(
      '--bpf-stats',
      "have the kernel count every BPF program's runs and run time while the agent runs (BPF_ENABLE_STATS), exported as ambient_datapath_program_runs_total and ambient_datapath_program_run_seconds_total; it costs every BPF program on the node (the CNI's too) two clock reads per run, so it is off by default",
    )
    .action(async (flags: AgentFlags) => {
      const config = parseAgentConfig(flags, process.env)
      const log = createLogger({ name: 'agent', level: config.logLevel })
      await runUntilSignal(new Agent(config, log), log, 'shutting down: the datapath stays pinned, enrolled pods stay captured')
    })
}
