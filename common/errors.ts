// The one base class of the errors ambient raises on purpose (as undici's
// UndiciError): a stable machine-readable `code` (AMBIENT_ERR_<AREA>_<WHAT>), a
// lowercase message that names the bad value and hints at the fix, and the
// underlying error chained as `cause`. Each area subclasses it with its own codes
// and maps them to an HTTP or gRPC status and a metric label in one place.
//
// The native addon's NativeError (native/errors.ts) is the exception: like Node's
// own system errors its `code` is the errno name (EPERM, ENOENT) with `errno` and
// `syscall`, and native/ sits below this library; callers that turn one into a
// decision wrap it in their area's AmbientError (DatapathError) as `cause`.

export class AmbientError<Code extends string = string> extends Error {
  readonly code: Code

  constructor(code: Code, message: string, options?: { readonly cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/** An AmbientError, optionally with the given code. */
export function isAmbientError(err: unknown, code?: string): err is AmbientError {
  return err instanceof AmbientError && (code === undefined || err.code === code)
}
