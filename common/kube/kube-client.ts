// How the agent reaches the Kubernetes API: an endpoint (from a kubeconfig file,
// an explicit server, or the in-cluster service account) and raw JSON requests and
// watch streams over node:http(s). Raw so that every object reaches the converter
// as the server sent it. (@kubernetes/client-node 2.0.1 cannot be loaded on Node
// 20: its undici needs Node >= 22.19; this reads the kubeconfig subset the agent needs.)
import { readFileSync } from 'node:fs'
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { dirname, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { SourceError } from './errors.js'

export type KubeConnection =
  | { readonly kind: 'kubeconfig'; readonly path: string; readonly context?: string }
  | {
      readonly kind: 'server'
      readonly server: string
      readonly token?: string
      /** Skip TLS verification; required for a plain http:// server such as the test fake. */
      readonly insecure?: boolean
      readonly caFile?: string
    }
  | {
      /** The pod's service account; server is https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT (main reads the env). */
      readonly kind: 'in-cluster'
      readonly server: string
      readonly serviceAccountDir?: string
    }

export interface KubeEndpoint {
  readonly server: string
  readonly insecure: boolean
  readonly ca?: Buffer
  readonly cert?: Buffer
  readonly key?: Buffer
  readonly token?: string
  /** Read at every request: projected service-account tokens rotate. */
  readonly tokenFile?: string
}

function configError(message: string, cause?: unknown): SourceError {
  return new SourceError('AMBIENT_ERR_SOURCE_CONFIG', message, cause === undefined ? undefined : { cause })
}

function readFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    throw configError(`cannot read ${what} ${file}: ${(err as Error).message}`, err)
  }
}

type Entry = Record<string, unknown>
function named(list: unknown, name: string, what: string, file: string): Entry {
  const found = Array.isArray(list) ? (list as Entry[]).find((e) => e?.name === name) : undefined
  const body = found?.[what]
  if (body === null || typeof body !== 'object') throw configError(`kubeconfig ${file}: ${what} ${JSON.stringify(name)} not found`)
  return body as Entry
}

function dataOrFile(entry: Entry, dataKey: string, fileKey: string, base: string, what: string): Buffer | undefined {
  if (typeof entry[dataKey] === 'string') return Buffer.from(entry[dataKey] as string, 'base64')
  if (typeof entry[fileKey] === 'string') return readFile(resolve(base, entry[fileKey] as string), what)
  return undefined
}

function fromKubeconfig(path: string, context?: string): KubeEndpoint {
  let doc: Entry
  try {
    doc = parseYaml(readFile(path, 'kubeconfig').toString('utf8')) as Entry
  } catch (err) {
    if (err instanceof SourceError) throw err
    throw configError(`kubeconfig ${path} is not valid yaml: ${(err as Error).message}`, err)
  }
  const contextName = context ?? (doc['current-context'] as string | undefined)
  if (typeof contextName !== 'string' || contextName === '') throw configError(`kubeconfig ${path}: current-context is not set; pass a context`)
  const ctx = named(doc.contexts, contextName, 'context', path)
  const cluster = named(doc.clusters, String(ctx.cluster), 'cluster', path)
  const user = ctx.user === undefined ? {} : named(doc.users, String(ctx.user), 'user', path)
  if (user.exec !== undefined || user['auth-provider'] !== undefined) {
    throw configError(
      `kubeconfig ${path}: user ${JSON.stringify(ctx.user)} uses exec/auth-provider credentials, which the agent does not support; use a token or client certificate`,
    )
  }
  if (typeof cluster.server !== 'string') throw configError(`kubeconfig ${path}: cluster ${JSON.stringify(ctx.cluster)} has no server`)
  const base = dirname(path)
  const ca = dataOrFile(cluster, 'certificate-authority-data', 'certificate-authority', base, 'certificate authority')
  const cert = dataOrFile(user, 'client-certificate-data', 'client-certificate', base, 'client certificate')
  const key = dataOrFile(user, 'client-key-data', 'client-key', base, 'client key')
  return {
    server: cluster.server,
    insecure: cluster['insecure-skip-tls-verify'] === true,
    ...(ca && { ca }),
    ...(cert && { cert }),
    ...(key && { key }),
    ...(typeof user.token === 'string' && { token: user.token }),
    ...(typeof user.tokenFile === 'string' && { tokenFile: resolve(base, user.tokenFile) }),
  }
}

export function resolveEndpoint(connection: KubeConnection): KubeEndpoint {
  let endpoint: KubeEndpoint
  switch (connection.kind) {
    case 'kubeconfig':
      endpoint = fromKubeconfig(connection.path, connection.context)
      break
    case 'in-cluster': {
      const dir = connection.serviceAccountDir ?? '/var/run/secrets/kubernetes.io/serviceaccount'
      endpoint = { server: connection.server, insecure: false, ca: readFile(`${dir}/ca.crt`, 'service account ca'), tokenFile: `${dir}/token` }
      readFile(`${dir}/token`, 'service account token')
      break
    }
    case 'server':
      endpoint = {
        server: connection.server,
        insecure: connection.insecure ?? false,
        ...(connection.token !== undefined && { token: connection.token }),
        ...(connection.caFile !== undefined && { ca: readFile(connection.caFile, 'certificate authority') }),
      }
      break
  }
  let url: URL
  try {
    url = new URL(endpoint.server)
  } catch (err) {
    throw configError(`kubernetes server ${JSON.stringify(endpoint.server)} is not a url`, err)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw configError(`kubernetes server ${endpoint.server} must be http(s)`)
  if (url.protocol === 'http:' && !endpoint.insecure) {
    throw configError(`kubernetes server ${endpoint.server} is plain http: set insecure (skipTLSVerify) to allow it`)
  }
  return endpoint
}

export interface KubeReply {
  readonly status: number
  readonly body: unknown
}

/** Raw JSON requests on an API connection (KubeSource.api: the policy-status Lease). */
export interface KubeApi {
  request(method: string, path: string, options?: { readonly body?: unknown; readonly contentType?: string; readonly timeoutMs?: number }): Promise<KubeReply>
}

/** An HTTP failure of the API server, with its status (0 when the request never got one). */
export class KubeRequestError extends SourceError {
  readonly statusCode: number
  constructor(method: string, path: string, statusCode: number, detail: string, options?: { cause?: unknown }) {
    super(
      statusCode === 404 ? 'AMBIENT_ERR_SOURCE_NOT_FOUND' : 'AMBIENT_ERR_SOURCE_REQUEST',
      `${method} ${path}: ${statusCode ? `status ${statusCode}: ` : ''}${detail}`,
      options,
    )
    this.statusCode = statusCode
  }
}

export class KubeClient {
  readonly #endpoint: KubeEndpoint
  readonly #timeoutMs: number

  constructor(endpoint: KubeEndpoint, options: { readonly timeoutMs?: number } = {}) {
    this.#endpoint = endpoint
    this.#timeoutMs = options.timeoutMs ?? 30_000
  }

  /** Starts a request; the caller reads the response (used for watch streams). */
  open(
    method: string,
    path: string,
    options: { readonly body?: unknown; readonly contentType?: string; readonly timeoutMs?: number } = {},
  ): { readonly req: ClientRequest; readonly response: Promise<IncomingMessage> } {
    const e = this.#endpoint
    const url = new URL(e.server.replace(/\/+$/, '') + path)
    const headers: Record<string, string> = { accept: 'application/json' }
    const token = e.tokenFile !== undefined ? readFileSync(e.tokenFile, 'utf8').trim() : e.token
    if (token) headers.authorization = `Bearer ${token}`
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
    if (payload !== undefined) headers['content-type'] = options.contentType ?? 'application/json'
    const tls =
      url.protocol === 'https:'
        ? { rejectUnauthorized: !e.insecure, ...(e.ca && { ca: e.ca }), ...(e.cert && { cert: e.cert }), ...(e.key && { key: e.key }) }
        : {}
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs
    let req!: ClientRequest
    const response = new Promise<IncomingMessage>((resolveResponse, reject) => {
      req = send(url, { method, headers, ...tls, timeout: timeoutMs }, resolveResponse)
      req.on('timeout', () => req.destroy(new Error(`no data within ${timeoutMs} ms`)))
      req.on('error', (err) => reject(new KubeRequestError(method, path, 0, err.message, { cause: err })))
      req.end(payload)
    })
    return { req, response }
  }

  /** One JSON request; resolves with any status, rejects only when no reply came. */
  async request(
    method: string,
    path: string,
    options: { readonly body?: unknown; readonly contentType?: string; readonly timeoutMs?: number } = {},
  ): Promise<KubeReply> {
    const { response } = this.open(method, path, options)
    const res = await response
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

  /** GET that must answer 2xx; the error names the status and the server's message. */
  async getJson(path: string): Promise<unknown> {
    const reply = await this.request('GET', path)
    if (reply.status < 200 || reply.status > 299) throw new KubeRequestError('GET', path, reply.status, statusMessage(reply.body))
    return reply.body
  }
}

export function statusMessage(body: unknown): string {
  if (body !== null && typeof body === 'object' && typeof (body as { message?: unknown }).message === 'string') {
    return (body as { message: string }).message
  }
  return typeof body === 'string' && body !== '' ? body.slice(0, 200) : 'no message'
}
