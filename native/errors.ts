// Errors of the native layer: a failed system or libbpf call, with the errno name
// as `code`, the positive `errno`, the `syscall` and a message that says what to do.
export class NativeError extends Error {
  readonly code: string
  readonly errno: number
  readonly syscall: string

  constructor(message: string, fields: { code: string; errno: number; syscall: string }, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'NativeError'
    this.code = fields.code
    this.errno = fields.errno
    this.syscall = fields.syscall
  }

  /** Wraps whatever the addon threw (an Error with code/errno/syscall). */
  static from(err: unknown): NativeError {
    if (err instanceof NativeError) return err
    const e = err as Partial<NativeError> & Error
    return new NativeError(e.message, { code: e.code ?? 'EUNKNOWN', errno: e.errno ?? 0, syscall: e.syscall ?? 'unknown' }, { cause: err })
  }

  static invalid(message: string): NativeError {
    return new NativeError(message, { code: 'EINVAL', errno: 22, syscall: 'validate' })
  }
}
