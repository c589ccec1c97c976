// Where an HBONE server's connections come from: a listener it opens itself, a
// listening fd handed over (a socket created inside a pod's netns), or an
// existing net.Server whose connections it takes.
import net from 'node:net'
import type tls from 'node:tls'
import type { SocketAddress } from './headers.js'

export type HboneListen =
  | { readonly kind: 'address'; readonly host: string; readonly port: number }
  | { readonly kind: 'fd'; readonly fd: number }
  | { readonly kind: 'server'; readonly server: net.Server }

/** Why a connection was closed before any stream. */
export type RejectReason = 'tls' | 'alpn' | 'identity' | 'trust_domain'

function boundAddress(server: net.Server): SocketAddress {
  const bound = server.address()
  if (bound === null || typeof bound === 'string') return { ip: String(bound), port: 0 }
  return { ip: bound.address, port: bound.port }
}

function listen(server: net.Server, options: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err)
    server.once('error', onError)
    server.listen(options, () => {
      server.off('error', onError)
      resolve()
    })
  })
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

/** Feeds `tlsServer` from `source`; `detach` stops accepting (closing what we opened). */
export async function listenTls(tlsServer: tls.Server, source: HboneListen): Promise<{ readonly bound: SocketAddress; readonly detach: () => Promise<void> }> {
  switch (source.kind) {
    case 'address':
      await listen(tlsServer, { host: source.host, port: source.port })
      return { bound: boundAddress(tlsServer), detach: () => close(tlsServer) }
    case 'fd':
      await listen(tlsServer, { fd: source.fd } as net.ListenOptions)
      return { bound: boundAddress(tlsServer), detach: () => close(tlsServer) }
    case 'server': {
      const forward = (socket: net.Socket): boolean => tlsServer.emit('connection', socket)
      source.server.on('connection', forward)
      const detach = async (): Promise<void> => {
        source.server.off('connection', forward)
      }
      return { bound: boundAddress(source.server), detach }
    }
  }
}
