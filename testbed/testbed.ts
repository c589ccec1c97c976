// The netns testbed (design.md, The testbed): a cluster made of network
// namespaces on one machine, for tests, the demo and benchmarks.
//
//   fabric netns: bridge br0
//   node i netns: eth0 on the bridge, 198.18.0.i/24, forwarding, a /32 route to
//                 each of its pods and a route to every other node's pod CIDR
//   pod j netns:  eth0 to its node, an address of 198.19.4i.0/22, default route via the node
//
// Nothing is connected to the machine's own network namespace, so no address of
// the testbed can reach (or be reached from) the machine's network. Each pod has
// a cgroup v2 <root>/<node>/kubepods/pod<uid> (kubelet's cgroupfs layout) with a
// sandbox process; node daemons go in <root>/<node>/system.
// Everything is named with a per-run prefix that encodes the creating pid, so a
// killed run's leftovers are found and removed by name (cleanupStale).
import { spawn, execFileSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes, randomUUID } from 'node:crypto'
import { AmbientError } from '../common/errors.js'

/** Pod j (1-1000) of node i (1-63): 198.19.4i.1 to 198.19.(4i+3).250. */
export function podIp(nodeIndex: number, j: number): string {
  const k = j - 1
  return `198.19.${nodeIndex * 4 + Math.floor(k / 250)}.${(k % 250) + 1}`
}

export const CGROUP_V2_ROOT = '/sys/fs/cgroup/unified'
export const BPFFS_ROOT = '/sys/fs/bpf'
const PREFIX_RE = /^amb([0-9a-z]+)x([0-9a-f]{4})-/

export class TestbedError extends AmbientError<'AMBIENT_ERR_TESTBED'> {
  constructor(message: string, options?: { readonly cause?: unknown }) {
    super('AMBIENT_ERR_TESTBED', message, options)
  }
}

export interface NodeSpec {
  readonly name: string
  readonly pods: readonly string[]
}

export interface TestNode {
  readonly name: string
  readonly index: number
  readonly netns: string
  readonly netnsPath: string
  readonly ip: string
  readonly podCidr: string
  readonly cgroup: string
  readonly podsCgroup: string
  readonly systemCgroup: string
}

export interface TestPod {
  readonly name: string
  readonly node: string
  readonly netns: string
  readonly netnsPath: string
  readonly ip: string
  /** metadata.uid of the pod: its cgroup is <node>/kubepods/pod<uid> (kubelet's cgroupfs layout). */
  readonly uid: string
  readonly cgroup: string
}

export interface ExecResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

function ip(args: readonly string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim()
    throw new TestbedError(`ip ${args.join(' ')} failed: ${stderr}`, { cause: err })
  }
}

/** Runs `ip [-n netns] -batch -` over `lines` (one command each): one process for many commands. */
function ipBatch(lines: readonly string[], netns?: string): void {
  if (lines.length === 0) return
  const args = [...(netns ? ['-n', netns] : []), '-batch', '-']
  try {
    execFileSync('ip', args, { input: lines.join('\n') + '\n', stdio: ['pipe', 'ignore', 'pipe'], maxBuffer: 64 * 1024 * 1024 })
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim()
    throw new TestbedError(`ip ${args.join(' ')} failed: ${stderr}`, { cause: err })
  }
}

function sysctl(netns: string, key: string, value: string): void {
  ip(['netns', 'exec', netns, 'sysctl', '-q', '-w', `${key}=${value}`])
}

const live = new Set<Testbed>()
let handlersInstalled = false
function installExitHandlers(): void {
  if (handlersInstalled) return
  handlersInstalled = true
  process.on('exit', () => {
    for (const tb of live) tb.destroySync()
  })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      for (const tb of live) tb.destroySync()
      process.kill(process.pid, signal)
    })
  }
}

export class Testbed {
  readonly prefix: string
  readonly cgroupRoot: string
  readonly pinRoot: string
  private readonly nodes = new Map<string, TestNode>()
  private readonly pods = new Map<string, TestPod>()
  private readonly podIndex = new Map<string, number>()
  private readonly children = new Set<ChildProcess>()
  private destroyed = false

  private constructor(readonly name: string) {
    const runId = `amb${process.pid.toString(36)}x${randomBytes(2).toString('hex')}`
    this.prefix = `${runId}-`
    this.cgroupRoot = join(CGROUP_V2_ROOT, runId)
    this.pinRoot = join(BPFFS_ROOT, runId)
  }

  /** Builds the topology; on any failure removes what it made and throws. */
  static async create(options: { readonly name: string; readonly nodes: readonly NodeSpec[] }): Promise<Testbed> {
    if (!/^[a-z0-9-]{1,24}$/.test(options.name)) throw new TestbedError(`testbed name ${JSON.stringify(options.name)} must be 1-24 of [a-z0-9-]`)
    if (options.nodes.length < 1 || options.nodes.length > 63) throw new TestbedError(`a testbed has 1-63 nodes, got ${options.nodes.length}`)
    const tb = new Testbed(options.name)
    installExitHandlers()
    live.add(tb)
    try {
      tb.createFabric()
      options.nodes.forEach((spec, i) => tb.createNode(spec.name, i + 1))
      for (const node of tb.nodes.values()) tb.routeNode(node)
      for (const spec of options.nodes) tb.createPods(spec.name, spec.pods)
    } catch (err) {
      tb.destroySync()
      throw err
    }
    return tb
  }

  private netnsName(...parts: string[]): string {
    return `${this.prefix}${this.name}-${parts.join('-')}`
  }

  private ifName(kind: string, n: number): string {
    // Interface names are at most 15 characters and global to the root netns while created.
    return `${this.prefix.slice(0, -1).slice(-8)}${kind}${n}`.slice(0, 15)
  }

  private get fabric(): string {
    return this.netnsName('fabric')
  }

  /** The namespace holding the bridge between nodes: where inter-node traffic can be captured. */
  get fabricNetnsPath(): string {
    return `/run/netns/${this.fabric}`
  }

  private createFabric(): void {
    ip(['netns', 'add', this.fabric])
    ip(['-n', this.fabric, 'link', 'set', 'lo', 'up'])
    ip(['-n', this.fabric, 'link', 'add', 'br0', 'type', 'bridge'])
    ip(['-n', this.fabric, 'link', 'set', 'br0', 'up'])
    mkdirSync(this.cgroupRoot, { recursive: true })
  }

  private createNode(name: string, index: number): void {
    if (!/^[a-z0-9]{1,12}$/.test(name)) throw new TestbedError(`node name ${JSON.stringify(name)} must be 1-12 of [a-z0-9]`)
    if (this.nodes.has(name)) throw new TestbedError(`duplicate node name ${name}`)
    const netns = this.netnsName(name)
    const node: TestNode = {
      name,
      index,
      netns,
      netnsPath: `/run/netns/${netns}`,
      ip: `198.18.0.${index}`,
      podCidr: `198.19.${index * 4}.0/22`,
      cgroup: join(this.cgroupRoot, name),
      podsCgroup: join(this.cgroupRoot, name, 'kubepods'),
      systemCgroup: join(this.cgroupRoot, name, 'system'),
    }
    ip(['netns', 'add', netns])
    this.nodes.set(name, node)
    const host = this.ifName('f', index)
    ip(['link', 'add', host, 'netns', this.fabric, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns])
    ip(['-n', this.fabric, 'link', 'set', host, 'master', 'br0', 'up'])
    ip(['-n', netns, 'link', 'set', 'lo', 'up'])
    ip(['-n', netns, 'addr', 'add', `${node.ip}/24`, 'dev', 'eth0'])
    ip(['-n', netns, 'link', 'set', 'eth0', 'up'])
    // The pods' gateway: a link-local address the node owns, answered by ARP on every pod veth.
    ip(['-n', netns, 'addr', 'add', '198.18.255.254/32', 'dev', 'lo'])
    sysctl(netns, 'net.ipv4.ip_forward', '1')
    sysctl(netns, 'net.ipv4.conf.all.rp_filter', '0')
    sysctl(netns, 'net.ipv4.conf.default.rp_filter', '0')
    mkdirSync(node.podsCgroup, { recursive: true })
    mkdirSync(node.systemCgroup, { recursive: true })
  }

  private routeNode(node: TestNode): void {
    for (const other of this.nodes.values()) {
      if (other.name !== node.name) ip(['-n', node.netns, 'route', 'add', other.podCidr, 'via', other.ip])
    }
  }

  private createPod(nodeName: string, name: string): TestPod {
    return this.createPods(nodeName, [name])[0]!
  }

  /**
   * Creates pods of one node with a few `ip -batch` processes for all of them (a
   * process per command made 1,000 pods take minutes): the namespaces, the veth
   * pairs, each pod's addresses and routes, the node's routes to them.
   */
  private createPods(nodeName: string, names: readonly string[]): TestPod[] {
    const node = this.node(nodeName)
    const made: { pod: TestPod; hostSide: string }[] = []
    for (const name of names) {
      if (!/^[a-z0-9]{1,12}$/.test(name)) throw new TestbedError(`pod name ${JSON.stringify(name)} must be 1-12 of [a-z0-9]`)
      if (this.pods.has(name)) throw new TestbedError(`duplicate pod name ${name}`)
      const j = (this.podIndex.get(nodeName) ?? 0) + 1
      if (j > 1000) throw new TestbedError(`node ${nodeName} is full (1000 pods)`)
      this.podIndex.set(nodeName, j)
      const netns = this.netnsName(nodeName, name)
      const uid = randomUUID()
      const pod: TestPod = {
        name,
        node: nodeName,
        netns,
        netnsPath: `/run/netns/${netns}`,
        ip: podIp(node.index, j),
        uid,
        cgroup: join(node.podsCgroup, `pod${uid}`),
      }
      this.pods.set(name, pod) // from now on destroy() removes its namespace, whatever fails below
      made.push({ pod, hostSide: `p${j}` })
    }
    ipBatch(made.map(({ pod }) => `netns add ${pod.netns}`))
    ipBatch(made.map(({ pod, hostSide }) => `link add eth0 netns ${pod.netns} type veth peer name ${hostSide} netns ${node.netns}`))
    for (const { pod } of made) {
      ipBatch(
        [
          'link set lo up',
          `addr add ${pod.ip}/32 dev eth0`,
          'link set eth0 up',
          'route add 198.18.255.254/32 dev eth0 scope link',
          'route add default via 198.18.255.254 dev eth0',
        ],
        pod.netns,
      )
    }
    // The node side has no address of its own: the pod's gateway is the node's 198.18.255.254.
    ipBatch(
      made.flatMap(({ pod, hostSide }) => [`link set ${hostSide} up`, `route add ${pod.ip}/32 dev ${hostSide}`]),
      node.netns,
    )
    ip(['netns', 'exec', node.netns, 'sysctl', '-q', '-w', ...made.map(({ hostSide }) => `net.ipv4.conf.${hostSide}.rp_filter=0`)])
    for (const { pod } of made) {
      mkdirSync(pod.cgroup, { recursive: true })
      this.startSandbox(pod)
    }
    return made.map(({ pod }) => pod)
  }

  /**
   * The pod's sandbox (kubelet's "pause" container): the pod's oldest process, in
   * its cgroup and network namespace, living as long as the pod. The agent finds
   * the pod's netns through it, as on a real node.
   */
  private startSandbox(pod: TestPod): void {
    const child = this.spawnIn(pod.cgroup, pod.netnsPath, 'sleep', ['2147483647'], { stdio: 'ignore' })
    child.unref()
  }

  node(name: string): TestNode {
    const node = this.nodes.get(name)
    if (!node) throw new TestbedError(`no node ${JSON.stringify(name)} in testbed ${this.name}`)
    return node
  }

  pod(name: string): TestPod {
    const pod = this.pods.get(name)
    if (!pod) throw new TestbedError(`no pod ${JSON.stringify(name)} in testbed ${this.name}`)
    return pod
  }

  allPods(): TestPod[] {
    return [...this.pods.values()]
  }

  allNodes(): TestNode[] {
    return [...this.nodes.values()]
  }

  async addPod(nodeName: string, podName: string): Promise<TestPod> {
    return this.createPod(nodeName, podName)
  }

  async removePod(name: string): Promise<void> {
    const pod = this.pod(name)
    killCgroup(pod.cgroup)
    try {
      execFileSync('ip', ['netns', 'del', pod.netns], { stdio: 'ignore' })
    } catch {
      // already gone
    }
    removeCgroupTree(pod.cgroup)
    this.pods.delete(name)
  }

  /** Runs `cmd` in the cgroup `cgroup` and then the network namespace `netnsPath`. */
  private spawnIn(cgroup: string, netnsPath: string, cmd: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    if (this.destroyed) throw new TestbedError(`testbed ${this.name} is destroyed`)
    // sh -c SCRIPT sh <cgroup> <netns> <cmd> <args...>: join the cgroup first, then
    // the netns with nsenter (ip netns exec would remount /sys and hide bpffs).
    const script = 'echo $$ > "$1/cgroup.procs" && ns="$2" && shift 2 && exec nsenter --net="$ns" -- "$@"'
    const child = spawn('sh', ['-c', script, 'sh', cgroup, netnsPath, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options })
    this.children.add(child)
    child.once('exit', () => this.children.delete(child))
    return child
  }

  spawnInPod(pod: TestPod, cmd: string, args: readonly string[] = [], options?: SpawnOptions): ChildProcess {
    return this.spawnIn(pod.cgroup, pod.netnsPath, cmd, args, options)
  }

  spawnInNode(node: TestNode, cmd: string, args: readonly string[] = [], options?: SpawnOptions): ChildProcess {
    return this.spawnIn(node.systemCgroup, node.netnsPath, cmd, args, options)
  }

  /** The pod's cgroup, but another testbed namespace (a node's): to show hooks filter on the netns. */
  spawnInCgroupOnly(pod: TestPod, netnsOf: TestNode, cmd: string, args: readonly string[] = [], options?: SpawnOptions): ChildProcess {
    return this.spawnIn(pod.cgroup, netnsOf.netnsPath, cmd, args, options)
  }

  /**
   * A process in a testbed cgroup but in the machine's own network namespace: node
   * daemons such as ztunnel, which enter pod namespaces only through the native
   * addon and serve their metrics on loopback.
   */
  spawnInCgroup(cgroup: string, cmd: string, args: readonly string[] = [], options?: SpawnOptions): ChildProcess {
    if (!cgroup.startsWith(this.cgroupRoot + '/')) throw new TestbedError(`${cgroup} is not a cgroup of testbed ${this.name}`)
    if (this.destroyed) throw new TestbedError(`testbed ${this.name} is destroyed`)
    const child = spawn('sh', ['-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'sh', cgroup, cmd, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...options,
    })
    this.children.add(child)
    child.once('exit', () => this.children.delete(child))
    return child
  }

  /** A TypeScript program of this repository, run with tsx inside the pod (or node). */
  spawnNode(target: TestPod | TestNode, script: string, args: readonly string[] = [], options?: SpawnOptions): ChildProcess {
    const argv = ['--import', 'tsx', script, ...args]
    return 'podsCgroup' in target ? this.spawnInNode(target, process.execPath, argv, options) : this.spawnInPod(target, process.execPath, argv, options)
  }

  exec(target: TestPod | TestNode, cmd: string, args: readonly string[] = [], options: { readonly timeoutMs?: number } = {}): Promise<ExecResult> {
    const child = 'podsCgroup' in target ? this.spawnInNode(target, cmd, args) : this.spawnInPod(target, cmd, args)
    return collect(child, options.timeoutMs ?? 30_000)
  }

  /** Runs a command on the machine itself (not in the testbed), bounded in time. */
  execHost(cmd: string, args: readonly string[] = [], options: { readonly timeoutMs?: number } = {}): Promise<ExecResult> {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    return collect(child, options.timeoutMs ?? 30_000)
  }

  async destroy(): Promise<void> {
    this.destroySync()
  }

  /** Idempotent; kills every process in the testbed's cgroups, then removes by name. */
  destroySync(): void {
    if (this.destroyed) return
    this.destroyed = true
    live.delete(this)
    for (const child of this.children) child.kill('SIGKILL')
    removeRun(this.prefix.slice(0, -1))
  }
}

function collect(child: ChildProcess, timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolve) => {
    let stdout = ''
    let stderr = ''
    child.stdout?.on('data', (d) => (stdout += d))
    child.stderr?.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

function killCgroup(path: string): void {
  if (!existsSync(path)) return
  try {
    writeFileSync(join(path, 'cgroup.kill'), '1')
  } catch {
    // cgroup.kill needs Linux 5.14; fall back to signalling each process
    for (const pid of readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL')
      } catch {
        // gone
      }
    }
  }
}

function removeCgroupTree(path: string): void {
  if (!existsSync(path)) return
  killCgroup(path)
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.isDirectory()) removeCgroupTree(join(path, entry.name))
  }
  // A killed process leaves its cgroup a moment later: retry briefly (bounded).
  for (let i = 0; i < 100; i++) {
    try {
      rmdirSync(path)
      return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
    }
  }
  throw new TestbedError(`cannot remove cgroup ${path}: processes still in it`)
}

/** Removes everything of one run, by its run id (amb<pid36>x<rand>). */
function removeRun(runId: string): string[] {
  const removed: string[] = []
  const cgroup = join(CGROUP_V2_ROOT, runId)
  if (existsSync(cgroup)) {
    removeCgroupTree(cgroup)
    removed.push(cgroup)
  }
  // One `ip -force -batch` for all of them (-force: one already gone does not stop the rest).
  const namespaces = listNetns().filter((netns) => netns.startsWith(`${runId}-`))
  if (namespaces.length > 0) {
    try {
      execFileSync('ip', ['-force', '-batch', '-'], { input: namespaces.map((n) => `netns del ${n}`).join('\n') + '\n', stdio: ['pipe', 'ignore', 'ignore'] })
    } catch {
      // some were already gone: the others were removed all the same
    }
    removed.push(...namespaces.filter((netns) => !existsSync(join('/run/netns', netns))))
  }
  const pins = join(BPFFS_ROOT, runId)
  if (existsSync(pins)) {
    rmSync(pins, { recursive: true, force: true })
    removed.push(pins)
  }
  return removed
}

function listNetns(): string[] {
  try {
    return readdirSync('/run/netns')
  } catch {
    return []
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Removes the leftovers of testbed runs whose creating process is gone. Returns what it removed. */
export function cleanupStale(): string[] {
  const runs = new Set<string>()
  const candidates = [...listNetns(), ...safeList(CGROUP_V2_ROOT), ...safeList(BPFFS_ROOT)]
  for (const name of candidates) {
    const m = PREFIX_RE.exec(`${name}-`)
    if (m && !alive(parseInt(m[1]!, 36))) runs.add(`amb${m[1]}x${m[2]}`)
  }
  return [...runs].flatMap((run) => removeRun(run))
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir)
  } catch {
    return []
  }
}
