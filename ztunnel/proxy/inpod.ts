// Sockets ztunnel owns inside a pod's network namespace (design.md, Inbound): the
// native addon creates them on a short-lived thread that enters the namespace and
// hands the fd to Node, so the main thread never changes namespace.
import net from 'node:net'
import { closeFd, configureSocket, socketInNetns, socketsInNetns, type SocketOptions } from '../../native/index.js'

export interface PodNetns {
  readonly netnsPath: string
  readonly ip: string
  /** Spare sockets made ahead of need in this netns; without it every dial makes its own. */
  readonly sockets?: PodSockets
}

/** Spare sockets kept per pod once it dials; a refill starts below half. */
export const SPARE_SOCKETS = 8
/** Spares of a pod that dialed nothing for this long are closed. */
export const SPARE_IDLE_MS = 30_000

/**
 * Sockets made in one pod's netns ahead of need. Making a socket there takes a
 * trip to a thread that enters the namespace (a thread start, setns, a libuv
 * wake-up): per inbound connection that was about a tenth of the receiving
 * ztunnel's CPU. The trip now makes SPARE_SOCKETS at once, and a dial takes one and
 * configures it on the main thread (a socket keeps the netns it was made in).
 * None are made until the pod first dials, and they are closed after SPARE_IDLE_MS
 * without a dial, so idle pods hold no extra descriptors.
 */
export class PodSockets {
  private spare: number[] = []
  private refilling = false
  private closed = false
  private idleTimer: NodeJS.Timeout | null = null
  /** Dials that found no spare and made their own socket. */
  misses = 0

  constructor(
    private readonly netnsPath: string,
    private readonly onRefillError: (err: Error) => void = () => undefined,
    private readonly idleMs = SPARE_IDLE_MS,
  ) {}

  get available(): number {
    return this.spare.length
  }

  /** A spare socket (the caller owns it), or null when none is ready; tops up the spares. */
  take(): number | null {
    if (this.closed) return null
    const fd = this.spare.pop() ?? null
    if (fd === null) this.misses++
    if (this.spare.length < SPARE_SOCKETS / 2) this.refill()
    this.armIdle()
    return fd
  }

  /** Closes the spares; later takes return null. */
  close(): void {
    this.closed = true
    this.clearSpares()
    if (this.idleTimer) clearTimeout(this.idleTimer)
    this.idleTimer = null
  }

  private refill(): void {
    if (this.refilling) return
    this.refilling = true
    socketsInNetns(this.netnsPath, 4, SPARE_SOCKETS - this.spare.length).then(
      (fds) => {
        this.refilling = false
        if (this.closed) for (const fd of fds) closeFd(fd)
        else this.spare.push(...fds)
      },
      (err: Error) => {
        // The next dial makes its own socket and reports the same problem on that connection.
        this.refilling = false
        this.onRefillError(err)
      },
    )
  }

  private armIdle(): void {
    if (this.idleTimer) this.idleTimer.refresh()
    else {
      this.idleTimer = setTimeout(() => {
        this.idleTimer = null
        this.clearSpares()
      }, this.idleMs)
      this.idleTimer.unref()
    }
  }

  private clearSpares(): void {
    for (const fd of this.spare) closeFd(fd)
    this.spare = []
  }
}

/** The options of a listening socket of ztunnel's in a pod's netns. */
export function listenerOptions(address: { readonly host: string; readonly port: number }): SocketOptions {
  return { family: 4, reuseAddr: true, bindAddress: address.host, bindPort: address.port, listenBacklog: 1024 }
}

/** A listening socket inside the pod's netns, adopted by a net.Server. */
export async function listenInPod(
  pod: PodNetns,
  address: { readonly host: string; readonly port: number },
  onConnection: (socket: net.Socket) => void,
  /** Accepted sockets are not read until resumed (their fd may go to the native HBONE engine). */
  pauseOnConnect = false,
): Promise<{ server: net.Server; fd: number }> {
  const fd = await socketInNetns(pod.netnsPath, listenerOptions(address))
  return { server: await serveOn(fd, onConnection, pauseOnConnect), fd }
}

/** A net.Server on a listening fd made in a pod's netns; the fd is the server's (closed with it, or here when adopting fails). */
export async function serveOn(fd: number, onConnection: (socket: net.Socket) => void, pauseOnConnect = false): Promise<net.Server> {
  // Nagle off: ztunnel relays what it reads at once; coalescing small writes only adds latency.
  const server = net.createServer({ pauseOnConnect, noDelay: true }, onConnection)
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ fd }, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (err) {
    closeFd(fd)
    throw err
  }
  return server
}

export interface DialOptions {
  /** SO_MARK: ztunnel's mark, so the datapath never redirects this socket. */
  readonly mark: number
  /** Bind to this (foreign) source address with IP_TRANSPARENT: the client's own. */
  readonly transparentSource?: string
  /** Source port to bind with transparentSource (0: any). */
  readonly sourcePort?: number
  /** SO_REUSEADDR before the bind: the source port may be held by TIME_WAIT sockets of earlier dials. */
  readonly reuseAddr?: boolean
  readonly bindToDevice?: string
  readonly timeoutMs?: number
}

/** A TCP socket of the pod's netns (a spare, or a new one) configured for `options`, not connected; the caller owns the fd. */
export async function socketFromPod(pod: PodNetns, options: DialOptions): Promise<number> {
  const socketOptions: SocketOptions = {
    family: 4,
    mark: options.mark,
    transparent: options.transparentSource !== undefined,
    bindToDevice: options.bindToDevice,
    reuseAddr: options.reuseAddr,
    bindAddress: options.transparentSource,
    bindPort: options.transparentSource !== undefined ? (options.sourcePort ?? 0) : undefined,
  }
  const spare = pod.sockets?.take() ?? null
  if (spare === null) return socketInNetns(pod.netnsPath, socketOptions)
  try {
    configureSocket(spare, pod.netnsPath, socketOptions)
  } catch (err) {
    closeFd(spare)
    throw err
  }
  return spare
}

/** Connects from inside the pod's netns; resolves once the connection is established. */
export async function dialFromPod(pod: PodNetns, target: { readonly ip: string; readonly port: number }, options: DialOptions): Promise<net.Socket> {
  const fd = await socketFromPod(pod, options)
  // Adopting an unconnected fd and connecting must happen in the same tick.
  const socket = new net.Socket({ fd, readable: true, writable: true })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy()
      reject(Object.assign(new Error(`connect to ${target.ip}:${target.port} from ${pod.ip} timed out`), { code: 'ETIMEDOUT' }))
    }, options.timeoutMs ?? 10_000)
    socket.once('error', (err) => {
      clearTimeout(timer)
      socket.destroy()
      reject(err)
    })
    socket.connect(target.port, target.ip, () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      socket.setNoDelay(true)
      resolve(socket)
    })
  })
}
