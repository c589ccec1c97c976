// A small seeded, deterministic mutator for the process-level fuzz tests: the same
// seed gives the same inputs, so a failure reproduces with AMBIENT_FUZZ_SEED=<seed>.
// Bytes are mutated as libFuzzer's default mutators do (bit flips, interesting
// values, inserted, erased, duplicated and spliced ranges); JSON-like values by
// structure (a field dropped, retyped, replaced by a hostile value, an unknown key
// added, a list emptied or repeated), which is what a malformed manifest or a
// mistyped protobuf field looks like to the code that reads it.

/** sfc32: a fast 32-bit PRNG with a 128-bit state, seeded from one integer. */
export class Rng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(readonly seed: number) {
    this.a = 0x9e3779b9
    this.b = 0x243f6a88
    this.c = 0xb7e15162
    this.d = seed >>> 0
    for (let i = 0; i < 15; i++) this.next()
  }

  /** A uint32. */
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0
    this.d = (this.d + 1) | 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) | 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) | 0
    return t >>> 0
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : this.next() % n
  }

  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p
  }

  pick<T>(list: readonly T[]): T {
    if (list.length === 0) throw new RangeError('pick from an empty list')
    return list[this.int(list.length)]!
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n)
    for (let i = 0; i < n; i++) out[i] = this.next() & 0xff
    return out
  }

  /** A child generator, so one part of a test drawing more numbers does not shift another's inputs. */
  fork(): Rng {
    return new Rng(this.next())
  }
}

/**
 * The run's seed: AMBIENT_FUZZ_SEED when set (to replay a failure), else a new one.
 * Every fuzz test prints it first.
 */
export function fuzzSeed(): number {
  const fixed = process.env['AMBIENT_FUZZ_SEED']
  if (fixed !== undefined && fixed !== '') {
    const n = Number(fixed)
    if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new RangeError(`AMBIENT_FUZZ_SEED ${JSON.stringify(fixed)} is not an integer in 0-4294967295`)
    return n
  }
  return (Date.now() ^ (process.pid << 16)) >>> 0
}

const INTERESTING_8 = [0x00, 0x01, 0x7f, 0x80, 0xff]
const INTERESTING_32 = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0xffff, 0x1_0000 - 1, 16384, 16385]

/** One libFuzzer-style mutation of `input` (never longer than `maxLength`); `others` feed splices. */
export function mutateBytes(rng: Rng, input: Buffer, others: readonly Buffer[] = [], maxLength = 1 << 16): Buffer {
  let b = Buffer.from(input)
  const pos = (extra = 0): number => rng.int(b.length + extra)
  switch (rng.int(9)) {
    case 0: // bit flip
      if (b.length > 0) {
        const i = pos()
        b[i]! ^= 1 << rng.int(8)
      }
      break
    case 1: // random byte
      if (b.length > 0) b[pos()] = rng.int(256)
      break
    case 2: // interesting byte
      if (b.length > 0) b[pos()] = rng.pick(INTERESTING_8)
      break
    case 3: // interesting 32-bit value, either byte order
      if (b.length >= 4) {
        const i = rng.int(b.length - 3)
        const v = rng.pick(INTERESTING_32)
        if (rng.chance(0.5)) b.writeUInt32BE(v >>> 0, i)
        else b.writeUInt32LE(v >>> 0, i)
      }
      break
    case 4: {
      // insert random bytes
      const at = pos(1)
      b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(16)), b.subarray(at)])
      break
    }
    case 5: {
      // erase a range
      if (b.length > 0) {
        const at = pos()
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + rng.int(16)))])
      }
      break
    }
    case 6: {
      // duplicate a range
      if (b.length > 0) {
        const at = pos()
        const chunk = b.subarray(at, at + 1 + rng.int(64))
        const to = pos(1)
        b = Buffer.concat([b.subarray(0, to), chunk, b.subarray(to)])
      }
      break
    }
    case 7: // truncate
      b = b.subarray(0, pos(1))
      break
    default: {
      // splice with another input
      if (others.length > 0) {
        const other = rng.pick(others)
        b = Buffer.concat([b.subarray(0, pos(1)), other.subarray(rng.int(other.length + 1))])
      } else if (b.length > 0) b[pos()] = rng.int(256)
    }
  }
  return b.length > maxLength ? b.subarray(0, maxLength) : b
}

/** 1..max stacked byte mutations. */
export function mutateBytesN(rng: Rng, input: Buffer, others: readonly Buffer[] = [], max = 4): Buffer {
  let out = input
  const n = 1 + rng.int(max)
  for (let i = 0; i < n; i++) out = mutateBytes(rng, out, others)
  return out
}

/** Values that break naive readers: wrong types, edge numbers, prototype keys, huge and odd strings. */
export function hostileValue(rng: Rng): unknown {
  switch (rng.int(22)) {
    case 0:
      return null
    case 1:
      return rng.chance(0.5)
    case 2:
      return rng.pick([0, -1, 1, 65535, 65536, 2 ** 31, -(2 ** 31), 2 ** 53, 1.5, -0.0001, 1e308])
    case 3:
      return ''
    case 4:
      return 'x'.repeat(1 + rng.int(100_000))
    case 5:
      return rng.pick(['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf'])
    case 6:
      return rng.pick(['0.0.0.0', '255.255.255.255', '::', '::ffff:1.2.3.4', '1.2.3', '1.2.3.4.5', '300.1.1.1', '10.0.0.1/33', '1.2.3.4/-1', 'fe80::1%eth0'])
    case 7:
      return rng.pick(['*', '**', '/*', '*/', '{*}', '{**}', '/{**}/x', '/a/{*}/{**}', '.*', '(a+)+$', '[', '\\', '(?<x>a)', '^(a|a)*$'])
    case 8:
      return rng.pick(['\u0000', '\uffff', '\ud800', 'é', '\u202e', '\r\n', 'a\nb: c', 'true', 'null', '123', '-1', '1e999'])
    case 9:
      return []
    case 10:
      return {}
    case 11:
      return [hostileValue(rng)]
    case 12:
      return JSON.parse(`{${JSON.stringify(rng.pick(['__proto__', 'constructor', 'a', '']))}: ${JSON.stringify(hostileValue(rng)) ?? 'null'}}`) as unknown
    case 13:
      return rng.pick(['spiffe://', 'spiffe://td/ns//sa/', 'cluster.local/ns/a/sa/b', 'ns/a', '*/ns/*/sa/*', 'a'.repeat(300)])
    case 14:
      return rng.pick(['CONNECT', 'GET', 'DELETE', 'get', '', ' ', 'ALLOW', 'DENY', 'AUDIT', 'CUSTOM', 'STRICT', 'PERMISSIVE', 'DISABLE', 'UNSET'])
    case 15:
      return rng.pick(['0', '65535', '65536', '-1', '080', '1-2', '8080,9090', ' 80', '0x50'])
    case 16:
      return rng.pick(['1s', '0s', '-1s', '1h1m1s1ms', '999999h', '1.5s', 's', '1x'])
    case 17:
      return Array.from({ length: 2 + rng.int(300) }, () => rng.pick(['a', 1, null, {}]))
    case 18:
      return nested(rng, 50 + rng.int(200))
    case 19:
      return rng.pick(['RegularExpression', 'PathPrefix', 'Exact', 'Service', 'Gateway', 'GatewayClass', 'Pod', 'HTTPRoute'])
    case 20:
      return rng.pick(['shop', 'kube-system', 'istio-system', 'Shop', 'a.b', 'a_b', '-a', 'a'.repeat(254)])
    default:
      return rng.int(2 ** 31)
  }
}

function nested(rng: Rng, depth: number): unknown {
  let v: unknown = rng.pick(['leaf', 1, null])
  for (let i = 0; i < depth; i++) v = rng.chance(0.5) ? [v] : { a: v }
  return v
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** Every path (list of keys and indexes) to a value inside `value`, root included. */
export function pathsOf(value: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(prefix)
  if (Array.isArray(value)) value.forEach((v, i) => pathsOf(v, [...prefix, i], out))
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) pathsOf(v, [...prefix, k], out)
  return out
}

/**
 * One structural mutation of a JSON-like value (a deep copy; the input is kept):
 * at a random path, the value is removed, replaced by a hostile value, by another
 * value of the object, emptied, repeated, or its container gets an unknown key.
 */
export function mutateValue(rng: Rng, input: unknown): unknown {
  const root = structuredClone(input) as Json
  const paths = pathsOf(root)
  const path = rng.pick(paths)
  if (path.length === 0) return rng.chance(0.2) ? hostileValue(rng) : mutateValue(rng, root) // keep the root most of the time
  const parent = path.slice(0, -1).reduce<Json>((v, k) => (v as Record<string | number, Json>)[k]!, root) as Record<string | number, Json> | Json[]
  const key = path[path.length - 1]!
  const current = (parent as Record<string | number, Json>)[key]
  // As JSON.parse does: an own property, even for `__proto__`.
  const define = (target: object, k: string | number, v: unknown): void =>
    void Object.defineProperty(target, k, { value: v, enumerable: true, writable: true, configurable: true })
  const set = (v: unknown): void => define(parent, key, v)
  switch (rng.int(8)) {
    case 0:
      if (Array.isArray(parent)) parent.splice(key as number, 1)
      else delete parent[key as string]
      break
    case 1:
    case 2:
      set(hostileValue(rng))
      break
    case 3: {
      // a value from elsewhere in the object (right shape, wrong place)
      const other = rng.pick(paths).reduce<Json>((v, k) => (v as Record<string | number, Json>)[k]!, root)
      set(structuredClone(other))
      break
    }
    case 4:
      if (Array.isArray(current)) current.push(...structuredClone(current))
      else if (typeof current === 'string') set(current + current)
      else set([current])
      break
    case 5:
      if (Array.isArray(parent)) parent.push(hostileValue(rng) as Json)
      else define(parent, rng.pick(['unknownField', '__proto__', 'constructor', 'x-' + rng.int(100)]), hostileValue(rng))
      break
    case 6:
      if (typeof current === 'number') set(rng.pick([-current, current * 1000, current + 0.5, String(current)]))
      else if (typeof current === 'string') set(mutateBytes(rng, Buffer.from(current)).toString('utf8'))
      else set(hostileValue(rng))
      break
    default:
      if (Array.isArray(current) || (current !== null && typeof current === 'object')) set(Array.isArray(current) ? [] : {})
      else set(null)
  }
  return root
}

/** 1..max stacked structural mutations. */
export function mutateValueN(rng: Rng, input: unknown, max = 3): unknown {
  let out = input
  const n = 1 + rng.int(max)
  for (let i = 0; i < n; i++) out = mutateValue(rng, out)
  return out
}
