// A fake Kubernetes API server for tests: LIST, WATCH, GET and PATCH of the kinds
// the agent watches, POST and PUT (with resourceVersion conflicts) for its Lease, behaving like the real one where @kubernetes/client-node's
// informers look (one global resourceVersion as in etcd, 410 Gone for a compacted
// resourceVersion, bookmarks, field and label selectors), plus knobs to make it
// misbehave (latency, failures, dropped watches, compaction). Optionally it
// authenticates service-account tokens it issued, answers TokenReview (as
// `ambient ca` uses it) and enforces RBAC loaded from Role/ClusterRole objects
// (kube-auth.ts), so a missing rule in daemonset/rbac.yaml fails a test.
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { requestInfo } from '../common/kube/request-info.js'
import { FakeRbac, FakeTokens, forbiddenMessage, type TokenSpec, type UserInfo } from './kube-auth.js'

export type { TokenSpec }

export type FakeKind =
  | 'Namespace'
  | 'Pod'
  | 'Service'
  | 'ServiceAccount'
  | 'EndpointSlice'
  | 'AuthorizationPolicy'
  | 'PeerAuthentication'
  | 'Gateway'
  | 'HTTPRoute'
  | 'Lease'
  | 'Deployment'
  | 'ClusterRoleBinding'
  | 'ConfigMap'

interface ResourceType {
  readonly kind: FakeKind
  readonly group: string
  readonly version: string
  readonly plural: string
  readonly namespaced: boolean
  /** Custom resources keep kind/apiVersion on list items; built-in kinds do not. */
  readonly custom: boolean
}

const TYPES: readonly ResourceType[] = [
  { kind: 'Namespace', group: '', version: 'v1', plural: 'namespaces', namespaced: false, custom: false },
  { kind: 'Pod', group: '', version: 'v1', plural: 'pods', namespaced: true, custom: false },
  { kind: 'Service', group: '', version: 'v1', plural: 'services', namespaced: true, custom: false },
  { kind: 'ServiceAccount', group: '', version: 'v1', plural: 'serviceaccounts', namespaced: true, custom: false },
  { kind: 'EndpointSlice', group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', namespaced: true, custom: false },
  { kind: 'AuthorizationPolicy', group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', namespaced: true, custom: true },
  { kind: 'PeerAuthentication', group: 'security.istio.io', version: 'v1', plural: 'peerauthentications', namespaced: true, custom: true },
  { kind: 'Gateway', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways', namespaced: true, custom: true },
  { kind: 'HTTPRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', namespaced: true, custom: true },
  { kind: 'Lease', group: 'coordination.k8s.io', version: 'v1', plural: 'leases', namespaced: true, custom: false },
  { kind: 'ConfigMap', group: '', version: 'v1', plural: 'configmaps', namespaced: true, custom: false },
  { kind: 'Deployment', group: 'apps', version: 'v1', plural: 'deployments', namespaced: true, custom: false },
  { kind: 'ClusterRoleBinding', group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterrolebindings', namespaced: false, custom: false },
]

const typeOf = (kind: FakeKind): ResourceType => TYPES.find((t) => t.kind === kind) as ResourceType
const apiVersionOf = (t: ResourceType): string => (t.group === '' ? t.version : `${t.group}/${t.version}`)

export type KubeObject = Record<string, unknown> & { metadata?: Record<string, unknown> }
type EventType = 'ADDED' | 'MODIFIED' | 'DELETED'

interface HistoryEntry {
  readonly rv: number
  readonly kind: FakeKind
  readonly type: EventType
  readonly object: KubeObject
  readonly previous?: KubeObject
}

interface Watcher {
  readonly type: ResourceType
  readonly namespace: string | undefined
  readonly matches: (obj: KubeObject) => boolean
  readonly res: ServerResponse
  readonly bookmarks: boolean
  timer?: NodeJS.Timeout
}

export interface RequestCounts {
  list: number
  watch: number
  get: number
  patch: number
  create: number
  update: number
  delete: number
}

export interface FakeKubeApiServerOptions {
  /** Interval of BOOKMARK events to watchers that allow them; default 1000 ms. */
  readonly bookmarkIntervalMs?: number
  /** Events kept for watches to resume from; older resourceVersions get 410. Default 10000. */
  readonly historyLimit?: number
  /** When set, requests must carry `Authorization: Bearer <token>` (or, with `authenticate`, a token issued by issueToken()); this token is an administrator. */
  readonly token?: string
  /** Requests must carry a token issued by issueToken() for the API server's audience (or `token`). */
  readonly authenticate?: boolean
  /** Serve https with this certificate (in-cluster clients insist on TLS); url is then https://. */
  readonly tls?: { readonly certPem: string; readonly keyPem: string }
}

export class FakeKubeApiServer {
  readonly #server: Server
  readonly #objects = new Map<FakeKind, Map<string, KubeObject>>()
  #history: HistoryEntry[] = []
  #compactedRv = 0
  #rv = 1
  #nextClusterIP = 0
  readonly #watchers = new Set<Watcher>()
  readonly #counts = new Map<string, RequestCounts>()
  readonly #failures = new Map<string, { status: number; remaining: number }>()
  #latencyMs = 0
  readonly #options: FakeKubeApiServerOptions
  #bookmarkTimer: NodeJS.Timeout | undefined
  #url = ''
  readonly #tokens = new FakeTokens()
  #rbac: FakeRbac | undefined
  readonly #denied: string[] = []

  private constructor(options: FakeKubeApiServerOptions) {
    this.#options = options
    for (const t of TYPES) this.#objects.set(t.kind, new Map())
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) this.#status(res, 500, 'InternalError', String(err))
        else res.destroy()
      })
    }
    this.#server = options.tls ? createTlsServer({ cert: options.tls.certPem, key: options.tls.keyPem }, handler) : createServer(handler)
  }

  static async start(options: FakeKubeApiServerOptions = {}): Promise<FakeKubeApiServer> {
    const fake = new FakeKubeApiServer(options)
    await new Promise<void>((resolve, reject) => {
      fake.#server.once('error', reject)
      fake.#server.listen(0, '127.0.0.1', () => resolve())
    })
    fake.#url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${(fake.#server.address() as AddressInfo).port}`
    fake.#bookmarkTimer = setInterval(() => fake.#sendBookmarks(), options.bookmarkIntervalMs ?? 1000)
    fake.#bookmarkTimer.unref()
    return fake
  }

  get url(): string {
    return this.#url
  }

  /** The current (latest) resourceVersion. */
  get resourceVersion(): string {
    return String(this.#rv)
  }

  async stop(): Promise<void> {
    if (this.#bookmarkTimer) clearInterval(this.#bookmarkTimer)
    for (const w of [...this.#watchers]) this.#endWatcher(w, false)
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }

  // ---- test controls ----

  create(kind: FakeKind, obj: KubeObject): KubeObject {
    const t = typeOf(kind)
    const copy = structuredClone(obj)
    const metadata = { ...(copy.metadata ?? {}) }
    if (t.namespaced && typeof metadata.namespace !== 'string') metadata.namespace = 'default'
    const key = keyOf(metadata)
    if (this.#store(kind).has(key)) throw new Error(`fake: ${kind} ${key} already exists`)
    metadata.uid ??= randomUUID()
    metadata.creationTimestamp ??= new Date().toISOString()
    copy.metadata = metadata
    if (kind === 'Service') this.#allocateClusterIP(copy)
    return this.#record(kind, 'ADDED', copy)
  }

  /** As the API server does for a ClusterIP Service created without one: from the fake's range 198.18.101.0/24. */
  #allocateClusterIP(service: KubeObject): void {
    const spec = (service['spec'] ?? {}) as Record<string, unknown>
    if (spec['clusterIP'] !== undefined && spec['clusterIP'] !== '') return
    if ((spec['type'] ?? 'ClusterIP') !== 'ClusterIP') return
    this.#nextClusterIP += 1
    const ip = `198.18.101.${this.#nextClusterIP}`
    service['spec'] = { ...spec, clusterIP: ip, clusterIPs: [ip] }
  }

  update(kind: FakeKind, obj: KubeObject): KubeObject {
    const copy = structuredClone(obj)
    const metadata = { ...(copy.metadata ?? {}) }
    if (typeOf(kind).namespaced && typeof metadata.namespace !== 'string') metadata.namespace = 'default'
    const previous = this.#store(kind).get(keyOf(metadata))
    if (previous === undefined) throw new Error(`fake: ${kind} ${keyOf(metadata)} does not exist`)
    metadata.uid = previous.metadata?.uid
    metadata.creationTimestamp = previous.metadata?.creationTimestamp
    copy.metadata = metadata
    return this.#record(kind, 'MODIFIED', copy, previous)
  }

  /** Creates or updates. */
  apply(kind: FakeKind, obj: KubeObject): KubeObject {
    const metadata = obj.metadata ?? {}
    const ns = typeOf(kind).namespaced ? ((metadata.namespace as string | undefined) ?? 'default') : undefined
    const key = keyOf({ ...metadata, namespace: ns })
    return this.#store(kind).has(key) ? this.update(kind, obj) : this.create(kind, obj)
  }

  /** Deletes by the object's metadata name/namespace; deleting what is gone is a no-op. */
  delete(kind: FakeKind, obj: KubeObject): void {
    const metadata = { ...(obj.metadata ?? {}) }
    if (typeOf(kind).namespaced && typeof metadata.namespace !== 'string') metadata.namespace = 'default'
    const previous = this.#store(kind).get(keyOf(metadata))
    if (previous === undefined) return
    this.#record(kind, 'DELETED', structuredClone(previous), previous)
  }

  get(kind: FakeKind, namespace: string, name: string): KubeObject | undefined {
    const obj = this.#store(kind).get(keyOf({ namespace: namespace || undefined, name }))
    return obj && structuredClone(obj)
  }

  /** Forgets the event history: every open watch gets 410 Gone and ends; resuming from an older version gets 410. */
  compactHistory(): void {
    this.#history = []
    this.#compactedRv = this.#rv
    for (const w of [...this.#watchers]) {
      this.#write(w, { type: 'ERROR', object: expired(this.#rv) })
      this.#endWatcher(w, true)
    }
  }

  /** Ends every watch stream abruptly (socket destroyed); graceful: a clean end of the response. */
  dropWatches(options: { readonly graceful?: boolean } = {}): number {
    const n = this.#watchers.size
    for (const w of [...this.#watchers]) this.#endWatcher(w, options.graceful ?? false)
    return n
  }

  /** A service-account token, as the kubelet gets one for a pod's projected volume. */
  issueToken(spec: TokenSpec): string {
    return this.#tokens.issue(spec)
  }

  /** Enforces RBAC for token-authenticated requests from now on, from ClusterRole/Role/(Cluster)RoleBinding objects (cumulative). */
  loadRbac(objects: readonly Record<string, unknown>[]): void {
    this.#rbac ??= new FakeRbac()
    this.#rbac.load(objects)
  }

  /** Replaces every RBAC rule loaded so far. */
  setRbac(objects: readonly Record<string, unknown>[]): void {
    this.#rbac = new FakeRbac()
    this.#rbac.load(objects)
  }

  /** The 403 messages answered so far (what RBAC refused). */
  denied(): readonly string[] {
    return [...this.#denied]
  }

  setLatency(ms: number): void {
    this.#latencyMs = ms
  }

  /** The next `times` requests to exactly this path (no query) answer with this status. */
  failNext(path: string, status: number, times = 1): void {
    this.#failures.set(path, { status, remaining: times })
  }

  /** Request counters per resource plural (`pods`, `authorizationpolicies`...). */
  counts(plural: string): RequestCounts {
    return { ...(this.#counts.get(plural) ?? noRequests()) }
  }

  activeWatches(plural?: string): number {
    return [...this.#watchers].filter((w) => plural === undefined || w.type.plural === plural).length
  }

  // ---- internals ----

  #store(kind: FakeKind): Map<string, KubeObject> {
    return this.#objects.get(kind) as Map<string, KubeObject>
  }

  #record(kind: FakeKind, type: EventType, obj: KubeObject, previous?: KubeObject): KubeObject {
    const t = typeOf(kind)
    this.#rv += 1
    const metadata = { ...(obj.metadata ?? {}), resourceVersion: String(this.#rv) }
    const stored: KubeObject = { ...obj, apiVersion: apiVersionOf(t), kind, metadata }
    const key = keyOf(metadata)
    if (type === 'DELETED') this.#store(kind).delete(key)
    else this.#store(kind).set(key, stored)
    const entry: HistoryEntry = { rv: this.#rv, kind, type, object: stored, ...(previous && { previous }) }
    this.#history.push(entry)
    const limit = this.#options.historyLimit ?? 10000
    if (this.#history.length > limit) {
      const dropped = this.#history.splice(0, this.#history.length - limit)
      this.#compactedRv = dropped[dropped.length - 1]?.rv ?? this.#compactedRv
    }
    for (const w of this.#watchers) if (w.type.kind === kind) this.#deliver(w, entry)
    return structuredClone(stored)
  }

  #deliver(w: Watcher, entry: HistoryEntry): void {
    const visible = (o: KubeObject | undefined): boolean =>
      o !== undefined && (w.namespace === undefined || o.metadata?.namespace === w.namespace) && w.matches(o)
    const now = entry.type !== 'DELETED' && visible(entry.object)
    const before = entry.type === 'ADDED' ? false : visible(entry.previous)
    let type: EventType | undefined
    if (entry.type === 'DELETED') type = before ? 'DELETED' : undefined
    else if (now && before) type = 'MODIFIED'
    else if (now) type = 'ADDED'
    else if (before) type = 'DELETED'
    if (type !== undefined) this.#write(w, { type, object: entry.object })
  }

  #write(w: Watcher, event: unknown): void {
    if (!w.res.destroyed && !w.res.writableEnded) w.res.write(`${JSON.stringify(event)}\n`)
  }

  #endWatcher(w: Watcher, graceful: boolean): void {
    this.#watchers.delete(w)
    if (w.timer) clearTimeout(w.timer)
    if (graceful) w.res.end()
    else w.res.socket?.destroy()
  }

  #sendBookmarks(): void {
    for (const w of this.#watchers) {
      if (!w.bookmarks) continue
      this.#write(w, { type: 'BOOKMARK', object: { kind: w.type.kind, apiVersion: apiVersionOf(w.type), metadata: { resourceVersion: String(this.#rv) } } })
    }
  }

  #count(plural: string, what: keyof RequestCounts): void {
    const c = this.#counts.get(plural) ?? noRequests()
    c[what] += 1
    this.#counts.set(plural, c)
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake')
    const body = await readBody(req)
    if (this.#latencyMs > 0) await new Promise((r) => setTimeout(r, this.#latencyMs))
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1]
    let user: UserInfo | undefined
    if (this.#options.authenticate) {
      if (bearer === undefined || bearer !== this.#options.token) {
        const review = bearer === undefined ? undefined : this.#review(bearer, [])
        if (review === undefined || !review.authenticated) return this.#status(res, 401, 'Unauthorized', 'Unauthorized')
        user = review.user
      }
    } else if (this.#options.token !== undefined && bearer !== this.#options.token) {
      return this.#status(res, 401, 'Unauthorized', 'unauthorized')
    }
    const info = requestInfo(req.method ?? 'GET', req.url ?? '/')
    if (user !== undefined && this.#rbac !== undefined && info !== undefined) {
      const attributes = {
        user,
        verb: info.verb,
        group: info.group,
        resource: info.resource,
        ...(info.namespace !== undefined && { namespace: info.namespace }),
        ...(info.name !== undefined && { name: info.name }),
      }
      if (!this.#rbac.allowed(attributes)) {
        const message = forbiddenMessage(attributes)
        this.#denied.push(message)
        return this.#status(res, 403, 'Forbidden', message)
      }
    }
    if (url.pathname === '/apis/authentication.k8s.io/v1/tokenreviews') return this.#tokenReview(req.method ?? 'GET', body, res)
    const failure = this.#failures.get(url.pathname)
    if (failure !== undefined) {
      failure.remaining -= 1
      if (failure.remaining <= 0) this.#failures.delete(url.pathname)
      return this.#status(res, failure.status, 'InjectedFailure', `injected failure ${failure.status} for ${url.pathname}`)
    }
    const route = parseRoute(url.pathname)
    if (route === undefined) return this.#status(res, 404, 'NotFound', `the server could not find the requested resource (${url.pathname})`)
    const { type, namespace, name, subresource } = route
    if (name === undefined && req.method === 'POST') {
      this.#count(type.plural, 'create')
      if (type.namespaced && namespace === undefined) return this.#status(res, 405, 'MethodNotAllowed', `create ${type.plural} in a namespace`)
      const obj = parseObject(body)
      const objName = obj?.metadata?.['name']
      if (obj === undefined || typeof objName !== 'string' || objName === '')
        return this.#status(res, 400, 'BadRequest', 'the body is not an object with metadata.name')
      const mismatch = this.#metadataMismatch(obj, namespace)
      if (mismatch) return this.#status(res, 400, 'BadRequest', mismatch)
      if (obj.metadata?.['resourceVersion'] !== undefined)
        return this.#status(res, 400, 'BadRequest', 'resourceVersion should not be set on objects to be created')
      const metadata = { ...obj.metadata, ...(type.namespaced && { namespace }) }
      if (this.#store(type.kind).has(keyOf(metadata))) return this.#status(res, 409, 'AlreadyExists', `${type.plural} "${objName}" already exists`)
      return json(res, 201, this.create(type.kind, { ...obj, metadata: { ...metadata, resourceVersion: undefined } }))
    }
    if (name === undefined) {
      if (req.method !== 'GET') return this.#status(res, 405, 'MethodNotAllowed', `${req.method} not supported on collections`)
      const matches = selector(url.searchParams.get('fieldSelector'), url.searchParams.get('labelSelector'))
      if (matches === undefined) return this.#status(res, 400, 'BadRequest', 'unsupported selector')
      if (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1') {
        this.#count(type.plural, 'watch')
        return this.#watch(url, res, type, namespace, matches)
      }
      this.#count(type.plural, 'list')
      const items = [...this.#store(type.kind).values()]
        .filter((o) => (namespace === undefined || o.metadata?.namespace === namespace) && matches(o))
        .map((o) => (type.custom ? o : stripTypeMeta(o)))
      return json(res, 200, { kind: `${type.kind}List`, apiVersion: apiVersionOf(type), metadata: { resourceVersion: String(this.#rv) }, items })
    }
    const key = keyOf({ namespace, name })
    const current = this.#store(type.kind).get(key)
    if (req.method === 'GET') {
      this.#count(type.plural, 'get')
      if (current === undefined) return this.#status(res, 404, 'NotFound', `${type.plural} "${name}" not found`)
      return json(res, 200, current)
    }
    if (req.method === 'PUT') {
      this.#count(type.plural, 'update')
      if (current === undefined) return this.#status(res, 404, 'NotFound', `${type.plural} "${name}" not found`)
      const obj = parseObject(body)
      if (obj === undefined) return this.#status(res, 400, 'BadRequest', 'the body is not an object')
      if (subresource !== undefined) return this.#status(res, 405, 'MethodNotAllowed', 'PUT on a subresource is not supported by the fake')
      const mismatch =
        this.#metadataMismatch(obj, namespace) ??
        (obj.metadata?.['name'] !== name
          ? `the name of the object (${String(obj.metadata?.['name'])}) does not match the name on the URL (${name})`
          : undefined)
      if (mismatch) return this.#status(res, 400, 'BadRequest', mismatch)
      if (typeof obj.metadata?.['resourceVersion'] !== 'string')
        return this.#status(res, 422, 'Invalid', 'metadata.resourceVersion: Invalid value: 0x0: must be specified for an update')
      // Optimistic concurrency as the real server does it: an update names the version it read.
      if (obj.metadata?.['resourceVersion'] !== current.metadata?.['resourceVersion']) {
        return this.#status(
          res,
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${type.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        )
      }
      return json(res, 200, this.update(type.kind, { ...obj, metadata: { ...obj.metadata, name, ...(type.namespaced && { namespace }) } }))
    }
    if (req.method === 'DELETE') {
      this.#count(type.plural, 'delete')
      if (current === undefined) return this.#status(res, 404, 'NotFound', `${type.plural} "${name}" not found`)
      this.delete(type.kind, current)
      return json(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, kind: type.plural } })
    }
    if (req.method === 'PATCH') {
      this.#count(type.plural, 'patch')
      const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim()
      if (contentType !== 'application/merge-patch+json' && contentType !== 'application/strategic-merge-patch+json') {
        return this.#status(
          res,
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got ${contentType})`,
        )
      }
      if (current === undefined) return this.#status(res, 404, 'NotFound', `${type.plural} "${name}" not found`)
      let patch: unknown
      try {
        patch = JSON.parse(body)
      } catch {
        return this.#status(res, 400, 'BadRequest', 'patch body is not JSON')
      }
      // A custom resource's status changes only through its /status subresource, and only its status does.
      if (type.custom && patch !== null && typeof patch === 'object') {
        const p = patch as Record<string, unknown>
        patch = subresource === 'status' ? { status: p['status'] } : Object.fromEntries(Object.entries(p).filter(([k]) => k !== 'status'))
      }
      const merged = mergePatch(structuredClone(current), patch) as KubeObject
      const metadata = { ...(merged.metadata ?? {}), name: current.metadata?.name, namespace: current.metadata?.namespace, uid: current.metadata?.uid }
      if (type.kind === 'Namespace') delete metadata.namespace
      return json(res, 200, this.#record(type.kind, 'MODIFIED', { ...merged, metadata }, current))
    }
    return this.#status(res, 405, 'MethodNotAllowed', `${req.method} not supported`)
  }

  #review(token: string, audiences: readonly string[]): ReturnType<FakeTokens['review']> {
    return this.#tokens.review(token, audiences, (namespace, name) => this.#store('Pod').get(`${namespace}/${name}`)?.metadata?.['uid'] as string | undefined)
  }

  /** POST tokenreviews: authenticated or not (with the reason), the user, its extra (bound pod, node) and the audiences. */
  #tokenReview(method: string, body: string, res: ServerResponse): void {
    this.#count('tokenreviews', 'create')
    if (method !== 'POST') return this.#status(res, 405, 'MethodNotAllowed', `${method} not supported on tokenreviews`)
    const review = parseObject(body) as { spec?: { token?: unknown; audiences?: unknown } } | undefined
    const token = review?.spec?.token
    if (typeof token !== 'string' || token === '') return this.#status(res, 400, 'BadRequest', 'spec.token: Required value')
    const audiences = Array.isArray(review?.spec?.audiences) ? (review.spec.audiences as string[]) : []
    const result = this.#review(token, audiences)
    const status = result.authenticated
      ? { authenticated: true, user: result.user, audiences: result.audiences }
      : { authenticated: false, error: result.error }
    return json(res, 201, {
      kind: 'TokenReview',
      apiVersion: 'authentication.k8s.io/v1',
      metadata: { creationTimestamp: null },
      spec: { token, audiences },
      status,
    })
  }

  /** The real server's 400 for a body whose namespace differs from the URL's. */
  #metadataMismatch(obj: KubeObject, namespace: string | undefined): string | undefined {
    const ns = obj.metadata?.['namespace']
    if (ns !== undefined && ns !== namespace) return 'the namespace of the provided object does not match the namespace sent on the request'
    return undefined
  }

  #watch(url: URL, res: ServerResponse, type: ResourceType, namespace: string | undefined, matches: (o: KubeObject) => boolean): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' })
    res.flushHeaders()
    const w: Watcher = { type, namespace, matches, res, bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true' }
    const rvParam = url.searchParams.get('resourceVersion') ?? ''
    if (rvParam === '' || rvParam === '0') {
      for (const o of this.#store(type.kind).values()) this.#deliver(w, { rv: this.#rv, kind: type.kind, type: 'ADDED', object: o })
    } else {
      const from = Number(rvParam)
      if (!Number.isInteger(from) || from < this.#compactedRv) {
        this.#write(w, { type: 'ERROR', object: expired(from) })
        res.end()
        return
      }
      for (const entry of this.#history) if (entry.rv > from && entry.kind === type.kind) this.#deliver(w, entry)
    }
    this.#watchers.add(w)
    const timeoutSeconds = Number(url.searchParams.get('timeoutSeconds') ?? '0')
    if (timeoutSeconds > 0) w.timer = setTimeout(() => this.#endWatcher(w, true), timeoutSeconds * 1000)
    res.on('close', () => {
      this.#watchers.delete(w)
      if (w.timer) clearTimeout(w.timer)
    })
  }

  #status(res: ServerResponse, code: number, reason: string, message: string): void {
    json(res, code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code })
  }
}

function expired(rv: number): unknown {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${rv}`, reason: 'Expired', code: 410 }
}

function keyOf(metadata: Record<string, unknown>): string {
  const ns = typeof metadata.namespace === 'string' ? metadata.namespace : ''
  return ns === '' ? String(metadata.name) : `${ns}/${String(metadata.name)}`
}

function stripTypeMeta(o: KubeObject): KubeObject {
  const { kind: _kind, apiVersion: _apiVersion, ...rest } = o
  return rest
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/** RFC 7386 JSON merge patch (what strategic merge does for metadata maps too). */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

const noRequests = (): RequestCounts => ({ list: 0, watch: 0, get: 0, patch: 0, create: 0, update: 0, delete: 0 })

function parseObject(body: string): KubeObject | undefined {
  try {
    const obj: unknown = JSON.parse(body)
    return obj !== null && typeof obj === 'object' && !Array.isArray(obj) ? (obj as KubeObject) : undefined
  } catch {
    return undefined
  }
}

function parseRoute(pathname: string): { type: ResourceType; namespace?: string; name?: string; subresource?: 'status' } | undefined {
  const seg = pathname.split('/').filter((s) => s !== '')
  let group: string
  let version: string
  let rest: string[]
  if (seg[0] === 'api') [group, version, rest] = ['', seg[1] ?? '', seg.slice(2)]
  else if (seg[0] === 'apis') [group, version, rest] = [seg[1] ?? '', seg[2] ?? '', seg.slice(3)]
  else return undefined
  const find = (plural: string | undefined): ResourceType | undefined => TYPES.find((t) => t.group === group && t.version === version && t.plural === plural)
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    const type = find(rest[2])
    if (type === undefined || !type.namespaced || rest.length > 5) return undefined
    if (rest.length === 5 && (rest[4] !== 'status' || !type.custom)) return undefined
    return { type, namespace: rest[1], ...(rest[3] !== undefined && { name: rest[3] }), ...(rest[4] === 'status' && { subresource: 'status' as const }) }
  }
  const type = find(rest[0])
  if (type === undefined || rest.length > 2 || (type.namespaced && rest.length === 2)) return undefined
  return { type, ...(rest[1] !== undefined && { name: rest[1] }) }
}

function valueAt(obj: KubeObject, path: string): string {
  let cur: unknown = obj
  for (const part of path.split('.')) cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[part] : undefined
  return cur === undefined || cur === null ? '' : String(cur)
}

/** Equality-based field and label selectors (`a=b`, `a==b`, `a!=b`; labels also `k`, `!k`). */
function selector(fieldSelector: string | null, labelSelector: string | null): ((o: KubeObject) => boolean) | undefined {
  const tests: ((o: KubeObject) => boolean)[] = []
  for (const term of (fieldSelector ?? '').split(',').filter((t) => t !== '')) {
    const m = /^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$/.exec(term)
    if (m === null) return undefined
    const [, path, op, value] = m as unknown as [string, string, string, string]
    tests.push((o) => (valueAt(o, path) === value) === (op !== '!='))
  }
  for (const term of (labelSelector ?? '').split(',').filter((t) => t !== '')) {
    const labels = (o: KubeObject): Record<string, unknown> => (o.metadata?.labels as Record<string, unknown> | undefined) ?? {}
    const m = /^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/.exec(term)
    if (m !== null) {
      const [, key, op, value] = m as unknown as [string, string, string, string]
      tests.push((o) => (labels(o)[key] === value) === (op !== '!='))
    } else if (/^!?[\w./-]+$/.test(term)) {
      const negate = term.startsWith('!')
      const key = negate ? term.slice(1) : term
      tests.push((o) => Object.hasOwn(labels(o), key) !== negate)
    } else return undefined
  }
  return (o) => tests.every((t) => t(o))
}
