// Errors of the identity area (keys, CSRs, certificates, the identity manager),
// one class with stable codes. Messages are lowercase, name the bad value and
// hint at the fix.
import { AmbientError } from '../errors.js'

export type IdentityErrorCode =
  | 'AMBIENT_ERR_IDENTITY_BAD_SPIFFE_ID'
  | 'AMBIENT_ERR_IDENTITY_BAD_CSR'
  | 'AMBIENT_ERR_IDENTITY_NOT_ALLOWED'
  | 'AMBIENT_ERR_IDENTITY_BAD_PEM'
  | 'AMBIENT_ERR_IDENTITY_UNTRUSTED_CERT'
  | 'AMBIENT_ERR_IDENTITY_WRONG_CERT'
  | 'AMBIENT_ERR_IDENTITY_SOURCE'
  | 'AMBIENT_ERR_IDENTITY_STOPPED'

export class IdentityError extends AmbientError<IdentityErrorCode> {}
