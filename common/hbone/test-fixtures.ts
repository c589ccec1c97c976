// Shared pieces of the HBONE tests and bench: a mesh CA with workload
// certificates (from identity/pki.ts), loopback upstreams, and a started server.
import net from 'node:net'
import tls from 'node:tls'
import { createRootCa, issueWorkloadCertificate } from '../identity/pki.js'
import type { SocketAddress } from './headers.js'
import { HboneServer, type HboneServerOptions } from './server.js'
import { createIdentityContext, type IdentityCredentials } from './tls.js'

export const TRUST_DOMAIN = 'cluster.local'
export const CLIENT_ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/client`
export const SERVER_ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/server`

export interface Ca {
  readonly certPem: string
  readonly keyPem: string
}

export interface Mesh {
  readonly ca: Ca
  readonly trustBundlePem: string
  /** `notBefore` in the past with a short ttl gives an expired certificate. */
  credentials(spiffeId: string, validity?: { readonly ttlMs?: number; readonly notBefore?: Date }): IdentityCredentials
  context(spiffeId: string): tls.SecureContext
}

export function createMesh(commonName = 'hbone test root'): Mesh {
  const ca = createRootCa({ commonName, ttlMs: 24 * 3600_000 })
  const credentials = (spiffeId: string, validity: { readonly ttlMs?: number; readonly notBefore?: Date } = {}): IdentityCredentials => {
    const issued = issueWorkloadCertificate({ spiffeId, ca, ttlMs: validity.ttlMs ?? 3600_000, ...(validity.notBefore && { notBefore: validity.notBefore }) })
    return { keyPem: issued.keyPem, certPem: issued.certPem, chainPem: issued.chainPem, trustBundlePem: ca.certPem }
  }
  const contexts = new Map<string, tls.SecureContext>()
  return {
    ca,
    trustBundlePem: ca.certPem,
    credentials,
    context(spiffeId) {
      let context = contexts.get(spiffeId)
      if (!context) contexts.set(spiffeId, (context = createIdentityContext(credentials(spiffeId))))
      return context
    },
  }
}

/** A TCP server on 127.0.0.1:0 that keeps half-open sockets; returns its address and a closer. */
export async function tcpServer(
  onSocket: (socket: net.Socket) => void,
): Promise<{ readonly address: SocketAddress; readonly server: net.Server; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => undefined)
    onSocket(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  return {
    address: { ip: '127.0.0.1', port },
    server,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

/** Echoes every byte and ends when the client ends. */
export function echoServer(): ReturnType<typeof tcpServer> {
  return tcpServer((socket) => socket.pipe(socket))
}

/** Opens an allowHalfOpen TCP connection. */
export function dialTcp(address: SocketAddress): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address.ip, port: address.port, allowHalfOpen: true })
    socket.once('error', reject)
    socket.once('connect', () => {
      socket.off('error', reject)
      resolve(socket)
    })
  })
}

export type TestTarget = SocketAddress

/** An HBONE server on 127.0.0.1:0 whose targets are the authorities themselves (override any hook). */
export async function startServer(
  mesh: Mesh,
  overrides: Partial<HboneServerOptions<TestTarget>> = {},
): Promise<{ readonly server: HboneServer<TestTarget>; readonly address: SocketAddress }> {
  const server = new HboneServer<TestTarget>({
    credentials: mesh.credentials(SERVER_ID),
    trustDomain: TRUST_DOMAIN,
    resolveTarget: (destination) => destination,
    connectUpstream: (target) => dialTcp(target),
    ...overrides,
  })
  const address = await server.start({ kind: 'address', host: '127.0.0.1', port: 0 })
  return { server, address }
}

/** Reads a stream to its end. */
export function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.once('end', () => resolve(Buffer.concat(chunks)))
    stream.once('error', reject)
  })
}

/** Polls `check` every 20 ms for at most `ms`. */
export async function waitFor(check: () => boolean, ms = 3000): Promise<boolean> {
  for (let waited = 0; waited < ms; waited += 20) {
    if (check()) return true
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return check()
}
