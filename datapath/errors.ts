// Errors of the datapath area. One base class, stable codes, the cause chained.
import { AmbientError } from '../common/errors.js'
export type DatapathErrorCode =
  | 'AMBIENT_ERR_DATAPATH_NOT_LOADED'
  | 'AMBIENT_ERR_DATAPATH_LOAD'
  | 'AMBIENT_ERR_DATAPATH_ENROLL'
  | 'AMBIENT_ERR_DATAPATH_POD_ROUTING'
  | 'AMBIENT_ERR_DATAPATH_BAD_INPUT'
  | 'AMBIENT_ERR_DATAPATH_SETTINGS_MISMATCH'
  | 'AMBIENT_ERR_DATAPATH_STATS'

export class DatapathError extends AmbientError<DatapathErrorCode> {}
