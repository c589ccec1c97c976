// Sockets ztunnel owns inside a pod's network namespace (design.md, Inbound): the
// native addon creates them on a short-lived thread that enters the namespace and
// hands the fd to Node, so the main thread never changes namespace.
import net from 'node:net'
import { socketInNetns } from '../../native/index.js'

export interface PodNetns {
  readonly netnsPath: string
  readonly ip: string
}

/** A listening socket inside the pod's netns, adopted by a net.Server. */
export async function listenInPod(
  pod: PodNetns,
  address: { readonly host: string; readonly port: number },
  onConnection: (socket: net.Socket) => void,
): Promise<{ server: net.Server; fd: number }> {
  const fd = await socketInNetns(pod.netnsPath, {
    family: 4,
    reuseAddr: true,
    bindAddress: address.host,
    bindPort: address.port,
    listenBacklog: 1024,
  })
  // Nagle off: ztunnel relays what it reads at once; coalescing small writes only adds latency.
  const server = net.createServer({ pauseOnConnect: false, noDelay: true }, onConnection)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ fd }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return { server, fd }
}

export interface DialOptions {
  /** SO_MARK: ztunnel's mark, so the datapath never redirects this socket. */
  readonly mark: number
  /** Bind to this (foreign) source address with IP_TRANSPARENT: the client's own. */
  readonly transparentSource?: string
  /** Source port to bind with transparentSource (0: any). */
  readonly sourcePort?: number
  readonly bindToDevice?: string
  readonly timeoutMs?: number
}

/** Connects from inside the pod's netns; resolves once the connection is established. */
export async function dialFromPod(pod: PodNetns, target: { readonly ip: string; readonly port: number }, options: DialOptions): Promise<net.Socket> {
  const fd = await socketInNetns(pod.netnsPath, {
    family: 4,
    mark: options.mark,
    transparent: options.transparentSource !== undefined,
    bindToDevice: options.bindToDevice,
    bindAddress: options.transparentSource,
    bindPort: options.transparentSource !== undefined ? (options.sourcePort ?? 0) : undefined,
  })
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
