// The objects a source currently rejects, one entry per object: recorded (and
// logged once) when conversion fails, forgotten when the object converts again or
// is deleted.
import type { Logger } from '../log.js'
import { objectKey, refOf, type Change, type Snapshot } from '../model/snapshot.js'
import type { InvalidObjectError } from './errors.js'

export type SnapshotListener = (snapshot: Snapshot) => void

export function rejectionKey(kind: string, namespace: string, name: string, file?: string): string {
  return `${kind.toLowerCase()} ${objectKey(namespace, name)}${file === undefined ? '' : ` @${file}`}`
}

export class RejectedObjects {
  readonly #byKey = new Map<string, InvalidObjectError>()
  readonly #log: Logger

  constructor(logger: Logger) {
    this.#log = logger
  }

  get size(): number {
    return this.#byKey.size
  }

  record(errors: readonly InvalidObjectError[]): void {
    for (const error of errors) {
      const key = rejectionKey(error.kind, error.namespace, error.objectName, error.file)
      if (this.#byKey.get(key)?.message !== error.message) {
        this.#log.warn(
          { code: error.code, kind: error.kind, namespace: error.namespace, name: error.objectName, field: error.field, file: error.file, err: error.message },
          'object rejected',
        )
      }
      this.#byKey.set(key, error)
    }
  }

  /** Drops the rejections of objects these changes upsert or delete. */
  forget(changes: readonly Change[]): void {
    if (this.#byKey.size === 0) return
    for (const change of changes) {
      const ref = change.type === 'upsert' ? refOf(change.resource) : change.ref
      const prefix = rejectionKey(ref.kind, ref.namespace, ref.name)
      for (const key of this.#byKey.keys()) if (key === prefix || key.startsWith(`${prefix} @`)) this.#byKey.delete(key)
    }
  }

  /** Replaces everything (a source that recomputes all errors at once). */
  replace(errors: readonly InvalidObjectError[]): void {
    const fresh = new Set<string>()
    for (const e of errors) fresh.add(rejectionKey(e.kind, e.namespace, e.objectName, e.file))
    for (const key of this.#byKey.keys()) if (!fresh.has(key)) this.#byKey.delete(key)
    this.record(errors)
  }

  list(): InvalidObjectError[] {
    return [...this.#byKey.values()]
  }
}
