// Errors of `ambient ca`, one class with stable codes, and their gRPC status
// (mapped here and nowhere else).
import { status } from '@grpc/grpc-js'
import { AmbientError } from '../errors.js'

export type CaErrorCode =
  | 'AMBIENT_ERR_CA_CACERTS'
  | 'AMBIENT_ERR_CA_NODE_IDENTITIES'
  | 'AMBIENT_ERR_CA_BAD_REQUEST'
  | 'AMBIENT_ERR_CA_UNAUTHENTICATED'
  | 'AMBIENT_ERR_CA_PERMISSION_DENIED'
  | 'AMBIENT_ERR_CA_UNAVAILABLE'
  | 'AMBIENT_ERR_CA_BAD_RESPONSE'

export class CaError extends AmbientError<CaErrorCode> {}

const STATUS: Readonly<Record<CaErrorCode, status>> = {
  AMBIENT_ERR_CA_CACERTS: status.INTERNAL,
  AMBIENT_ERR_CA_NODE_IDENTITIES: status.INTERNAL,
  AMBIENT_ERR_CA_BAD_REQUEST: status.INVALID_ARGUMENT,
  AMBIENT_ERR_CA_UNAUTHENTICATED: status.UNAUTHENTICATED,
  AMBIENT_ERR_CA_PERMISSION_DENIED: status.PERMISSION_DENIED,
  AMBIENT_ERR_CA_UNAVAILABLE: status.UNAVAILABLE,
  AMBIENT_ERR_CA_BAD_RESPONSE: status.INTERNAL,
}

/** The gRPC status a server answers for an error (INTERNAL for anything unexpected). */
export function grpcStatusOf(err: unknown): status {
  return err instanceof CaError ? STATUS[err.code] : status.INTERNAL
}

/** The error code a client reports for a gRPC status. */
export function caErrorCodeOf(code: status): CaErrorCode {
  switch (code) {
    case status.INVALID_ARGUMENT:
      return 'AMBIENT_ERR_CA_BAD_REQUEST'
    case status.UNAUTHENTICATED:
      return 'AMBIENT_ERR_CA_UNAUTHENTICATED'
    case status.PERMISSION_DENIED:
      return 'AMBIENT_ERR_CA_PERMISSION_DENIED'
    case status.INTERNAL:
      return 'AMBIENT_ERR_CA_BAD_RESPONSE'
    default:
      return 'AMBIENT_ERR_CA_UNAVAILABLE'
  }
}
