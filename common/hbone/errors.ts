// HBONE errors: one base class with stable codes, and the one place that maps an
// error to the HTTP status the server answers with and the metric/log label.
import { AmbientError } from '../errors.js'

export type HboneErrorCode =
  | 'AMBIENT_ERR_HBONE_BAD_METHOD'
  | 'AMBIENT_ERR_HBONE_BAD_AUTHORITY'
  | 'AMBIENT_ERR_HBONE_NOT_LOCAL'
  | 'AMBIENT_ERR_HBONE_UNKNOWN_DESTINATION'
  | 'AMBIENT_ERR_HBONE_DENIED'
  | 'AMBIENT_ERR_HBONE_UPSTREAM'
  | 'AMBIENT_ERR_HBONE_STATUS'
  | 'AMBIENT_ERR_HBONE_STREAM'
  | 'AMBIENT_ERR_HBONE_SESSION'
  | 'AMBIENT_ERR_HBONE_PEER_IDENTITY'
  | 'AMBIENT_ERR_HBONE_TIMEOUT'
  | 'AMBIENT_ERR_HBONE_CLOSED'
  | 'AMBIENT_ERR_HBONE_INTERNAL'

export class HboneError extends AmbientError<HboneErrorCode> {}

/** The request is not an HBONE CONNECT (wrong method). */
export class HboneBadMethodError extends HboneError {
  constructor(method: string | undefined) {
    super('AMBIENT_ERR_HBONE_BAD_METHOD', `hbone request method ${JSON.stringify(method ?? null)} is not CONNECT`)
  }
}

/** `:authority` missing or not a literal `ip:port` / `[ipv6]:port`. */
export class HboneBadAuthorityError extends HboneError {
  constructor(authority: string | undefined, reason: string) {
    super('AMBIENT_ERR_HBONE_BAD_AUTHORITY', `hbone authority ${JSON.stringify(authority ?? null)} is invalid: ${reason}`)
  }
}

/** The authority is a well-formed address but not a workload served by this listener (400). */
export class HboneNotLocalError extends HboneError {
  constructor(authority: string) {
    super('AMBIENT_ERR_HBONE_NOT_LOCAL', `hbone authority ${authority} is not a local workload; dial the node that runs it`)
  }
}

/** Nothing known at that address (503). */
export class HboneUnknownDestinationError extends HboneError {
  constructor(authority: string) {
    super('AMBIENT_ERR_HBONE_UNKNOWN_DESTINATION', `hbone destination ${authority} is unknown`)
  }
}

export class HboneDeniedError extends HboneError {
  constructor(authority: string, peer: string | null, policy?: string) {
    const by = policy ? ` by policy ${policy}` : ''
    super('AMBIENT_ERR_HBONE_DENIED', `hbone connection from ${peer ?? 'unknown peer'} to ${authority} denied${by}`)
  }
}

export class HboneUpstreamError extends HboneError {
  constructor(target: string, cause: unknown) {
    const detail = cause instanceof Error ? `: ${cause.message}` : ''
    super('AMBIENT_ERR_HBONE_UPSTREAM', `hbone upstream ${target} failed${detail}`, { cause })
  }
}

/** The server answered the CONNECT with a non-200 status (client side). */
export class HboneStatusError extends HboneError {
  readonly status: number
  constructor(authority: string, status: number) {
    super('AMBIENT_ERR_HBONE_STATUS', `hbone connect to ${authority} answered with status ${status}`)
    this.status = status
  }
}

/** The stream failed before a response arrived (reset, session died). */
export class HboneStreamError extends HboneError {
  constructor(authority: string, cause: unknown) {
    const detail = cause instanceof Error ? `: ${cause.message}` : ''
    super('AMBIENT_ERR_HBONE_STREAM', `hbone stream to ${authority} failed${detail}`, { cause })
  }
}

/** The TLS / HTTP/2 session to a next hop failed or was refused. */
export class HboneSessionError extends HboneError {
  constructor(nextHop: string, cause: unknown) {
    const detail = cause instanceof Error ? `: ${cause.message}` : ''
    super('AMBIENT_ERR_HBONE_SESSION', `hbone session to ${nextHop} failed${detail}`, { cause })
  }
}

/** A peer certificate does not carry the identity we expect. */
export class HbonePeerIdentityError extends HboneError {
  constructor(message: string) {
    super('AMBIENT_ERR_HBONE_PEER_IDENTITY', message)
  }
}

export class HboneTimeoutError extends HboneError {
  constructor(what: string, ms: number) {
    super('AMBIENT_ERR_HBONE_TIMEOUT', `hbone ${what} timed out after ${ms} ms`)
  }
}

export class HboneClosedError extends HboneError {
  constructor(what: string) {
    super('AMBIENT_ERR_HBONE_CLOSED', `${what} is stopped`)
  }
}

/** Metric / log label for a stream outcome; `ok` for an accepted stream. */
export type HboneOutcome = 'ok' | 'bad_request' | 'not_local' | 'unknown_destination' | 'denied' | 'upstream_failure' | 'internal'

interface Mapping {
  readonly status: number
  readonly outcome: HboneOutcome
}

const BY_CODE: Readonly<Partial<Record<HboneErrorCode, Mapping>>> = {
  AMBIENT_ERR_HBONE_BAD_METHOD: { status: 400, outcome: 'bad_request' },
  AMBIENT_ERR_HBONE_BAD_AUTHORITY: { status: 400, outcome: 'bad_request' },
  AMBIENT_ERR_HBONE_NOT_LOCAL: { status: 400, outcome: 'not_local' },
  AMBIENT_ERR_HBONE_UNKNOWN_DESTINATION: { status: 503, outcome: 'unknown_destination' },
  AMBIENT_ERR_HBONE_DENIED: { status: 401, outcome: 'denied' },
  AMBIENT_ERR_HBONE_UPSTREAM: { status: 503, outcome: 'upstream_failure' },
}

/**
 * The one mapping from a server-side error to the HTTP status of the CONNECT
 * response and the outcome label used in logs and metrics. Anything that is not
 * a known HBONE error is a failure of ours: 503, `internal`.
 */
export function statusFor(err: unknown): Mapping {
  if (err instanceof HboneError) return BY_CODE[err.code] ?? { status: 503, outcome: 'internal' }
  return { status: 503, outcome: 'internal' }
}
