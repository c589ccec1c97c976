// ztunnel's sockets for one enrolled pod: the outbound listener the datapath
// redirects the pod's connects to (pod IP:15001), and the inbound listener that
// sk_lookup steers every incoming connection to (127.0.0.1:15006, registered in
// the datapath by pod IP). What happens to a captured connection is up to the
// handlers: plain passthrough by default, HBONE when ztunnel plugs it in.
import type net from 'node:net'
import { closeFd } from '../../native/index.js'
import type { Logger } from 'pino'
import { dialFromPod, listenInPod, serveOn, socketFromPod, type PodNetns } from './inpod.js'
import { abortSocket, relay, type RelayResult } from '../../common/net/relay.js'
import { ADMIN_PORT, DEFAULT_HBONE_PORT, INBOUND_PLAINTEXT_PORT, METRICS_PORT, OUTBOUND_PORT, READINESS_PORT } from '../../common/ports.js'

export { INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT } from '../../common/ports.js'

/** Ports of ztunnel's own listeners (with the HBONE port in use): a connection addressed to one is refused. */
export function ownPorts(hbonePort: number): ReadonlySet<number> {
  return new Set([OUTBOUND_PORT, INBOUND_PLAINTEXT_PORT, hbonePort, METRICS_PORT, READINESS_PORT, ADMIN_PORT])
}

export interface Endpoint {
  readonly ip: string
  readonly port: number
}

export interface CapturedConnection {
  readonly pod: PodNetns
  readonly socket: net.Socket
  readonly source: Endpoint
  /** Where the client meant to go. */
  readonly destination: Endpoint
}

export type ConnectionHandler = (conn: CapturedConnection) => Promise<RelayResult | void>

/** How the proxy learns the original destination of a redirected connect. */
export interface OriginalDestinationSource {
  originalDestination(pod: PodNetns & { readonly netnsCookie: bigint }, source: Endpoint, redirectedTo: Endpoint): Endpoint | null
}

/** Where the inbound listener is registered for sk_lookup (the datapath's SOCKHASH). */
export interface ListenerRegistry {
  /** Returns the registration's cookie (the socket's). */
  registerListener(podIp: string, fd: number): bigint
  /** Removes the entry only if it still holds the socket of `cookie`. */
  unregisterListener(podIp: string, cookie: bigint): boolean
}

export interface PodProxyOptions {
  readonly pod: PodNetns & { readonly netnsCookie: bigint }
  /** Marks ztunnel's outgoing sockets: the datapath never redirects them. */
  readonly proxyMark: number
  /** Marks delivery sockets into the pod: the pod's policy route returns replies to them. */
  readonly deliveryMark: number
  readonly origins: OriginalDestinationSource
  readonly listeners: ListenerRegistry
  readonly log: Logger
  readonly outbound?: ConnectionHandler
  readonly inbound?: ConnectionHandler
  /** The HBONE port of this mesh (default 15008): never delivered to as plaintext. */
  readonly hbonePort?: number
  /** Outbound sockets arrive paused (the native HBONE engine may take their fd); a handler that relays in Node resumes them. */
  readonly pauseOutbound?: boolean
}

/** Plain TCP to the original destination, from the pod's netns, marked so it is not captured again. */
export function passthroughOutbound(mark: number): ConnectionHandler {
  return async (conn) => {
    const upstream = await dialFromPod(conn.pod, conn.destination, { mark })
    return relay(conn.socket, upstream)
  }
}

/** A delivery source port that differs from the client's (same 4-tuple would hang). */
function deliveryPort(clientPort: number): number {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 40000)
    if (port !== clientPort) return port
  }
}

/** Delivery attempts before a connection is refused; each tries another source port. */
const DELIVERY_ATTEMPTS = 8

/**
 * Dials the application inside the pod with the client's own address as source: a
 * transparent socket bound to lo (so sk_lookup lets it through) and marked (so the
 * application's replies route back to it). The source port differs from the
 * client's: the same 4-tuple as the connection being relayed would hang.
 * Deliveries from one client address leave TIME_WAIT sockets on their ports (ztunnel
 * often closes first), and those fill up in a minute at a few hundred connections a
 * second: with SO_REUSEADDR on every delivery socket a bind never conflicts with
 * them (nor with another live delivery: Linux allows that between non-listening
 * SO_REUSEADDR sockets); the 4-tuple is checked at connect, which takes over a
 * TIME_WAIT one when TCP timestamps were on and fails with EADDRNOTAVAIL otherwise
 * or when a live connection has it. Then, and on EADDRINUSE (TIME_WAIT left by a
 * socket without SO_REUSEADDR), the next attempt takes another port.
 */
export async function dialDelivery(
  pod: PodNetns,
  destination: Endpoint,
  source: Endpoint,
  mark: number,
  pickPort: (clientPort: number) => number = deliveryPort,
): Promise<net.Socket> {
  let lastError: unknown
  for (let attempt = 0; attempt < DELIVERY_ATTEMPTS; attempt++) {
    try {
      return await dialFromPod(pod, destination, { mark, transparentSource: source.ip, sourcePort: pickPort(source.port), bindToDevice: 'lo', reuseAddr: true })
    } catch (err) {
      lastError = err
      const { code, syscall } = err as NodeJS.ErrnoException
      // EADDRNOTAVAIL from bind is a setup problem (no transparent bind), not a busy port.
      if (code !== 'EADDRINUSE' && !(code === 'EADDRNOTAVAIL' && syscall === 'connect')) break
    }
  }
  throw lastError
}

/**
 * dialDelivery for the native HBONE engine: the same socket (the client's address,
 * lo, the delivery mark, another source port per attempt), connected by the engine
 * through `connect` (ServerTunnel.deliver), which answers 200 once it is connected.
 */
export async function deliverThrough(
  connect: (fd: number, target: Endpoint) => Promise<void>,
  pod: PodNetns,
  destination: Endpoint,
  source: Endpoint,
  mark: number,
  pickPort: (clientPort: number) => number = deliveryPort,
): Promise<void> {
  let lastError: unknown
  for (let attempt = 0; attempt < DELIVERY_ATTEMPTS; attempt++) {
    try {
      const options = { mark, transparentSource: source.ip, sourcePort: pickPort(source.port), bindToDevice: 'lo', reuseAddr: true }
      return await connect(await socketFromPod(pod, options), destination)
    } catch (err) {
      lastError = err
      const { code, syscall } = err as NodeJS.ErrnoException
      if (code !== 'EADDRINUSE' && !(code === 'EADDRNOTAVAIL' && syscall === 'connect')) break
    }
  }
  throw lastError
}

/** Plaintext inbound, delivered as is. */
export function deliverToPod(mark: number): ConnectionHandler {
  return async (conn) => relay(conn.socket, await dialDelivery(conn.pod, conn.destination, conn.source, mark))
}

export class PodProxy {
  private outboundServer: net.Server | null = null
  private inboundServer: net.Server | null = null
  /** The cookie of the listener this proxy registered: it removes that entry and no other. */
  private registered: bigint | null = null
  private readonly open = new Set<net.Socket>()
  private readonly log: Logger
  private readonly ownPorts: ReadonlySet<number>

  constructor(private readonly options: PodProxyOptions) {
    this.log = options.log.child({ pod: options.pod.ip })
    this.ownPorts = ownPorts(options.hbonePort ?? DEFAULT_HBONE_PORT)
  }

  /**
   * Opens the outbound listener (pod IP:15001) and the inbound one (127.0.0.1:15006,
   * registered for sk_lookup), or serves on `fds` made for them in the pod's netns
   * already (they are the proxy's from now on, also when starting fails).
   */
  async start(fds?: { readonly outbound: number; readonly inbound: number }): Promise<void> {
    const { pod } = this.options
    try {
      const outbound = (s: net.Socket): void => this.onOutbound(s)
      const inbound = (s: net.Socket): void => this.onInbound(s)
      let inboundFd: number
      if (fds) {
        const pending = [fds.inbound]
        try {
          this.outboundServer = await serveOn(fds.outbound, outbound, this.options.pauseOutbound)
          pending.pop()
          this.inboundServer = await serveOn(fds.inbound, inbound)
        } catch (err) {
          for (const fd of pending) closeFd(fd)
          throw err
        }
        inboundFd = fds.inbound
      } else {
        this.outboundServer = (await listenInPod(pod, { host: pod.ip, port: OUTBOUND_PORT }, outbound, this.options.pauseOutbound)).server
        const listening = await listenInPod(pod, { host: '127.0.0.1', port: INBOUND_PLAINTEXT_PORT }, inbound)
        this.inboundServer = listening.server
        inboundFd = listening.fd
      }
      this.registered = this.options.listeners.registerListener(pod.ip, inboundFd)
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  /** Stops accepting; with `drain` false (default) also closes open connections. */
  async stop(options: { readonly drain?: boolean } = {}): Promise<void> {
    // Only our own entry: another proxy (or a successor ztunnel) may have registered one for this pod since.
    if (this.registered !== null) this.options.listeners.unregisterListener(this.options.pod.ip, this.registered)
    this.registered = null
    const servers = [this.inboundServer, this.outboundServer].filter((s): s is net.Server => s !== null)
    this.inboundServer = this.outboundServer = null
    // A server's close callback waits for every connection it accepted to end: open
    // ones are cut first unless draining, or stop() (and with it the pod's release
    // and every pod change queued behind it) waits on the slowest client. Cut with
    // a reset: a FIN would tell the client its peer finished.
    const closed = Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))))
    if (!options.drain) for (const socket of this.open) abortSocket(socket)
    await closed
  }

  /**
   * A successor ztunnel serves on these same listening sockets now: stops accepting
   * here (our descriptors close, the sockets stay open through the successor's) and
   * leaves the listener registration, which is the successor's too, in place.
   * Resolves when the connections accepted here have ended; stop() cuts them.
   */
  handOver(): Promise<void> {
    this.registered = null
    const servers = [this.inboundServer, this.outboundServer].filter((s): s is net.Server => s !== null)
    this.inboundServer = this.outboundServer = null
    return Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined)
  }

  get connections(): number {
    return this.open.size
  }

  private track(socket: net.Socket): void {
    this.open.add(socket)
    socket.once('close', () => this.open.delete(socket))
  }

  private onOutbound(socket: net.Socket): void {
    this.track(socket)
    const source = { ip: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 }
    const redirectedTo = { ip: socket.localAddress ?? '', port: socket.localPort ?? 0 }
    const destination = this.options.origins.originalDestination(this.options.pod, source, redirectedTo)
    if (!destination) {
      // Someone dialed the outbound port directly, or the datapath lost the entry:
      // there is nowhere legitimate to send it.
      this.log.warn({ source, redirectedTo }, 'outbound connection without an original destination refused')
      socket.resetAndDestroy()
      return
    }
    this.handle(this.options.outbound ?? passthroughOutbound(this.options.proxyMark), socket, source, destination, 'outbound')
  }

  private onInbound(socket: net.Socket): void {
    this.track(socket)
    const source = { ip: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 }
    const destination = { ip: socket.localAddress ?? '', port: socket.localPort ?? 0 }
    if (this.ownPorts.has(destination.port) || destination.ip !== this.options.pod.ip) {
      this.log.warn({ source, destination }, "inbound connection addressed to ztunnel's own port refused")
      socket.resetAndDestroy()
      return
    }
    this.handle(this.options.inbound ?? deliverToPod(this.options.deliveryMark), socket, source, destination, 'inbound')
  }

  private handle(handler: ConnectionHandler, socket: net.Socket, source: Endpoint, destination: Endpoint, direction: string): void {
    socket.on('error', (err) => this.log.debug({ err, direction }, 'downstream error'))
    handler({ pod: this.options.pod, socket, source, destination }).then(
      (result) => {
        if (result) this.log.debug({ direction, source, destination, sent: result.sent, received: result.received }, 'connection closed')
      },
      (err: unknown) => {
        this.log.info({ direction, source, destination, err: (err as Error).message }, 'connection failed')
        abortSocket(socket)
      },
    )
  }
}
