// Which protocol a tunnelled connection speaks, as Istio decides it for a
// service port: what the port declares (spec.ports[].appProtocol, else the port
// name's prefix, Istio's convention) and, when it declares HTTP or nothing, what
// the first bytes say: the HTTP/2 connection preface (h2c with prior knowledge)
// or an HTTP/1.x request line. Anything else, a port declared as TCP, and, on a
// port that declares nothing, a client that sends nothing within the sniff window
// (server-first protocols such as MySQL or SMTP) are relayed as TCP.
import type { Duplex } from 'node:stream'

export type InnerProtocol = 'http1' | 'h2c' | 'tcp'
export type DeclaredProtocol = 'http' | 'http2' | 'tcp' | null

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
/** How long a silent client is given before its connection is relayed as TCP. */
export const SNIFF_TIMEOUT_MS = 200
/** A request line longer than this is not HTTP/1 (Envoy's default max is 60 KiB of headers; the line itself is short). */
const MAX_REQUEST_LINE = 8192
const REQUEST_LINE = /^[A-Z][A-Z-]{0,19} \S+ HTTP\/1\.[01]$/
const METHOD_PREFIX = /^[A-Z][A-Z-]{0,19}( \S*( (H(T(T(P(\/(1(\.[01]?)?)?)?)?)?)?)?)?)?$/

const HTTP_NAMES = new Set(['http', 'http-web', 'grpc-web'])
const HTTP2_NAMES = new Set(['http2', 'h2c', 'grpc', 'kubernetes.io/h2c'])
const TCP_NAMES = new Set(['tcp', 'tls', 'https', 'mongo', 'mysql', 'redis', 'kubernetes.io/wss', 'kubernetes.io/ws'])

/** What a service port declares: appProtocol first, else the name or its prefix before `-` (Istio's port naming). */
export function declaredProtocol(port: { readonly name: string; readonly appProtocol: string } | null): DeclaredProtocol {
  if (port === null) return null
  for (const value of [port.appProtocol, port.name, port.name.split('-')[0]!]) {
    const v = value.toLowerCase()
    if (v === '') continue
    if (HTTP_NAMES.has(v)) return 'http'
    if (HTTP2_NAMES.has(v)) return 'http2'
    if (TCP_NAMES.has(v)) return 'tcp'
  }
  return null
}

/** What the bytes so far say: a protocol, or undefined while they could still be either. */
export function classify(head: Buffer): InnerProtocol | undefined {
  const n = Math.min(head.length, H2_PREFACE.length)
  if (head.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return head.length >= H2_PREFACE.length ? 'h2c' : undefined
  const crlf = head.indexOf('\r\n')
  if (crlf >= 0) return REQUEST_LINE.test(head.subarray(0, crlf).toString('latin1')) ? 'http1' : 'tcp'
  if (head.length > MAX_REQUEST_LINE) return 'tcp'
  return METHOD_PREFIX.test(head.toString('latin1')) ? undefined : 'tcp'
}

export interface Detection {
  readonly protocol: InnerProtocol
  /** Bytes that could not be put back because the client had already finished sending (relay them first). */
  readonly leftover: Buffer | null
}

/**
 * Reads the first bytes of a stream until they decide the protocol (or the sniff
 * window passes), then puts them back so the protocol's parser sees the stream
 * from its first byte. A declared TCP port is not sniffed. A port declared HTTP
 * whose bytes are not HTTP is still relayed as TCP, not refused.
 */
export function detectProtocol(stream: Duplex, declared: DeclaredProtocol, timeoutMs = SNIFF_TIMEOUT_MS): Promise<Detection> {
  if (declared === 'tcp') return Promise.resolve({ protocol: 'tcp', leftover: null })
  return new Promise((resolve) => {
    let head: Buffer = Buffer.alloc(0)
    const finish = (protocol: InnerProtocol, ended: boolean): void => {
      clearTimeout(timer)
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.pause()
      if (head.length > 0 && !ended) stream.unshift(head)
      resolve({ protocol, leftover: ended && head.length > 0 ? head : null })
    }
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk])
      const protocol = classify(head)
      if (protocol !== undefined) finish(protocol, false)
    }
    // Finished before the bytes decided: too little to be HTTP.
    const onEnd = (): void => finish('tcp', true)
    // Only silence decides by time, and only on a port that declares nothing (HTTP is client-first);
    // bytes that started decide by their content (bounded by the request line's length).
    const timer = setTimeout(() => {
      if (head.length === 0 && declared === null) finish('tcp', false)
    }, timeoutMs)
    stream.on('data', onData)
    stream.once('end', onEnd)
  })
}
