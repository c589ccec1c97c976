// A minimal DER encoder and reader: just what X.509 certificates and PKCS#10
// requests with ECDSA P-256 keys need (node:crypto signs; nothing here does crypto).
import { AmbientError } from '../errors.js'

export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const

export class DerError extends AmbientError<'AMBIENT_ERR_IDENTITY_DER'> {
  constructor(message: string) {
    super('AMBIENT_ERR_IDENTITY_DER', message)
  }
}

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n])
  const bytes: number[] = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

export function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), length(content.length), content])
}

export const seq = (...items: Buffer[]): Buffer => tlv(Tag.SEQUENCE, Buffer.concat(items))
export const set = (...items: Buffer[]): Buffer => tlv(Tag.SET, Buffer.concat(items))
/** Context-specific constructed [n] (EXPLICIT tagging). */
export const explicit = (n: number, content: Buffer): Buffer => tlv(0xa0 | n, content)
export const bool = (v: boolean): Buffer => tlv(Tag.BOOLEAN, Buffer.from([v ? 0xff : 0]))
export const octets = (b: Buffer): Buffer => tlv(Tag.OCTET_STRING, b)
export const utf8 = (s: string): Buffer => tlv(Tag.UTF8_STRING, Buffer.from(s, 'utf8'))
export const bitString = (b: Buffer, unusedBits = 0): Buffer => tlv(Tag.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), b]))

/** A non-negative INTEGER from big-endian bytes. */
export function integer(bytes: Buffer): Buffer {
  let i = 0
  while (i < bytes.length - 1 && bytes[i] === 0) i++
  let body = bytes.subarray(i)
  if (body[0]! & 0x80) body = Buffer.concat([Buffer.from([0]), body])
  return tlv(Tag.INTEGER, body)
}

export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number)
  const out = [40 * parts[0]! + parts[1]!]
  for (const part of parts.slice(2)) {
    const chunk: number[] = []
    let v = part
    do {
      chunk.unshift(v & 0x7f)
      v = Math.floor(v / 128)
    } while (v > 0)
    for (let i = 0; i < chunk.length - 1; i++) chunk[i]! |= 0x80
    out.push(...chunk)
  }
  return tlv(Tag.OID, Buffer.from(out))
}

/** UTCTime before 2050, GeneralizedTime after (RFC 5280). */
export function time(date: Date): Buffer {
  const iso = date.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'
  return date.getUTCFullYear() < 2050 ? tlv(Tag.UTC_TIME, Buffer.from(iso.slice(2))) : tlv(Tag.GENERALIZED_TIME, Buffer.from(iso))
}

export interface Node {
  readonly tag: number
  /** The whole TLV. */
  readonly raw: Buffer
  /** The content octets. */
  readonly content: Buffer
}

/** Reads one TLV at `offset`. */
export function read(buf: Buffer, offset = 0): Node & { readonly end: number } {
  if (offset + 2 > buf.length) throw new DerError('truncated DER')
  const tag = buf[offset]!
  let len = buf[offset + 1]!
  let header = 2
  if (len & 0x80) {
    const n = len & 0x7f
    if (n === 0 || n > 4 || offset + 2 + n > buf.length) throw new DerError('bad DER length')
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i]!
    header += n
  }
  const end = offset + header + len
  if (end > buf.length) throw new DerError('DER content runs past its buffer')
  return { tag, raw: buf.subarray(offset, end), content: buf.subarray(offset + header, end), end }
}

/** The children of a constructed node. */
export function children(node: Node): Node[] {
  const out: Node[] = []
  for (let offset = 0; offset < node.content.length;) {
    const child = read(node.content, offset)
    out.push(child)
    offset = child.end
  }
  return out
}

export function oidString(node: Node): string {
  if (node.tag !== Tag.OID) throw new DerError(`expected an OID, got tag 0x${node.tag.toString(16)}`)
  const b = node.content
  const parts = [Math.floor(b[0]! / 40), b[0]! % 40]
  let v = 0
  for (let i = 1; i < b.length; i++) {
    v = v * 128 + (b[i]! & 0x7f)
    if (!(b[i]! & 0x80)) {
      parts.push(v)
      v = 0
    }
  }
  return parts.join('.')
}
