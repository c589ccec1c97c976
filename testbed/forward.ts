// Connections between the machine's loopback and a testbed pod, which share no
// route (the testbed never has one to the machine): the testbed's process holds a
// listening socket on one side and makes each connection's other leg on the
// other side through the native addon (a socket made inside the pod's netns).
// - forwardToPod: 127.0.0.1:<local> here -> an address inside the pod, as
//   `kubectl port-forward` does (a Prometheus on the machine scraping a waypoint).
// - exposeToPod: an address inside the pod -> 127.0.0.1:<port> here, as a
//   cluster Service would reach a control-plane process (a waypoint reaching
//   `ambient ca` that listens on the machine's loopback).
// Only loopback on the machine's side: nothing leaves it.
import net from 'node:net'
import { socketInNetns } from '../native/index.js'
import { relay } from '../common/net/relay.js'
import { TestbedError } from './testbed.js'

export interface Forward {
  /** The listening side's address. */
  readonly address: { readonly host: string; readonly port: number }
  close(): Promise<void>
}

function loopbackOnly(host: string): void {
  if (host !== '127.0.0.1') throw new TestbedError(`forwards connect only to the machine's loopback, not ${host}`)
}

/** Adopts a socket made in the pod's netns and connects it (in the same tick, as Node needs). */
async function dialInPod(netnsPath: string, target: { readonly ip: string; readonly port: number }): Promise<net.Socket> {
  const fd = await socketInNetns(netnsPath, { family: 4 })
  const socket = new net.Socket({ fd, readable: true, writable: true })
  return new Promise((resolve, reject) => {
    socket.once('error', reject)
    socket.connect(target.port, target.ip, () => {
      socket.off('error', reject)
      resolve(socket)
    })
  })
}

function serve(server: net.Server, connect: () => Promise<net.Socket>): Set<net.Socket> {
  const open = new Set<net.Socket>()
  server.on('connection', (downstream) => {
    open.add(downstream)
    downstream.once('close', () => open.delete(downstream))
    downstream.pause()
    connect().then(
      (upstream) => {
        open.add(upstream)
        upstream.once('close', () => open.delete(upstream))
        void relay(downstream, upstream)
      },
      () => downstream.destroy(),
    )
  })
  return open
}

function closer(server: net.Server, open: Set<net.Socket>): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      for (const s of open) s.destroy()
      server.close(() => resolve())
    })
}

export async function forwardToPod(netnsPath: string, target: { readonly ip: string; readonly port: number }): Promise<Forward> {
  const server = net.createServer({ pauseOnConnect: true })
  const open = serve(server, () => dialInPod(netnsPath, target))
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', () => resolve()))
  const { port } = server.address() as net.AddressInfo
  return { address: { host: '127.0.0.1', port }, close: closer(server, open) }
}

export async function exposeToPod(
  netnsPath: string,
  listen: { readonly ip: string; readonly port: number },
  target: { readonly host: string; readonly port: number },
): Promise<Forward> {
  loopbackOnly(target.host)
  const fd = await socketInNetns(netnsPath, { family: 4, reuseAddr: true, bindAddress: listen.ip, bindPort: listen.port, listenBacklog: 128 })
  const server = net.createServer({ pauseOnConnect: true })
  const open = serve(
    server,
    () =>
      new Promise((resolve, reject) =>
        net
          .connect(target.port, target.host)
          .once('connect', function (this: net.Socket) {
            resolve(this)
          })
          .once('error', reject),
      ),
  )
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ fd }, () => resolve()))
  return { address: { host: listen.ip, port: listen.port }, close: closer(server, open) }
}
