// Files that change under a running ztunnel (mounted Secrets and ConfigMaps are
// replaced in place): polled, re-read together when any of them changes, parsed,
// and applied only when the whole set parses. A missing, partial or bad set is
// logged and what is in force stays; the next change is tried again.
import { readFileSync, unwatchFile, watchFile } from 'node:fs'
import type { Logger } from '../log.js'

export interface WatchedFilesSpec<T> {
  /** What the files hold, for log lines ("trust bundle"). */
  readonly what: string
  /** What stays in force when a change is refused ("roots"). */
  readonly kept: string
  readonly paths: readonly string[]
  /** Turns the files' contents (in `paths` order) into the value to apply; throws naming what is wrong. */
  readonly parse: (contents: readonly string[]) => T
  readonly apply: (value: T) => void
  /** Fields for the "replaced" log line. */
  readonly describe?: (value: T) => Record<string, unknown>
}

export class WatchedFiles<T> {
  #current: readonly string[]
  #started = false

  constructor(
    private readonly spec: WatchedFilesSpec<T>,
    /** The contents in force now (read at start-up). */
    initial: readonly string[],
    private readonly log: Logger,
    private readonly intervalMs = 1000,
  ) {
    this.#current = initial
  }

  readonly #onChange = (): void => void this.reload()

  start(): void {
    if (this.#started) return
    this.#started = true
    for (const path of this.spec.paths) watchFile(path, { interval: this.intervalMs }, this.#onChange)
  }

  /** Stops this watcher only (other watchers of the same files in the process keep theirs). */
  stop(): void {
    if (this.#started) for (const path of this.spec.paths) unwatchFile(path, this.#onChange)
    this.#started = false
  }

  /** Reads the files now; returns true when a changed set was applied. */
  reload(): boolean {
    const { what, kept, paths } = this.spec
    const where = paths.length === 1 ? { path: paths[0] } : { paths }
    let contents: string[]
    try {
      contents = paths.map((p) => readFileSync(p, 'utf8'))
    } catch (err) {
      this.log.error({ ...where, err: (err as Error).message }, `${what} file unreadable; keeping the ${kept} in force`)
      return false
    }
    if (contents.every((c, i) => c === this.#current[i])) return false
    let value: T
    try {
      value = this.spec.parse(contents)
    } catch (err) {
      this.log.error({ ...where, err: (err as Error).message }, `${what} not applied; keeping the ${kept} in force`)
      return false
    }
    try {
      this.spec.apply(value)
    } catch (err) {
      this.log.error({ ...where, err: (err as Error).message }, `${what} not applied; keeping the ${kept} in force (retried on the next change)`)
      return false
    }
    this.#current = contents
    this.log.info({ ...where, ...this.spec.describe?.(value) }, `${what} replaced`)
    return true
  }
}
