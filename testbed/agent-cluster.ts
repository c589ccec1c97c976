// A cluster on the testbed run the way a real node runs: per node an `ambient
// agent` (machine netns, node's system cgroup) that finds pods through kubelet's
// cgroup layout, loads the datapath and streams to an `ambient ztunnel` on the
// same node; an `ambient ca` issues workload certificates. Objects live in a
// manifests folder the agents (or, with `kube`, a fake Kubernetes API server) and
// the CA read. Shared by end-to-end tests, the demo and benchmarks.
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { stringify } from 'yaml'
import { Datapath } from '../datapath/datapath.js'
import { REPO_ROOT } from '../common/paths.js'
import { FakeKubeApiServer, type FakeKind } from './kube-api-server.js'
import { exposeToPod, forwardToPod, type Forward } from './forward.js'
import { waitForLog } from './cluster.js'
import { Testbed, type TestPod } from './testbed.js'

export interface PodObjectSpec {
  readonly name: string
  readonly namespace: string
  readonly node: string
  readonly serviceAccount?: string
  readonly labels?: Readonly<Record<string, string>>
}

export interface Endpoint {
  readonly host: string
  readonly port: number
}

export interface ServiceSpec {
  readonly name: string
  readonly namespace: string
  /** Its cluster IP, from the testbed's service range 198.18.100.0/24. */
  readonly vip: string
  readonly ports: readonly { readonly name: string; readonly port: number; readonly targetPort: number; readonly appProtocol?: string }[]
  /** Pods (by label) behind it: the cluster's endpoint controller's job, done here when the service is put. */
  readonly selector: Readonly<Record<string, string>>
  readonly labels?: Readonly<Record<string, string>>
}

export interface WaypointHandle extends ProcessHandle {
  /** Its metrics and readiness endpoints, forwarded to the machine's loopback. */
  readonly metrics: Endpoint
  readonly readiness: Endpoint
}

/** Testbed service VIPs: inside the testbed's 198.18.0.0/15, apart from node (198.18.0.x) and pod (198.19.x) addresses. */
export const SERVICE_VIP_PREFIX = '198.18.100.'
/** Where a waypoint pod reaches `ambient ca` (exposed into its netns from the machine's loopback). */
const CA_IN_POD = { ip: '127.0.0.1', port: 15012 }

export interface ProcessHandle {
  readonly child: ChildProcess
  /** The JSON of its ready log line. */
  readonly ready: Record<string, unknown>
  logs(): string
}

type KubeObject = Record<string, unknown> & { metadata: { name: string; namespace?: string; labels?: Record<string, string>; uid?: string } }

const CLI = join(REPO_ROOT, 'bin', 'ambient.js')
export const TRUST_DOMAIN = 'cluster.local'

export class AgentCluster {
  readonly workDir: string
  readonly agents = new Map<string, ProcessHandle>()
  readonly ztunnels = new Map<string, ProcessHandle>()
  ca: ProcessHandle | null = null
  fake: FakeKubeApiServer | null = null
  readonly waypoints = new Map<string, WaypointHandle>()
  private readonly forwards: Forward[] = []
  private readonly services = new Map<string, ServiceSpec>()
  private readonly objects = new Map<string, { kind: FakeKind; object: KubeObject }>()
  private readonly manifestsDir: string
  private readonly logLevel: string
  private readonly agentFlags: readonly string[]
  /** How long a process may take to log that it is ready (large clusters start slowly on a busy machine). */
  private readonly readyTimeoutMs: number
  private readonly ztunnelArgs: readonly string[]

  private constructor(
    readonly tb: Testbed,
    readonly nodes: readonly string[],
    options: {
      readonly logLevel?: string
      readonly agentFlags?: readonly string[]
      readonly readyTimeoutMs?: number
      readonly ztunnelArgs?: readonly string[]
    },
  ) {
    this.workDir = mkdtempSync(join(tmpdir(), 'ambient-agents-'))
    this.manifestsDir = join(this.workDir, 'manifests')
    mkdirSync(this.manifestsDir)
    this.logLevel = options.logLevel ?? 'info'
    this.agentFlags = options.agentFlags ?? []
    this.readyTimeoutMs = options.readyTimeoutMs ?? 20_000
    this.ztunnelArgs = options.ztunnelArgs ?? []
  }

  /**
   * Builds the testbed (its pods get cgroups, uids and sandboxes), writes the
   * objects, starts the CA, then per node the agent and ztunnel. `kube`: the agents
   * watch a fake Kubernetes API server instead of the manifests folder.
   */
  static async start(options: {
    readonly name: string
    readonly nodes: readonly string[]
    readonly namespaces: Readonly<Record<string, Readonly<Record<string, string>>>>
    readonly pods: readonly PodObjectSpec[]
    /** Any other objects (policies, Gateways, HTTPRoutes), by their own kind. */
    readonly policies?: readonly KubeObject[]
    readonly services?: readonly ServiceSpec[]
    readonly kube?: boolean
    readonly logLevel?: string
    /** More flags for every agent (e.g. --bpf-stats). */
    readonly agentFlags?: readonly string[]
    /** How long each process may take to report ready (default 20 s). */
    readonly readyTimeoutMs?: number
    /** More flags for every ztunnel (e.g. a short --cert-ttl). */
    readonly ztunnelArgs?: readonly string[]
  }): Promise<AgentCluster> {
    const tb = await Testbed.create({
      name: options.name,
      nodes: options.nodes.map((n) => ({ name: n, pods: options.pods.filter((p) => p.node === n).map((p) => p.name) })),
    })
    const cluster = new AgentCluster(tb, options.nodes, options)
    try {
      if (options.kube) cluster.fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 200 })
      for (const [name, labels] of Object.entries(options.namespaces))
        cluster.put('Namespace', { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { ...labels } } })
      for (const pod of options.pods) cluster.put('Pod', cluster.podObject(pod))
      for (const service of options.services ?? []) cluster.putService(service)
      for (const policy of options.policies ?? []) cluster.put(policy['kind'] as FakeKind, policy)
      await cluster.startCa()
      for (const node of options.nodes) await cluster.startAgent(node)
      for (const node of options.nodes) await cluster.startZtunnel(node)
    } catch (err) {
      await cluster.stop()
      throw err
    }
    return cluster
  }

  pod(name: string): TestPod {
    return this.tb.pod(name)
  }

  identity(namespace: string, serviceAccount: string): string {
    return `spiffe://${TRUST_DOMAIN}/ns/${namespace}/sa/${serviceAccount}`
  }

  pinRoot(node: string): string {
    return join(this.tb.pinRoot, node)
  }

  xdsSocket(node: string): string {
    return join(this.workDir, `agent-${node}.sock`)
  }

  private podObject(spec: PodObjectSpec): KubeObject {
    const pod = this.tb.pod(spec.name)
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: spec.name, namespace: spec.namespace, uid: pod.uid, labels: { ...(spec.labels ?? {}) } },
      spec: { nodeName: spec.node, serviceAccountName: spec.serviceAccount ?? 'default', containers: [{ name: 'app', image: 'app' }] },
      status: { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }] },
    }
  }

  private key(kind: string, object: KubeObject): string {
    return `${kind}.${object.metadata.namespace ?? '_'}.${object.metadata.name}`
  }

  /** Creates or replaces an object, in the manifests folder (atomically) and the fake API server. */
  put(kind: FakeKind, object: KubeObject): void {
    const key = this.key(kind, object)
    this.objects.set(key, { kind, object })
    const path = join(this.manifestsDir, `${key}.yaml`)
    writeFileSync(`${path}.tmp`, stringify(object))
    renameSync(`${path}.tmp`, path)
    if (this.fake) this.fake.apply(kind, object as never)
  }

  /** Deletes an object everywhere (absent is fine). */
  remove(kind: FakeKind, namespace: string | undefined, name: string): void {
    const object = { metadata: { name, ...(namespace ? { namespace } : {}) } } as KubeObject
    const key = this.key(kind, object)
    this.objects.delete(key)
    rmSync(join(this.manifestsDir, `${key}.yaml`), { force: true })
    if (this.fake?.get(kind, namespace ?? '', name)) this.fake.delete(kind, object as never)
  }

  get(kind: FakeKind, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.objects.get(this.key(kind, { metadata: { name, ...(namespace ? { namespace } : {}) } }))?.object
  }

  /** Sets (or, with null, removes) a namespace label. */
  setNamespaceLabel(namespace: string, key: string, value: string | null): void {
    const ns = structuredClone(this.get('Namespace', undefined, namespace))
    if (!ns) throw new Error(`no namespace ${namespace}`)
    const labels = { ...(ns.metadata.labels ?? {}) }
    if (value === null) delete labels[key]
    else labels[key] = value
    ns.metadata.labels = labels
    this.put('Namespace', ns)
  }

  setPodLabel(namespace: string, name: string, key: string, value: string | null): void {
    const pod = structuredClone(this.get('Pod', namespace, name))
    if (!pod) throw new Error(`no pod ${namespace}/${name}`)
    const labels = { ...(pod.metadata.labels ?? {}) }
    if (value === null) delete labels[key]
    else labels[key] = value
    pod.metadata.labels = labels
    this.put('Pod', pod)
  }

  /**
   * Creates or replaces a Service with its cluster IP and an EndpointSlice of the
   * pods its selector matches now (ready, with their pod as targetRef), as the
   * cluster's endpoint controller would.
   */
  putService(spec: ServiceSpec): void {
    if (!spec.vip.startsWith(SERVICE_VIP_PREFIX)) throw new Error(`service ${spec.namespace}/${spec.name}: VIP ${spec.vip} is not in ${SERVICE_VIP_PREFIX}0/24`)
    this.services.set(`${spec.namespace}/${spec.name}`, spec)
    this.put('Service', {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: spec.name, namespace: spec.namespace, labels: { ...(spec.labels ?? {}) } },
      spec: {
        clusterIP: spec.vip,
        selector: { ...spec.selector },
        ports: spec.ports.map((p) => ({
          name: p.name,
          port: p.port,
          targetPort: p.targetPort,
          protocol: 'TCP',
          ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
        })),
      },
    })
    const pods = [...this.objects.values()]
      .filter(({ kind, object }) => kind === 'Pod' && object.metadata.namespace === spec.namespace)
      .map(({ object }) => object)
      .filter((pod) => Object.entries(spec.selector).every(([k, v]) => pod.metadata.labels?.[k] === v))
    this.put('EndpointSlice', {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `${spec.name}-slice`, namespace: spec.namespace, labels: { 'kubernetes.io/service-name': spec.name } },
      addressType: 'IPv4',
      endpoints: pods.map((pod) => ({
        addresses: [this.tb.pod(pod.metadata.name).ip],
        conditions: { ready: true },
        targetRef: { kind: 'Pod', namespace: spec.namespace, name: pod.metadata.name, uid: pod.metadata.uid },
      })),
      ports: spec.ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: 'TCP' })),
    })
  }

  /**
   * Starts `ambient waypoint` for a Gateway as a process inside the pod's own
   * netns, as its Deployment's pod would run: it reads the same manifests (or the
   * fake API), gets its certificate from `ambient ca` as a pod of its node (the CA
   * is exposed into the pod on 127.0.0.1:15012) and serves HBONE on the pod IP.
   * Its metrics and readiness are forwarded to the machine's loopback.
   */
  async startWaypoint(podName: string, gateway: string, extra: readonly string[] = []): Promise<WaypointHandle> {
    const pod = this.tb.pod(podName)
    const spec = this.objects.get(this.key('Pod', { metadata: { name: podName, namespace: gateway.split('/')[0] } }))
    const node = (spec?.object['spec'] as { nodeName?: string } | undefined)?.nodeName
    if (spec === undefined || node === undefined) throw new Error(`no pod ${gateway.split('/')[0]}/${podName} in the cluster's objects`)
    const ca = this.ca!.ready as { address: string }
    const caForward = await exposeToPod(pod.netnsPath, CA_IN_POD, { host: '127.0.0.1', port: Number(ca.address.split(':').pop()) })
    this.forwards.push(caForward)
    const serviceAccount = (spec.object['spec'] as { serviceAccountName?: string }).serviceAccountName ?? 'default'
    const child = this.tb.spawnInPod(pod, process.execPath, [
      CLI,
      'waypoint',
      '--gateway',
      gateway,
      '--service-account',
      serviceAccount,
      '--node',
      node,
      ...this.sourceFlags(),
      '--ca-address',
      `${CA_IN_POD.ip}:${CA_IN_POD.port}`,
      '--node-cert-dir',
      join(this.workDir, `node-${node}`),
      '--log-level',
      this.logLevel,
      ...extra,
    ])
    const handle = await waitReady(child, '"waypoint ready"', `waypoint ${gateway}`, this.readyTimeoutMs)
    const forward = async (port: number): Promise<Endpoint> => {
      const f = await forwardToPod(pod.netnsPath, { ip: '127.0.0.1', port })
      this.forwards.push(f)
      return f.address
    }
    const waypoint: WaypointHandle = { ...handle, metrics: await forward(15020), readiness: await forward(15021) }
    this.waypoints.set(gateway, waypoint)
    return waypoint
  }

  private sourceFlags(): string[] {
    return this.fake ? ['--kube-server', this.fake.url, '--kube-insecure'] : ['--manifests', this.manifestsDir]
  }

  private async startCa(): Promise<void> {
    const cacerts = join(this.workDir, 'ca')
    mkdirSync(cacerts, { mode: 0o700 })
    const child = this.tb.spawnInCgroup(this.tb.node(this.nodes[0]!).systemCgroup, process.execPath, [
      CLI,
      'ca',
      '--listen',
      '127.0.0.1:0',
      '--cacerts',
      cacerts,
      '--manifests',
      this.manifestsDir,
      '--log-level',
      this.logLevel,
    ])
    this.ca = await waitReady(child, '"ca listening"', 'ambient ca', this.readyTimeoutMs)
    for (const node of this.nodes) {
      const issued = await this.tb.execHost(process.execPath, [
        CLI,
        'ca',
        '--cacerts',
        cacerts,
        'node-cert',
        '--node',
        node,
        '--out',
        join(this.workDir, `node-${node}`),
      ])
      if (issued.code !== 0) throw new Error(`ambient ca node-cert for ${node} failed: ${issued.stderr}`)
    }
  }

  /** Starts (or restarts) a node's agent, with the cluster's agent flags and `extra`, and waits until it is ready. */
  async startAgent(node: string, extra: readonly string[] = []): Promise<ProcessHandle> {
    const child = this.tb.spawnInCgroup(this.tb.node(node).systemCgroup, process.execPath, [
      CLI,
      'agent',
      '--node',
      node,
      ...this.sourceFlags(),
      '--cgroup-root',
      this.tb.node(node).cgroup,
      '--pin-root',
      this.pinRoot(node),
      '--xds-socket',
      this.xdsSocket(node),
      '--status-addr',
      '127.0.0.1:0',
      '--log-level',
      this.logLevel,
      ...this.agentFlags,
      ...extra,
    ])
    const handle = await waitReady(child, '"agent ready"', `agent on ${node}`, this.readyTimeoutMs)
    this.agents.set(node, handle)
    return handle
  }

  /** Starts (or restarts) a node's ztunnel, with `extra` flags; it connects to the agent's socket. */
  async startZtunnel(node: string, extra: readonly string[] = []): Promise<ProcessHandle> {
    const ca = this.ca!.ready as { address: string }
    const child = this.tb.spawnInCgroup(this.tb.node(node).systemCgroup, process.execPath, [
      CLI,
      'ztunnel',
      '--node',
      node,
      '--xds-address',
      this.xdsSocket(node),
      '--ca-address',
      ca.address,
      '--node-cert-dir',
      join(this.workDir, `node-${node}`),
      '--pin-root',
      this.pinRoot(node),
      '--log-level',
      this.logLevel,
      '--metrics-addr',
      '127.0.0.1:0',
      '--readiness-addr',
      '127.0.0.1:0',
      '--admin-addr',
      '127.0.0.1:0',
      ...this.ztunnelArgs,
      ...extra,
    ])
    const handle = await waitReady(child, '"ztunnel ready"', `ztunnel on ${node}`, this.readyTimeoutMs)
    this.ztunnels.set(node, handle)
    return handle
  }

  /** SIGKILLs a process (no cleanup of its own) and waits for it to exit. */
  async kill(handle: ProcessHandle): Promise<void> {
    if (handle.child.exitCode !== null || handle.child.signalCode !== null) return
    const exited = new Promise((r) => handle.child.once('exit', r))
    handle.child.kill('SIGKILL')
    await exited
  }

  statusAddress(node: string): string {
    const status = this.agents.get(node)!.ready['status'] as Endpoint
    return `127.0.0.1:${status.port}`
  }

  /** The agent's /status. */
  async status(node: string): Promise<AgentStatusJson> {
    return (await (await fetch(`http://${this.statusAddress(node)}/status`)).json()) as AgentStatusJson
  }

  async metrics(handle: ProcessHandle, key: 'status' | 'metrics'): Promise<string> {
    const endpoint = handle.ready[key] as Endpoint
    return (await fetch(`http://127.0.0.1:${endpoint.port}/metrics`)).text()
  }

  /** Polls until `check` returns true (bounded; a check that throws counts as not yet); throws naming `what` otherwise. */
  async until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    let lastError: unknown
    while (Date.now() < deadline) {
      try {
        if (await check()) return
      } catch (err) {
        lastError = err // a busy or restarting process: ask again
      }
      await new Promise((r) => setTimeout(r, 50))
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`)
  }

  async stop(): Promise<void> {
    const handles = [...this.waypoints.values(), ...this.ztunnels.values(), ...this.agents.values(), ...(this.ca ? [this.ca] : [])]
    try {
      for (const h of handles) {
        if (h.child.exitCode !== null || h.child.signalCode !== null) continue
        const exited = new Promise((r) => h.child.once('exit', r))
        h.child.kill('SIGTERM')
        const timer = setTimeout(() => h.child.kill('SIGKILL'), 5000)
        await exited
        clearTimeout(timer)
      }
      for (const f of this.forwards.splice(0)) await f.close()
      for (const node of this.nodes) Datapath.unload(this.pinRoot(node))
      await this.fake?.stop()
    } finally {
      await this.tb.destroy()
      rmSync(this.workDir, { recursive: true, force: true })
    }
  }
}

export interface AgentStatusJson {
  readonly node: string
  readonly ready: boolean
  readonly pods: readonly {
    readonly namespace: string
    readonly name: string
    readonly ip: string
    readonly identity: string
    readonly netnsPath: string | null
    readonly state: string
    readonly error: string | null
  }[]
  readonly datapath: { readonly maps: readonly { readonly name: string; readonly entries: number; readonly capacity: number }[] } | null
  readonly ztunnel: { readonly clients: readonly unknown[] } | null
  readonly rejectedObjects: readonly string[]
}

/** A started process once it logged `marker`, with its logs so far and from now on. */
async function waitReady(child: ChildProcess, marker: string, what: string, timeoutMs: number): Promise<ProcessHandle> {
  let logs = ''
  const collect = (d: Buffer): void => void (logs += d)
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  const ready = (await waitForLog(child, marker, what, timeoutMs)) as Record<string, unknown>
  return { child, ready, logs: () => logs }
}
