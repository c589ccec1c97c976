// The agent's one HTTP endpoint, on localhost: Prometheus /metrics, readiness
// /healthz/ready (the source synced and the first reconcile applied), and /status,
// the JSON that `ambient status` prints.
import http from 'node:http'
import type { Registry } from 'prom-client'
import type { Address } from '../common/config.js'

export interface StatusSources {
  readonly registry: Registry
  ready(): boolean
  status(): unknown
}

function reply(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type })
  res.end(body)
}

export class StatusServer {
  #server: http.Server | null = null
  bound: Address | null = null

  constructor(
    private readonly sources: StatusSources,
    private readonly onError: (err: Error) => void = () => undefined,
  ) {}

  async start(address: Address): Promise<Address> {
    const server = http.createServer((req, res) => {
      const path = req.url?.split('?')[0]
      if (req.method !== 'GET') return reply(res, 405, 'text/plain', 'only GET\n')
      if (path === '/metrics') {
        this.sources.registry.metrics().then(
          (body) => reply(res, 200, this.sources.registry.contentType, body),
          (err: Error) => reply(res, 500, 'text/plain', `metrics failed: ${err.message}\n`),
        )
        return
      }
      if (path === '/healthz/ready') return this.sources.ready() ? reply(res, 200, 'text/plain', 'ready\n') : reply(res, 503, 'text/plain', 'not ready\n')
      if (path === '/status') {
        let body: string
        try {
          body = JSON.stringify(this.sources.status(), null, 2) + '\n'
        } catch (err) {
          return reply(res, 500, 'text/plain', `status failed: ${(err as Error).message}\n`)
        }
        return reply(res, 200, 'application/json', body)
      }
      return reply(res, 404, 'text/plain', 'not found: try /status, /metrics or /healthz/ready\n')
    })
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(address.port, address.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', (err) => this.onError(err))
    const a = server.address() as { address: string; port: number }
    this.bound = { host: a.address, port: a.port }
    return this.bound
  }

  async stop(): Promise<void> {
    const server = this.#server
    if (server === null) return
    this.#server = null
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
