// The HBONE request's header codec, shared by client and server: the strict
// `:authority` (`a.b.c.d:port`, `[v6]:port`), RFC 7239 `forwarded` and W3C
// `traceparent`.
import { randomFillSync } from 'node:crypto'
import net from 'node:net'
import { HboneBadAuthorityError } from './errors.js'

export interface SocketAddress {
  readonly ip: string
  readonly port: number
}

/** Headers an HBONE CONNECT carries besides the pseudo-headers. */
export interface HboneHeaders {
  readonly forwarded?: string
  readonly baggage?: string
  readonly traceparent?: string
}

const PORT = /^[1-9][0-9]{0,4}$/

function parsePort(authority: string, text: string): number {
  if (!PORT.test(text)) throw new HboneBadAuthorityError(authority, `port ${JSON.stringify(text)} is not a number in 1-65535`)
  const port = Number(text)
  if (port > 65535) throw new HboneBadAuthorityError(authority, `port ${port} is above 65535`)
  return port
}

/** Parses a CONNECT authority; anything but a literal IP and a port 1-65535 throws. */
export function parseAuthority(authority: string | undefined): SocketAddress {
  if (authority === undefined || authority === '') throw new HboneBadAuthorityError(authority, 'it is missing')
  if (authority.length > 64) throw new HboneBadAuthorityError(authority.slice(0, 64), 'it is too long')
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']')
    if (close < 0 || authority[close + 1] !== ':') throw new HboneBadAuthorityError(authority, 'expected [ipv6]:port')
    const ip = authority.slice(1, close)
    if (ip.includes('%') || !net.isIPv6(ip)) throw new HboneBadAuthorityError(authority, `${JSON.stringify(ip)} is not an IPv6 address`)
    return { ip, port: parsePort(authority, authority.slice(close + 2)) }
  }
  const colon = authority.lastIndexOf(':')
  if (colon < 0) throw new HboneBadAuthorityError(authority, 'expected ip:port')
  const ip = authority.slice(0, colon)
  if (!net.isIPv4(ip)) throw new HboneBadAuthorityError(authority, `${JSON.stringify(ip)} is not an IPv4 address (IPv6 needs brackets)`)
  return { ip, port: parsePort(authority, authority.slice(colon + 1)) }
}

export function formatAuthority(address: SocketAddress): string {
  return net.isIPv6(address.ip) ? `[${address.ip}]:${address.port}` : `${address.ip}:${address.port}`
}

/** `for=<ip>` as RFC 7239 writes it (IPv6 quoted and bracketed). */
export function formatForwarded(forIp: string): string {
  return net.isIPv6(forIp) ? `for="[${forIp}]"` : `for=${forIp}`
}

/**
 * The first `for=` of a `forwarded` header when it is a literal IP (the hop
 * closest to the original client), else null. Ports and obfuscated ids are ignored.
 */
export function parseForwardedFor(value: string | undefined): string | null {
  if (!value) return null
  const first = value.split(',')[0] ?? ''
  for (const pair of first.split(';')) {
    const eq = pair.indexOf('=')
    if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== 'for') continue
    let node = pair.slice(eq + 1).trim()
    if (node.startsWith('"') && node.endsWith('"') && node.length >= 2) node = node.slice(1, -1)
    if (node.startsWith('[')) {
      const close = node.indexOf(']')
      const ip = close > 0 ? node.slice(1, close) : ''
      return net.isIPv6(ip) ? ip : null
    }
    const ip = node.includes(':') ? node.slice(0, node.indexOf(':')) : node
    return net.isIPv4(ip) ? ip : null
  }
  return null
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/

/** True for a well-formed W3C traceparent with non-zero ids. */
export function isTraceparent(value: string | undefined): value is string {
  if (!value) return false
  const m = TRACEPARENT.exec(value)
  return m !== null && !value.startsWith('ff') && !/^0+$/.test(m[1]!) && !/^0+$/.test(m[2]!)
}

// Trace ids are cut from a pool of random bytes filled 4 KiB at a time: one
// CSPRNG call per 170 connections instead of two per connection.
const ID_BYTES = 24
const randomPool = Buffer.alloc(ID_BYTES * 170)
let randomUsed = randomPool.length

/** A fresh, sampled-flag-off W3C traceparent (ids are never all zero). */
export function generateTraceparent(): string {
  for (;;) {
    if (randomUsed === randomPool.length) {
      randomFillSync(randomPool)
      randomUsed = 0
    }
    const hex = randomPool.toString('hex', randomUsed, randomUsed + ID_BYTES)
    randomUsed += ID_BYTES
    const trace = hex.slice(0, 32)
    const span = hex.slice(32)
    if (!/^0+$/.test(trace) && !/^0+$/.test(span)) return `00-${trace}-${span}-00`
  }
}

/**
 * The traceparent a hop forwards (W3C trace context): the same trace id and
 * flags with this hop's own span id as the parent, or a new trace when the
 * incoming one is missing or invalid.
 */
export function childTraceparent(incoming: string | undefined): string {
  const fresh = generateTraceparent()
  if (!isTraceparent(incoming)) return fresh
  return `00-${incoming.slice(3, 35)}-${fresh.slice(36, 52)}-${incoming.slice(53, 55)}`
}

/** The HBONE headers to send: given values kept, a traceparent generated when none is valid. */
export function requestHeaders(headers: HboneHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  if (headers?.forwarded) out.forwarded = headers.forwarded
  if (headers?.baggage) out.baggage = headers.baggage
  out.traceparent = isTraceparent(headers?.traceparent) ? headers!.traceparent! : generateTraceparent()
  return out
}
