// Callers that prove who they are with a Kubernetes service-account token, as
// Istio's CA does it: the caller sends `authorization: Bearer <token>` (a projected
// token with the CA's audience, `istio-ca` by default); the CA asks the API server
// (TokenReview, authentication.k8s.io/v1, with that audience) and maps the answer:
// - ztunnel's service account (default ambient-system/ztunnel) is a node: the node
//   its token is bound to. Kubernetes >= 1.30 names it in the user extra
//   (`authentication.kubernetes.io/node-name`, ServiceAccountTokenPodNodeInfo);
//   before that, as Istio does, the bound pod (`pod-name`, `pod-uid`) is read and its
//   spec.nodeName used, checking the uid so a re-created pod's name does not pass.
// - any other service account is a workload that may get only its own identity.
// Answers are cached for a short while (a node asks for many identities at once).
import { createHash } from 'node:crypto'
import type { Logger } from '../common/log.js'
import { CaError } from '../common/identity/ca-errors.js'
import { KubeRequestError, type KubeClient } from '../common/kube/kube-client.js'
import { spiffeIdentity } from '../common/model/workload.js'
import type { Caller } from './authority.js'

export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name'
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name'
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid'

export interface TokenAuthenticatorOptions {
  readonly client: KubeClient
  readonly trustDomain: string
  /** The audience tokens must be issued for (Istio: istio-ca). */
  readonly audience: string
  /** The service account whose tokens stand for the node they are bound to. */
  readonly nodeServiceAccount: { readonly namespace: string; readonly name: string }
  readonly log: Logger
  /** How long a TokenReview answer is reused; default 30 s. */
  readonly cacheMs?: number
  readonly now?: () => number
}

interface ReviewStatus {
  authenticated?: boolean
  error?: string
  audiences?: string[]
  user?: { username?: string; extra?: Record<string, string[]> }
}

const unauthenticated = (message: string, cause?: unknown): CaError =>
  new CaError('AMBIENT_ERR_CA_UNAUTHENTICATED', message, cause === undefined ? undefined : { cause })
const denied = (message: string): CaError => new CaError('AMBIENT_ERR_CA_PERMISSION_DENIED', message)

export class TokenAuthenticator {
  readonly #o: TokenAuthenticatorOptions
  readonly #cache = new Map<string, { readonly caller: Caller; readonly until: number }>()

  constructor(options: TokenAuthenticatorOptions) {
    this.#o = options
  }

  async authenticate(token: string): Promise<Caller> {
    const now = (this.#o.now ?? Date.now)()
    const key = createHash('sha256').update(token).digest('base64')
    const cached = this.#cache.get(key)
    if (cached !== undefined && now < cached.until) return cached.caller
    const caller = await this.#authenticateOnce(token)
    if (this.#cache.size >= 4096) this.#cache.delete(this.#cache.keys().next().value!)
    this.#cache.set(key, { caller, until: now + (this.#o.cacheMs ?? 30_000) })
    return caller
  }

  async #authenticateOnce(token: string): Promise<Caller> {
    const { client, audience, nodeServiceAccount: zt } = this.#o
    let reply: { status?: ReviewStatus }
    try {
      reply = (await client.expectOk('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [audience] } },
      })) as { status?: ReviewStatus }
    } catch (err) {
      if (err instanceof KubeRequestError && err.statusCode === 403) this.#o.log.error(err.fields, err.message)
      throw new CaError('AMBIENT_ERR_CA_UNAVAILABLE', `cannot check the service account token with the API server: ${(err as Error).message}`, { cause: err })
    }
    const status = reply.status ?? {}
    if (status.authenticated !== true)
      throw unauthenticated(
        `service account token refused by the API server: ${status.error || 'not authenticated'} (the token must be a projected token for audience ${audience})`,
      )
    if (!(status.audiences ?? []).includes(audience))
      throw unauthenticated(`service account token is for ${JSON.stringify(status.audiences ?? [])}, not for audience ${audience}`)
    const username = status.user?.username ?? ''
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(username)
    if (m === null) throw denied(`${JSON.stringify(username)} is not a service account; only service accounts get certificates`)
    const [, namespace, name] = m as unknown as [string, string, string]
    if (namespace !== zt.namespace || name !== zt.name) return { kind: 'workload', identity: spiffeIdentity(this.#o.trustDomain, namespace, name) }
    const extra = status.user?.extra ?? {}
    const node = extra[NODE_NAME_EXTRA]?.[0]
    if (node) return { kind: 'node', node, via: 'token' }
    return { kind: 'node', node: await this.#nodeOfBoundPod(namespace, extra), via: 'token' }
  }

  /** Kubernetes < 1.30: the node of the pod the token is bound to. */
  async #nodeOfBoundPod(namespace: string, extra: Record<string, string[]>): Promise<string> {
    const podName = extra[POD_NAME_EXTRA]?.[0]
    const podUid = extra[POD_UID_EXTRA]?.[0]
    const who = `${namespace}/${this.#o.nodeServiceAccount.name}`
    if (!podName || !podUid)
      throw denied(`the token of ${who} is not bound to a pod (a long-lived Secret token?): mount a projected token so the CA can tell which node it is`)
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(podName)}`
    let pod: { metadata?: { uid?: string }; spec?: { nodeName?: string } }
    try {
      pod = (await this.#o.client.getJson(path)) as typeof pod
    } catch (err) {
      if (err instanceof KubeRequestError && err.statusCode === 404)
        throw unauthenticated(`the pod ${namespace}/${podName} the token is bound to does not exist`)
      if (err instanceof KubeRequestError && err.statusCode === 403) this.#o.log.error(err.fields, err.message)
      throw new CaError('AMBIENT_ERR_CA_UNAVAILABLE', `cannot read the pod ${namespace}/${podName} the token is bound to: ${(err as Error).message}`, {
        cause: err,
      })
    }
    if (pod.metadata?.uid !== podUid) throw unauthenticated(`the pod ${namespace}/${podName} the token is bound to was replaced (uid ${podUid} is gone)`)
    const node = pod.spec?.nodeName
    if (!node) throw denied(`the pod ${namespace}/${podName} the token is bound to is not scheduled on a node`)
    return node
  }
}
