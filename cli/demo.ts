// `ambient demo`: a local cluster on the netns testbed, from the example
// manifests (daemonset/examples/demo.yaml): an `ambient ca`, per node an `ambient
// agent` (which reads the manifests, finds the pods through their cgroups and
// programs the BPF datapath) and an `ambient ztunnel` fed by it, and an `ambient
// waypoint` in its own pod for each waypoint Gateway. The pods of the enrolled
// namespace are captured and talk mutual TLS across nodes; HTTP to web's service
// goes through the waypoint (split by an HTTPRoute, DELETE denied by an L7
// policy); a legacy namespace and an opted-out pod talk plaintext. Shows, live,
// who is enrolled, the connections each ztunnel sees and the requests per route,
// proves what crosses between the nodes, and removes everything it created on
// exit (Ctrl-C included). With --prometheus, a real Prometheus scrapes every agent,
// ztunnel and waypoint each second, for the dashboards of daemonset/dashboards/.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import type { Command } from 'commander'
import { parseAllDocuments } from 'yaml'
import { ConfigError, parseAddress, parseInteger, type Address } from '../common/config.js'
import { AgentCluster, type PodObjectSpec, type ServiceSpec } from '../testbed/agent-cluster.js'
import { captureBetweenNodes, TLS_APPLICATION_DATA } from '../testbed/capture.js'
import { clusterScrapeTargets, PrometheusServer } from '../testbed/prometheus.js'
import { startHttpServer, startServer } from '../testbed/pod-clients.js'
import { GATEWAY_NAME_LABEL } from '../common/model/waypoint.js'
import { printTable } from './output.js'
import { REPO_ROOT } from '../common/paths.js'

const EXAMPLE = join(REPO_ROOT, 'daemonset', 'examples', 'demo.yaml')
/** Every pod's TCP echo server (pods that serve HTTP do so on their services' target ports). */
const TCP_PORT = 9090
const PROMETHEUS_DEFAULT = '127.0.0.1:9090'

/** Starts Prometheus on `at` scraping the cluster and says where its UI is, with a graph to start from. */
async function startPrometheus(cluster: AgentCluster, at: Address): Promise<PrometheusServer> {
  const targets = clusterScrapeTargets(cluster)
  const prometheus = await PrometheusServer.start({ listen: at, targets })
  const graph = (exprs: readonly string[]): string =>
    `${prometheus.url}/graph?${new URLSearchParams(
      exprs.flatMap((e, i) => [
        [`g${i}.expr`, e],
        [`g${i}.tab`, '0'],
        [`g${i}.range_input`, '5m'],
      ]),
    )}`
  const jobs = (job: string): number => targets.filter((t) => t.job === job).length
  console.log(
    `\nprometheus: ${prometheus.url}  (scraping ${jobs('ambient-agent')} agents, ${jobs('ambient-ztunnel')} ztunnels and ${jobs('ambient-waypoint')} waypoints every second)`,
  )
  console.log(
    `  graphs: ${graph([
      'sum by (node) (rate(istio_tcp_connections_opened_total{job="ambient-ztunnel"}[30s]))',
      'sum by (response_code) (rate(istio_requests_total{reporter="waypoint"}[30s]))',
    ])}`,
  )
  console.log(`  Grafana: import ${join(REPO_ROOT, 'daemonset', 'dashboards')}/*.json with a Prometheus data source at ${prometheus.url}`)
  return prometheus
}

interface Manifest {
  kind?: string
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> }
  spec?: {
    nodeName?: string
    serviceAccountName?: string
    hostNetwork?: boolean
    clusterIP?: string
    selector?: Record<string, string>
    ports?: { name?: string; port?: number; targetPort?: number; appProtocol?: string }[]
  }
}

export interface DemoTopology {
  readonly nodes: readonly string[]
  readonly namespaces: Readonly<Record<string, Readonly<Record<string, string>>>>
  readonly pods: readonly PodObjectSpec[]
  readonly services: readonly ServiceSpec[]
  /** Everything else, applied as written: Gateways, HTTPRoutes, AuthorizationPolicies, PeerAuthentications. */
  readonly objects: readonly (Record<string, unknown> & { metadata: { name: string; namespace?: string } })[]
  /** The waypoint pods (labelled with their Gateway's name) and the Gateway each serves. */
  readonly waypoints: readonly { readonly pod: string; readonly gateway: string }[]
}

/** A Service of the file: its cluster IP, selector and ports (the testbed computes its endpoints). */
function serviceOf(path: string, d: Manifest): ServiceSpec {
  const who = `service ${d.metadata?.namespace ?? 'default'}/${d.metadata?.name ?? '?'}`
  if (!d.metadata?.name || !d.spec?.clusterIP || !d.spec.selector) throw new ConfigError(path, `${who} needs metadata.name, spec.clusterIP and spec.selector`)
  const ports = (d.spec.ports ?? []).map((p) => {
    if (typeof p.port !== 'number' || typeof p.targetPort !== 'number') throw new ConfigError(path, `${who}: every port needs a numeric port and targetPort`)
    return { name: p.name ?? '', port: p.port, targetPort: p.targetPort, ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) }
  })
  return {
    name: d.metadata.name,
    namespace: d.metadata.namespace ?? 'default',
    vip: d.spec.clusterIP,
    selector: d.spec.selector,
    ports,
    labels: d.metadata.labels ?? {},
  }
}

/** The demo's Namespaces, Pods (each with spec.nodeName), Services and other objects: the agents decide enrollment from them. */
export function demoTopology(path: string): DemoTopology {
  const docs = parseAllDocuments(readFileSync(path, 'utf8'))
    .map((d) => d.toJSON() as Manifest)
    .filter(Boolean)
  const namespaces: Record<string, Record<string, string>> = {}
  for (const d of docs.filter((d) => d.kind === 'Namespace')) {
    if (!d.metadata?.name) throw new ConfigError(path, 'a Namespace needs metadata.name')
    namespaces[d.metadata.name] = d.metadata.labels ?? {}
  }
  const pods: PodObjectSpec[] = []
  for (const doc of docs.filter((d) => d.kind === 'Pod')) {
    const name = doc.metadata?.name
    const namespace = doc.metadata?.namespace ?? 'default'
    const node = doc.spec?.nodeName
    if (!name || !node) throw new ConfigError(path, `pod ${namespace}/${name ?? '?'} needs metadata.name and spec.nodeName`)
    if (!(namespace in namespaces)) throw new ConfigError(path, `pod ${namespace}/${name}: namespace ${namespace} is not in the file`)
    pods.push({ name, namespace, node, serviceAccount: doc.spec?.serviceAccountName ?? 'default', labels: doc.metadata?.labels ?? {} })
  }
  const nodes = [...new Set(pods.map((p) => p.node))].sort()
  const services = docs.filter((d) => d.kind === 'Service').map((d) => serviceOf(path, d))
  const objects = docs
    .filter((d) => ['Gateway', 'HTTPRoute', 'AuthorizationPolicy', 'PeerAuthentication'].includes(d.kind ?? ''))
    .map((d) => d as Record<string, unknown> & { metadata: { name: string; namespace?: string } })
  const gateways = new Set(objects.filter((o) => o['kind'] === 'Gateway').map((o) => `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`))
  const waypoints = pods
    .filter((p) => p.labels?.[GATEWAY_NAME_LABEL] !== undefined && gateways.has(`${p.namespace}/${p.labels[GATEWAY_NAME_LABEL]}`))
    .map((p) => ({ pod: p.name, gateway: `${p.namespace}/${p.labels![GATEWAY_NAME_LABEL]}` }))
  return { nodes, namespaces, pods, services, objects, waypoints }
}

function count(text: string, metric: string, filters: string[]): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(metric + '{') && filters.every((f) => l.includes(f)))
    .reduce((s, l) => s + Number(l.split(' ').pop()), 0)
}

async function showStatus(cluster: AgentCluster, topology: DemoTopology): Promise<void> {
  const rows: string[][] = []
  for (const node of topology.nodes) {
    const text = await cluster.metrics(cluster.ztunnels.get(node)!, 'metrics')
    const status = await cluster.status(node)
    for (const pod of topology.pods.filter((p) => p.node === node)) {
      const enrolled = status.pods.find((p) => p.namespace === pod.namespace && p.name === pod.name)
      const out = count(text, 'istio_tcp_connections_opened_total', ['reporter="source"', `source_workload="${pod.name}"`])
      const inMtls = count(text, 'istio_tcp_connections_opened_total', [
        'reporter="destination"',
        `destination_workload="${pod.name}"`,
        'connection_security_policy="mutual_tls"',
      ])
      const inPlain = count(text, 'istio_tcp_connections_opened_total', [
        'reporter="destination"',
        `destination_workload="${pod.name}"`,
        'connection_security_policy="unknown"',
      ])
      rows.push([
        `${pod.namespace}/${pod.name}`,
        node,
        cluster.pod(pod.name).ip,
        enrolled ? (enrolled.state === 'captured' ? 'ambient' : 'pending') : 'no',
        enrolled?.identity ?? '-',
        String(out),
        String(inMtls),
        String(inPlain),
      ])
    }
  }
  console.log(`\n${new Date().toISOString()}`)
  printTable(['POD', 'NODE', 'IP', 'ENROLLED', 'IDENTITY', 'OUT', 'IN MTLS', 'IN PLAINTEXT'], rows)
  for (const [gateway, waypoint] of cluster.waypoints) {
    const text = await (await fetch(`http://127.0.0.1:${waypoint.metrics.port}/metrics`)).text()
    const routes: string[][] = []
    for (const line of text.split('\n').filter((l) => l.startsWith('ambient_waypoint_route_requests_total{'))) {
      const label = (name: string): string => new RegExp(`${name}="([^"]*)"`).exec(line)?.[1] ?? ''
      routes.push([label('route') || '(none: the service)', label('destination_service'), label('response_code'), line.split(' ').pop()!])
    }
    const denied = count(text, 'istio_requests_total', ['response_code="403"'])
    console.log(`\nwaypoint ${gateway}: requests by route (denied by policy: ${denied})`)
    printTable(['ROUTE', 'BACKEND', 'CODE', 'REQUESTS'], routes)
  }
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run a local two-node mesh on network namespaces and show it working (needs root)')
    .option('--duration <seconds>', 'stop by itself after this many seconds (default: run until Ctrl-C)')
    .option('--manifests <file>', 'the cluster to build (Namespaces and Pods with spec.nodeName)', EXAMPLE)
    .option(
      '--prometheus [ip:port]',
      `also run a Prometheus (Debian's prometheus) listening on this address (default ${PROMETHEUS_DEFAULT}; port 0 takes a free one) that scrapes every agent, ztunnel and waypoint each second, and print its address: the graphs of daemonset/dashboards/ fill at once; the agents then count BPF program run time (agent --bpf-stats); Prometheus and its data are removed on exit`,
    )
    .action(async (flags: { duration?: string; manifests: string; prometheus?: string | true }) => {
      const duration = flags.duration === undefined ? undefined : parseInteger('--duration', flags.duration, 5, 86_400)
      const prometheusAt =
        flags.prometheus === undefined ? null : parseAddress('--prometheus', flags.prometheus === true ? PROMETHEUS_DEFAULT : flags.prometheus)
      const topology = demoTopology(flags.manifests)
      console.log('ambient demo: building the cluster (network namespaces, a CA, an agent and a ztunnel per node)...')
      const cluster = await AgentCluster.start({
        name: 'demo',
        nodes: topology.nodes,
        namespaces: topology.namespaces,
        pods: topology.pods,
        services: topology.services,
        policies: topology.objects,
        agentFlags: prometheusAt === null ? [] : ['--bpf-stats'],
      })
      let stopping = false
      const clients: ChildProcess[] = []
      const httpServers = new Set<string>()
      let prometheus: PrometheusServer | null = null
      const stop = async (): Promise<void> => {
        if (stopping) return
        stopping = true
        for (const c of clients) c.kill('SIGTERM')
        await prometheus?.stop()
        await cluster.stop()
      }
      const onSignal = (): void => void stop().then(() => process.exit(130))
      process.once('SIGINT', onSignal)
      process.once('SIGTERM', onSignal)
      try {
        console.log(`\nnetwork namespaces: ip netns list | grep ${cluster.tb.prefix}   (step in: nsenter --net=/run/netns/<name>)`)
        for (const node of topology.nodes) {
          const z = cluster.ztunnels.get(node)!.ready as Record<string, { port: number }>
          console.log(`${node} agent:   metrics http://${cluster.statusAddress(node)}/metrics  status: ambient status --agent ${cluster.statusAddress(node)}`)
          console.log(
            `${node} ztunnel: metrics http://127.0.0.1:${z['metrics']!.port}/metrics  ready http://127.0.0.1:${z['readiness']!.port}/healthz/ready  admin http://127.0.0.1:${z['admin']!.port}/config_dump`,
          )
        }
        for (const w of topology.waypoints) {
          const waypoint = await cluster.startWaypoint(w.pod, w.gateway)
          console.log(
            `waypoint ${w.gateway}: metrics http://127.0.0.1:${waypoint.metrics.port}/metrics  ready http://127.0.0.1:${waypoint.readiness.port}/healthz/ready`,
          )
        }
        if (prometheusAt !== null) prometheus = await startPrometheus(cluster, prometheusAt)
        const waypointPods = new Set(topology.waypoints.map((w) => w.pod))
        const pods = topology.pods.filter((p) => !waypointPods.has(p.name))
        await cluster.until('the enrolled pods captured', async () => {
          for (const node of topology.nodes) if ((await cluster.status(node)).pods.some((p) => p.state !== 'captured')) return false
          return true
        })
        const server = pods.find((p) => p.labels?.app === 'web') ?? pods[0]!
        for (const pod of pods) await startServer(cluster.tb, cluster.pod(pod.name), TCP_PORT)
        // Every pod that a service selects answers HTTP on its target ports.
        for (const service of topology.services) {
          for (const pod of pods.filter((p) => p.namespace === service.namespace && Object.entries(service.selector).every(([k, v]) => p.labels?.[k] === v))) {
            for (const port of service.ports) {
              const key = `${pod.name}:${port.targetPort}`
              if (httpServers.has(key)) continue
              httpServers.add(key)
              clients.push(await startHttpServer(cluster.tb, cluster.pod(pod.name), { port: port.targetPort, name: `${pod.name}` }))
            }
          }
        }
        const seconds = duration ?? 86_400
        for (const pod of pods.filter((p) => p.name !== server.name)) {
          clients.push(
            cluster.tb.spawnNode(cluster.pod(pod.name), join(REPO_ROOT, 'testbed', 'fixtures', 'tcp-client.ts'), [
              'connect',
              '--to',
              `${cluster.pod(server.name).ip}:${TCP_PORT}`,
              '--count',
              String(seconds * 2),
              '--interval-ms',
              '500',
              '--timeout-ms',
              String(seconds * 1000),
            ]),
          )
        }
        console.log(`\nevery other pod connects to ${server.namespace}/${server.name} twice a second`)
        // HTTP to the first service of a namespace with a waypoint: GETs twice a second, a DELETE every 4 s.
        const httpClient = pods.find((p) => p.name === 'client')
        const isWaypoint = (s: ServiceSpec): boolean => topology.waypoints.some((w) => w.gateway === `${s.namespace}/${s.name}`)
        const target = topology.services.find((s) => topology.namespaces[s.namespace]?.['istio.io/use-waypoint'] !== undefined && !isWaypoint(s))
        if (httpClient && target) {
          const fixture = join(REPO_ROOT, 'testbed', 'fixtures', 'http-client.ts')
          const to = `${target.vip}:${target.ports[0]!.port}`
          const loop = (method: string, intervalMs: number): ChildProcess =>
            cluster.tb.spawnNode(cluster.pod(httpClient.name), fixture, [
              '--to',
              to,
              '--method',
              method,
              '--path',
              '/shop',
              '--quiet',
              '--count',
              String(Math.ceil((seconds * 1000) / intervalMs)),
              '--interval-ms',
              String(intervalMs),
            ])
          clients.push(loop('GET', 500), loop('DELETE', 4000))
          console.log(
            `${httpClient.namespace}/${httpClient.name} sends HTTP to ${target.namespace}/${target.name} (${to}) through its waypoint: GET twice a second, DELETE every 4 s`,
          )
        }
        const deadline = duration === undefined ? Infinity : Date.now() + duration * 1000
        let checked = false
        while (!stopping && Date.now() < deadline) {
          if (!checked && Date.now() + 4000 < deadline) {
            checked = true
            // The clients may still be starting on a busy machine: capture again (2 s each, up to 5 times) until tunnel traffic shows.
            let pcap: Buffer = Buffer.alloc(0)
            for (
              let attempt = 0;
              attempt < 5 && !stopping && pcap.indexOf(TLS_APPLICATION_DATA) < 0 && (attempt === 0 || Date.now() + 2500 < deadline);
              attempt++
            ) {
              pcap = await captureBetweenNodes(
                cluster.tb.node(server.node).netnsPath,
                join(cluster.workDir, 'demo.pcap'),
                () => new Promise((r) => setTimeout(r, 2000)),
              )
            }
            console.log(
              `\nbetween the nodes (2 s capture on ${server.node}'s uplink): ${pcap.length} bytes, TLS 1.3 records: ${pcap.indexOf(TLS_APPLICATION_DATA) >= 0 ? 'yes' : 'no'}, ` +
                `plaintext payload: ${pcap.indexOf('ping-') >= 0 ? 'yes (legacy / opted-out pods, outside the mesh)' : 'none'}`,
            )
          }
          await showStatus(cluster, topology)
          await new Promise((r) => setTimeout(r, Math.min(3000, Math.max(0, deadline - Date.now()))))
        }
        console.log('\nambient demo: done, removing everything it created')
      } finally {
        await stop()
        process.off('SIGINT', onSignal)
        process.off('SIGTERM', onSignal)
      }
    })
}
