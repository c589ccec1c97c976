// Envoy's delta aggregated discovery service (envoy.service.discovery.v3), the
// messages as typed objects and a grpc-js service definition that both the agent's
// server and ztunnel's client use. Serialization goes through protobufjs with the
// schema in proto/.
import type * as grpc from '@grpc/grpc-js'
import { AmbientError } from '../errors.js'
import { decodeMessage, encodeMessage, messageType } from './proto.js'

export const DELTA_ADS_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources'

/** envoy.config.core.v3.Node, the fields we use. */
export interface XdsNode {
  readonly id: string
  readonly cluster: string
}

/** google.rpc.Status as a NACK carries it. */
export interface RpcStatus {
  readonly code: number
  readonly message: string
}

export interface DeltaDiscoveryRequest {
  readonly node: XdsNode | null
  readonly typeUrl: string
  readonly resourceNamesSubscribe: readonly string[]
  readonly resourceNamesUnsubscribe: readonly string[]
  /** What the client already has, name -> version: sent on (re)connect. */
  readonly initialResourceVersions: Readonly<Record<string, string>>
  /** Empty on a subscription; the nonce being ACKed (or NACKed) otherwise. */
  readonly responseNonce: string
  /** Set on a NACK. */
  readonly errorDetail: RpcStatus | null
}

/** envoy.service.discovery.v3.Resource; `resource` is a google.protobuf.Any. */
export interface XdsResource {
  readonly name: string
  readonly version: string
  readonly resource: { readonly typeUrl: string; readonly value: Buffer } | null
  /** Unused by us; decoded as []. */
  readonly aliases?: readonly string[]
}

export interface DeltaDiscoveryResponse {
  readonly systemVersionInfo: string
  readonly typeUrl: string
  readonly nonce: string
  readonly resources: readonly XdsResource[]
  readonly removedResources: readonly string[]
}

/** google.rpc.Code INVALID_ARGUMENT, what a client NACKs a resource it cannot use with. */
export const RPC_INVALID_ARGUMENT = 3

/**
 * A stream message that is not a valid DeltaDiscoveryRequest/Response (truncated,
 * mistyped fields, garbage): the peer is broken, so its stream ends (grpc-js ends
 * it with INTERNAL) and it reconnects; other streams are not affected.
 */
export class XdsMessageError extends AmbientError<'AMBIENT_ERR_XDS_MESSAGE'> {
  constructor(message: string, bytes: Uint8Array, cause: unknown) {
    super('AMBIENT_ERR_XDS_MESSAGE', `${message} of ${bytes.length} bytes is not valid: ${(cause as Error).message}; the peer's stream is ended`, { cause })
  }
}

function decodeOrThrow<T>(type: ReturnType<typeof messageType>, bytes: Uint8Array): T {
  try {
    return decodeMessage<T>(type, bytes)
  } catch (err) {
    throw new XdsMessageError(type.fullName.slice(1), bytes, err)
  }
}

const requestType = () => messageType('envoy.service.discovery.v3.DeltaDiscoveryRequest')
const responseType = () => messageType('envoy.service.discovery.v3.DeltaDiscoveryResponse')

export function encodeRequest(r: Partial<DeltaDiscoveryRequest> & { readonly typeUrl: string }): Buffer {
  return encodeMessage(requestType(), r)
}

export function decodeRequest(bytes: Buffer): DeltaDiscoveryRequest {
  return decodeOrThrow<DeltaDiscoveryRequest>(requestType(), bytes)
}

// protobufjs keeps its bundled google.protobuf.Any as written (`type_url`), while
// our own protos are camel-cased: the Any is converted at this one place.
interface WireAny {
  type_url: string
  value: Buffer
}
type WireResponse = Omit<DeltaDiscoveryResponse, 'resources'> & { resources: (Omit<XdsResource, 'resource'> & { resource: WireAny | null })[] }

export function encodeResponse(r: DeltaDiscoveryResponse): Buffer {
  const resources = r.resources.map((x) => ({ ...x, resource: x.resource && { type_url: x.resource.typeUrl, value: x.resource.value } }))
  return encodeMessage(responseType(), { ...r, resources })
}

export function decodeResponse(bytes: Buffer): DeltaDiscoveryResponse {
  const r = decodeOrThrow<WireResponse>(responseType(), bytes)
  return { ...r, resources: r.resources.map((x) => ({ ...x, resource: x.resource && { typeUrl: x.resource.type_url, value: x.resource.value } })) }
}

/** The service implementation's shape, for `grpc.Server.addService`. */
export interface DeltaAdsImplementation extends grpc.UntypedServiceImplementation {
  DeltaAggregatedResources: grpc.handleBidiStreamingCall<DeltaDiscoveryRequest, DeltaDiscoveryResponse>
}

export const DELTA_ADS_SERVICE: grpc.ServiceDefinition<DeltaAdsImplementation> = {
  DeltaAggregatedResources: {
    path: DELTA_ADS_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: encodeRequest,
    requestDeserialize: decodeRequest,
    responseSerialize: encodeResponse,
    responseDeserialize: decodeResponse,
  },
}
