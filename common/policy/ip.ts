// IP addresses as numbers, for CIDR tests on the connection path: IPv4 as a
// 32-bit unsigned number, IPv6 as a bigint. Pure.
import { isIPv4, isIPv6 } from 'node:net'

export type ParsedIp = { readonly family: 4; readonly value: number } | { readonly family: 6; readonly value: bigint }

/** undefined when `text` is not an IP address. */
export function parseIp(text: string): ParsedIp | undefined {
  if (isIPv4(text)) {
    const p = text.split('.')
    return { family: 4, value: ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0 }
  }
  if (isIPv6(text)) return { family: 6, value: parseIPv6(text) }
  return undefined
}

function parseIPv6(text: string): bigint {
  let s = text
  const zone = s.indexOf('%')
  if (zone >= 0) s = s.slice(0, zone)
  let tail: number[] = []
  const lastColon = s.lastIndexOf(':')
  if (s.includes('.', lastColon)) {
    const v4 = s
      .slice(lastColon + 1)
      .split('.')
      .map(Number)
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!]
    s = s.slice(0, lastColon + 1) + '0:0'
  }
  const [head, rest] = s.includes('::') ? s.split('::') : [s, undefined]
  const left = head === '' ? [] : head!.split(':')
  const right = rest === undefined || rest === '' ? [] : rest.split(':')
  const groups = rest === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
  let value = 0n
  const words = groups.map((g) => parseInt(g, 16))
  if (tail.length === 2) words.splice(6, 2, tail[0]!, tail[1]!)
  for (const w of words) value = (value << 16n) | BigInt(w)
  return value
}

/** A predicate "ip is inside address/length"; address bits past the prefix are ignored. */
export function cidrContains(address: string, length: number): (ip: ParsedIp | undefined) => boolean {
  const net = parseIp(address)
  if (net === undefined) return () => false
  if (net.family === 4) {
    const mask = length <= 0 ? 0 : (0xffffffff << (32 - Math.min(length, 32))) >>> 0
    const base = (net.value & mask) >>> 0
    return (ip) => ip !== undefined && ip.family === 4 && (ip.value & mask) >>> 0 === base
  }
  const bits = BigInt(Math.min(Math.max(length, 0), 128))
  const mask = bits === 0n ? 0n : ((1n << bits) - 1n) << (128n - bits)
  const base = net.value & mask
  return (ip) => ip !== undefined && ip.family === 6 && (ip.value & mask) === base
}
