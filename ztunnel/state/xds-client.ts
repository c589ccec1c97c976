// ztunnel's side of the node-local stream from the agent (agent/xds/server.ts):
// a delta ADS client that subscribes wildcard to workloads and services, policies
// and local workloads, keeps the full state across reconnects (telling the server
// what it has in initial_resource_versions) and hands the whole state to `onUpdate`
// after each response. A response is applied as one batch: everything is decoded
// first and a resource that fails is rejected alone (NACKed by name). While
// disconnected the last state stays in force, as Istio's ztunnel keeps serving.
import * as grpc from '@grpc/grpc-js'
import { AmbientError } from '../../common/errors.js'
import type { Authorization } from '../../common/model/authorization.js'
import type { MeshService, Workload } from '../../common/model/workload.js'
import type { Logger } from '../../common/log.js'
import {
  DELTA_ADS_PATH,
  RPC_INVALID_ARGUMENT,
  decodeResponse,
  encodeRequest,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type XdsNode,
} from '../../common/xds/ads.js'
import {
  ADDRESS_TYPE_URL,
  AUTHORIZATION_TYPE_URL,
  LOCAL_WORKLOAD_TYPE_URL,
  TYPE_URLS,
  XdsResourceError,
  type DecodedAddress,
  type LocalWorkload,
  type TypeUrl,
  authorizationResourceName,
  decodeAddress,
  decodeAuthorization,
  decodeLocalWorkload,
  serviceResourceName,
} from '../../common/xds/codec.js'

export interface XdsState {
  /** With netnsPath from the LocalWorkload of the same uid, when there is one. */
  readonly workloads: readonly Workload[]
  readonly services: readonly MeshService[]
  readonly authorizations: readonly Authorization[]
}

export interface XdsClientStatus {
  readonly connected: boolean
  readonly address: string
  readonly lastUpdateAt: Date | null
  readonly updates: number
  readonly nacks: number
  readonly reconnects: number
  readonly lastError: string | null
}

export class XdsClientError extends AmbientError<'AMBIENT_ERR_XDS_CLIENT_STOPPED' | 'AMBIENT_ERR_XDS_CLIENT_STATE'> {}

export interface XdsClientOptions {
  /** `unix:/path`, a socket path, or any grpc-js target. */
  readonly address: string
  readonly node: { readonly id: string; readonly cluster?: string }
  readonly log: Logger
  readonly onUpdate: (state: XdsState) => void
  readonly backoffMs?: { readonly initial: number; readonly max: number }
}

interface Entry<V> {
  readonly version: string
  readonly value: V
}

/** One resource type: how to decode it, the name its content implies, what we have. */
interface Table<V> {
  readonly decode: (bytes: Uint8Array) => V
  readonly nameOf: (value: V) => string
  readonly entries: Map<string, Entry<V>>
}

const table = <V>(decode: (bytes: Uint8Array) => V, nameOf: (value: V) => string): Table<V> => ({ decode, nameOf, entries: new Map() })

type Call = grpc.ClientDuplexStream<Partial<DeltaDiscoveryRequest> & { typeUrl: string }, DeltaDiscoveryResponse>

export class XdsClient {
  private readonly address: string
  private readonly node: XdsNode
  private readonly log: Logger
  private readonly onUpdate: (state: XdsState) => void
  private readonly backoff: { readonly initial: number; readonly max: number }
  private readonly tables = {
    [ADDRESS_TYPE_URL]: table(decodeAddress, (a: DecodedAddress) => (a.kind === 'workload' ? a.workload.uid : serviceResourceName(a.service))),
    [AUTHORIZATION_TYPE_URL]: table(decodeAuthorization, authorizationResourceName),
    [LOCAL_WORKLOAD_TYPE_URL]: table(decodeLocalWorkload, (l: LocalWorkload) => l.uid),
  }
  private client: grpc.Client | null = null
  private call: Call | null = null
  private timer: NodeJS.Timeout | null = null
  private started = false
  private attempt = 0
  private readonly firstResponses = new Set<TypeUrl>()
  private readyWaiters: { resolve: () => void; reject: (err: Error) => void }[] = []
  private counters = { connected: false, lastUpdateAt: null as Date | null, updates: 0, nacks: 0, reconnects: 0, lastError: null as string | null }

  constructor(options: XdsClientOptions) {
    this.address = options.address.startsWith('/') ? `unix:${options.address}` : options.address
    this.node = { id: options.node.id, cluster: options.node.cluster ?? '' }
    this.log = options.log.child({ component: 'xds-client', address: this.address })
    this.onUpdate = options.onUpdate
    this.backoff = options.backoffMs ?? { initial: 200, max: 15_000 }
  }

  start(): void {
    if (this.started) throw new XdsClientError('AMBIENT_ERR_XDS_CLIENT_STATE', 'xds client already started')
    this.started = true
    this.connect()
  }

  stop(): void {
    if (!this.started) return
    this.started = false
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.disconnect()
    const waiters = this.readyWaiters
    this.readyWaiters = []
    for (const w of waiters)
      w.reject(new XdsClientError('AMBIENT_ERR_XDS_CLIENT_STOPPED', `xds client for ${this.address} stopped before its first complete state`))
  }

  /** Resolves once a response for every type has arrived (the first complete state). */
  ready(): Promise<void> {
    if (this.firstResponses.size === TYPE_URLS.length) return Promise.resolve()
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }))
  }

  status(): XdsClientStatus {
    return { ...this.counters, address: this.address }
  }

  /** Merged local workloads, reused while neither part changes: unchanged workloads keep their identity across updates. */
  private readonly merged = new WeakMap<Workload, { readonly netnsPath: string; readonly workload: Workload }>()

  private withNetns(workload: Workload, netnsPath: string): Workload {
    const hit = this.merged.get(workload)
    if (hit !== undefined && hit.netnsPath === netnsPath) return hit.workload
    const merged = { ...workload, netnsPath }
    this.merged.set(workload, { netnsPath, workload: merged })
    return merged
  }

  /** The state as last applied (what `onUpdate` got last); an unchanged resource is the same object as before. */
  state(): XdsState {
    const locals = this.tables[LOCAL_WORKLOAD_TYPE_URL].entries
    const workloads: Workload[] = []
    const services: MeshService[] = []
    for (const [, { value }] of sorted(this.tables[ADDRESS_TYPE_URL].entries)) {
      if (value.kind === 'service') services.push(value.service)
      else {
        const local = locals.get(value.workload.uid)?.value
        workloads.push(local ? this.withNetns(value.workload, local.netnsPath) : value.workload)
      }
    }
    const authorizations = [...sorted(this.tables[AUTHORIZATION_TYPE_URL].entries)].map(([, e]) => e.value)
    return { workloads, services, authorizations }
  }

  private connect(): void {
    const client = new grpc.Client(this.address, grpc.credentials.createInsecure())
    const call: Call = client.makeBidiStreamRequest(DELTA_ADS_PATH, encodeRequest, decodeResponse)
    this.client = client
    this.call = call
    call.on('metadata', () => {
      if (this.call !== call) return
      this.counters.connected = true
      this.log.info({ attempt: this.attempt }, 'xds stream open')
    })
    call.on('data', (res: DeltaDiscoveryResponse) => {
      if (this.call === call) this.onResponse(call, res)
    })
    call.on('error', () => {}) // reported through 'status'
    call.on('status', (s: grpc.StatusObject) => {
      if (this.call === call) this.onClosed(s)
    })
    for (const typeUrl of TYPE_URLS) {
      const initialResourceVersions: Record<string, string> = {}
      for (const [name, e] of this.tables[typeUrl].entries) initialResourceVersions[name] = e.version
      call.write({ node: this.node, typeUrl, initialResourceVersions })
    }
  }

  private disconnect(): void {
    const { call, client } = this
    this.call = null
    this.client = null
    this.counters.connected = false
    call?.cancel()
    client?.close()
  }

  private onClosed(s: grpc.StatusObject): void {
    const error = s.code === grpc.status.OK ? 'server ended the stream' : `${grpc.status[s.code] ?? s.code}: ${s.details}`
    this.counters.lastError = error
    this.disconnect()
    if (!this.started) return
    const base = Math.min(this.backoff.max, this.backoff.initial * 2 ** this.attempt)
    const delay = Math.round(base / 2 + (Math.random() * base) / 2)
    this.attempt++
    this.log.warn({ error, attempt: this.attempt, delayMs: delay }, 'xds stream closed; keeping the last state and reconnecting')
    this.timer = setTimeout(() => {
      this.timer = null
      this.counters.reconnects++
      this.connect()
    }, delay)
  }

  private onResponse(call: Call, res: DeltaDiscoveryResponse): void {
    const type = TYPE_URLS.find((t) => t === res.typeUrl)
    if (!type) {
      this.log.warn({ type: res.typeUrl }, 'xds response of an unknown type rejected')
      call.write({
        node: this.node,
        typeUrl: res.typeUrl,
        responseNonce: res.nonce,
        errorDetail: { code: RPC_INVALID_ARGUMENT, message: `unknown type ${res.typeUrl}` },
      })
      return
    }
    const errors = this.apply(this.tables[type] as Table<unknown>, type, res)
    this.attempt = 0
    this.counters.updates++
    this.counters.lastUpdateAt = new Date()
    this.firstResponses.add(type)
    if (errors.length > 0) {
      this.counters.nacks++
      this.counters.lastError = errors.join('; ')
      this.log.warn({ type, nonce: res.nonce, rejected: errors }, 'xds resources rejected')
      call.write({ node: this.node, typeUrl: type, responseNonce: res.nonce, errorDetail: { code: RPC_INVALID_ARGUMENT, message: errors.join('; ') } })
    } else {
      call.write({ node: this.node, typeUrl: type, responseNonce: res.nonce })
    }
    this.log.debug({ type, nonce: res.nonce, upserts: res.resources.length, removals: res.removedResources.length }, 'xds response applied')
    this.publish()
    if (this.firstResponses.size === TYPE_URLS.length && this.readyWaiters.length > 0) {
      const waiters = this.readyWaiters
      this.readyWaiters = []
      for (const w of waiters) w.resolve()
    }
  }

  /**
   * Decodes every resource first, then applies the good ones and the removals at once;
   * a rejected resource keeps its previous value, if any. Returns the rejections.
   */
  private apply<V>(t: Table<V>, type: TypeUrl, res: DeltaDiscoveryResponse): string[] {
    const errors: string[] = []
    const good: [string, Entry<V>][] = []
    for (const r of res.resources) {
      try {
        if (!r.resource) throw new XdsResourceError(r.name, 'resource', 'is not set')
        if (r.resource.typeUrl !== type) throw new XdsResourceError(r.name, 'resource.type_url', `${r.resource.typeUrl} in a ${type} response`)
        const value = t.decode(r.resource.value)
        const implied = t.nameOf(value)
        if (implied !== r.name) throw new XdsResourceError(r.name, 'name', `its content names it ${JSON.stringify(implied)}`)
        good.push([r.name, { version: r.version, value }])
      } catch (err) {
        // Each rejection starts with the resource's xDS name (a decoder names what it read, and the field).
        const named = err instanceof XdsResourceError && err.resource === r.name
        errors.push(named ? err.message : `${r.name}: ${(err as Error).message}`)
      }
    }
    for (const name of res.removedResources) t.entries.delete(name)
    for (const [name, entry] of good) t.entries.set(name, entry)
    return errors
  }

  private publish(): void {
    try {
      this.onUpdate(this.state())
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'xds onUpdate failed')
    }
  }
}

function sorted<V>(m: ReadonlyMap<string, V>): [string, V][] {
  return [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
}
