// A real Prometheus (Debian's `prometheus`) as a child process, scraping the
// testbed's agents, ztunnels and waypoints on the machine's loopback: its own
// config and data in a temporary folder, removed on stop; it dies with the process
// that started it (parent-death signal), so a killed demo or test leaves no
// Prometheus behind. Shared by `ambient demo --prometheus` and the dashboards test.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import type { Address } from '../common/config.js'
import type { AgentCluster } from './agent-cluster.js'
import { TestbedError } from './testbed.js'

export interface ScrapeTarget {
  /** The `job` label: ambient-agent, ambient-ztunnel or ambient-waypoint (the dashboards filter on it). */
  readonly job: string
  /** host:port serving /metrics. */
  readonly address: string
  /** More target labels: `node` for agents and ztunnels, `namespace` and `gateway` for waypoints. */
  readonly labels?: Readonly<Record<string, string>>
}

export interface PrometheusOptions {
  /** Where its UI and HTTP API listen; port 0 takes a free port (see `address`). */
  readonly listen: Address
  readonly targets: readonly ScrapeTarget[]
  /** Default 1 s, so graphs move at once. */
  readonly scrapeIntervalSeconds?: number
  /** Default `prometheus` on the PATH. */
  readonly binary?: string
}

export interface Sample {
  readonly metric: Readonly<Record<string, string>>
  /** The value as Prometheus prints it ("1", "0.25", "NaN", "+Inf"). */
  readonly value: string
}

export interface ActiveTarget {
  readonly labels: Readonly<Record<string, string>>
  readonly scrapeUrl: string
  readonly health: string
  readonly lastError: string
}

const READY_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 5_000

/** The scrape configuration: one job per component, every target with its labels. */
export function scrapeConfig(targets: readonly ScrapeTarget[], intervalSeconds: number): string {
  const jobs = [...new Set(targets.map((t) => t.job))]
  return stringify({
    global: { scrape_interval: `${intervalSeconds}s`, scrape_timeout: `${intervalSeconds}s`, evaluation_interval: `${intervalSeconds}s` },
    scrape_configs: jobs.map((job) => ({
      job_name: job,
      static_configs: targets.filter((t) => t.job === job).map((t) => ({ targets: [t.address], labels: { ...(t.labels ?? {}) } })),
    })),
  })
}

/** Every agent's, ztunnel's and waypoint's /metrics of a cluster, labelled as the dashboards expect. */
export function clusterScrapeTargets(cluster: AgentCluster): ScrapeTarget[] {
  const targets: ScrapeTarget[] = []
  for (const node of cluster.nodes) {
    const ztunnel = cluster.ztunnels.get(node)?.ready['metrics'] as { port: number } | undefined
    if (!cluster.agents.has(node) || ztunnel === undefined) throw new TestbedError(`node ${node} has no running agent and ztunnel to scrape`)
    targets.push({ job: 'ambient-agent', address: cluster.statusAddress(node), labels: { node } })
    targets.push({ job: 'ambient-ztunnel', address: `127.0.0.1:${ztunnel.port}`, labels: { node } })
  }
  for (const [gateway, waypoint] of cluster.waypoints) {
    const [namespace, name] = gateway.split('/') as [string, string]
    targets.push({ job: 'ambient-waypoint', address: `${waypoint.metrics.host}:${waypoint.metrics.port}`, labels: { namespace, gateway: name } })
  }
  return targets
}

/** Prometheus's HTTP API at `url` (the harness's server, or one a demo started). */
export class PrometheusApi {
  constructor(readonly url: string) {}

  /** An instant query through the HTTP API; throws naming the expression when Prometheus refuses it. */
  async query(expr: string): Promise<Sample[]> {
    const response = await fetch(`${this.url}/api/v1/query?${new URLSearchParams({ query: expr })}`)
    const body = (await response.json()) as { status: string; error?: string; data?: { resultType: string; result: unknown } }
    if (body.status !== 'success') throw new TestbedError(`prometheus refused ${expr}: ${body.error ?? response.status}`)
    const { resultType, result } = body.data!
    if (resultType === 'scalar') return [{ metric: {}, value: (result as [number, string])[1] }]
    if (resultType !== 'vector') throw new TestbedError(`prometheus answered ${expr} with a ${resultType}, not a vector`)
    return (result as { metric: Record<string, string>; value: [number, string] }[]).map((r) => ({ metric: r.metric, value: r.value[1] }))
  }

  /** The values of `label` on the series `selector` matches now (what Grafana's label_values(selector, label) lists). */
  async labelValues(label: string, selector: string): Promise<string[]> {
    const response = await fetch(`${this.url}/api/v1/label/${encodeURIComponent(label)}/values?${new URLSearchParams({ 'match[]': selector })}`)
    const body = (await response.json()) as { status: string; error?: string; data?: string[] }
    if (body.status !== 'success') throw new TestbedError(`prometheus refused label_values(${selector}, ${label}): ${body.error ?? response.status}`)
    return body.data!
  }

  async targets(): Promise<ActiveTarget[]> {
    const body = (await (await fetch(`${this.url}/api/v1/targets?state=active`)).json()) as { data: { activeTargets: ActiveTarget[] } }
    return body.data.activeTargets
  }
}

const live = new Set<PrometheusServer>()
let handlersInstalled = false
/** As the testbed does: a process that exits or is interrupted takes its Prometheus and folder with it. */
function installExitHandlers(): void {
  if (handlersInstalled) return
  handlersInstalled = true
  process.on('exit', () => {
    for (const p of live) p.stopSync()
  })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      for (const p of live) p.stopSync()
      process.kill(process.pid, signal)
    })
  }
}

export class PrometheusServer extends PrometheusApi {
  private stopped: Promise<void> | null = null

  private constructor(
    private readonly child: ChildProcess,
    /** Its config and data (removed by stop). */
    readonly workDir: string,
    /** host:port of its UI and HTTP API. */
    readonly address: string,
    private readonly output: () => string,
  ) {
    super(`http://${address}`)
  }

  /** Starts it and resolves once /-/ready answers; on any failure nothing is left running or on disk. */
  static async start(options: PrometheusOptions): Promise<PrometheusServer> {
    const interval = options.scrapeIntervalSeconds ?? 1
    if (options.targets.length === 0) throw new TestbedError('prometheus needs at least one scrape target')
    const workDir = mkdtempSync(join(tmpdir(), 'ambient-prometheus-'))
    const configFile = join(workDir, 'prometheus.yml')
    const dataDir = join(workDir, 'data')
    mkdirSync(dataDir)
    writeFileSync(configFile, scrapeConfig(options.targets, interval))
    const listen = `${options.listen.host}:${options.listen.port}`
    const binary = options.binary ?? 'prometheus'
    // setpriv: it gets SIGKILL when the process that started it dies, however that happens.
    const child = spawn(
      'setpriv',
      [
        '--pdeathsig',
        'KILL',
        '--',
        binary,
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${dataDir}`,
        `--web.listen-address=${listen}`,
        '--storage.tsdb.retention.time=1d',
        '--storage.tsdb.retention.size=256MB',
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let output = ''
    const keep = (d: Buffer): void => void (output = (output + String(d)).slice(-8000))
    child.stdout!.on('data', keep)
    child.stderr!.on('data', keep)
    child.on('error', (err) => keep(Buffer.from(`${err.message}\n`))) // setpriv itself missing: ENOENT
    const fail = async (message: string): Promise<never> => {
      await terminate(child)
      rmSync(workDir, { recursive: true, force: true })
      throw new TestbedError(`${message}${output.trim() ? `:\n${output.trim()}` : ''}`)
    }
    try {
      const port = await waitListening(child)
      const address = `${options.listen.host}:${port}`
      await waitReady(child, address)
      const server = new PrometheusServer(child, workDir, address, () => output)
      installExitHandlers()
      live.add(server)
      return server
    } catch (err) {
      const exited = child.pid === undefined || child.exitCode !== null || child.signalCode !== null
      const reason = (err as Error).message
      if (/ENOENT|executable file not found|No such file/.test(output) || reason.includes('ENOENT'))
        return fail(`cannot run ${binary}: is it installed? (apt-get install prometheus; scripts/setup.sh does)`)
      return fail(exited ? `prometheus on ${listen} exited (${child.exitCode ?? child.signalCode})` : `prometheus on ${listen} not ready: ${reason}`)
    }
  }

  get pid(): number {
    return this.child.pid!
  }

  /** What it printed last (warnings and errors). */
  logs(): string {
    return this.output()
  }

  /** Stops it (SIGTERM, then SIGKILL after 5 s) and removes its config and data. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= terminate(this.child).finally(() => {
      rmSync(this.workDir, { recursive: true, force: true })
      live.delete(this)
    })
    return this.stopped
  }

  /** For exit and signal handlers: SIGKILL and remove its folder, synchronously. */
  stopSync(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
    rmSync(this.workDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 })
    live.delete(this)
  }
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((r) => child.once('exit', r))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
  await exited
  clearTimeout(timer)
}

function exitedError(child: ChildProcess): Error | null {
  if (child.pid === undefined) return new Error('could not be started (ENOENT?)')
  return child.exitCode !== null || child.signalCode !== null ? new Error(`exited ${child.exitCode ?? child.signalCode}`) : null
}

/**
 * The port its own listening socket got (the one asked for, or a free one for port 0).
 * Checked on the process itself, so that another server already on a fixed port is
 * never taken for it.
 */
async function waitListening(child: ChildProcess): Promise<number> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    const exited = exitedError(child)
    if (exited) throw exited
    const port = listeningPort(child.pid!)
    if (port !== null) return port
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`no listening socket after ${READY_TIMEOUT_MS} ms`)
}

/** A TCP port process `pid` listens on (its socket inodes matched against its netns's tcp tables), or null. */
export function listeningPort(pid: number): number | null {
  let inodes: Set<string>
  try {
    inodes = new Set(
      readdirSync(`/proc/${pid}/fd`)
        .map((fd) => {
          try {
            return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1]
          } catch {
            return undefined // closed meanwhile
          }
        })
        .filter((i): i is string => i !== undefined),
    )
  } catch {
    return null // not started yet, or gone
  }
  for (const table of ['tcp', 'tcp6']) {
    let text: string
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      // local_address is HEXIP:HEXPORT, st 0A is LISTEN, the inode is field 9.
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9]!)) return parseInt(f[1]!.split(':')[1]!, 16)
    }
  }
  return null
}

async function waitReady(child: ChildProcess, address: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  let last = ''
  while (Date.now() < deadline) {
    const exited = exitedError(child)
    if (exited) throw exited
    try {
      const response = await fetch(`http://${address}/-/ready`, { signal: AbortSignal.timeout(1000) })
      if (response.ok) return
      last = `/-/ready answered ${response.status}`
    } catch (err) {
      last = (err as Error).message
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`not ready within ${READY_TIMEOUT_MS} ms (${last})`)
}
