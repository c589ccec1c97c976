// The node's BPF datapath: loads the programs of bpf/ through the native addon,
// attaches the socket-level hooks to the cgroup that holds the node's pods, and
// keeps every map and link pinned under <pinRoot>/v<ABI_VERSION>/ so that the
// process that loaded it can exit and a new one adopt it without traffic noticing.
//
// Pin layout (a layout change bumps ABI_VERSION and so gets a new directory):
//   <pinRoot>/v1/ambient_*                      maps (libbpf pinning by name)
//   <pinRoot>/v1/links/cg<cgroup id>-<program>  cgroup attachments
//   <pinRoot>/v1/links/netns<cookie>            sk_lookup attachment of one pod
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, statSync, statfsSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { BpfLink, BpfMap, BpfObject, netnsCookie, socketCookie, type NativeError } from '../native/index.js'
import * as abi from './abi.js'
import { DatapathError } from './errors.js'
import { configurePodsRouting, removePodRouting } from './pod-routing.js'
import { ProgramStatsReader, type ProgramStats } from './program-stats.js'

export interface DatapathSettings {
  /** bpffs folder that holds every datapath version, e.g. /sys/fs/bpf/ambient. */
  readonly pinRoot: string
  /** Folder with the compiled objects (*.bpf.o). */
  readonly objectsDir: string
  /** SO_MARK of ztunnel's own outgoing sockets: never redirected. */
  readonly proxyMark: number
  /** SO_MARK of ztunnel's delivery sockets into a pod: the pod routes replies to them locally. */
  readonly deliveryMark: number
  readonly hbonePort: number
}

export interface PodEnrollment {
  readonly netnsPath: string
  readonly ip: string
  readonly outboundPort: number
  /** The namespace's cookie when the caller knows it already (saves a trip into the namespace). */
  readonly netnsCookie?: bigint
}

export interface EnrolledPod {
  readonly netnsCookie: bigint
  readonly ip: string
  readonly outboundPort: number
  readonly inbound: boolean
  readonly linkPinned: boolean
}

export interface MapOccupancy {
  readonly name: string
  readonly entries: number
  readonly capacity: number
}

const CGROUP_PROGRAMS = [
  { object: 'connect4', program: 'ambient_connect4' },
  { object: 'getpeername4', program: 'ambient_getpeername4' },
  { object: 'sockops', program: 'ambient_sockops' },
] as const

export function versionDir(pinRoot: string): string {
  return join(pinRoot, `v${abi.ABI_VERSION}`)
}

const BPF_FS_MAGIC = 0xcafe4a11
/** Pods whose namespaces one native trip enters (the addon's limit). */
const POD_BATCH = 1024

/** The pin root must live on a bpf filesystem; says how to mount one when it does not. */
function checkBpffs(pinRoot: string): void {
  let dir = pinRoot
  while (!existsSync(dir) && dir !== dirname(dir)) dir = dirname(dir)
  if (statfsSync(dir).type !== BPF_FS_MAGIC) {
    throw new DatapathError(
      'AMBIENT_ERR_DATAPATH_LOAD',
      `${pinRoot} is not on a bpf filesystem (${dir} is not bpffs): mount -t bpf bpf /sys/fs/bpf, or pass --pin-root under a bpffs mount`,
    )
  }
}

function cgroupId(cgroupPath: string): bigint {
  try {
    return statSync(cgroupPath, { bigint: true }).ino
  } catch (err) {
    throw new DatapathError('AMBIENT_ERR_DATAPATH_BAD_INPUT', `no cgroup at ${cgroupPath}: pass the cgroup v2 folder that holds the node's pods`, {
      cause: err,
    })
  }
}

/**
 * Opens the pinned maps of a loaded datapath. Cheap and side-effect free: what
 * ztunnel (listeners, original destinations), `ambient status` and an agent that
 * adopts the datapath all start from.
 */
export class Datapath {
  readonly dir: string
  private readonly maps: Record<keyof typeof abi.MAP_NAMES, BpfMap>
  /** The sk_lookup program, loaded on first enrollment and kept. */
  private skLookup: BpfObject | null = null
  /** The pinned programs' settings were checked against ours (by load() or verifySettings()). */
  private settingsVerified = false
  private programStatsReader: ProgramStatsReader | null = null

  private constructor(
    readonly settings: DatapathSettings,
    maps: Record<keyof typeof abi.MAP_NAMES, BpfMap>,
  ) {
    this.dir = versionDir(settings.pinRoot)
    this.maps = maps
  }

  /** Adopts a datapath that is already loaded; throws NOT_LOADED when it is not. */
  static open(settings: DatapathSettings): Datapath {
    const dir = versionDir(settings.pinRoot)
    if (!existsSync(join(dir, abi.MAP_NAMES.pods))) {
      throw new DatapathError('AMBIENT_ERR_DATAPATH_NOT_LOADED', `no datapath pinned at ${dir}: run \`ambient datapath load\` (or start the agent) first`)
    }
    const opened: Partial<Record<keyof typeof abi.MAP_NAMES, BpfMap>> = {}
    try {
      for (const [key, name] of Object.entries(abi.MAP_NAMES)) {
        opened[key as keyof typeof abi.MAP_NAMES] = BpfMap.openPinned(join(dir, name))
      }
    } catch (err) {
      for (const map of Object.values(opened)) map?.close()
      throw new DatapathError('AMBIENT_ERR_DATAPATH_NOT_LOADED', `cannot open the datapath pinned at ${dir}: ${(err as Error).message}`, { cause: err })
    }
    return new Datapath(settings, opened as Record<keyof typeof abi.MAP_NAMES, BpfMap>)
  }

  /**
   * Loads the programs (reusing pinned maps, so state survives), attaches the
   * cgroup hooks to `cgroupPath` unless links for that cgroup are already pinned,
   * and returns the opened datapath. Running it again is a no-op that adopts.
   */
  static load(settings: DatapathSettings, cgroupPath: string): Datapath {
    const dir = versionDir(settings.pinRoot)
    const links = join(dir, 'links')
    const cgid = cgroupId(cgroupPath)
    checkBpffs(settings.pinRoot)
    try {
      mkdirSync(links, { recursive: true })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      const hint = code === 'EACCES' || code === 'EPERM' ? 'not permitted: run as root or with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN' : String(err)
      throw new DatapathError('AMBIENT_ERR_DATAPATH_LOAD', `cannot create ${links}: ${hint}`, { cause: err })
    }
    // Before attaching anything: programs already pinned must have been loaded with
    // these settings, or this load would leave a mix behind.
    checkPinnedSettings(settings)
    for (const { object, program } of CGROUP_PROGRAMS) {
      const pin = join(links, `cg${cgid}-${program}`)
      if (existsSync(pin)) continue
      const obj = openObject(settings, object)
      try {
        const link = obj.attachCgroup(program, cgroupPath)
        link.pin(pin)
        link.close()
      } finally {
        obj.close()
      }
    }
    if (!existsSync(join(dir, abi.MAP_NAMES.pods))) {
      // No cgroup program was attached in this call (all were pinned) yet the maps
      // are gone: someone removed them by hand. Load one object to recreate them.
      openObject(settings, 'sk_lookup').close()
    }
    const datapath = Datapath.open(settings)
    datapath.settingsVerified = true // checked above, before attaching
    return datapath
  }

  /**
   * Checks that the attached programs were loaded with these settings. Programs
   * keep the proxy mark and HBONE port they were loaded with; an agent or ztunnel
   * that adopts them with other values would have its own connections redirected
   * back to itself, or leave captured ones uncaught, with nothing said. Throws
   * SETTINGS_MISMATCH naming each value that differs.
   */
  verifySettings(): void {
    checkPinnedSettings(this.settings)
    this.settingsVerified = true
  }

  /** Detaches everything and removes every pin of this ABI version. */
  static unload(pinRoot: string): boolean {
    const dir = versionDir(pinRoot)
    if (!existsSync(dir)) return false
    const links = join(dir, 'links')
    if (existsSync(links)) for (const name of readdirSync(links)) rmSync(join(links, name))
    rmSync(dir, { recursive: true, force: true })
    try {
      rmdirSync(pinRoot) // only when no other version is pinned there
    } catch {
      // not empty, or already gone
    }
    return true
  }

  /**
   * Enrolls a pod: its outgoing connects go to ztunnel's outbound listener, its
   * incoming connections to ztunnel's inbound listener. Idempotent.
   */
  async enrollPod(pod: PodEnrollment): Promise<EnrolledPod> {
    const [result] = await this.enrollPods([pod])
    if (result instanceof Error) throw result
    return result!
  }

  /**
   * Enrolls many pods: their in-pod routing in one trip through their namespaces,
   * then each one's sk_lookup link and map entries. Per pod, in order: what was
   * enrolled, or the error that left that pod out (the others go on).
   */
  async enrollPods(pods: readonly PodEnrollment[]): Promise<(EnrolledPod | Error)[]> {
    if (pods.length === 0) return []
    // A pod the maps cannot hold (its IP, its port) is refused before anything is done for it.
    const values = pods.map((p) => {
      try {
        return abi.encodePod({ ip: p.ip, outboundPort: p.outboundPort, flags: abi.POD_FLAG_OUTBOUND })
      } catch (err) {
        return err as Error
      }
    })
    const cookies = await Promise.all(
      pods.map((p, i) =>
        values[i] instanceof Error ? values[i] : p.netnsCookie !== undefined ? p.netnsCookie : cookieOf(p.netnsPath).catch((err: Error) => err),
      ),
    )
    const routed: (Error | null)[] = new Array<Error | null>(pods.length).fill(null)
    const toRoute = pods.flatMap((_, i) => (cookies[i] instanceof Error ? [] : [i]))
    for (let at = 0; at < toRoute.length; at += POD_BATCH) {
      const batch = toRoute.slice(at, at + POD_BATCH)
      const errors = await configurePodsRouting(
        batch.map((i) => pods[i]!.netnsPath),
        this.settings.deliveryMark,
      )
      for (const [k, i] of batch.entries()) routed[i] = errors[k]!
    }
    return pods.map((pod, i) => {
      const cookie = cookies[i]!
      if (cookie instanceof Error) return cookie
      if (routed[i] !== null) return routed[i]!
      try {
        return this.capturePod(pod, cookie, values[i] as Buffer)
      } catch (err) {
        return err as Error
      }
    })
  }

  /** A routed pod's sk_lookup link (one loaded program for all) and its map entries. */
  private capturePod(pod: PodEnrollment, cookie: bigint, podValue: Buffer): EnrolledPod {
    const pin = this.netnsLinkPin(cookie)
    if (!existsSync(pin)) {
      // One loaded sk_lookup program serves every pod's netns: loading (and
      // verifying) it per pod would dominate enrolling many pods.
      if (this.skLookup === null) {
        // The first sk_lookup load of this process: its settings must match the pods' links already there
        // (load() checked them already; an adopter from open(), such as `ambient datapath enroll`, has not).
        if (!this.settingsVerified) this.verifySettings()
        this.skLookup = openObject(this.settings, 'sk_lookup')
      }
      const link = this.skLookup.attachNetns('ambient_sk_lookup', pod.netnsPath)
      link.pin(pin)
      link.close()
    }
    this.maps.inbound.update(abi.encodeIp4Key(pod.ip), abi.encodeInbound())
    this.maps.pods.update(abi.encodePodKey(cookie), podValue)
    return { netnsCookie: cookie, ip: pod.ip, outboundPort: pod.outboundPort, inbound: true, linkPinned: true }
  }

  /** Un-enrolls a pod by netns cookie and IP. Absent entries are success. */
  async unenrollPod(pod: { readonly netnsCookie: bigint; readonly ip: string; readonly netnsPath?: string }): Promise<void> {
    this.maps.pods.delete(abi.encodePodKey(pod.netnsCookie))
    this.maps.inbound.delete(abi.encodeIp4Key(pod.ip))
    rmSync(this.netnsLinkPin(pod.netnsCookie), { force: true })
    if (pod.netnsPath && existsSync(pod.netnsPath)) await removePodRouting(pod.netnsPath, this.settings.deliveryMark)
  }

  enrolledPods(): EnrolledPod[] {
    const pods: EnrolledPod[] = []
    // Read whole (a map walk each, one listing of the pins), not looked up per pod.
    const inbound = new Set([...this.maps.inbound.keys()].map((k) => k.toString('hex')))
    const links = join(this.dir, 'links')
    const pinned = new Set(existsSync(links) ? readdirSync(links) : [])
    for (const [key, value] of this.maps.pods.entries()) {
      const cookie = key.readBigUInt64LE(0)
      const pod = abi.decodePod(value)
      pods.push({
        netnsCookie: cookie,
        ip: pod.ip,
        outboundPort: pod.outboundPort,
        inbound: inbound.has(abi.encodeIp4Key(pod.ip).toString('hex')),
        linkPinned: pinned.has(basename(this.netnsLinkPin(cookie))),
      })
    }
    return pods
  }

  /** Unpins the sk_lookup links of pods no longer enrolled (their netns gone); returns the pins removed. */
  removeStaleNetnsLinks(): string[] {
    const stale = this.staleNetnsLinks()
    for (const pin of stale) rmSync(pin, { force: true })
    return stale
  }

  /** Pins of sk_lookup links whose pod is no longer enrolled (netns gone). */
  staleNetnsLinks(): string[] {
    const enrolled = new Set(this.enrolledPods().map((p) => p.netnsCookie))
    const links = join(this.dir, 'links')
    return readdirSync(links)
      .filter((n) => n.startsWith('netns') && !enrolled.has(BigInt(n.slice(5))))
      .map((n) => join(links, n))
  }

  /**
   * Registers ztunnel's inbound listener (a listening socket fd) for a pod, replacing
   * any other; returns the socket's cookie, which identifies this registration to
   * unregisterListener.
   */
  registerListener(podIp: string, fd: number): bigint {
    const value = Buffer.alloc(abi.SIZES.listenerValue)
    value.writeBigUInt64LE(BigInt(fd))
    this.maps.listeners.update(abi.encodeIp4Key(podIp), value)
    return socketCookie(fd)
  }

  /**
   * Removes a pod's listener entry only while it still holds the socket with this
   * cookie: a listener registered since by someone else (a new proxy for the same
   * pod, a successor ztunnel that took the pod over) is theirs to remove. Returns
   * whether it removed the entry. (Closing a listening socket also drops its entry,
   * in the kernel and only its own; this removes it before the close, for a socket
   * that stays open while its connections drain.)
   */
  unregisterListener(podIp: string, cookie: bigint): boolean {
    if (this.listenerCookie(podIp) !== cookie) return false
    return this.maps.listeners.delete(abi.encodeIp4Key(podIp))
  }

  /** The IPs of the pods with a registered inbound listener (one walk of the map). */
  listenerIps(): Set<string> {
    return new Set([...this.maps.listeners.keys()].map((k) => abi.readIp4(k, 0)))
  }

  hasListener(podIp: string): boolean {
    return this.listenerCookie(podIp) !== null
  }

  /** The cookie of the socket registered as the pod's inbound listener (a SOCKHASH lookup returns it), or null. */
  listenerCookie(podIp: string): bigint | null {
    const value = this.maps.listeners.lookup(abi.encodeIp4Key(podIp))
    return value === null ? null : value.readBigUInt64LE(0)
  }

  /** The original destination of a redirected connection, by the 4-tuple ztunnel accepted. */
  originalDestination(tuple: abi.Tuple): abi.OrigDst | null {
    const value = this.maps.origByTuple.lookup(abi.encodeTupleKey(tuple))
    return value ? abi.decodeOrigDst(value) : null
  }

  counters(): Record<abi.CounterName, bigint> {
    const out = {} as Record<abi.CounterName, bigint>
    abi.COUNTERS.forEach((name, index) => {
      const value = this.maps.counters.lookup(abi.encodeU32(index))
      out[name] = value ? abi.sumPerCpu(value) : 0n
    })
    return out
  }

  /** The kernel's run count and run time of each program behind this datapath's pinned links. */
  programStats(): ProgramStats[] {
    this.programStatsReader ??= new ProgramStatsReader(join(this.dir, 'links'))
    return this.programStatsReader.read()
  }

  occupancy(): MapOccupancy[] {
    const result: MapOccupancy[] = []
    for (const key of ['pods', 'inbound', 'origByCookie', 'origByTuple', 'listeners'] as const) {
      const map = this.maps[key]
      result.push({ name: abi.MAP_NAMES[key], entries: map.count(), capacity: map.info.maxEntries })
    }
    return result
  }

  close(): void {
    this.skLookup?.close()
    this.skLookup = null
    for (const map of Object.values(this.maps)) map.close()
  }

  private netnsLinkPin(cookie: bigint): string {
    return join(this.dir, 'links', `netns${cookie}`)
  }
}

function openObject(settings: DatapathSettings, name: string): BpfObject {
  const path = join(settings.objectsDir, `${name}.bpf.o`)
  if (!existsSync(path)) {
    throw new DatapathError('AMBIENT_ERR_DATAPATH_LOAD', `missing BPF object ${path}: run \`npm run build\``)
  }
  const obj = BpfObject.open(path, { pinRoot: versionDir(settings.pinRoot) })
  try {
    for (const [global, value] of Object.entries(abi.encodeGlobals(settings))) obj.setGlobal(global, value)
    obj.load()
    return obj
  } catch (err) {
    obj.close()
    const native = err as NativeError
    throw new DatapathError('AMBIENT_ERR_DATAPATH_LOAD', `loading ${path} failed: ${native.message}`, { cause: err })
  }
}

const SETTING_NAMES: Record<string, string> = { proxy_mark: 'the proxy mark', hbone_port: 'the HBONE port' }

function showSetting(name: string, value: Buffer): string {
  const n = value.length === 2 ? value.readUInt16LE(0) : value.length === 4 ? value.readUInt32LE(0) : null
  if (n === null) return `0x${value.toString('hex')}`
  return name.endsWith('_mark') ? `0x${n.toString(16)}` : String(n)
}

/** Compares the globals of every pinned link's program with what `settings` would load. */
function checkPinnedSettings(settings: DatapathSettings): void {
  const links = join(versionDir(settings.pinRoot), 'links')
  if (!existsSync(links)) return
  const expected = Object.entries(abi.encodeGlobals(settings))
  const differences: string[] = []
  for (const pin of readdirSync(links)) {
    let loaded: Map<string, Buffer>
    try {
      loaded = BpfLink.pinnedGlobals(join(links, pin))
    } catch (err) {
      if ((err as NativeError).code === 'ENOENT') continue // unpinned meanwhile (a pod left)
      throw new DatapathError('AMBIENT_ERR_DATAPATH_LOAD', `cannot read the settings of the program of link ${join(links, pin)}: ${(err as Error).message}`, {
        cause: err,
      })
    }
    for (const [name, want] of expected) {
      const have = loaded.get(name) // absent: the program does not carry that setting
      if (have && !have.equals(want))
        differences.push(`${SETTING_NAMES[name] ?? name} is ${showSetting(name, have)} in the program of link ${pin}, not ${showSetting(name, want)}`)
    }
  }
  if (differences.length > 0) {
    const shown = differences.slice(0, 6).join('; ') + (differences.length > 6 ? `; and ${differences.length - 6} more` : '')
    throw new DatapathError(
      'AMBIENT_ERR_DATAPATH_SETTINGS_MISMATCH',
      `the datapath pinned at ${versionDir(settings.pinRoot)} was loaded with other settings: ${shown}: start with the settings it was loaded with, or run \`ambient datapath unload\` and load it again`,
    )
  }
}

async function cookieOf(netnsPath: string): Promise<bigint> {
  if (!existsSync(netnsPath)) {
    throw new DatapathError('AMBIENT_ERR_DATAPATH_BAD_INPUT', `no network namespace at ${netnsPath}: is the pod still running?`)
  }
  try {
    return await netnsCookie(netnsPath)
  } catch (err) {
    throw new DatapathError('AMBIENT_ERR_DATAPATH_ENROLL', `cannot read the netns cookie of ${netnsPath}: ${(err as Error).message}`, { cause: err })
  }
}

export { cookieOf as netnsCookieOf }
