// Typed wrapper over the native addon (native/src, contract in binding.d.ts):
// validates arguments, caches map metadata, and turns every failure into a
// NativeError. Map operations are synchronous single syscalls; work that must
// enter another network namespace runs on a native thread and returns a Promise.
import { existsSync, statfsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { NativeBinding, RawLinkInfo, RawLoadedProgramInfo, RawMapInfo, RawProgramInfo, RawSocketOptions } from './binding.js'
import { NativeError } from './errors.js'

export { NativeError }
export type { NativeErrorFields } from './errors.js'
export type SocketOptions = RawSocketOptions
export type ProgramInfo = RawProgramInfo
export type LinkInfo = RawLinkInfo
export type LoadedProgramInfo = RawLoadedProgramInfo

export const BPF_ANY = 0
export const BPF_NOEXIST = 1
export const BPF_EXIST = 2

/** enum bpf_map_type values the project uses. */
export const MapType = {
  HASH: 1,
  ARRAY: 2,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  SOCKMAP: 15,
  SOCKHASH: 18,
} as const

export const ADDON_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', 'build', 'Release', 'ambient_native.node')
/** The AddressSanitizer build (scripts/build-native.sh --asan), for the sanitizer runs in CI. */
export const ASAN_ADDON_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', 'build', 'asan', 'ambient_native.node')
let addonPath = ADDON_PATH

/** Loads the addon from `path` instead (the ASan build); only before anything used the addon. */
export function useAddonPath(path: string): void {
  if (binding) throw NativeError.of('EBUSY', 'dlopen', `the native addon is already loaded from ${addonPath}; choose ${path} before first use`)
  addonPath = path
}
const BPF_FS_MAGIC = 0xcafe4a11

let binding: NativeBinding | null = null
/** The raw addon (binding.d.ts), loaded on first use. */
export function native(): NativeBinding {
  if (binding) return binding
  if (!existsSync(addonPath)) {
    throw NativeError.of('ENOENT', 'dlopen', `native addon not built: ${addonPath} is missing: run \`npm run build:native\``)
  }
  try {
    binding = createRequire(import.meta.url)(addonPath) as NativeBinding
  } catch (err) {
    throw new NativeError(
      `cannot load ${addonPath}: ${(err as Error).message}: rebuild it with \`npm run build:native\``,
      { code: 'ENOEXEC', errno: 8, syscall: 'dlopen' },
      { cause: err },
    )
  }
  return binding
}

function call<T>(fn: () => T, context?: string): T {
  try {
    return fn()
  } catch (err) {
    throw NativeError.from(err, context)
  }
}

async function callAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw NativeError.from(err)
  }
}

let cpus: number | null = null
/** Possible CPUs (not online ones): the number of slots of a per-CPU map value. */
export function numPossibleCpus(): number {
  cpus ??= call(() => native().numPossibleCpus())
  return cpus
}

export function isPerCpu(type: number): boolean {
  return type === MapType.PERCPU_ARRAY || type === MapType.PERCPU_HASH || type === MapType.LRU_PERCPU_HASH
}

/** The error for a path whose nearest existing folder is not on a bpf filesystem, or null. */
function bpffsError(path: string, what: string): NativeError | null {
  let dir = resolve(path)
  for (;;) {
    try {
      if (statfsSync(dir).type === BPF_FS_MAGIC) return null
      break
    } catch {
      if (dir === '/') break
      dir = dirname(dir)
    }
  }
  const hint =
    dir === '/sys/fs/bpf' || dir === '/sys/fs' || dir === '/sys'
      ? '/sys/fs/bpf is not a bpf filesystem: mount -t bpf bpf /sys/fs/bpf'
      : `${dir} is not a bpf filesystem: use a folder under a bpffs mount such as /sys/fs/bpf`
  return NativeError.of('EINVAL', 'statfs', `${what} ${path}: ${hint}`)
}

export interface MapInfo {
  readonly name: string
  readonly type: number
  readonly keySize: number
  readonly valueSize: number
  readonly maxEntries: number
}

/**
 * A map by fd, with its metadata fetched once. Owns the fd when it opened it
 * (openPinned); a map of a BpfObject is closed by its object.
 */
export class BpfMap {
  readonly info: MapInfo
  /** Bytes of a value as user space reads and writes it: valueSize, or one 8-byte-aligned slot per possible CPU. */
  readonly valueBytes: number
  private closed = false

  constructor(
    readonly fd: number,
    info: MapInfo,
    private readonly ownsFd: boolean,
  ) {
    this.info = Object.freeze({ name: info.name, type: info.type, keySize: info.keySize, valueSize: info.valueSize, maxEntries: info.maxEntries })
    this.valueBytes = isPerCpu(info.type) ? Math.ceil(info.valueSize / 8) * 8 * numPossibleCpus() : info.valueSize
  }

  /** Same as valueBytes (the size of a lookup result). */
  get lookupSize(): number {
    return this.valueBytes
  }

  /** Opens a map pinned on bpffs; the BpfMap owns the new fd. */
  static openPinned(path: string): BpfMap {
    if (typeof path !== 'string' || path === '') throw NativeError.invalid(`pin path must be a non-empty string, got ${String(path)}`)
    const fd = call(() => native().pinnedOpen(path))
    try {
      const raw: RawMapInfo = call(() => native().mapInfo(fd), path)
      return new BpfMap(fd, raw, true)
    } catch (err) {
      native().closeFd(fd)
      throw err
    }
  }

  private context(): string {
    return `map ${this.info.name}`
  }

  private checkBuffer(what: string, buf: unknown, size: number): void {
    if (!Buffer.isBuffer(buf)) throw NativeError.invalid(`${this.context()}: ${what} must be a Buffer, got ${typeof buf}`)
    if (buf.length !== size) {
      throw NativeError.invalid(`${this.context()}: ${what} must be ${size} bytes, got ${buf.length}`)
    }
  }

  private live(): void {
    if (this.closed) throw NativeError.of('EBADF', 'validate', `${this.context()} is closed`)
  }

  /** Per-CPU maps take one value slot per possible CPU (valueBytes); sockmaps take an fd as u32 or u64. */
  update(key: Buffer, value: Buffer, flags: number = BPF_ANY): void {
    this.live()
    this.checkBuffer('key', key, this.info.keySize)
    this.checkBuffer('value', value, this.valueBytes)
    if (!Number.isInteger(flags) || flags < 0) throw NativeError.invalid(`${this.context()}: flags must be BPF_ANY, BPF_NOEXIST or BPF_EXIST, got ${flags}`)
    call(() => native().mapUpdate(this.fd, key, value, flags), this.context())
  }

  /** The value, or null when the key is absent. Sockmap lookups return the socket cookie (8-byte values only). */
  lookup(key: Buffer): Buffer | null {
    this.live()
    this.checkBuffer('key', key, this.info.keySize)
    if ((this.info.type === MapType.SOCKMAP || this.info.type === MapType.SOCKHASH) && this.info.valueSize !== 8) {
      throw NativeError.of(
        'EOPNOTSUPP',
        'validate',
        `${this.context()}: a sockmap is only readable with 8-byte values (it has ${this.info.valueSize}): declare the value __u64`,
      )
    }
    return call(() => native().mapLookup(this.fd, key, this.valueBytes), this.context())
  }

  /** True when the key was there; deleting what is already gone is not an error. */
  delete(key: Buffer): boolean {
    this.live()
    this.checkBuffer('key', key, this.info.keySize)
    try {
      return call(() => native().mapDelete(this.fd, key), this.context())
    } catch (err) {
      // A SOCKMAP says EINVAL, not ENOENT, for an empty slot (the index itself is in range: checked by size).
      if (this.info.type === MapType.SOCKMAP && (err as NativeError).code === 'EINVAL' && key.readUInt32LE() < this.info.maxEntries) return false
      throw err
    }
  }

  /** Every key, read in one native call (a syscall per key, not a trip through JS per key). */
  *keys(): Generator<Buffer> {
    this.live()
    // Bounded: a map never has more than maxEntries keys (plus churn while iterating).
    const size = this.info.keySize
    const keys: Buffer = call(() => native().mapKeys(this.fd, size, this.info.maxEntries * 2 + 1), this.context())
    for (let at = 0; at < keys.length; at += size) yield keys.subarray(at, at + size)
  }

  /** How many keys the map holds now. */
  count(): number {
    this.live()
    return call(() => native().mapKeys(this.fd, this.info.keySize, this.info.maxEntries * 2 + 1), this.context()).length / this.info.keySize
  }

  /** Every key and its value, read in one native call (a key deleted meanwhile is left out). */
  *entries(): Generator<[Buffer, Buffer]> {
    this.live()
    if (this.info.type === MapType.SOCKMAP || this.info.type === MapType.SOCKHASH) {
      for (const key of this.keys()) {
        const value = this.lookup(key)
        if (value !== null) yield [key, value]
      }
      return
    }
    const { keySize } = this.info
    const valueSize = this.valueBytes
    const { keys, values } = call(() => native().mapEntries(this.fd, keySize, this.info.maxEntries * 2 + 1, valueSize), this.context())
    for (let i = 0; i * keySize < keys.length; i++) yield [keys.subarray(i * keySize, (i + 1) * keySize), values.subarray(i * valueSize, (i + 1) * valueSize)]
  }

  get isClosed(): boolean {
    return this.closed
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.ownsFd) native().closeFd(this.fd)
  }

  /** @internal the owning object closed the fd. */
  markClosed(): void {
    this.closed = true
  }
}

/** An attachment (cgroup or netns link). Pin it to keep it after this process lets go. */
export class BpfLink {
  private closed = false
  constructor(
    private readonly id: number,
    readonly description: string,
  ) {}

  pin(path: string): void {
    if (this.closed) throw NativeError.of('EBADF', 'validate', `link ${this.description} is closed`)
    if (typeof path !== 'string' || path === '') throw NativeError.invalid(`link pin path must be a non-empty string, got ${String(path)}`)
    call(() => native().linkPin(this.id, path))
  }

  /** Drops this process's reference; a pinned link stays attached. */
  close(): void {
    if (this.closed) return
    this.closed = true
    native().linkClose(this.id)
  }

  /**
   * The `const volatile` globals the program behind a pinned link was loaded with,
   * by name (read from the kernel: its .rodata map, laid out by that map's BTF);
   * empty when the program has none.
   */
  /** The kernel's info of a pinned link: its id, type and the id of its program. */
  static pinnedInfo(path: string): LinkInfo {
    if (typeof path !== 'string' || path === '') throw NativeError.invalid(`link pin path must be a non-empty string, got ${String(path)}`)
    const notBpffs = bpffsError(path, 'link pin path')
    if (notBpffs) throw notBpffs
    const fd = call(() => native().pinnedOpen(path))
    try {
      return call(() => native().linkInfo(fd), path)
    } finally {
      native().closeFd(fd)
    }
  }

  static pinnedGlobals(path: string): Map<string, Buffer> {
    if (typeof path !== 'string' || path === '') throw NativeError.invalid(`link pin path must be a non-empty string, got ${String(path)}`)
    const notBpffs = bpffsError(path, 'link pin path')
    if (notBpffs) throw notBpffs
    return new Map(call(() => native().pinnedLinkGlobals(path)).map((g) => [g.name, g.value]))
  }
}

/**
 * A loaded program by id, as the kernel reports it (name, type, and its run count
 * and run time, which the kernel counts only while run-time statistics are enabled:
 * enableRunTimeStats() or sysctl kernel.bpf_stats_enabled); null when it is gone.
 */
export function loadedProgram(id: number): LoadedProgramInfo | null {
  if (!Number.isInteger(id) || id <= 0 || id > 0x7fffffff) throw NativeError.invalid(`program id must be a positive integer, got ${String(id)}`)
  let fd: number
  try {
    fd = call(() => native().programFdById(id))
  } catch (err) {
    if ((err as NativeError).code === 'ENOENT') return null // unloaded meanwhile
    throw err
  }
  try {
    return call(() => native().programInfo(fd))
  } finally {
    native().closeFd(fd)
  }
}

/** Kernel run-time statistics of every BPF program, counted while this is open (BPF_ENABLE_STATS). */
export class RunTimeStats {
  private fd: number | null

  private constructor(fd: number) {
    this.fd = fd
  }

  /** Enables them; EINVAL on kernels before 5.8, EPERM without CAP_SYS_ADMIN. */
  static enable(): RunTimeStats {
    return new RunTimeStats(call(() => native().enableStats()))
  }

  get enabled(): boolean {
    return this.fd !== null
  }

  /** Stops counting (unless someone else keeps them enabled). Idempotent. */
  close(): void {
    if (this.fd === null) return
    native().closeFd(this.fd)
    this.fd = null
  }
}

export interface OpenOptions {
  /** Where maps declared with LIBBPF_PIN_BY_NAME are pinned (or reused); must be on bpffs. */
  readonly pinRoot: string
}

export class BpfObject {
  private closed = false
  private loaded = false
  private mapCache: Map<string, BpfMap> | null = null

  private constructor(
    private readonly handle: number,
    readonly path: string,
  ) {}

  /**
   * Opens an object file. pinRoot is required, so that nothing is ever pinned in
   * libbpf's default /sys/fs/bpf by accident.
   */
  static open(path: string, options: OpenOptions): BpfObject {
    if (typeof path !== 'string' || path === '') throw NativeError.invalid(`object path must be a non-empty string, got ${String(path)}`)
    if (!existsSync(path)) throw NativeError.of('ENOENT', 'bpf_object__open_file', `no BPF object at ${path}: run \`npm run build:bpf\``)
    if (typeof options?.pinRoot !== 'string' || options.pinRoot === '')
      throw NativeError.invalid(`pinRoot must be a folder on bpffs, got ${String(options?.pinRoot)}`)
    const notBpffs = bpffsError(options.pinRoot, 'pinRoot')
    if (notBpffs) throw notBpffs
    const handle = call(() => native().objectOpen(path, options.pinRoot))
    return new BpfObject(handle, path)
  }

  private live(): void {
    if (this.closed) throw NativeError.of('EBADF', 'validate', `BPF object ${this.path} is closed`)
  }

  /** Sets a `const volatile` global before load(); value must be exactly its size. */
  setGlobal(name: string, value: Buffer): void {
    this.live()
    if (!Buffer.isBuffer(value)) throw NativeError.invalid(`global ${name} of ${this.path}: value must be a Buffer`)
    if (this.loaded) throw NativeError.invalid(`global ${name} of ${this.path} can only be set before load()`)
    call(() => native().objectSetGlobal(this.handle, name, value))
  }

  /** Loads (and verifies) every program and creates or reuses the maps. Once per object. */
  load(): void {
    this.live()
    if (this.loaded) throw NativeError.invalid(`BPF object ${this.path} is already loaded`)
    this.loaded = true
    call(() => native().objectLoad(this.handle))
  }

  programs(): ProgramInfo[] {
    this.live()
    return call(() => native().objectPrograms(this.handle))
  }

  /** Every map of the loaded object (fds owned by the object). */
  maps(): BpfMap[] {
    return [...this.mapTable().values()]
  }

  /** A map of the loaded object by name (the fd belongs to the object). */
  map(name: string): BpfMap {
    const map = this.mapTable().get(name)
    if (!map) {
      throw NativeError.of('ENOENT', 'objectMaps', `${this.path} has no map ${name} (it has: ${[...this.mapTable().keys()].join(', ')})`)
    }
    return map
  }

  private mapTable(): Map<string, BpfMap> {
    this.live()
    if (!this.loaded) throw NativeError.invalid(`maps of ${this.path} have no fd yet: call load() first`)
    if (this.mapCache) return this.mapCache
    const table = new Map<string, BpfMap>()
    for (const raw of call(() => native().objectMaps(this.handle))) {
      if (raw.fd >= 0) table.set(raw.name, new BpfMap(raw.fd, raw, false))
    }
    this.mapCache = table
    return table
  }

  attachCgroup(program: string, cgroupPath: string): BpfLink {
    this.live()
    return new BpfLink(
      call(() => native().attachCgroup(this.handle, program, cgroupPath)),
      `${program} on cgroup ${cgroupPath}`,
    )
  }

  attachNetns(program: string, netnsPath: string): BpfLink {
    this.live()
    return new BpfLink(
      call(() => native().attachNetns(this.handle, program, netnsPath)),
      `${program} on netns ${netnsPath}`,
    )
  }

  attachToMap(program: string, map: BpfMap, attachType: 'sk_msg_verdict' | 'sk_skb_stream_verdict'): void {
    this.live()
    if (map.isClosed) throw NativeError.of('EBADF', 'validate', `map ${map.info.name} is closed`)
    if (map.info.type !== MapType.SOCKMAP && map.info.type !== MapType.SOCKHASH) {
      throw NativeError.invalid(`${program} can only attach to a SOCKMAP or SOCKHASH, and map ${map.info.name} is type ${map.info.type}`)
    }
    call(() => native().attachToMap(this.handle, program, map.fd, attachType))
  }

  /** Closes the object, its programs and its maps' fds (pinned maps and links stay). */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (const map of this.mapCache?.values() ?? []) map.markClosed()
    this.mapCache = null
    native().objectClose(this.handle)
  }
}

const isNetnsPath = (netnsPath: unknown): netnsPath is string => typeof netnsPath === 'string' && netnsPath !== ''
const netnsPathError = (netnsPath: unknown): NativeError => NativeError.invalid(`netnsPath must be a non-empty string, got ${String(netnsPath)}`)

/** The network-namespace cookie of the netns at `netnsPath` (e.g. /run/netns/x, /proc/PID/ns/net). */
export function netnsCookie(netnsPath: string): Promise<bigint> {
  if (!isNetnsPath(netnsPath)) return Promise.reject(netnsPathError(netnsPath))
  return callAsync(() => native().netnsCookie(netnsPath))
}

function socketOptionsError(o: RawSocketOptions): NativeError | null {
  if (o === null || typeof o !== 'object') return NativeError.invalid('socket options must be an object')
  if (o.family !== 4 && o.family !== 6) return NativeError.invalid(`family must be 4 or 6, got ${String(o.family)}`)
  if (o.bindPort !== undefined && (!Number.isInteger(o.bindPort) || o.bindPort < 0 || o.bindPort > 65535)) {
    return NativeError.invalid(`bindPort must be 0-65535, got ${o.bindPort}`)
  }
  if (o.bindPort !== undefined && o.bindAddress === undefined) return NativeError.invalid('bindPort needs bindAddress')
  if (o.mark !== undefined && (!Number.isInteger(o.mark) || o.mark < 0 || o.mark > 0xffffffff)) {
    return NativeError.invalid(`mark must be a 32-bit unsigned integer, got ${o.mark}`)
  }
  if (o.listenBacklog !== undefined && (!Number.isInteger(o.listenBacklog) || o.listenBacklog < 0)) {
    return NativeError.invalid(`listenBacklog must be a non-negative integer, got ${o.listenBacklog}`)
  }
  if (o.bindToDevice !== undefined && (typeof o.bindToDevice !== 'string' || o.bindToDevice.length === 0 || o.bindToDevice.length > 15)) {
    return NativeError.invalid(`bindToDevice must be an interface name of 1-15 characters, got ${String(o.bindToDevice)}`)
  }
  return null
}

/**
 * A TCP socket created inside another network namespace (non-blocking,
 * close-on-exec), configured, optionally bound and listening; resolves to the fd
 * for Node to adopt: net.createServer().listen({ fd }) or new net.Socket({ fd })
 * followed by .connect() in the same tick.
 */
export function socketInNetns(netnsPath: string, options: SocketOptions): Promise<number> {
  if (!isNetnsPath(netnsPath)) return Promise.reject(netnsPathError(netnsPath))
  const invalid = socketOptionsError(options)
  if (invalid) return Promise.reject(invalid)
  return callAsync(() => native().socketInNetns(netnsPath, options))
}

/**
 * `count` (1-64) plain TCP sockets made inside another network namespace in one
 * trip (non-blocking, close-on-exec), to be configured later with configureSocket:
 * a socket keeps the namespace it was made in.
 */
export function socketsInNetns(netnsPath: string, family: 4 | 6, count: number): Promise<number[]> {
  if (!isNetnsPath(netnsPath)) return Promise.reject(netnsPathError(netnsPath))
  if (family !== 4 && family !== 6) return Promise.reject(NativeError.invalid(`family must be 4 or 6, got ${String(family)}`))
  if (!Number.isInteger(count) || count < 1 || count > 64) return Promise.reject(NativeError.invalid(`count must be 1-64, got ${count}`))
  return callAsync(() => native().socketsInNetns(netnsPath, family, count))
}

/** The sockets to make inside one pod's network namespace. */
export interface PodSocketsRequest {
  readonly netnsPath: string
  /** Up to 16, made in order; the first failing one fails the request (the others are closed). */
  readonly sockets: readonly SocketOptions[]
}

/** A pod's sockets, in the order asked, and the cookie of the namespace they were made in. */
export interface PodSocketsResult {
  readonly netnsCookie: bigint
  readonly fds: readonly number[]
}

/**
 * Sockets for many pods in one trip: a single short-lived thread enters each
 * pod's namespace in turn and makes its sockets there (configured, bound,
 * listening as asked) and reads the namespace's cookie. Resolves, per request, to
 * its result or to the NativeError that failed it (one pod's failure fails only
 * that pod). Up to 1024 requests.
 */
export async function podSockets(requests: readonly PodSocketsRequest[]): Promise<(PodSocketsResult | NativeError)[]> {
  if (!Array.isArray(requests) || requests.length < 1 || requests.length > 1024)
    throw NativeError.invalid(`requests must hold 1-1024 entries, got ${requests?.length}`)
  for (const [i, r] of requests.entries()) {
    if (!isNetnsPath(r.netnsPath)) throw netnsPathError(r.netnsPath)
    if (!Array.isArray(r.sockets) || r.sockets.length > 16) throw NativeError.invalid(`requests[${i}].sockets must be an array of 0-16 socket options`)
    for (const o of r.sockets) {
      const invalid = socketOptionsError(o)
      if (invalid) throw invalid
    }
  }
  const raw = await callAsync(() => native().podSockets(requests))
  return raw.map((r) => (r instanceof Error ? NativeError.from(r) : { netnsCookie: r.cookie, fds: r.fds }))
}

/** The cookies of many network namespaces in one trip (batches of 1024): per path, the cookie or the NativeError saying why not. */
export async function netnsCookies(netnsPaths: readonly string[]): Promise<(bigint | NativeError)[]> {
  const out: (bigint | NativeError)[] = []
  for (let i = 0; i < netnsPaths.length; i += 1024) {
    const batch = netnsPaths.slice(i, i + 1024).map((netnsPath) => ({ netnsPath, sockets: [] }))
    for (const r of await podSockets(batch)) out.push(r instanceof Error ? r : r.netnsCookie)
  }
  return out
}

/** The in-pod reply route: accepted connections keep their SYN's mark, and `mark` looks up `table`, whose default route is local over lo. */
export interface PodRoutingSettings {
  readonly mark: number
  /** 1-252. */
  readonly table: number
  /** Priority of the rule. */
  readonly priority: number
}

/**
 * Adds (or, with `add` false, removes) the in-pod reply route in each namespace
 * of `netnsPaths`, over rtnetlink from one short-lived thread that enters them in
 * turn: sysctl net.ipv4.tcp_fwmark_accept=1, `ip rule add fwmark MARK lookup TABLE
 * priority P` (kept when it is there), `ip route replace local 0.0.0.0/0 dev lo
 * table TABLE`; removal deletes every such rule and the route, and what is absent
 * is success. Resolves, per namespace, to null or the NativeError that failed it.
 */
export async function podRouting(netnsPaths: readonly string[], settings: PodRoutingSettings, add: boolean): Promise<(NativeError | null)[]> {
  if (!Array.isArray(netnsPaths) || netnsPaths.length < 1 || netnsPaths.length > 1024)
    throw NativeError.invalid(`netnsPaths must hold 1-1024 entries, got ${netnsPaths?.length}`)
  for (const path of netnsPaths) if (!isNetnsPath(path)) throw netnsPathError(path)
  for (const [name, max] of [
    ['mark', 0xffffffff],
    ['table', 252],
    ['priority', 0xffffffff],
  ] as const) {
    const n = settings[name]
    if (!Number.isInteger(n) || n < (name === 'table' ? 1 : 0) || n > max) throw NativeError.invalid(`${name} must be an integer 0-${max}, got ${n}`)
  }
  const raw = await callAsync(() => native().podRouting(netnsPaths, settings, add))
  return raw.map((r) => (r === null ? null : NativeError.from(r)))
}

/**
 * Applies socketInNetns's options (mark, transparent, device, bind, listen) to a
 * socket from socketsInNetns, on the calling thread; `netnsPath` names it in errors.
 * Throws with the same codes and messages as socketInNetns.
 */
export function configureSocket(fd: number, netnsPath: string, options: SocketOptions): void {
  if (!Number.isInteger(fd) || fd < 0) throw NativeError.invalid(`fd must be a non-negative integer, got ${fd}`)
  const invalid = socketOptionsError(options)
  if (invalid) throw invalid
  call(() => native().configureSocket(fd, netnsPath, options))
}

/** Closes an fd from socketInNetns or the addon that Node never adopted. */
export function closeFd(fd: number): void {
  if (!Number.isInteger(fd) || fd < 0) throw NativeError.invalid(`fd must be a non-negative integer, got ${fd}`)
  native().closeFd(fd)
}

/**
 * Moves a connected socket that Node accepted but never read from (a server made
 * with `pauseOnConnect: true`) out of Node: returns a duplicate fd that the caller
 * now owns, and destroys the Node socket (libuv closes its own descriptor; the
 * connection stays open through the duplicate).
 */
export function takeSocketFd(socket: { readonly _handle?: { readonly fd?: number } | null; destroy(): void }): number {
  const fd = socket._handle?.fd
  if (fd === undefined || fd < 0) throw NativeError.of('EBADF', 'dupFd', 'the socket has no open descriptor (already closed, or not a TCP socket)')
  const copy = call(() => native().dupFd(fd))
  socket.destroy()
  return copy
}

/** The socket's cookie (SO_COOKIE): stable for the socket's life, shared by every fd of it; what a SOCKHASH lookup returns. */
export function socketCookie(fd: number): bigint {
  if (!Number.isInteger(fd) || fd < 0) throw NativeError.invalid(`fd must be a non-negative integer, got ${fd}`)
  return call(() => native().socketCookie(fd))
}

/** fcntl(F_DUPFD_CLOEXEC): a duplicate the caller owns. */
export function dupFd(fd: number): number {
  if (!Number.isInteger(fd) || fd < 0) throw NativeError.invalid(`fd must be a non-negative integer, got ${fd}`)
  return call(() => native().dupFd(fd))
}

/** A frame read by recvFrame: its bytes and the descriptors that came with it (the caller owns them). */
export interface Frame {
  readonly data: Buffer
  readonly fds: readonly number[]
}

/**
 * Connects a Unix stream socket to `path` (blocking; a local socket answers at
 * once or refuses): the caller owns the fd. ENOENT or ECONNREFUSED when nobody
 * listens there.
 */
export function unixConnect(path: string): number {
  if (typeof path !== 'string' || path.length < 1 || Buffer.byteLength(path) > 107)
    throw NativeError.invalid(`path must be 1-107 bytes, got ${JSON.stringify(path)}`)
  return call(() => native().unixConnect(path))
}

/**
 * Sends one frame (a 4-byte little-endian length and `data`, at most 1 MiB) over a
 * Unix stream socket with up to 253 descriptors attached (SCM_RIGHTS: the peer
 * gets its own copies; ours stay open). EAGAIN when the socket cannot take the
 * frame now (nothing was sent).
 */
export function sendFrame(fd: number, data: Buffer, fds: readonly number[] = []): void {
  if (!Number.isInteger(fd) || fd < 0) throw NativeError.invalid(`fd must be a non-negative integer, got ${fd}`)
  if (fds.length > 253 || fds.some((f) => !Number.isInteger(f) || f < 0)) throw NativeError.invalid('fds must be at most 253 non-negative integers')
  call(() => native().sendFrame(fd, data, fds))
}

/**
 * The next frame on a Unix stream socket and the descriptors that came with it
 * (close-on-exec, the caller's), read on a pool thread; null at end of stream;
 * ETIMEDOUT when none arrived within timeoutMs.
 */
export async function recvFrame(fd: number, timeoutMs: number): Promise<Frame | null> {
  if (!Number.isInteger(fd) || fd < 0) throw NativeError.invalid(`fd must be a non-negative integer, got ${fd}`)
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw NativeError.invalid(`timeoutMs must be a positive integer, got ${timeoutMs}`)
  return callAsync(() => native().recvFrame(fd, timeoutMs))
}
