// The waypoint's connections to backends: to a workload in the mesh an HBONE
// stream (pooled sessions, the waypoint's own certificate, the backend's identity
// checked), to a workload outside it plain TCP. On top, per backend endpoint, a
// keep-alive HTTP/1.1 agent whose connections are such streams, and a cached h2c
// session, so requests reuse connections as Envoy's connection pools do.
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { HbonePool } from '../../common/hbone/pool.js'
import { formatAuthority, formatForwarded } from '../../common/hbone/headers.js'
import type { IdentityManager } from '../../common/identity/manager.js'
import { identityOf } from '../../common/model/workload-store.js'
import type { Workload } from '../../common/model/workload.js'
import { jsDuplex } from '../../common/net/js-duplex.js'

export interface Endpoint {
  readonly workload: Workload
  /** The port the workload serves on (the service's target port). */
  readonly port: number
}

export interface UpstreamOptions {
  readonly identities: IdentityManager
  /** The waypoint's own SPIFFE identity: its client certificate. */
  readonly identity: string
  readonly hbonePort: number
  readonly connectTimeoutMs?: number
  readonly log: Logger
}

const key = (e: Endpoint): string => `${e.workload.ips[0]}:${e.port}`

export class Upstreams {
  private readonly pool: HbonePool
  private readonly agents = new Map<string, http.Agent>()
  private readonly sessions = new Map<string, Promise<http2.ClientHttp2Session>>()
  private stopped = false

  constructor(private readonly options: UpstreamOptions) {
    this.pool = new HbonePool({
      contextFor: async (identity) => (await options.identities.getCertificate(identity)).secureContext,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      log: options.log.child({ component: 'hbone-pool' }),
    })
  }

  /** One connection to a backend: an HBONE stream when it is in the mesh, else TCP. `sourceIp` goes in `forwarded`. */
  async connect(endpoint: Endpoint, sourceIp?: string): Promise<Duplex> {
    const ip = endpoint.workload.ips[0]!
    if (endpoint.workload.tunnelProtocol === 'HBONE') {
      return this.pool.connect({
        sourceIdentity: this.options.identity,
        destinationIdentity: identityOf(endpoint.workload),
        nextHop: { ip, port: this.options.hbonePort },
        authority: formatAuthority({ ip, port: endpoint.port }),
        ...(sourceIp ? { headers: { forwarded: formatForwarded(sourceIp) } } : {}),
      })
    }
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: ip, port: endpoint.port, timeout: this.options.connectTimeoutMs ?? 10_000 })
      socket.setNoDelay(true)
      socket.once('connect', () => {
        socket.setTimeout(0)
        resolve(socket)
      })
      socket.once('timeout', () => socket.destroy(new Error(`connect to ${ip}:${endpoint.port} timed out`)))
      socket.once('error', reject)
    })
  }

  /** A keep-alive HTTP/1.1 agent whose sockets are connections to this endpoint. */
  http1Agent(endpoint: Endpoint): http.Agent {
    const k = key(endpoint)
    let agent = this.agents.get(k)
    if (agent === undefined) {
      agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, timeout: 60_000 })
      // Node's agent dials net sockets; ours are HBONE streams (or TCP sockets) made asynchronously.
      ;(agent as unknown as { createConnection: unknown }).createConnection = (_options: unknown, done: (err: Error | null, socket?: Duplex) => void) => {
        this.connect(endpoint).then(
          // HTTP written into an HBONE stream goes through a JS adapter (js-duplex.ts).
          (socket) => done(null, endpoint.workload.tunnelProtocol === 'HBONE' ? jsDuplex(socket) : socket),
          (err: Error) => done(err),
        )
        return undefined
      }
      // A stream has no TCP keep-alive or ref/unref: keep it pooled as it is.
      agent.keepSocketAlive = () => true
      agent.reuseSocket = () => undefined
      this.agents.set(k, agent)
    }
    return agent
  }

  /** A cached h2c session to this endpoint (a new one once it closed). */
  h2Session(endpoint: Endpoint): Promise<http2.ClientHttp2Session> {
    const k = key(endpoint)
    const cached = this.sessions.get(k)
    if (cached !== undefined) return cached
    const opening = this.connect(endpoint).then((socket) => {
      const carried = endpoint.workload.tunnelProtocol === 'HBONE' ? jsDuplex(socket) : socket
      const session = http2.connect(`http://${k}`, { createConnection: () => carried })
      session.on('error', (err) => this.options.log.debug({ endpoint: k, err: err.message }, 'h2c upstream session error'))
      session.once('close', () => {
        if (this.sessions.get(k) === opening) this.sessions.delete(k)
      })
      session.once('goaway', () => {
        if (this.sessions.get(k) === opening) this.sessions.delete(k)
      })
      return session
    })
    opening.catch(() => this.sessions.delete(k))
    this.sessions.set(k, opening)
    return opening
  }

  /** A rotated certificate: new sessions handshake with it. */
  invalidateIdentity(): void {
    this.pool.invalidateIdentity(this.options.identity)
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const agent of this.agents.values()) agent.destroy()
    this.agents.clear()
    for (const opening of this.sessions.values())
      void opening.then(
        (s) => s.destroy(),
        () => undefined,
      )
    this.sessions.clear()
    await this.pool.stop()
  }
}
