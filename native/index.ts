// Typed wrapper over the native addon (native/src, contract in binding.d.ts):
// validates arguments, caches map metadata, and turns every failure into a
// NativeError. Map operations are synchronous single syscalls; work that must
// enter another network namespace runs on a native thread and returns a Promise.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { NativeBinding, RawMapInfo, RawProgramInfo, RawSocketOptions } from './binding.js'
import { NativeError } from './errors.js'

export { NativeError }
export type { RawSocketOptions as SocketOptions }

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

const ADDON_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', 'build', 'native', 'Release', 'ambient_native.node')

let binding: NativeBinding | null = null
function native(): NativeBinding {
  if (binding) return binding
  if (!existsSync(ADDON_PATH)) {
    throw new NativeError(`native addon not built: ${ADDON_PATH} is missing: run \`npm run build:native\` (or scripts/setup.sh)`, {
      code: 'ENOENT',
      errno: 2,
      syscall: 'dlopen',
    })
  }
  binding = createRequire(import.meta.url)(ADDON_PATH) as NativeBinding
  return binding
}

function call<T>(fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw NativeError.from(err)
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
export function numPossibleCpus(): number {
  cpus ??= call(() => native().numPossibleCpus())
  return cpus
}

function isPerCpu(type: number): boolean {
  return type === MapType.PERCPU_ARRAY || type === MapType.PERCPU_HASH || type === MapType.LRU_PERCPU_HASH
}

export interface MapInfo {
  readonly name: string
  readonly type: number
  readonly keySize: number
  readonly valueSize: number
  readonly maxEntries: number
}

/** A map by fd. Owns the fd when it opened it (openPinned); closing an object's map does nothing. */
export class BpfMap {
  readonly info: MapInfo
  /** Size of a lookup result: valueSize, or one 8-byte-aligned slot per possible CPU. */
  readonly lookupSize: number
  private closed = false

  constructor(readonly fd: number, info: MapInfo, private readonly ownsFd: boolean) {
    this.info = Object.freeze({ ...info })
    this.lookupSize = isPerCpu(info.type) ? Math.ceil(info.valueSize / 8) * 8 * numPossibleCpus() : info.valueSize
  }

  static openPinned(path: string): BpfMap {
    const fd = call(() => native().pinnedOpen(path))
    try {
      const raw: RawMapInfo = call(() => native().mapInfo(fd))
      return new BpfMap(fd, raw, true)
    } catch (err) {
      native().closeFd(fd)
      throw err
    }
  }

  private check(what: string, buf: Buffer, size: number): void {
    if (!Buffer.isBuffer(buf)) throw NativeError.invalid(`${this.info.name}: ${what} must be a Buffer`)
    if (buf.length !== size) {
      throw NativeError.invalid(`${this.info.name}: ${what} must be ${size} bytes, got ${buf.length}`)
    }
  }

  private live(): void {
    if (this.closed) throw NativeError.invalid(`${this.info.name}: map is closed`)
  }

  update(key: Buffer, value: Buffer, flags: number = BPF_ANY): void {
    this.live()
    this.check('key', key, this.info.keySize)
    // Per-CPU updates take one value per CPU, like lookups return.
    this.check('value', value, isPerCpu(this.info.type) ? this.lookupSize : this.info.valueSize)
    call(() => native().mapUpdate(this.fd, key, value, flags))
  }

  lookup(key: Buffer): Buffer | null {
    this.live()
    this.check('key', key, this.info.keySize)
    return call(() => native().mapLookup(this.fd, key, this.lookupSize))
  }

  delete(key: Buffer): boolean {
    this.live()
    this.check('key', key, this.info.keySize)
    return call(() => native().mapDelete(this.fd, key))
  }

  *keys(): Generator<Buffer> {
    this.live()
    let key: Buffer | null = null
    // Bounded: a map never has more than maxEntries keys (plus churn while iterating).
    for (let i = 0; i <= this.info.maxEntries * 2; i++) {
      const next: Buffer | null = call(() => native().mapNextKey(this.fd, key, this.info.keySize))
      if (next === null) return
      yield next
      key = next
    }
  }

  *entries(): Generator<[Buffer, Buffer]> {
    for (const key of this.keys()) {
      const value = this.lookup(key)
      if (value !== null) yield [key, value]
    }
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.ownsFd) native().closeFd(this.fd)
  }
}

export class BpfLink {
  private closed = false
  constructor(private readonly id: number) {}

  pin(path: string): void {
    call(() => native().linkPin(this.id, path))
  }

  /** Drops this process's reference; a pinned link stays attached. */
  close(): void {
    if (this.closed) return
    this.closed = true
    native().linkClose(this.id)
  }
}

export class BpfObject {
  private closed = false
  private constructor(private readonly handle: number, readonly path: string) {}

  /**
   * Opens an object file; maps declared with LIBBPF_PIN_BY_NAME reuse (or create)
   * pins in pinRoot. Required, so that nothing is ever pinned in libbpf's default
   * /sys/fs/bpf by accident.
   */
  static open(path: string, options: { readonly pinRoot: string }): BpfObject {
    if (!existsSync(path)) {
      throw new NativeError(`no BPF object at ${path}: run \`npm run build:bpf\``, { code: 'ENOENT', errno: 2, syscall: 'bpf_object__open_file' })
    }
    const handle = call(() => native().objectOpen(path, options.pinRoot))
    return new BpfObject(handle, path)
  }

  setGlobal(name: string, value: Buffer): void {
    call(() => native().objectSetGlobal(this.handle, name, value))
  }

  load(): void {
    call(() => native().objectLoad(this.handle))
  }

  programs(): RawProgramInfo[] {
    return call(() => native().objectPrograms(this.handle))
  }

  /** A map of the loaded object (the fd belongs to the object). */
  map(name: string): BpfMap {
    const raw = call(() => native().objectMaps(this.handle)).find((m) => m.name === name)
    if (!raw) throw new NativeError(`${this.path} has no map ${name}`, { code: 'ENOENT', errno: 2, syscall: 'objectMaps' })
    if (raw.fd < 0) throw NativeError.invalid(`map ${name} of ${this.path} has no fd: load the object first`)
    return new BpfMap(raw.fd, raw, false)
  }

  attachCgroup(program: string, cgroupPath: string): BpfLink {
    return new BpfLink(call(() => native().attachCgroup(this.handle, program, cgroupPath)))
  }

  attachNetns(program: string, netnsPath: string): BpfLink {
    return new BpfLink(call(() => native().attachNetns(this.handle, program, netnsPath)))
  }

  attachToMap(program: string, map: BpfMap, attachType: 'sk_msg_verdict' | 'sk_skb_stream_verdict'): void {
    call(() => native().attachToMap(this.handle, program, map.fd, attachType))
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    native().objectClose(this.handle)
  }
}

/** The network-namespace cookie of the netns at `netnsPath` (e.g. /run/netns/x, /proc/PID/ns/net). */
export function netnsCookie(netnsPath: string): Promise<bigint> {
  return callAsync(() => native().netnsCookie(netnsPath))
}

/** A TCP socket created inside another network namespace, returned as an fd for Node to adopt. */
export function socketInNetns(netnsPath: string, options: RawSocketOptions): Promise<number> {
  if (options.family !== 4 && options.family !== 6) return Promise.reject(NativeError.invalid(`family must be 4 or 6, got ${String(options.family)}`))
  if (options.bindPort !== undefined && (!Number.isInteger(options.bindPort) || options.bindPort < 0 || options.bindPort > 65535)) {
    return Promise.reject(NativeError.invalid(`bindPort must be 0-65535, got ${options.bindPort}`))
  }
  if (options.mark !== undefined && (!Number.isInteger(options.mark) || options.mark < 0 || options.mark > 0xffffffff)) {
    return Promise.reject(NativeError.invalid(`mark must be a 32-bit unsigned integer, got ${options.mark}`))
  }
  return callAsync(() => native().socketInNetns(netnsPath, options))
}

export function closeFd(fd: number): void {
  native().closeFd(fd)
}
