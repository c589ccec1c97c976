// The agent's side of the node-local stream to ztunnel: Envoy's delta ADS on a Unix
// socket, the way istiod feeds Istio's ztunnel. `update()` replaces the served state;
// every stream gets per type only what changed since what it has (a version is a
// hash of the resource's bytes) and removals for what went away. Streams opened
// before the first update are held, so ztunnel never takes an empty state for a
// synced one. At most one response per type waits for its ACK; changes meanwhile
// are folded into the next response.
import { createHash } from 'node:crypto'
import { chmod, lstat, unlink } from 'node:fs/promises'
import { connect } from 'node:net'
import * as grpc from '@grpc/grpc-js'
import { AmbientError } from '../../common/errors.js'
import type { Authorization } from '../../common/model/authorization.js'
import type { MeshService, Workload } from '../../common/model/workload.js'
import type { Logger } from '../../common/log.js'
import {
  DELTA_ADS_SERVICE,
  decodeRequest,
  type DeltaAdsImplementation,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type XdsResource,
} from '../../common/xds/ads.js'
import {
  ADDRESS_TYPE_URL,
  AUTHORIZATION_TYPE_URL,
  LOCAL_WORKLOAD_TYPE_URL,
  TYPE_URLS,
  type TypeUrl,
  authorizationResourceName,
  encodeAuthorization,
  encodeLocalWorkload,
  encodeServiceAddress,
  encodeWorkloadAddress,
  serviceResourceName,
  workloadResourceName,
} from '../../common/xds/codec.js'

export class XdsServerError extends AmbientError<'AMBIENT_ERR_XDS_SOCKET' | 'AMBIENT_ERR_XDS_SERVER_STATE'> {}

export interface XdsResources {
  readonly workloads: readonly Workload[]
  readonly services: readonly MeshService[]
  readonly authorizations: readonly Authorization[]
}

export interface XdsClientTypeStatus {
  readonly lastAckedNonce: string
  readonly acks: number
  /** Resources the client has of this type, as far as the server knows. */
  readonly resources: number
  /** A response sent and not yet ACKed or NACKed. */
  readonly pendingNonce: string | null
}

export interface XdsClientInfo {
  readonly nodeId: string
  readonly connectedSince: Date
  readonly types: Readonly<Partial<Record<TypeUrl, XdsClientTypeStatus>>>
  readonly nacks: number
  readonly lastError: string | null
}

export interface XdsServerStats {
  readonly connectionsTotal: number
  readonly connections: number
  readonly pushes: number
  readonly nacks: number
  readonly encodeErrors: number
  /** Requests that did not decode (AMBIENT_ERR_XDS_MESSAGE): each ended its stream. */
  readonly badRequests: number
}

interface Served {
  readonly version: string
  readonly bytes: Buffer
}

type Snapshot = ReadonlyMap<TypeUrl, ReadonlyMap<string, Served>>

interface TypeState {
  /** name -> version the client has: from initial_resource_versions, then from what was sent. */
  known: Map<string, string>
  pendingNonce: string | null
  /** Something changed while a response was pending (or before the first update). */
  dirty: boolean
  /** Whether this subscription got its first response yet (sent even when empty). */
  answered: boolean
  lastAckedNonce: string
  acks: number
}

interface Stream {
  readonly call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>
  log: Logger
  readonly connectedSince: Date
  readonly types: Map<TypeUrl, TypeState>
  nodeId: string
  nacks: number
  lastError: string | null
}

/** Pushes in this order: policies before the workloads naming them, a workload before its local part. */
const PUSH_ORDER: readonly TypeUrl[] = [AUTHORIZATION_TYPE_URL, ADDRESS_TYPE_URL, LOCAL_WORKLOAD_TYPE_URL]

const versionOf = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex').slice(0, 16)

export class XdsServer {
  private readonly socketPath: string
  private readonly log: Logger
  private server: grpc.Server | null = null
  private readonly streams = new Set<Stream>()
  private snapshot: Snapshot | null = null
  private generation = 0
  private nonce = 0
  private counters = { connectionsTotal: 0, pushes: 0, nacks: 0, encodeErrors: 0, badRequests: 0 }

  constructor(options: { readonly socketPath: string; readonly log: Logger }) {
    this.socketPath = options.socketPath
    this.log = options.log.child({ component: 'xds-server' })
  }

  async start(): Promise<void> {
    if (this.server) throw new XdsServerError('AMBIENT_ERR_XDS_SERVER_STATE', 'xds server already started')
    await removeStaleSocket(this.socketPath)
    const server = new grpc.Server()
    const implementation: DeltaAdsImplementation = { DeltaAggregatedResources: (call) => this.onStream(call) }
    // grpc-js ends a stream whose request does not decode (INTERNAL) without telling
    // the handler: the decoder is wrapped so that the agent names and counts it.
    const method = DELTA_ADS_SERVICE.DeltaAggregatedResources
    const requestDeserialize = (bytes: Buffer): DeltaDiscoveryRequest => {
      try {
        return decodeRequest(bytes)
      } catch (err) {
        this.counters.badRequests++
        this.log.warn({ code: (err as { code?: string }).code, err: (err as Error).message }, 'xds request rejected; its stream ends')
        throw err
      }
    }
    server.addService({ DeltaAggregatedResources: { ...method, requestDeserialize } }, implementation)
    try {
      await new Promise<void>((resolve, reject) =>
        server.bindAsync(`unix:${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
      )
      // The socket hands out every workload's netns path: only root (the ztunnel) may connect.
      await chmod(this.socketPath, 0o600)
    } catch (err) {
      server.forceShutdown()
      throw new XdsServerError('AMBIENT_ERR_XDS_SOCKET', `cannot listen on ${this.socketPath}: ${(err as Error).message}; is another agent running?`, {
        cause: err,
      })
    }
    this.server = server
    this.log.info({ socket: this.socketPath }, 'xds server listening')
  }

  async stop(): Promise<void> {
    const server = this.server
    if (!server) return
    this.server = null
    for (const s of this.streams) s.call.end()
    this.streams.clear()
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => server.forceShutdown(), 1000)
      server.tryShutdown(() => {
        clearTimeout(timer)
        resolve()
      })
    })
    await unlink(this.socketPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') this.log.warn({ socket: this.socketPath, err: err.message }, 'cannot remove xds socket')
    })
    this.log.info({ socket: this.socketPath }, 'xds server stopped')
  }

  /** Replaces the served state and pushes the difference to every subscribed stream. */
  update(resources: XdsResources): void {
    this.snapshot = this.encode(resources)
    this.generation++
    for (const s of this.streams) for (const type of PUSH_ORDER) if (s.types.has(type)) this.push(s, type)
  }

  clients(): XdsClientInfo[] {
    return [...this.streams].map((s) => {
      const types: Partial<Record<TypeUrl, XdsClientTypeStatus>> = {}
      for (const [type, t] of s.types) types[type] = { lastAckedNonce: t.lastAckedNonce, acks: t.acks, resources: t.known.size, pendingNonce: t.pendingNonce }
      return { nodeId: s.nodeId, connectedSince: s.connectedSince, types, nacks: s.nacks, lastError: s.lastError }
    })
  }

  stats(): XdsServerStats {
    return { ...this.counters, connections: this.streams.size }
  }

  private encode(resources: XdsResources): Snapshot {
    const out = new Map<TypeUrl, Map<string, Served>>(TYPE_URLS.map((t) => [t, new Map()]))
    const add = <T>(type: TypeUrl, items: readonly T[], name: (item: T) => string, encode: (item: T) => Buffer) => {
      for (const item of items) {
        try {
          const bytes = encode(item)
          out.get(type)!.set(name(item), { version: versionOf(bytes), bytes })
        } catch (err) {
          // A resource the model let through but the wire cannot carry: left out alone.
          this.counters.encodeErrors++
          this.log.error({ type, name: name(item), err: (err as Error).message, code: (err as { code?: string }).code }, 'xds resource left out')
        }
      }
    }
    add(ADDRESS_TYPE_URL, resources.workloads, workloadResourceName, encodeWorkloadAddress)
    add(ADDRESS_TYPE_URL, resources.services, serviceResourceName, encodeServiceAddress)
    add(AUTHORIZATION_TYPE_URL, resources.authorizations, authorizationResourceName, encodeAuthorization)
    add(
      LOCAL_WORKLOAD_TYPE_URL,
      resources.workloads.filter((w) => w.netnsPath !== undefined),
      workloadResourceName,
      encodeLocalWorkload,
    )
    return out
  }

  private onStream(call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>): void {
    const stream: Stream = { call, log: this.log, connectedSince: new Date(), types: new Map(), nodeId: '', nacks: 0, lastError: null }
    this.streams.add(stream)
    this.counters.connectionsTotal++
    // Headers now, so the client knows it is connected even while its subscription is held.
    call.sendMetadata(new grpc.Metadata())
    const close = (reason: string) => {
      if (!this.streams.delete(stream)) return
      stream.log.info({ reason }, 'xds client disconnected')
    }
    call.on('data', (req: DeltaDiscoveryRequest) => this.onRequest(stream, req))
    call.on('end', () => {
      close('end')
      call.end()
    })
    call.on('cancelled', () => close('cancelled'))
    call.on('error', (err: Error) => close(err.message))
    call.on('close', () => close('close'))
  }

  private onRequest(s: Stream, req: DeltaDiscoveryRequest): void {
    if (!s.nodeId && req.node?.id) {
      s.nodeId = req.node.id
      s.log = this.log.child({ node: s.nodeId })
      s.log.info('xds client connected')
    }
    const type = TYPE_URLS.find((t) => t === req.typeUrl)
    if (!type) {
      s.log.warn({ type: req.typeUrl }, 'xds request for an unknown type ignored')
      return
    }
    if (req.responseNonce === '') return this.subscribe(s, type, req)
    const t = s.types.get(type)
    if (!t || req.responseNonce !== t.pendingNonce) {
      s.log.debug({ type, nonce: req.responseNonce }, 'stale xds ack ignored')
      return
    }
    t.pendingNonce = null
    if (req.errorDetail) {
      s.nacks++
      this.counters.nacks++
      s.lastError = req.errorDetail.message
      s.log.warn({ type, nonce: req.responseNonce, code: req.errorDetail.code, message: req.errorDetail.message }, 'xds client rejected resources')
    } else {
      t.lastAckedNonce = req.responseNonce
      t.acks++
      s.log.debug({ type, nonce: req.responseNonce }, 'xds ack')
    }
    if (t.dirty) this.push(s, type)
  }

  /** A (re)subscription: always wildcard; what the client has comes in initial_resource_versions. */
  private subscribe(s: Stream, type: TypeUrl, req: DeltaDiscoveryRequest): void {
    const names = req.resourceNamesSubscribe.filter((n) => n !== '*')
    if (names.length > 0) s.log.warn({ type, names }, 'xds subscription to named resources served as wildcard')
    const known = new Map(Object.entries(req.initialResourceVersions))
    s.types.set(type, { known, pendingNonce: null, dirty: false, answered: false, lastAckedNonce: '', acks: 0 })
    s.log.debug({ type, initial: known.size, held: this.snapshot === null }, 'xds subscribe')
    this.push(s, type)
  }

  private push(s: Stream, type: TypeUrl): void {
    const t = s.types.get(type)!
    if (!this.snapshot || t.pendingNonce !== null) {
      t.dirty = true
      return
    }
    t.dirty = false
    const served = this.snapshot.get(type)!
    const resources: XdsResource[] = []
    for (const [name, r] of served)
      if (t.known.get(name) !== r.version) resources.push({ name, version: r.version, resource: { typeUrl: type, value: r.bytes } })
    const removedResources = [...t.known.keys()].filter((name) => !served.has(name))
    if (t.answered && resources.length === 0 && removedResources.length === 0) return
    for (const r of resources) t.known.set(r.name, r.version)
    for (const name of removedResources) t.known.delete(name)
    t.answered = true
    t.pendingNonce = String(++this.nonce)
    this.counters.pushes++
    s.log.debug({ type, nonce: t.pendingNonce, upserts: resources.length, removals: removedResources.length }, 'xds push')
    s.call.write({ systemVersionInfo: String(this.generation), typeUrl: type, nonce: t.pendingNonce, resources, removedResources })
  }
}

/**
 * A socket left by an agent that died is ours to replace; a socket someone still
 * listens on, or anything that is not a socket, is an error.
 */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null
    throw new XdsServerError('AMBIENT_ERR_XDS_SOCKET', `cannot check ${path}: ${err.message}`, { cause: err })
  })
  if (!st) return
  if (!st.isSocket()) throw new XdsServerError('AMBIENT_ERR_XDS_SOCKET', `${path} exists and is not a socket; remove it or choose another socket path`)
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(path)
    probe.once('connect', () => {
      probe.destroy()
      resolve(true)
    })
    probe.once('error', () => resolve(false))
  })
  if (live) throw new XdsServerError('AMBIENT_ERR_XDS_SOCKET', `${path} is in use: another agent is serving it; stop it first`)
  await unlink(path)
}
