// One HTTP request through the waypoint, HTTP/1.1 or h2c alike (Node's compat
// API gives both the same request/response shape): the plan (policy, route,
// filters) decided up front, then the forward with retries, timeouts, mirrors
// and response header edits, the response streamed back with its trailers, and
// the metrics and access log once it is over.
import { randomUUID } from 'node:crypto'
import type http from 'node:http'
import type http2 from 'node:http2'
import { PassThrough, type Readable } from 'node:stream'
import type { Logger } from 'pino'
import { childTraceparent } from '../../common/hbone/headers.js'
import { identityOf } from '../../common/model/workload-store.js'
import type { ConnectionInfo } from '../../common/hbone/server.js'
import { workloadLabels } from '../../common/telemetry.js'
import type { HeaderModifier } from '../../common/model/http-route.js'
import type { RequestPlan } from '../plan.js'
import { pickBackend } from '../route/pick.js'
import { modifyHeaders, type RouteRequest } from '../route/request.js'
import type { BackendTarget } from '../route/table.js'
import type { WaypointState, WaypointTarget } from '../state.js'
import { requestLabels, type RequestLabels, type WaypointMetrics } from '../metrics.js'
import { forward, forwardable, ForwardError, type UpstreamProtocol, type UpstreamResponse } from './forward.js'
import type { Endpoint, Upstreams } from './upstream.js'

export type DownstreamRequest = http.IncomingMessage | http2.Http2ServerRequest
export type DownstreamResponse = http.ServerResponse | http2.Http2ServerResponse

/** What the plan is decided from: the request as the client sent it, and who sent it where. */
export interface PlanInput {
  readonly peerIdentity: string | null
  readonly sourceIp: string
  readonly target: WaypointTarget
  readonly method: string
  readonly path: string
  readonly authority: string
  readonly headers: Readonly<Record<string, string | readonly string[]>>
}

export interface HttpHandlerOptions {
  readonly state: () => WaypointState
  readonly decide: (state: WaypointState, input: PlanInput) => RequestPlan
  readonly upstreams: Upstreams
  readonly metrics: WaypointMetrics
  readonly log: Logger
  readonly random?: () => number
}

/** Envoy's default base interval between retries. */
export const DEFAULT_RETRY_BACKOFF_MS = 25

/** Request bodies are buffered (for retries and mirrors) up to this size; a bigger one streams without them. */
export const MAX_BUFFERED_BODY = 1024 * 1024

interface Outcome {
  status: number
  flags: string
  responseBytes: number
  endpoint: Endpoint | null
  backend: BackendTarget | null
  grpcStatus: string
}

type ForwardPlan = Extract<RequestPlan, { kind: 'forward' }>

/** Label sets kept per state; past this many, the cache starts over. */
const LABEL_CACHE_SIZE = 4096

export class HttpHandler {
  private readonly random: () => number
  private readonly labelCache = new WeakMap<WaypointState, Map<string, RequestLabels>>()

  constructor(private readonly options: HttpHandlerOptions) {
    this.random = options.random ?? Math.random
  }

  /** Serves one request of a tunnel to `target`; `protocol` is what the client speaks (and the default upstream). */
  handle(req: DownstreamRequest, res: DownstreamResponse, target: WaypointTarget, info: ConnectionInfo, protocol: UpstreamProtocol): void {
    const started = performance.now()
    const state = this.options.state()
    const headers = receivedHeaders(req.rawHeaders)
    const authority = String(req.headers[':authority'] ?? req.headers.host ?? `${target.address.ip}:${target.address.port}`)
    const input: PlanInput = {
      peerIdentity: info.peerIdentity,
      sourceIp: info.sourceIp,
      target,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      authority,
      headers,
    }
    let requestBytes = headerBytes(req.headers)
    req.on('data', (chunk: Buffer) => (requestBytes += chunk.length))
    const plan = this.options.decide(state, input)
    const outcome: Outcome = { status: 0, flags: '-', responseBytes: 0, endpoint: null, backend: null, grpcStatus: '' }
    res.once('close', () => this.record(state, plan, target, info, req, outcome, started, requestBytes))
    if (plan.kind === 'respond') {
      req.resume()
      outcome.flags = plan.flags
      this.respond(res, outcome, plan.status, plan.body, plan.location, plan.responseHeaders ?? null)
      return
    }
    this.forward(plan, req, res, outcome, state, protocol, info).catch((err: Error) => {
      this.options.log.error({ err: err.message }, 'request handling failed')
      if (!res.headersSent) this.respond(res, outcome, 500, 'internal error\n', null)
      else res.destroy(err)
    })
  }

  private respond(
    res: DownstreamResponse,
    outcome: Outcome,
    status: number,
    body: string,
    location: string | null,
    modifier: HeaderModifier | null = null,
  ): void {
    outcome.status = status
    outcome.responseBytes += Buffer.byteLength(body)
    let head: Readonly<Record<string, string | readonly string[]>> = { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)) }
    if (location !== null) head = { ...head, location }
    if (modifier !== null) head = modifyHeaders(head, modifier)
    ;(res as http.ServerResponse).writeHead(status, head as Record<string, string | string[]>)
    res.end(body)
  }

  private async forward(
    plan: ForwardPlan,
    req: DownstreamRequest,
    res: DownstreamResponse,
    outcome: Outcome,
    state: WaypointState,
    protocol: UpstreamProtocol,
    info: ConnectionInfo,
  ): Promise<void> {
    const decision = plan.forward
    const incoming = req.headers.traceparent
    // Hop headers of this waypoint, on every try: its own span of the trace, Envoy's request id.
    const hop = {
      traceparent: childTraceparent(typeof incoming === 'string' ? incoming : info.traceparent),
      'x-forwarded-proto': 'http',
      'x-request-id': typeof req.headers['x-request-id'] === 'string' ? req.headers['x-request-id'] : randomUUID(),
    }
    const retry = decision.retry
    const mirrored = decision.mirrors.length > 0
    const buffered = retry !== null || mirrored ? await bufferBody(req, MAX_BUFFERED_BODY) : null
    const body: Buffer | Readable = buffered?.complete ? buffered.body : (buffered?.stream ?? req)
    const tries = buffered?.complete && retry !== null ? 1 + retry.attempts : 1
    const { requestMs, backendRequestMs } = decision.timeouts
    const deadline = requestMs === null || requestMs === 0 ? null : performance.now() + requestMs
    let aborted = false
    res.once('close', () => (aborted = !res.writableFinished))
    for (let attempt = 0; attempt < tries && !aborted; attempt++) {
      // A workload-addressed request goes to that workload; a service's to a backend of the route.
      const pick =
        plan.workload !== null ? { kind: 'workload' as const, request: decision.request, responseHeaders: [], mirrors: [] } : pickBackend(decision, this.random)
      if (pick.kind === 'error') return this.respond(res, outcome, 500, `invalid backend: ${pick.reason}\n`, null)
      if (pick.kind === 'backend') outcome.backend = pick.backend
      if (attempt === 0 && buffered?.complete) for (const m of pick.mirrors) this.mirror(state, m.backend, m.request, hop, buffered.body, protocol)
      const endpoint = pick.kind === 'backend' ? this.pickEndpoint(state, pick.backend) : plan.workload
      if (endpoint === null) {
        outcome.flags = 'UH'
        return this.respond(res, outcome, 503, 'no healthy upstream\n', null)
      }
      outcome.endpoint = endpoint
      const remaining = deadline === null ? null : Math.max(0, deadline - performance.now())
      const perTry = minOf(backendRequestMs === 0 ? null : backendRequestMs, remaining)
      const last = attempt === tries - 1
      let response: UpstreamResponse
      try {
        const upstreamProtocol = pick.kind === 'backend' ? protocolFor(state, pick.backend, protocol) : protocol
        response = await forward(this.options.upstreams, endpoint, upstreamProtocol, withHop(pick.request, hop), body, perTry)
      } catch (err) {
        const failure = err instanceof ForwardError ? err : new ForwardError('UF', (err as Error).message, { cause: err })
        const timedOut = deadline !== null && performance.now() >= deadline
        if (last || timedOut) {
          outcome.flags = timedOut || failure.flag === 'UT' ? 'UT' : tries > 1 ? 'URX' : failure.flag
          if (outcome.flags === 'UT') return this.respond(res, outcome, 504, 'upstream request timeout\n', null)
          return this.respond(res, outcome, 503, `upstream connect error or disconnect/reset before headers: ${failure.message}\n`, null)
        }
        await this.backoff(retry!.backoffMs ?? DEFAULT_RETRY_BACKOFF_MS, attempt, deadline)
        continue
      }
      const retriable = retry !== null && retry.codes.includes(response.status)
      if (!last && retriable && (deadline === null || performance.now() < deadline)) {
        response.abort()
        await this.backoff(retry.backoffMs ?? DEFAULT_RETRY_BACKOFF_MS, attempt, deadline)
        continue
      }
      if (retriable && attempt > 0) outcome.flags = 'URX'
      return this.stream(res, response, pick.responseHeaders, outcome)
    }
  }

  /** Streams the response back: edited headers, the body, then the trailers. */
  private async stream(res: DownstreamResponse, response: UpstreamResponse, modifiers: readonly HeaderModifier[], outcome: Outcome): Promise<void> {
    outcome.status = response.status
    let headers: Readonly<Record<string, string | readonly string[]>> = response.headers
    for (const m of modifiers) headers = modifyHeaders(headers, m)
    outcome.grpcStatus = String(headers['grpc-status'] ?? '')
    outcome.responseBytes += headerBytes(headers)
    ;(res as http.ServerResponse).writeHead(response.status, headers as Record<string, string | string[]>)
    res.once('close', () => {
      if (!res.writableFinished) response.abort()
    })
    const out = res as http.ServerResponse
    for await (const chunk of response.body) {
      outcome.responseBytes += (chunk as Buffer).length
      // Backpressure; a client that went away ends the wait too (the body is aborted then).
      if (!out.write(chunk)) await new Promise((resolve) => out.once('drain', resolve).once('close', resolve))
    }
    const trailers = await response.trailers
    if (Object.keys(trailers).length > 0) {
      outcome.grpcStatus = String(trailers['grpc-status'] ?? outcome.grpcStatus)
      res.addTrailers(trailers as Record<string, string>)
    }
    res.end()
  }

  /** A copy of the request to a mirror backend; its response is read and dropped. */
  private mirror(
    state: WaypointState,
    backend: BackendTarget,
    request: RouteRequest,
    hop: Readonly<Record<string, string>>,
    body: Buffer,
    protocol: UpstreamProtocol,
  ): void {
    const endpoint = this.pickEndpoint(state, backend)
    if (endpoint === null) return
    forward(this.options.upstreams, endpoint, protocolFor(state, backend, protocol), withHop(request, hop), body, 10_000).then(
      (r) => r.body.resume(),
      (err: Error) => this.options.log.debug({ mirror: `${backend.namespace}/${backend.name}`, err: err.message }, 'mirror request failed'),
    )
  }

  private pickEndpoint(state: WaypointState, backend: BackendTarget): Endpoint | null {
    const candidates = state.store.endpoints({ namespace: backend.namespace, hostname: state.hostname(backend) }, backend.port)
    return candidates.length === 0 ? null : candidates[Math.floor(this.random() * candidates.length)]!
  }

  private backoff(baseMs: number, attempt: number, deadline: number | null): Promise<void> {
    // Envoy's schedule: exponential from the base, capped at ten times it, with full jitter.
    const ms = Math.min(baseMs * 2 ** attempt, baseMs * 10) * (0.5 + this.random() / 2)
    const wait = deadline === null ? ms : Math.min(ms, Math.max(0, deadline - performance.now()))
    return new Promise((resolve) => setTimeout(resolve, wait))
  }

  private record(
    state: WaypointState,
    plan: RequestPlan,
    target: WaypointTarget,
    info: ConnectionInfo,
    req: DownstreamRequest,
    outcome: Outcome,
    started: number,
    requestBytes: number,
  ): void {
    const service = outcome.backend ?? (target.kind === 'service' ? target.service : null)
    const destination = outcome.endpoint?.workload ?? (target.kind === 'workload' ? target.workload : undefined)
    const status = outcome.status === 0 ? 0 : outcome.status
    const protocol = String(req.headers['content-type'] ?? '').startsWith('application/grpc') ? 'grpc' : 'http'
    // Labels repeat request after request: built once per state and per combination.
    const key = `${info.sourceIp}|${info.peerIdentity}|${service ? `${service.namespace}/${service.name}` : ''}|${destination ? `${destination.namespace}/${destination.name}` : ''}|${protocol}|${status}|${outcome.grpcStatus}|${outcome.flags}`
    let cache = this.labelCache.get(state)
    if (cache === undefined) this.labelCache.set(state, (cache = new Map()))
    let labels = cache.get(key)
    if (labels === undefined) {
      if (cache.size >= LABEL_CACHE_SIZE) cache.clear()
      labels = requestLabels({
        ...workloadLabels('source', state.store.findByIp(info.sourceIp)),
        ...(info.peerIdentity ? { source_principal: info.peerIdentity } : {}),
        ...workloadLabels('destination', destination),
        ...(destination ? { destination_principal: identityOf(destination) } : {}),
        ...(service
          ? { destination_service: state.hostname(service), destination_service_name: service.name, destination_service_namespace: service.namespace }
          : {}),
        request_protocol: protocol,
        response_code: String(status),
        grpc_response_status: outcome.grpcStatus,
        // A client that went away before the response: Envoy's "downstream connection termination".
        response_flags: status === 0 ? 'DC' : outcome.flags,
        connection_security_policy: 'mutual_tls',
      })
      cache.set(key, labels)
    }
    const durationMs = performance.now() - started
    this.options.metrics.request({ labels, durationMs, requestBytes, responseBytes: outcome.responseBytes, route: plan.route ?? '' })
    if (!this.options.log.isLevelEnabled('debug')) return
    this.options.log.debug(
      {
        method: req.method,
        path: req.url,
        status,
        flags: labels.response_flags,
        route: plan.route,
        rule: plan.rule,
        policy: plan.policy,
        source: info.peerIdentity,
        upstream: outcome.endpoint ? `${outcome.endpoint.workload.ips[0]}:${outcome.endpoint.port}` : null,
        durationMs: Math.round(durationMs * 10) / 10,
      },
      'access',
    )
  }
}

/**
 * The headers as received, for policy and routing: lowercase names, a repeated
 * header as the list of its values in order (Node's own joining would use `, `
 * where Envoy uses `,`), without pseudo-headers, Host or hop-by-hop ones.
 */
function receivedHeaders(raw: readonly string[]): Record<string, string | readonly string[]> {
  const out: Record<string, string | string[]> = {}
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    const value = raw[i + 1]!
    const current = out[name]
    out[name] = current === undefined ? value : Array.isArray(current) ? [...current, value] : [current, value]
  }
  return forwardable(out)
}

/** The request to send: the route's, plus this hop's own headers. */
function withHop(request: RouteRequest, hop: Readonly<Record<string, string>>): RouteRequest {
  return { ...request, headers: { ...request.headers, ...hop } }
}

/** The backend port's declared protocol wins; else the client's own. */
function protocolFor(state: WaypointState, backend: BackendTarget, downstream: UpstreamProtocol): UpstreamProtocol {
  const port = state.service(backend.namespace, backend.name)?.ports.find((p) => p.port === backend.port)
  const declared = (port?.appProtocol || port?.name.split('-')[0] || '').toLowerCase()
  if (['http2', 'h2c', 'grpc', 'kubernetes.io/h2c'].includes(declared)) return 'h2c'
  if (['http', 'http-web'].includes(declared)) return 'http1'
  return downstream
}

function minOf(a: number | null, b: number | null): number | null {
  if (a === null) return b
  if (b === null) return a
  return Math.min(a, b)
}

function headerBytes(headers: Readonly<Record<string, unknown>>): number {
  let n = 0
  for (const [name, value] of Object.entries(headers)) n += name.length + String(value).length + 4
  return n
}

/**
 * Reads the body up to `limit` bytes. Complete: the whole body as one buffer
 * (retries and mirrors can resend it). Too big: a stream that replays what was
 * read and continues with the rest, for a single try.
 */
function bufferBody(req: Readable, limit: number): Promise<{ complete: true; body: Buffer } | { complete: false; stream: Readable }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk)
      size += chunk.length
      if (size <= limit) return
      // Too big to keep: hand over a stream of what was read followed by the rest (no async iteration:
      // leaving one early would destroy the request).
      req.off('data', onData).off('end', onEnd).off('error', reject)
      req.pause()
      const rest = new PassThrough()
      for (const c of chunks) rest.write(c)
      req.pipe(rest)
      resolve({ complete: false, stream: rest })
    }
    const onEnd = (): void => resolve({ complete: true, body: Buffer.concat(chunks) })
    req.on('data', onData).once('end', onEnd).once('error', reject)
  })
}
