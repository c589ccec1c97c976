// Raw JSON requests and watch streams to the Kubernetes API over node:http(s),
// with the credentials @kubernetes/client-node's KubeConfig applies (kube-config.ts:
// tokens, rotating token files, client certificates, exec plugins, OIDC). Raw so
// that every object reaches the converter as the server sent it; the list/watch
// loop is our own (reflector.ts, see the README for why not client-node's informers).
// A 403 names the verb, resource and namespace that the RBAC rules lack.
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest, type RequestOptions } from 'node:https'
import { createHash } from 'node:crypto'
import { SourceError } from './errors.js'
import { resolveConnection, type KubeConnection, type ResolvedConnection } from './kube-config.js'
import { describeRequestInfo, requestInfo, type RequestInfo } from './request-info.js'

export type { KubeConnection, ResolvedConnection }
export { resolveConnection }

export interface KubeReply {
  readonly status: number
  readonly body: unknown
}

export interface RequestOptionsIn {
  readonly body?: unknown
  readonly contentType?: string
  readonly timeoutMs?: number
}

/** Raw JSON requests on an API connection (KubeSource.api: the policy-status Lease). */
export interface KubeApi {
  request(method: string, path: string, options?: RequestOptionsIn): Promise<KubeReply>
}

/**
 * An HTTP failure of the API server, with its status (0 when the request never got
 * one). A 403 (AMBIENT_ERR_SOURCE_FORBIDDEN) carries the RBAC request it was
 * refused, and its message names the verb, resource and namespace to grant.
 */
export class KubeRequestError extends SourceError {
  readonly statusCode: number
  readonly request?: RequestInfo
  constructor(method: string, path: string, statusCode: number, detail: string, options?: { cause?: unknown }) {
    const info = requestInfo(method, path)
    const code = statusCode === 404 ? 'AMBIENT_ERR_SOURCE_NOT_FOUND' : statusCode === 403 ? 'AMBIENT_ERR_SOURCE_FORBIDDEN' : 'AMBIENT_ERR_SOURCE_REQUEST'
    const what =
      statusCode === 403 && info !== undefined
        ? `forbidden: ${describeRequestInfo(info)}: the service account needs an RBAC rule with verb ${JSON.stringify(info.verb)} on resource ${JSON.stringify(info.resource)} in apiGroup ${JSON.stringify(info.group)} (daemonset/install/10-rbac.yaml): `
        : ''
    super(code, `${method} ${path.split('?')[0]}: ${statusCode ? `status ${statusCode}: ` : ''}${what}${detail}`, options)
    this.statusCode = statusCode
    if (info !== undefined) this.request = info
  }

  /** Log fields naming the refused request (verb, group, resource, namespace). */
  get fields(): Record<string, unknown> {
    const r = this.request
    return r === undefined
      ? { status: this.statusCode }
      : { status: this.statusCode, verb: r.verb, group: r.group, resource: r.resource, namespace: r.namespace ?? null }
  }
}

export interface OpenRequest {
  /** Resolves with the response head; rejects with KubeRequestError when none came. */
  readonly response: Promise<IncomingMessage>
  /** Ends the request (and its response stream), before or after it was sent. */
  destroy(error?: Error): void
}

export class KubeClient {
  readonly #connection: ResolvedConnection
  readonly #timeoutMs: number
  #agent: { key: string; agent: HttpAgent } | undefined

  constructor(connection: ResolvedConnection, options: { readonly timeoutMs?: number } = {}) {
    this.#connection = connection
    this.#timeoutMs = options.timeoutMs ?? 30_000
  }

  /** A client for a connection; throws SourceError naming the bad field of an unusable one. */
  static for(connection: KubeConnection, options: { readonly timeoutMs?: number } = {}): KubeClient {
    return new KubeClient(resolveConnection(connection), options)
  }

  get server(): string {
    return this.#connection.server
  }

  /** Credentials and TLS settings for one request, from client-node (runs an exec plugin when its credential expired). */
  async #requestOptions(method: string, path: string): Promise<RequestOptions> {
    const opts: RequestOptions = { headers: {} }
    try {
      await this.#connection.kubeConfig.applyToHTTPSOptions(opts)
    } catch (err) {
      const { origin, credentialsField } = this.#connection
      throw new KubeRequestError(method, path, 0, `credentials of ${origin} (${credentialsField}) failed: ${(err as Error).message.trim() || 'no message'}`, {
        cause: err,
      })
    }
    const https = this.#connection.server.startsWith('https:')
    // client-node makes a new agent per call; keep one per TLS identity so connections are reused.
    const tls = { ca: opts.ca, cert: opts.cert, key: opts.key, rejectUnauthorized: opts.rejectUnauthorized, servername: opts.servername }
    const key = createHash('sha256')
      .update(JSON.stringify([https, tls.ca, tls.cert, tls.key, tls.rejectUnauthorized, tls.servername].map(String)))
      .digest('hex')
    if (this.#agent?.key !== key) {
      this.#agent?.agent.destroy()
      const agent = https
        ? new HttpsAgent({ keepAlive: true, ...Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined)) })
        : new HttpAgent({ keepAlive: true })
      this.#agent = { key, agent }
    }
    return { headers: opts.headers as OutgoingHttpHeaders, agent: this.#agent.agent }
  }

  /** Starts a request; the caller reads the response (used for watch streams). */
  open(method: string, path: string, options: RequestOptionsIn = {}): OpenRequest {
    let req: ClientRequest | undefined
    // null until destroy() is called; then the error it was given (or undefined)
    const state: { destroyed: Error | undefined | null } = { destroyed: null }
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs
    const response = (async (): Promise<IncomingMessage> => {
      const base = await this.#requestOptions(method, path)
      if (state.destroyed !== null) throw new KubeRequestError(method, path, 0, state.destroyed?.message ?? 'request cancelled', { cause: state.destroyed })
      const headers: OutgoingHttpHeaders = { ...(base.headers as OutgoingHttpHeaders), accept: 'application/json' }
      const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
      if (payload !== undefined) headers['content-type'] = options.contentType ?? 'application/json'
      const url = new URL(this.#connection.server + path)
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest
      return new Promise<IncomingMessage>((resolveResponse, reject) => {
        const r = send(url, { method, headers, agent: base.agent as HttpAgent, timeout: timeoutMs }, resolveResponse)
        req = r
        r.on('timeout', () => r.destroy(new Error(`no data within ${timeoutMs} ms`)))
        r.on('error', (err) => reject(new KubeRequestError(method, path, 0, err.message, { cause: err })))
        r.end(payload)
      })
    })()
    return {
      response,
      destroy: (error?: Error) => {
        if (state.destroyed === null) state.destroyed = error
        req?.destroy(error)
      },
    }
  }

  /** One JSON request; resolves with any status, rejects only when no reply came. */
  async request(method: string, path: string, options: RequestOptionsIn = {}): Promise<KubeReply> {
    const res = await this.open(method, path, options).response
    const chunks: Buffer[] = []
    try {
      for await (const c of res) chunks.push(c as Buffer)
    } catch (err) {
      throw new KubeRequestError(method, path, 0, (err as Error).message, { cause: err })
    }
    const text = Buffer.concat(chunks).toString('utf8')
    let body: unknown = text
    try {
      body = text === '' ? undefined : JSON.parse(text)
    } catch {
      // keep the text: the caller reports it
    }
    return { status: res.statusCode ?? 0, body }
  }

  /** A request that must answer 2xx; the error names the status, the refused RBAC request and the server's message. */
  async expectOk(method: string, path: string, options: RequestOptionsIn = {}): Promise<unknown> {
    const reply = await this.request(method, path, options)
    if (reply.status < 200 || reply.status > 299) throw new KubeRequestError(method, path, reply.status, statusMessage(reply.body))
    return reply.body
  }

  /** GET that must answer 2xx. */
  getJson(path: string): Promise<unknown> {
    return this.expectOk('GET', path)
  }

  /** Closes pooled connections. */
  close(): void {
    this.#agent?.agent.destroy()
    this.#agent = undefined
  }
}

export function statusMessage(body: unknown): string {
  if (body !== null && typeof body === 'object' && typeof (body as { message?: unknown }).message === 'string') {
    return (body as { message: string }).message
  }
  return typeof body === 'string' && body !== '' ? body.slice(0, 200) : 'no message'
}
