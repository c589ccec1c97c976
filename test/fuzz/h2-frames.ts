// Raw HTTP/2 frames and HPACK literals, for sending what a well-behaved client
// library refuses to (a CONNECT without :authority, a header past every limit,
// a mutated frame): the HBONE fuzz test writes them over a real TLS session.
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const
export const FLAG = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length & 0xffffff, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream >>> 0, 5)
  return Buffer.concat([head, payload])
}

/** HPACK integer with an n-bit prefix (RFC 7541 5.1). */
function hpackInt(value: number, prefixBits: number, firstByte: number): Buffer {
  const max = (1 << prefixBits) - 1
  if (value < max) return Buffer.from([firstByte | value])
  const out = [firstByte | max]
  let rest = value - max
  while (rest >= 128) {
    out.push((rest & 0x7f) | 0x80)
    rest >>>= 7
  }
  out.push(rest)
  return Buffer.from(out)
}

/** A literal header field without indexing, new name (RFC 7541 6.2.2), no Huffman. */
export function literal(name: string, value: string | Buffer): Buffer {
  const n = Buffer.from(name)
  const v = typeof value === 'string' ? Buffer.from(value) : value
  return Buffer.concat([Buffer.from([0x00]), hpackInt(n.length, 7, 0), n, hpackInt(v.length, 7, 0), v])
}

export function headers(stream: number, fields: readonly (readonly [string, string | Buffer])[], flags: number = FLAG.END_HEADERS): Buffer {
  return frame(FRAME.HEADERS, flags, stream, Buffer.concat(fields.map(([n, v]) => literal(n, v))))
}

export const settings = (): Buffer => frame(FRAME.SETTINGS, 0, 0, Buffer.from([0, 4, 0, 0x10, 0, 0, 0, 3, 0, 0, 0, 100]))
export const settingsAck = (): Buffer => frame(FRAME.SETTINGS, FLAG.ACK, 0)
export const rst = (stream: number, code = 8): Buffer => frame(FRAME.RST_STREAM, 0, stream, Buffer.from([0, 0, 0, code]))
export const goaway = (last: number, code = 0): Buffer => frame(FRAME.GOAWAY, 0, 0, Buffer.from([0, 0, 0, last, 0, 0, 0, code]))
export const ping = (): Buffer => frame(FRAME.PING, 0, 0, Buffer.alloc(8))
export const windowUpdate = (stream: number, n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return frame(FRAME.WINDOW_UPDATE, 0, stream, b)
}
