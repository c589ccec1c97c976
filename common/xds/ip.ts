// IP addresses between their text form (the model) and their raw bytes (the wire:
// 4 bytes for IPv4, 16 for IPv6, network order).
import { isIPv4, isIPv6, SocketAddress } from 'node:net'

/** Raw bytes of an IP in text form; null when the text is not an IP. */
export function ipToBytes(text: string): Buffer | null {
  if (isIPv4(text)) return Buffer.from(text.split('.').map(Number))
  if (!isIPv6(text) || text.includes('%')) return null
  let head = text
  let v4: number[] = []
  const lastColon = text.lastIndexOf(':')
  if (text.slice(lastColon + 1).includes('.')) {
    v4 = text
      .slice(lastColon + 1)
      .split('.')
      .map(Number)
    head = text.slice(0, lastColon + 1) + '0:0'
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, null]
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)))
  const l = groups(left!)
  const r = right === null ? [] : groups(right)
  const all = right === null ? l : [...l, ...new Array<number>(8 - l.length - r.length).fill(0), ...r]
  const out = Buffer.alloc(16)
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2))
  if (v4.length === 4) out.set(v4, 12)
  return out
}

/** Canonical text of 4 or 16 raw bytes (`10.0.0.1`, `fd00::1`); null for any other length. */
export function bytesToIp(bytes: Uint8Array): string | null {
  if (bytes.length === 4) return Array.from(bytes).join('.')
  if (bytes.length !== 16) return null
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16))
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address
}
