// The mesh's roots where every pod can mount them: as istiod does, a ConfigMap
// (default `istio-ca-root-cert`, key `root-cert.pem`) in every namespace. ztunnel
// and waypoints mount it to check the CA's serving certificate and their peers.
// Each pass lists those ConfigMaps (one request, by name) and creates the missing
// ones and rewrites the changed ones; it runs when namespaces change and every
// resync period, so a deleted or edited copy comes back. Errors are logged and
// retried at the next pass (a 403 names the missing RBAC rule).
import type { Logger } from '../common/log.js'
import { errorMessage } from '../common/kube/errors.js'
import { KubeRequestError, type KubeClient } from '../common/kube/kube-client.js'

export const ROOT_CERT_KEY = 'root-cert.pem'
export const DEFAULT_ROOT_CERT_CONFIGMAP = 'istio-ca-root-cert'

interface ConfigMap {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> }
  data?: Record<string, string>
}

export interface RootCertPublisherOptions {
  readonly client: KubeClient
  readonly name: string
  readonly rootCertPem: string
  /** The namespaces that exist now. */
  readonly namespaces: () => readonly string[]
  readonly log: Logger
  readonly resyncMs?: number
}

export class RootCertPublisher {
  readonly #o: RootCertPublisherOptions
  #timer: NodeJS.Timeout | null = null
  #running: Promise<void> | null = null
  #again = false
  #stopped = false
  #passes = 0

  constructor(options: RootCertPublisherOptions) {
    this.#o = options
  }

  get passes(): number {
    return this.#passes
  }

  start(): void {
    this.#stopped = false
    this.sync()
    const loop = (): void => {
      this.#timer = setTimeout(() => {
        this.sync()
        loop()
      }, this.#o.resyncMs ?? 60_000)
      this.#timer.unref()
    }
    loop()
  }

  /** Runs a pass now (or right after the one in flight). */
  sync(): void {
    if (this.#stopped) return
    if (this.#running !== null) {
      this.#again = true
      return
    }
    this.#running = this.#pass()
      .catch((err: unknown) => {
        const fields = err instanceof KubeRequestError ? err.fields : {}
        this.#o.log.error({ ...fields, err: errorMessage(err) }, 'root certificate not published; retrying at the next pass')
      })
      .finally(() => {
        this.#running = null
        this.#passes += 1
        if (this.#again) {
          this.#again = false
          this.sync()
        }
      })
  }

  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer) clearTimeout(this.#timer)
    await this.#running
  }

  async #pass(): Promise<void> {
    const { client, name, rootCertPem, log } = this.#o
    const list = (await client.getJson(`/api/v1/configmaps?fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`)) as { items?: ConfigMap[] }
    const existing = new Map((list.items ?? []).map((cm) => [cm.metadata?.namespace ?? '', cm]))
    const failures: string[] = []
    for (const namespace of this.#o.namespaces()) {
      if (this.#stopped) return
      const current = existing.get(namespace)
      if (current?.data?.[ROOT_CERT_KEY] === rootCertPem) continue
      const body = {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name,
          namespace,
          labels: { ...(current?.metadata?.labels ?? {}), 'app.kubernetes.io/managed-by': 'ambient-ca' },
          ...(current?.metadata?.resourceVersion !== undefined && { resourceVersion: current.metadata.resourceVersion }),
        },
        data: { ...(current?.data ?? {}), [ROOT_CERT_KEY]: rootCertPem },
      }
      const ns = encodeURIComponent(namespace)
      try {
        if (current === undefined) await client.expectOk('POST', `/api/v1/namespaces/${ns}/configmaps`, { body })
        else await client.expectOk('PUT', `/api/v1/namespaces/${ns}/configmaps/${encodeURIComponent(name)}`, { body })
        log.info({ namespace, configMap: name }, current === undefined ? 'root certificate published' : 'root certificate updated')
      } catch (err) {
        // 409 (someone wrote it meanwhile) and 404 (namespace going away) settle at the next pass.
        const fields = err instanceof KubeRequestError ? err.fields : {}
        log.warn({ ...fields, namespace, err: errorMessage(err) }, 'root certificate not written to this namespace')
        failures.push(namespace)
      }
    }
    if (failures.length > 0) throw new Error(`${failures.length} namespace(s) without an up-to-date ${name}: ${failures.slice(0, 5).join(', ')}`)
  }
}
