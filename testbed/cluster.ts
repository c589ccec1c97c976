// A small mesh on the testbed, shared by end-to-end tests and
// benchmarks: per node, the datapath loaded on the node's pods cgroup and an
// `ambient ztunnel` process (in the node's system cgroup, metrics on loopback);
// workloads written to each ztunnel's local config; enrolled pods captured.
// This module plays the agent's part in-process (ztunnel's --local-config mode),
// for tests and benchmarks of ztunnel alone; agent-cluster.ts runs real agents.
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { stringify } from 'yaml'
import { Datapath } from '../datapath/datapath.js'
import { DEFAULT_DELIVERY_MARK, DEFAULT_HBONE_PORT, DEFAULT_PROXY_MARK } from '../datapath/abi.js'
import { BPF_OBJECTS_DIR, REPO_ROOT } from '../common/paths.js'
import { createRootCa } from '../common/identity/pki.js'
import { Testbed, type TestPod } from './testbed.js'

export interface MeshPodSpec {
  readonly name: string
  readonly namespace: string
  readonly serviceAccount: string
  readonly labels?: Readonly<Record<string, string>>
  /** Captured by the datapath and served by ztunnel (HBONE); otherwise a legacy pod. */
  readonly enrolled: boolean
}

export interface MeshNodeSpec {
  readonly name: string
  readonly pods: readonly MeshPodSpec[]
}

export interface Endpoint {
  readonly host: string
  readonly port: number
}

export interface ZtunnelHandle {
  readonly node: string
  readonly child: ChildProcess
  readonly metrics: Endpoint
  readonly readiness: Endpoint
  readonly admin: Endpoint
  logs(): string
}

export const TRUST_DOMAIN = 'cluster.local'

export class MeshCluster {
  readonly ztunnels = new Map<string, ZtunnelHandle>()
  readonly datapaths = new Map<string, Datapath>()
  private readonly specs = new Map<string, MeshPodSpec & { node: string }>()
  private policies: readonly unknown[] = []
  readonly workDir: string

  private constructor(
    readonly tb: Testbed,
    nodes: readonly MeshNodeSpec[],
  ) {
    this.workDir = mkdtempSync(join(tmpdir(), 'ambient-cluster-'))
    for (const node of nodes) for (const pod of node.pods) this.specs.set(pod.name, { ...pod, node: node.name })
  }

  /** `ambient ca` when started with `ca`: its address and process. */
  ca: { readonly address: string; readonly child: ChildProcess } | null = null
  private certTtl = '24h'
  /** `--hbone-engine` of the ztunnels; null: ztunnel's default (or $AMBIENT_HBONE_ENGINE). */
  private hboneEngine: 'native' | 'node' | null = null
  private logLevel = 'info'

  /**
   * `ca` runs an `ambient ca` process that the ztunnels get their workload
   * certificates from (each node with its own node certificate); without it each
   * ztunnel signs locally from the cluster's cacerts.
   */
  static async start(options: {
    readonly name: string
    readonly nodes: readonly MeshNodeSpec[]
    readonly logLevel?: 'debug' | 'info'
    readonly ca?: { readonly certTtl: string }
    readonly hboneEngine?: 'native' | 'node'
  }): Promise<MeshCluster> {
    const tb = await Testbed.create({ name: options.name, nodes: options.nodes.map((n) => ({ name: n.name, pods: n.pods.map((p) => p.name) })) })
    const cluster = new MeshCluster(tb, options.nodes)
    cluster.hboneEngine = options.hboneEngine ?? null
    cluster.logLevel = options.logLevel ?? 'info'
    try {
      const ca = createRootCa({ commonName: `${options.name} mesh root` })
      writeFileSync(join(cluster.workDir, 'ca-cert.pem'), ca.certPem)
      writeFileSync(join(cluster.workDir, 'ca-key.pem'), ca.keyPem, { mode: 0o600 })
      if (options.ca) {
        cluster.certTtl = options.ca.certTtl
        await cluster.startCa(options.nodes)
      }
      for (const node of options.nodes) {
        const datapath = Datapath.load(cluster.settings(node.name), tb.node(node.name).podsCgroup)
        cluster.datapaths.set(node.name, datapath)
        cluster.writeLocalConfig(node.name)
        for (const pod of node.pods) if (pod.enrolled) await cluster.enrollInDatapath(pod.name)
      }
      for (const node of options.nodes) cluster.ztunnels.set(node.name, await cluster.startZtunnel(node.name, cluster.logLevel))
    } catch (err) {
      await cluster.stop()
      throw err
    }
    return cluster
  }

  settings(node: string) {
    return {
      pinRoot: join(this.tb.pinRoot, node),
      objectsDir: BPF_OBJECTS_DIR,
      proxyMark: DEFAULT_PROXY_MARK,
      deliveryMark: DEFAULT_DELIVERY_MARK,
      hbonePort: DEFAULT_HBONE_PORT,
    }
  }

  pod(name: string): TestPod {
    return this.tb.pod(name)
  }

  spec(name: string): MeshPodSpec & { node: string } {
    const spec = this.specs.get(name)
    if (!spec) throw new Error(`no pod ${name} in the cluster`)
    return spec
  }

  identity(name: string): string {
    const s = this.spec(name)
    return `spiffe://${TRUST_DOMAIN}/ns/${s.namespace}/sa/${s.serviceAccount}`
  }

  private localConfigPath(node: string): string {
    return join(this.workDir, `workloads-${node}.yaml`)
  }

  /** Every workload of the cluster; netns only for this node's enrolled pods. */
  private writeLocalConfig(node: string): void {
    const workloads = [...this.specs.values()].map((s) => ({
      uid: `${s.namespace}/${s.name}`,
      name: s.name,
      namespace: s.namespace,
      serviceAccount: s.serviceAccount,
      workloadIps: [this.tb.pod(s.name).ip],
      protocol: s.enrolled ? 'HBONE' : 'TCP',
      node: s.node,
      labels: s.labels ?? {},
      ...(s.enrolled && s.node === node ? { netns: this.tb.pod(s.name).netnsPath } : {}),
    }))
    // Atomic: ztunnel polls the file and must never read half of it.
    const path = this.localConfigPath(node)
    writeFileSync(`${path}.tmp`, stringify({ workloads, policies: this.policies }))
    renameSync(`${path}.tmp`, path)
  }

  /** Replaces the AuthorizationPolicy/PeerAuthentication manifests every ztunnel enforces. */
  setPolicies(objects: readonly unknown[]): void {
    this.policies = objects
    for (const node of this.datapaths.keys()) this.writeLocalConfig(node)
  }

  private async enrollInDatapath(name: string): Promise<void> {
    const spec = this.spec(name)
    const pod = this.tb.pod(name)
    await this.datapaths.get(spec.node)!.enrollPod({ netnsPath: pod.netnsPath, ip: pod.ip, outboundPort: 15001 })
  }

  /** Enrolls or un-enrolls a running pod: datapath first, then every ztunnel's view. */
  async setEnrolled(name: string, enrolled: boolean): Promise<void> {
    const spec = this.spec(name)
    this.specs.set(name, { ...spec, enrolled })
    const pod = this.tb.pod(name)
    const datapath = this.datapaths.get(spec.node)!
    if (enrolled) await this.enrollInDatapath(name)
    else {
      const entry = datapath.enrolledPods().find((p) => p.ip === pod.ip)
      if (entry) await datapath.unenrollPod({ netnsCookie: entry.netnsCookie, ip: pod.ip, netnsPath: pod.netnsPath })
    }
    for (const node of this.datapaths.keys()) this.writeLocalConfig(node)
  }

  /** The CA (in the first node's system cgroup, so the testbed reaps it) and each node's credentials. */
  private async startCa(nodes: readonly MeshNodeSpec[]): Promise<void> {
    const cli = join(REPO_ROOT, 'bin', 'ambient.js')
    const cacerts = join(this.workDir, 'ca')
    mkdirSync(cacerts, { mode: 0o700 })
    const identities = Object.fromEntries(nodes.map((n) => [n.name, n.pods.filter((p) => p.enrolled).map((p) => this.identity(p.name))]))
    writeFileSync(join(this.workDir, 'node-identities.yaml'), stringify(identities))
    const child = this.tb.spawnInCgroup(this.tb.node(nodes[0]!.name).systemCgroup, process.execPath, [
      cli,
      'ca',
      '--listen',
      '127.0.0.1:0',
      '--cacerts',
      cacerts,
      '--node-identities',
      join(this.workDir, 'node-identities.yaml'),
    ])
    const ready = await waitForLog(child, '"ca listening"', 'ambient ca')
    this.ca = { address: (ready as { address: string }).address, child }
    for (const node of nodes) {
      const out = join(this.workDir, `node-${node.name}`)
      const issued = await this.tb.execHost(process.execPath, [cli, 'ca', '--cacerts', cacerts, 'node-cert', '--node', node.name, '--out', out])
      if (issued.code !== 0) throw new Error(`ambient ca node-cert for ${node.name} failed: ${issued.stderr}`)
    }
  }

  private startZtunnel(node: string, logLevel: string): Promise<ZtunnelHandle> {
    const settings = this.settings(node)
    const certificates = this.ca
      ? ['--ca-address', this.ca.address, '--node-cert-dir', join(this.workDir, `node-${node}`), '--cert-ttl', this.certTtl]
      : ['--cacerts', this.workDir]
    const child = this.tb.spawnInCgroup(this.tb.node(node).systemCgroup, process.execPath, [
      join(REPO_ROOT, 'bin', 'ambient.js'),
      'ztunnel',
      '--node',
      node,
      '--local-config',
      this.localConfigPath(node),
      ...certificates,
      '--pin-root',
      settings.pinRoot,
      '--log-level',
      logLevel,
      '--metrics-addr',
      '127.0.0.1:0',
      '--readiness-addr',
      '127.0.0.1:0',
      '--admin-addr',
      '127.0.0.1:0',
      ...(this.hboneEngine ? ['--hbone-engine', this.hboneEngine] : []),
    ])
    let logs = ''
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`ztunnel on ${node} not ready within 20 s:\n${logs}`)), 20_000)
      child.stdout?.on('data', (d) => (logs += d))
      child.stderr?.on('data', (d: Buffer) => {
        logs += d
        for (const line of String(d).split('\n')) {
          if (!line.includes('"ztunnel ready"')) continue
          const ready = JSON.parse(line) as { metrics: Endpoint; readiness: Endpoint; admin: Endpoint }
          clearTimeout(timer)
          resolve({ node, child, metrics: ready.metrics, readiness: ready.readiness, admin: ready.admin, logs: () => logs })
        }
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`ztunnel on ${node} exited ${code}:\n${logs}`))
      })
    })
  }

  /** Restarts every ztunnel on `engine` (benchmarks compare the engines in one run). */
  async restartZtunnels(engine: 'native' | 'node'): Promise<void> {
    for (const z of this.ztunnels.values()) {
      if (z.child.exitCode !== null) continue
      const exited = new Promise((r) => z.child.once('exit', r))
      z.child.kill('SIGTERM')
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))])
    }
    this.hboneEngine = engine
    for (const node of [...this.ztunnels.keys()]) this.ztunnels.set(node, await this.startZtunnel(node, this.logLevel))
  }

  async stop(): Promise<void> {
    const daemons = [...this.ztunnels.values(), ...(this.ca ? [this.ca] : [])]
    for (const z of daemons) {
      if (z.child.exitCode === null) {
        const exited = new Promise((r) => z.child.once('exit', r))
        z.child.kill('SIGTERM')
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))])
      }
    }
    for (const d of this.datapaths.values()) d.close()
    for (const node of this.datapaths.keys()) Datapath.unload(this.settings(node).pinRoot)
    await this.tb.destroy()
    rmSync(this.workDir, { recursive: true, force: true })
  }
}

/**
 * Resolves with the first JSON log line containing `marker` (lines reassembled
 * across chunks); rejects, and kills the process, if it exits or stays silent `timeoutMs` (20 s).
 */
export function waitForLog(child: ChildProcess, marker: string, what: string, timeoutMs = 20_000): Promise<unknown> {
  let logs = ''
  const partial = { stdout: '', stderr: '' }
  return new Promise((resolve, reject) => {
    const fail = (message: string): void => {
      child.kill('SIGKILL')
      reject(new Error(`${message}:\n${logs}`))
    }
    const timer = setTimeout(() => fail(`${what} not ready within ${timeoutMs / 1000} s`), timeoutMs)
    const onData =
      (stream: 'stdout' | 'stderr') =>
      (d: Buffer): void => {
        logs += d
        const lines = (partial[stream] + String(d)).split('\n')
        partial[stream] = lines.pop()!
        for (const line of lines) {
          if (!line.includes(marker)) continue
          clearTimeout(timer)
          child.off('exit', onExit)
          try {
            resolve(JSON.parse(line))
          } catch {
            fail(`${what} logged an unreadable ready line`)
          }
        }
      }
    const onExit = (code: number | null): void => {
      clearTimeout(timer)
      reject(new Error(`${what} exited ${code}:\n${logs}`))
    }
    child.stdout?.on('data', onData('stdout'))
    child.stderr?.on('data', onData('stderr'))
    child.once('exit', onExit)
  })
}
