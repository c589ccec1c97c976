// Errors of the configuration sources (common/kube, common/local). One base class,
// stable codes, lowercase messages naming the object and the bad field.
import { AmbientError } from '../errors.js'
export type SourceErrorCode =
  | 'AMBIENT_ERR_SOURCE_INVALID_OBJECT'
  | 'AMBIENT_ERR_SOURCE_UNSUPPORTED_KIND'
  | 'AMBIENT_ERR_SOURCE_BAD_YAML'
  | 'AMBIENT_ERR_SOURCE_READ'
  | 'AMBIENT_ERR_SOURCE_REQUEST'
  | 'AMBIENT_ERR_SOURCE_CONFIG'
  | 'AMBIENT_ERR_SOURCE_NOT_FOUND'
  | 'AMBIENT_ERR_SOURCE_FORBIDDEN'
  | 'AMBIENT_ERR_SOURCE_STOPPED'

export class SourceError extends AmbientError<SourceErrorCode> {}

/** Where an object came from, for messages: a manifest file, or nothing for the API. */
export interface ObjectOrigin {
  readonly file?: string
  /** Index of the YAML document within the file, from 0. */
  readonly document?: number
}

/** One object that could not be converted; every other object keeps working. */
export class InvalidObjectError extends SourceError {
  /** Lowercase kind as written in messages ("pod"), or "object" when unknown. */
  readonly kind: string
  readonly namespace: string
  readonly objectName: string
  /** Path of the bad field, e.g. `metadata.labels.app` or `status.podIP`. */
  readonly field: string
  readonly file?: string
  constructor(
    details: { kind: string; namespace: string; name: string; field: string; problem: string } & ObjectOrigin,
    code: SourceErrorCode = 'AMBIENT_ERR_SOURCE_INVALID_OBJECT',
  ) {
    const where = details.file === undefined ? '' : `${details.file}${details.document ? ` (document ${details.document + 1})` : ''}: `
    const who = `${details.kind.toLowerCase()} ${details.namespace ? `${details.namespace}/` : ''}${details.name || '<unnamed>'}`
    super(code, `${where}${who}: ${details.field} ${details.problem}`)
    this.name = 'InvalidObjectError'
    this.kind = details.kind.toLowerCase()
    this.namespace = details.namespace
    this.objectName = details.name
    this.field = details.field
    if (details.file !== undefined) this.file = details.file
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
