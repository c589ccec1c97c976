// Errors of the native layer: a failed system or libbpf call, with the errno name
// as `code`, the positive `errno`, the `syscall` and a message that says what to do.
import { constants } from 'node:os'

export interface NativeErrorFields {
  readonly code: string
  readonly errno: number
  readonly syscall: string
}

export class NativeError extends Error {
  readonly code: string
  readonly errno: number
  readonly syscall: string

  constructor(message: string, fields: NativeErrorFields, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'NativeError'
    this.code = fields.code
    this.errno = fields.errno
    this.syscall = fields.syscall
  }

  /** Wraps whatever the addon threw (an Error with code/errno/syscall); `context` prefixes the message. */
  static from(err: unknown, context?: string): NativeError {
    if (err instanceof NativeError && context === undefined) return err
    const e = (err instanceof Error ? err : new Error(String(err))) as Error & Partial<NativeErrorFields>
    const message = context === undefined ? e.message : `${context}: ${e.message}`
    const code = typeof e.code === 'string' ? e.code : 'EUNKNOWN'
    const errno = typeof e.errno === 'number' ? Math.abs(e.errno) : 0
    return new NativeError(message, { code, errno, syscall: typeof e.syscall === 'string' ? e.syscall : 'unknown' }, { cause: err })
  }

  /** A failure of the caller's input, found before any system call. */
  static invalid(message: string): NativeError {
    return NativeError.of('EINVAL', 'validate', message)
  }

  /** An error with the errno of `code` (e.g. 'ENOENT'). */
  static of(code: keyof typeof constants.errno, syscall: string, message: string): NativeError {
    return new NativeError(message, { code, errno: constants.errno[code], syscall })
  }
}
