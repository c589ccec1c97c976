// Kernel fixtures for the native addon's tests: the probe object compiled fresh,
// network namespaces, a cgroup v2 folder and a pin folder, all named after this
// process (ambnat-<pid>-*, ambient-test-<pid>) and removed on teardown, also when
// a test fails. Nothing here has a route out: namespaces only get `lo`.
import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, rmdirSync, statfsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
export const REPO = join(here, '..', '..')
const BPF_FS_MAGIC = 0xcafe4a11
const CGROUP2_SUPER_MAGIC = 0x63677270

export interface Teardown {
  teardown(fn: () => void | Promise<void>): void
}

export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n)
  return b
}

export const u64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(n)
  return b
}

/** Sum of a per-CPU u64 value over every possible CPU. */
export function sumPerCpu(value: Buffer | null): bigint {
  if (!value) return 0n
  let sum = 0n
  for (let off = 0; off < value.length; off += 8) sum += value.readBigUInt64LE(off)
  return sum
}

/** Compiles native/testdata/probe.bpf.c into a temporary folder (readable by all, for the unprivileged test). */
export function compileProbe(t: Teardown): string {
  return compileObject(t, 'probe')
}

/** Compiles native/testdata/<name>.bpf.c into a temporary folder. */
export function compileObject(t: Teardown, name: string): string {
  const include = join(REPO, 'third_party', 'libbpf', 'include')
  if (!existsSync(join(include, 'bpf', 'bpf_helpers.h'))) {
    throw new Error(`libbpf headers missing in ${include}: run npm run build:native`)
  }
  const dir = mkdtempSync(join(tmpdir(), `ambient-native-test-${process.pid}-`))
  chmodSync(dir, 0o755)
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const out = join(dir, `${name}.bpf.o`)
  const arch = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim() || 'x86_64-linux-gnu'
  execFileSync(
    'clang',
    ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-I', include, '-I', `/usr/include/${arch}`, '-c', join(here, `${name}.bpf.c`), '-o', out],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  )
  return out
}

/** Mounts bpffs at /sys/fs/bpf when this fresh machine has none. */
export function ensureBpffs(): void {
  const type = (() => {
    try {
      return statfsSync('/sys/fs/bpf').type
    } catch {
      return 0
    }
  })()
  if (type === BPF_FS_MAGIC) return
  mkdirSync('/sys/fs/bpf', { recursive: true })
  execFileSync('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf'])
}

/** /sys/fs/bpf/ambient-test-<pid>[/sub], created now and removed on teardown. */
export function pinDir(t: Teardown, sub = ''): string {
  ensureBpffs()
  const root = `/sys/fs/bpf/ambient-test-${process.pid}`
  const dir = sub ? join(root, sub) : root
  mkdirSync(dir, { recursive: true })
  // One teardown, in this order: teardowns run last-registered first, so a separate
  // one for the root ran before the sub folder was gone and left the root behind.
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true })
    if (sub) rmdirSafe(root)
  })
  return dir
}

function rmdirSafe(dir: string): void {
  try {
    rmdirSync(dir)
  } catch {
    // not empty (another test still uses it) or already gone
  }
}

/** A network namespace ambnat-<pid>-<name> with lo up; returns /run/netns/<name>. */
export function makeNetns(t: Teardown, name: string): string {
  const ns = `ambnat-${process.pid}-${name}`
  execFileSync('ip', ['netns', 'add', ns])
  t.teardown(() => {
    try {
      execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' })
    } catch {
      // already gone
    }
  })
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  return `/run/netns/${ns}`
}

/** The cgroup v2 mount: /sys/fs/cgroup/unified on hybrid machines, else /sys/fs/cgroup. */
export function cgroup2Root(): string {
  for (const dir of ['/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
    try {
      if (statfsSync(dir).type === CGROUP2_SUPER_MAGIC) return dir
    } catch {
      // not there
    }
  }
  throw new Error('no cgroup v2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup')
}

/** <cgroup2>/ambient-test-<pid>-<name>, removed on teardown (after its processes ended). */
export function makeCgroup(t: Teardown, name: string): string {
  const dir = join(cgroup2Root(), `ambient-test-${process.pid}-${name}`)
  mkdirSync(dir)
  t.teardown(() => rmdirSafe(dir))
  return dir
}

export interface RunResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `argv` to completion, optionally as a member of cgroup `cgroup`. */
export function run(argv: readonly string[], options: { cgroup?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  // A clean environment: tap's process-info hooks (injected into children) cannot
  // write their files as an unprivileged user.
  const clean = ['env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`]
  const [cmd, ...args] = options.cgroup ? [...clean, 'sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', options.cgroup, ...argv] : [...clean, ...argv]
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** bpftool's JSON output. */
export function bpftool(args: readonly string[]): unknown {
  return JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8' }).trim() || 'null')
}
