// The raw Node-API surface of native/src (ambient_native.node). Thin and generic:
// validation, caching and typed helpers live in native/index.ts, never here.
// Every function throws a NativeErrorShape on failure (Promises reject with one).
// libbpf's own warnings (e.g. the verifier log) are appended to the message of the
// failing call, never printed. libbpf's non-errno failures (a file that is not a
// BPF ELF object) have code 'ENOEXEC'.

export interface NativeErrorShape extends Error {
  code: string // errno name, e.g. 'EPERM', 'ENOENT', 'EOPNOTSUPP'
  errno: number // positive errno
  syscall: string // what failed, e.g. 'bpf_object__load', 'bpf_map_update_elem', 'setns'
}

export interface RawMapInfo {
  name: string
  fd: number
  type: number // enum bpf_map_type
  keySize: number
  valueSize: number
  maxEntries: number
}

export interface RawProgramInfo {
  name: string
  section: string
  fd: number // -1 before load
}

export interface RawLinkInfo {
  id: number
  type: number // enum bpf_link_type
  programId: number
}

export interface RawLoadedProgramInfo {
  id: number
  name: string // the kernel's copy: at most 15 characters
  type: number // enum bpf_prog_type
  runCount: bigint // run_cnt: counted only while run-time stats are enabled
  runTimeNs: bigint // run_time_ns: likewise
  recursionMisses: bigint
}

export interface RawGlobalValue {
  name: string
  value: Buffer
}

export interface RawSocketOptions {
  family: 4 | 6
  mark?: number // SO_MARK
  transparent?: boolean // IP_TRANSPARENT / IPV6_TRANSPARENT
  bindToDevice?: string // SO_BINDTODEVICE
  reuseAddr?: boolean
  reusePort?: boolean
  bindAddress?: string // numeric IP; bind() only when set
  bindPort?: number // 0 = kernel picks (only with bindAddress)
  listenBacklog?: number // listen() when set
}

/** One event of the HBONE engine (src/hbone/events.h); fields by type, see native/hbone.ts. */
export interface RawHboneEvent {
  type: number
  id: number
  owner: number
  status: number
  err: number
  code: number
  count: number
  received: number
  sent: number
  message: string
  fields: string[]
}

export interface RawHboneEngineOptions {
  threads: number
  streamWindow: number
  connectionWindow: number
  maxFrameSize: number
  maxConcurrentStreams: number
  handshakeTimeoutMs: number
}

/** The native HBONE engine (src/hbone.cc). Every fd passed in belongs to the engine from the
 *  call on, also when the call throws. Ids are positive integers; 0 is never an id. */
export interface RawHboneEngine {
  createContext(role: 'client' | 'server', keyPem: string, chainPem: string, trustBundlePem: string): number
  releaseContext(context: number): boolean
  listen(fd: number, context: number, trustDomain: string): number
  setServerContext(server: number, context: number): void
  /** drain: sessions get GOAWAY and finish their open streams; otherwise they are closed at once. */
  closeServer(server: number, drain?: boolean): void
  openSession(fd: number, ip: string, port: number, context: number, expectedIdentity: string): number
  closeSession(session: number, graceful: boolean): void
  /** headers: [name, value, name, value, ...] */
  openStream(session: number, fd: number, authority: string, headers: string[]): number
  deliver(tunnel: number, fd: number, ip: string, port: number): void
  reject(tunnel: number, status: number): void
  reset(tunnel: number): void
  counters(tunnel: number): { received: number; sent: number } | null
  stats(): { sessions: number; tunnels: number; sessionsTotal: number; tunnelsTotal: number; bytesReceived: number; bytesSent: number }
  /** Stops the threads, closing everything at once; later calls throw EBADF. */
  close(): void
}

export interface NativeBinding {
  HboneEngine: new (options: RawHboneEngineOptions, onEvents: (events: RawHboneEvent[]) => void) => RawHboneEngine

  /** bpf_object__open_file with pin_root_path (maps with LIBBPF_PIN_BY_NAME reuse pins there). */
  objectOpen(path: string, pinRoot: string | null): number
  /** Overwrite a `const volatile` global (in .rodata) by its BTF name, before load.
   *  EINVAL when value.length differs from the variable's size or the object was
   *  already loaded; ENOENT when there is no such global. */
  objectSetGlobal(handle: number, name: string, value: Buffer): void
  /** Once per handle (a second call throws EINVAL, as libbpf allows one load). */
  objectLoad(handle: number): void
  objectClose(handle: number): void
  objectPrograms(handle: number): RawProgramInfo[]
  objectMaps(handle: number): RawMapInfo[]

  /** bpf_program__attach_cgroup; returns a link id owned by the addon. The attach
   *  functions need a loaded object (EINVAL otherwise). */
  attachCgroup(handle: number, program: string, cgroupPath: string): number
  /** bpf_program__attach_netns (sk_lookup) on the netns at netnsPath. */
  attachNetns(handle: number, program: string, netnsPath: string): number
  /** bpf_prog_attach(progFd, mapFd, type) for sk_msg / sk_skb programs on a sockmap. */
  attachToMap(handle: number, program: string, mapFd: number, attachType: 'sk_msg_verdict' | 'sk_skb_stream_verdict'): void
  linkPin(linkId: number, path: string): void
  /** Closes the addon's reference; the attachment stays while a pin holds it. */
  linkClose(linkId: number): void
  /** The `const volatile` globals the program behind a pinned link was loaded with, read from its
   *  .rodata map as that map's BTF lays it out; empty when it has none. EINVAL for a pin that is not a link. */
  pinnedLinkGlobals(path: string): RawGlobalValue[]

  /** bpf_obj_get: fd of a pinned map/program/link. */
  pinnedOpen(path: string): number
  /** Info of a map fd (bpf_obj_get_info_by_fd); EINVAL for a program or link fd. */
  mapInfo(fd: number): RawMapInfo
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags: number): void
  /** Returns null when the key is absent (ENOENT). valueSize must be the map's value size
   *  (times possible CPUs, rounded to 8, for per-CPU maps). */
  mapLookup(fd: number, key: Buffer, valueSize: number): Buffer | null
  /** Returns false when the key was absent. */
  mapDelete(fd: number, key: Buffer): boolean
  /** Next key after `key` (first key when null); null at the end. */
  mapNextKey(fd: number, key: Buffer | null, keySize: number): Buffer | null
  /** Up to maxKeys keys, concatenated. */
  mapKeys(fd: number, keySize: number, maxKeys: number): Buffer
  /** Up to maxKeys keys and their values (valueSize bytes each, per-CPU maps included), concatenated; keys deleted meanwhile are left out. */
  mapEntries(fd: number, keySize: number, maxKeys: number, valueSize: number): { keys: Buffer; values: Buffer }
  closeFd(fd: number): void
  /** Info of a link fd (e.g. pinnedOpen of a pinned link); EINVAL for a map or program fd. */
  linkInfo(fd: number): RawLinkInfo
  /** A new fd of the loaded program with this id; ENOENT when it is gone. */
  programFdById(id: number): number
  /** Info and run-time statistics of a program fd; EINVAL for a map or link fd. */
  programInfo(fd: number): RawLoadedProgramInfo
  /** BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): run-time statistics of every program are
   *  counted while the returned fd is open; EINVAL before Linux 5.8. */
  enableStats(): number
  numPossibleCpus(): number

  /** Network-namespace cookie (SO_NETNS_COOKIE) of the netns at netnsPath. */
  netnsCookie(netnsPath: string): Promise<bigint>
  /** A TCP socket created inside the netns at netnsPath on a short-lived thread
   *  (the main thread never changes namespace), configured, optionally bound and
   *  listening. Non-blocking, close-on-exec. Resolves to the fd for Node to adopt. */
  socketInNetns(netnsPath: string, options: RawSocketOptions): Promise<number>
  socketsInNetns(netnsPath: string, family: 4 | 6, count: number): Promise<number[]>
  configureSocket(fd: number, netnsPath: string, options: RawSocketOptions): void
  /** fcntl(F_DUPFD_CLOEXEC). */
  dupFd(fd: number): number
  /** Per request, in one thread trip through the namespaces: its sockets and netns cookie, or the Error that failed it. */
  podSockets(
    requests: readonly { readonly netnsPath: string; readonly sockets: readonly RawSocketOptions[] }[],
  ): Promise<({ cookie: bigint; fds: number[] } | Error)[]>
  /** Adds or removes the in-pod reply route in each namespace; null or the Error per namespace. */
  podRouting(netnsPaths: readonly string[], settings: { mark: number; table: number; priority: number }, add: boolean): Promise<(Error | null)[]>
  /** A blocking, close-on-exec Unix stream socket connected to `path` (fdpass.cc). */
  unixConnect(path: string): number
  /** One frame (4-byte LE length, data) with `fds` attached (SCM_RIGHTS); EAGAIN when the socket cannot take it now. */
  sendFrame(fd: number, data: Buffer, fds: readonly number[]): void
  /** The next frame and the descriptors that came with it, null at end of stream; ETIMEDOUT after timeoutMs. */
  recvFrame(fd: number, timeoutMs: number): Promise<{ data: Buffer; fds: number[] } | null>
  /** getsockopt(SO_COOKIE): the socket's cookie, as a SOCKHASH lookup returns it. */
  socketCookie(fd: number): bigint
}
