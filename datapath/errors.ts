// Errors of the datapath area. One base class, stable codes, the cause chained.
export type DatapathErrorCode =
  | 'AMBIENT_ERR_DATAPATH_NOT_LOADED'
  | 'AMBIENT_ERR_DATAPATH_LOAD'
  | 'AMBIENT_ERR_DATAPATH_ENROLL'
  | 'AMBIENT_ERR_DATAPATH_POD_ROUTING'
  | 'AMBIENT_ERR_DATAPATH_BAD_INPUT'
  | 'AMBIENT_ERR_DATAPATH_SETTINGS_MISMATCH'

export class DatapathError extends Error {
  readonly code: DatapathErrorCode
  constructor(code: DatapathErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'DatapathError'
    this.code = code
  }
}
