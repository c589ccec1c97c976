// `ambient waypoint`: wiring only. Starts, in order: the metrics and readiness
// endpoints (not ready yet), the configuration source and the state built from
// it, the waypoint's certificate, the upstream connections and the HBONE
// listener; stops in reverse, also after a partial start.
import type { Command } from 'commander'
import { AdminServers } from '../common/admin-server.js'
import { addSourceOptions, createSource } from '../common/config-source.js'
import type { IdentityCredentials } from '../common/hbone/tls.js'
import type { HboneServer } from '../common/hbone/server.js'
import type { ManagedCertificate } from '../common/identity/manager.js'
import { addCertificateOptions, WorkloadIdentities } from '../common/identity/workload-identities.js'
import { runUntilSignal, StopStack } from '../common/lifecycle.js'
import { createLogger, type Logger } from '../common/log.js'
import { spiffeIdentity } from '../common/model/workload.js'
import { parseWaypointConfig, WAYPOINT_DEFAULTS, type WaypointConfig, type WaypointFlags } from './config.js'
import { decidePlan, decideTcp, problemsOf } from './decide.js'
import { WaypointMetrics } from './metrics.js'
import { HttpHandler } from './proxy/http-handler.js'
import { TcpHandler } from './proxy/tcp-handler.js'
import { createTunnelServer } from './proxy/tunnel.js'
import { Upstreams } from './proxy/upstream.js'
import { WaypointState } from './state.js'

function credentialsOf(cert: ManagedCertificate): IdentityCredentials {
  return { keyPem: cert.keyPem, certPem: cert.certPem, chainPem: cert.chainPem || undefined, trustBundlePem: cert.trustBundlePem }
}

export class Waypoint {
  private readonly stops = new StopStack()
  private readonly metrics = new WaypointMetrics()
  private state: WaypointState | null = null
  private tunnel: HboneServer<unknown> | null = null
  private ready = false
  admin: AdminServers | null = null
  readonly identity: string

  constructor(
    private readonly config: WaypointConfig,
    private readonly log: Logger,
  ) {
    this.identity = spiffeIdentity(config.trustDomain, config.gateway.namespace, config.serviceAccount)
  }

  async start(): Promise<void> {
    const { config, log } = this
    try {
      const admin = new AdminServers({ registry: this.metrics.registry, ready: () => this.ready, configDump: () => this.configDump() })
      this.admin = admin
      this.stops.push(() => admin.stop())
      await admin.start({ metrics: config.metrics, readiness: config.readiness, admin: config.admin })

      const source = createSource(config.source, { nodeName: config.node || `waypoint ${config.gateway.namespace}/${config.gateway.name}`, log })
      this.stops.push(() => source.stop())
      const options = { gateway: config.gateway, trustDomain: config.trustDomain, rootNamespace: config.rootNamespace, clusterDomain: config.clusterDomain }
      let reported = ''
      const apply = (snapshot: Parameters<typeof WaypointState.build>[0]): void => {
        const state = WaypointState.build(snapshot, options)
        this.state = state
        const problems = problemsOf(state)
        this.metrics.setConfigProblems(problems)
        const digest = JSON.stringify([state.problems, problems])
        if (digest === reported) return
        reported = digest
        for (const p of state.problems) log.error({ gateway: state.gatewayKey }, p)
        for (const p of problems) (p.kind === 'invalid' ? log.error : log.warn).call(log, { object: p.object, field: p.field, code: p.code }, p.message)
      }
      source.onChange(apply)
      await source.start()
      apply(await source.ready())

      const identities = new WorkloadIdentities({
        certificates: config.certificates,
        certTtlMs: config.certTtlMs,
        trustDomain: config.trustDomain,
        node: config.node,
        log,
      })
      await identities.start()
      this.stops.push(() => identities.stop())
      const certificate = await identities.identities.getCertificate(this.identity)

      const upstreams = new Upstreams({ identities: identities.identities, identity: this.identity, hbonePort: config.hbone.port, log })
      this.stops.push(() => upstreams.stop())
      const state = (): WaypointState => this.state!
      const random = Math.random
      const http = new HttpHandler({ state, decide: decidePlan, upstreams, metrics: this.metrics, log: log.child({ component: 'http' }), random })
      const tcp = new TcpHandler({ state, authorize: decideTcp, upstreams, metrics: this.metrics, log: log.child({ component: 'tcp' }), random })
      const tunnel = createTunnelServer({
        credentials: credentialsOf(certificate),
        trustDomain: config.trustDomain,
        state,
        http,
        tcp,
        metrics: this.metrics,
        log,
      })
      this.tunnel = tunnel as HboneServer<unknown>
      // A renewed certificate: new handshakes in and out use it; open connections keep theirs.
      const rotated = (cert: ManagedCertificate): void => {
        if (cert.identity !== this.identity) return
        tunnel.updateCredentials(credentialsOf(cert))
        upstreams.invalidateIdentity()
        log.info({ identity: cert.identity, serial: cert.serialNumber, notAfter: cert.notAfter.toISOString() }, 'waypoint certificate rotated')
      }
      identities.identities.on('certificate', rotated)
      this.stops.push(() => void identities.identities.off('certificate', rotated))
      const bound = await tunnel.start({ kind: 'address', host: config.hbone.host, port: config.hbone.port })
      this.stops.push(() => tunnel.stop({ drainMs: 5000 }))
      this.ready = true
      log.info({ gateway: `${config.gateway.namespace}/${config.gateway.name}`, identity: this.identity, hbone: bound, ...admin.bound }, 'waypoint ready')
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  private configDump(): unknown {
    const state = this.state
    return {
      gateway: this.config.gateway,
      identity: this.identity,
      hbone: this.tunnel?.address() ?? null,
      state: state === null ? null : { gateway: state.gateway, problems: state.problems, configProblems: problemsOf(state) },
    }
  }

  async stop(): Promise<void> {
    this.ready = false
    await this.stops.run(this.log)
  }
}

export function registerWaypointCommand(program: Command): void {
  const command = program.command('waypoint')
  addCertificateOptions(addSourceOptions(command, 'the Gateways, HTTPRoutes, AuthorizationPolicies, Services, EndpointSlices, Pods and Namespaces'))
    .description("a namespace's L7 proxy (Istio's waypoint): HBONE in, HTTPRoute routing and L7 AuthorizationPolicy, HBONE out to the backends")
    .option('--gateway <namespace/name>', 'the Gateway (gatewayClassName istio-waypoint) this waypoint serves (default: $AMBIENT_GATEWAY)')
    .option('--service-account <name>', "the waypoint's service account, its identity (default: the Gateway's name, as the rendered Deployment uses)")
    .option('--node <name>', 'the node this pod runs on, named by --node-cert-dir credentials (default: $AMBIENT_NODE_NAME)')
    .option('--trust-domain <td>', 'SPIFFE trust domain of the mesh', WAYPOINT_DEFAULTS.trustDomain)
    .option('--root-namespace <ns>', "Istio's root namespace", WAYPOINT_DEFAULTS.rootNamespace)
    .option('--cluster-domain <domain>', 'Kubernetes cluster domain of service hostnames', WAYPOINT_DEFAULTS.clusterDomain)
    .option('--hbone-addr <ip:port>', "HBONE listener (the mesh's HBONE port: backends are dialed on it too)", WAYPOINT_DEFAULTS.hboneAddr)
    .option('--metrics-addr <ip:port>', 'Prometheus metrics endpoint (/metrics)', WAYPOINT_DEFAULTS.metricsAddr)
    .option('--readiness-addr <ip:port>', 'readiness endpoint (/healthz/ready)', WAYPOINT_DEFAULTS.readinessAddr)
    .option('--admin-addr <127.0.0.1:port>', 'admin endpoint (/config_dump), localhost only', WAYPOINT_DEFAULTS.adminAddr)
    .option('--log-level <level>', 'debug, info, warn or error', WAYPOINT_DEFAULTS.logLevel)
    .action(async (flags: WaypointFlags) => {
      const config = parseWaypointConfig(flags, process.env)
      const log = createLogger({ name: 'waypoint', level: config.logLevel })
      await runUntilSignal(new Waypoint(config, log), log)
    })
}
