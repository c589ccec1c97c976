// The protobuf schema of the agent -> ztunnel stream, loaded once from proto/ at
// the repository root. protobufjs brings google/protobuf/{any,empty}.proto itself.
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import protobuf from 'protobufjs'
import type { IConversionOptions, Root, Type } from 'protobufjs'

export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url))

export const PROTO_FILES: readonly string[] = [
  'envoy/service/discovery/v3/ads.proto',
  'istio/workload/workload.proto',
  'istio/security/authorization.proto',
  'ambient/zds/v1/local.proto',
]

let root: Root | null = null

function load(): Root {
  const r = new protobuf.Root()
  // Well-known types resolve to protobufjs's bundled copies; everything else lives in proto/.
  r.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : join(PROTO_DIR, target))
  r.loadSync([...PROTO_FILES], { keepCase: false })
  r.resolveAll()
  return r
}

/** A message type by its full name (`istio.workload.Address`). */
export function messageType(fullName: string): Type {
  root ??= load()
  return root.lookupType(fullName)
}

const CONVERSION: IConversionOptions = { defaults: true, arrays: true, objects: true, oneofs: true, enums: Number, longs: Number }

/**
 * Decodes bytes into a plain object with every field present (defaults filled,
 * enums as numbers, bytes as Buffer). The caller states the shape it expects;
 * protobufjs guarantees the scalar types, the caller checks the rest.
 */
export function decodeMessage<T>(type: Type, bytes: Uint8Array): T {
  return type.toObject(type.decode(bytes), CONVERSION) as T
}

export function encodeMessage(type: Type, value: object): Buffer {
  const w = type.encode(value).finish()
  return Buffer.from(w.buffer, w.byteOffset, w.byteLength)
}
