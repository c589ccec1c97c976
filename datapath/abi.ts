// The TypeScript side of bpf/include/abi.h: every struct the BPF programs share
// with user space, encoded and decoded here and nowhere else. abi.test.ts checks
// these sizes and offsets against the C compiler's (bpf/abi-layout.c).
import { isIPv4 } from 'node:net'
import { AmbientError } from '../common/errors.js'

export const ABI_VERSION = 1
export const MAX_PODS = 4096
export const MAX_CONNS = 65536
// The marks and HBONE port are load-time settings of the programs (const volatile globals).
export { DEFAULT_DELIVERY_MARK, DEFAULT_HBONE_PORT, DEFAULT_PROXY_MARK } from '../common/ports.js'
export const POD_FLAG_OUTBOUND = 1 << 0

export const SIZES = {
  podKey: 8,
  pod: 8,
  inboundKey: 4,
  inbound: 4,
  origDst: 16,
  tupleKey: 24,
  listenerKey: 4,
  listenerValue: 8,
  counterKey: 4,
  counter: 8,
} as const

/** Index of each counter in ambient_counters, as enum ambient_counter. */
export const COUNTERS = [
  'connect_redirected',
  'connect_skip_mark',
  'connect_skip_local',
  'connect_map_full',
  'sockops_tuple_added',
  'sockops_tuple_removed',
  'sockops_tuple_failed',
  'getpeername_restored',
  'sk_lookup_steered',
  'sk_lookup_skip_port',
  'sk_lookup_skip_local',
  'sk_lookup_no_listener',
  'sk_lookup_assign_failed',
] as const
export type CounterName = (typeof COUNTERS)[number]
export const COUNTER_SLOTS = 16

export const MAP_NAMES = {
  pods: 'ambient_pods',
  inbound: 'ambient_inbound',
  origByCookie: 'ambient_orig_by_cookie',
  origByTuple: 'ambient_orig_by_tuple',
  listeners: 'ambient_listeners',
  counters: 'ambient_counters',
} as const

export class AbiError extends AmbientError<'AMBIENT_ERR_ABI'> {
  constructor(message: string) {
    super('AMBIENT_ERR_ABI', message)
  }
}

export interface PodEntry {
  readonly ip: string
  readonly outboundPort: number
  readonly flags: number
}

export interface OrigDst {
  readonly ip: string
  readonly port: number
  readonly netnsCookie: bigint
}

export interface Tuple {
  readonly netnsCookie: bigint
  readonly srcIp: string
  readonly srcPort: number
  readonly dstIp: string
  readonly dstPort: number
}

/** IPv4 text to the 4 bytes the kernel uses (network order), written at offset. */
export function writeIp4(buf: Buffer, offset: number, ip: string): void {
  if (!isIPv4(ip)) throw new AbiError(`not an IPv4 address: ${JSON.stringify(ip)} (the datapath captures IPv4 only)`)
  const parts = ip.split('.').map(Number)
  for (let i = 0; i < 4; i++) buf[offset + i] = parts[i]!
}

export function readIp4(buf: Buffer, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`
}

function checkPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new AbiError(`${what} must be an integer 0-65535, got ${port}`)
  }
}

function checkSize(buf: Buffer, size: number, what: string): void {
  if (buf.length !== size) throw new AbiError(`${what}: expected ${size} bytes, got ${buf.length}`)
}

export function encodeU64(value: bigint): Buffer {
  const buf = Buffer.alloc(8)
  buf.writeBigUInt64LE(value)
  return buf
}

export function encodeU32(value: number): Buffer {
  const buf = Buffer.alloc(4)
  buf.writeUInt32LE(value >>> 0)
  return buf
}

export const encodePodKey = encodeU64

export function encodePod(pod: PodEntry): Buffer {
  checkPort(pod.outboundPort, 'outbound port')
  const buf = Buffer.alloc(SIZES.pod)
  writeIp4(buf, 0, pod.ip)
  buf.writeUInt16LE(pod.outboundPort, 4) // host order on a little-endian host
  buf.writeUInt16LE(pod.flags, 6)
  return buf
}

export function decodePod(buf: Buffer): PodEntry {
  checkSize(buf, SIZES.pod, 'ambient_pod')
  return { ip: readIp4(buf, 0), outboundPort: buf.readUInt16LE(4), flags: buf.readUInt16LE(6) }
}

/** Key of ambient_inbound and ambient_listeners: the pod's IPv4 in network order. */
export function encodeIp4Key(ip: string): Buffer {
  const buf = Buffer.alloc(4)
  writeIp4(buf, 0, ip)
  return buf
}

export function encodeInbound(): Buffer {
  return Buffer.alloc(SIZES.inbound)
}

export function encodeOrigDst(orig: OrigDst): Buffer {
  checkPort(orig.port, 'original port')
  const buf = Buffer.alloc(SIZES.origDst)
  writeIp4(buf, 0, orig.ip)
  buf.writeUInt16BE(orig.port, 4)
  buf.writeBigUInt64LE(orig.netnsCookie, 8)
  return buf
}

export function decodeOrigDst(buf: Buffer): OrigDst {
  checkSize(buf, SIZES.origDst, 'ambient_orig_dst')
  return { ip: readIp4(buf, 0), port: buf.readUInt16BE(4), netnsCookie: buf.readBigUInt64LE(8) }
}

export function encodeTupleKey(tuple: Tuple): Buffer {
  checkPort(tuple.srcPort, 'source port')
  checkPort(tuple.dstPort, 'destination port')
  const buf = Buffer.alloc(SIZES.tupleKey)
  buf.writeBigUInt64LE(tuple.netnsCookie, 0)
  writeIp4(buf, 8, tuple.srcIp)
  writeIp4(buf, 12, tuple.dstIp)
  buf.writeUInt16BE(tuple.srcPort, 16)
  buf.writeUInt16BE(tuple.dstPort, 18)
  return buf
}

export function decodeTupleKey(buf: Buffer): Tuple {
  checkSize(buf, SIZES.tupleKey, 'ambient_tuple_key')
  return {
    netnsCookie: buf.readBigUInt64LE(0),
    srcIp: readIp4(buf, 8),
    dstIp: readIp4(buf, 12),
    srcPort: buf.readUInt16BE(16),
    dstPort: buf.readUInt16BE(18),
  }
}

/** Sums a per-CPU u64 value (one 8-byte slot per possible CPU). */
export function sumPerCpu(buf: Buffer): bigint {
  if (buf.length % 8 !== 0) throw new AbiError(`per-cpu value of ${buf.length} bytes is not a multiple of 8`)
  let total = 0n
  for (let off = 0; off < buf.length; off += 8) total += buf.readBigUInt64LE(off)
  return total
}

/** The const volatile globals of every program, as objectSetGlobal wants them. */
export function encodeGlobals(settings: { readonly proxyMark: number; readonly hbonePort: number }): Record<string, Buffer> {
  checkPort(settings.hbonePort, 'hbone port')
  const mark = encodeU32(settings.proxyMark)
  const port = Buffer.alloc(2)
  port.writeUInt16LE(settings.hbonePort)
  return { proxy_mark: mark, hbone_port: port }
}
