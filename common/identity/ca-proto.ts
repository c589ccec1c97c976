// Loads proto/istio/v1/auth/ca.proto (google/protobuf/struct.proto comes from protobufjs's
// bundled well-known types) with field names as written in the .proto.
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'

export const CA_PROTO_PATH = fileURLToPath(new URL('../../proto/istio/v1/auth/ca.proto', import.meta.url))
export const CREATE_CERTIFICATE_PATH = '/istio.v1.auth.IstioCertificateService/CreateCertificate'

/** google.protobuf.Value as proto-loader decodes it: protobufjs's bundled well-known types keep camelCase names even with keepCase. */
export interface ProtoValue {
  readonly stringValue?: string
  readonly kind?: string
}

export interface IstioCertificateRequest {
  readonly csr: string
  readonly validity_duration: number
  readonly metadata?: { readonly fields?: Readonly<Record<string, ProtoValue>> } | null
}

export interface IstioCertificateResponse {
  readonly cert_chain: readonly string[]
}

export interface CaServiceDefinition {
  readonly service: grpc.ServiceDefinition
  readonly Client: grpc.ServiceClientConstructor
}

let loaded: CaServiceDefinition | null = null

export function caService(): CaServiceDefinition {
  if (!loaded) {
    const definition = protoLoader.loadSync(CA_PROTO_PATH, { keepCase: true, longs: Number, defaults: true, oneofs: true })
    const pkg = grpc.loadPackageDefinition(definition) as unknown as { istio: { v1: { auth: { IstioCertificateService: grpc.ServiceClientConstructor } } } }
    const Client = pkg.istio.v1.auth.IstioCertificateService
    loaded = { service: Client.service, Client }
  }
  return loaded
}
