// A proxy's HTTP endpoints (Istio's ports), shared by ztunnel and the waypoint:
// Prometheus metrics (15020), readiness /healthz/ready (15021) and, on localhost
// only, the admin /config_dump (15000): what the proxy knows, never keys.
import http from 'node:http'
import type { Registry } from 'prom-client'

import type { Address } from './config.js'

export type { Address }

export interface AdminSources {
  readonly registry: Registry
  ready(): boolean
  configDump(): unknown
}

function listen(server: http.Server, address: Address): Promise<Address> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(address.port, address.host, () => {
      server.off('error', reject)
      const bound = server.address() as { address: string; port: number }
      resolve({ host: bound.address, port: bound.port })
    })
  })
}

function reply(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type })
  res.end(body)
}

export class AdminServers {
  private readonly servers: http.Server[] = []
  readonly bound: Record<'metrics' | 'readiness' | 'admin', Address | null> = { metrics: null, readiness: null, admin: null }

  constructor(private readonly sources: AdminSources) {}

  async start(addresses: { readonly metrics: Address; readonly readiness: Address; readonly admin: Address }): Promise<void> {
    const metrics = http.createServer((req, res) => {
      if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') return reply(res, 404, 'text/plain', 'not found: try GET /metrics\n')
      this.sources.registry.metrics().then(
        (body) => reply(res, 200, this.sources.registry.contentType, body),
        (err: Error) => reply(res, 500, 'text/plain', `metrics failed: ${err.message}\n`),
      )
    })
    const readiness = http.createServer((req, res) => {
      if (req.url !== '/healthz/ready') return reply(res, 404, 'text/plain', 'not found: try GET /healthz/ready\n')
      return this.sources.ready() ? reply(res, 200, 'text/plain', 'ready\n') : reply(res, 503, 'text/plain', 'not ready\n')
    })
    const admin = http.createServer((req, res) => {
      if (req.url !== '/config_dump') return reply(res, 404, 'text/plain', 'not found: try GET /config_dump\n')
      return reply(res, 200, 'application/json', JSON.stringify(this.sources.configDump(), null, 2) + '\n')
    })
    this.servers.push(metrics, readiness, admin)
    this.bound.metrics = await listen(metrics, addresses.metrics)
    this.bound.readiness = await listen(readiness, addresses.readiness)
    this.bound.admin = await listen(admin, addresses.admin)
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.closeAllConnections()
            s.close(() => resolve())
          }),
      ),
    )
    this.servers.length = 0
  }
}
