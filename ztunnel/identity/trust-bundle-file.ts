// The trust bundle as a file that changes under ztunnel: Istio mounts the mesh's
// roots (the istio-ca-root-cert ConfigMap) and rotates a root by first publishing
// old + new, then new alone. ztunnel re-reads the file when it changes and hands
// a bundle that parses to the IdentityManager; a bad file is logged and the
// roots in force stay.
import { readFileSync, unwatchFile, watchFile } from 'node:fs'
import type { Logger } from '../../common/log.js'
import { parseBundle } from './chain.js'

export class TrustBundleFile {
  #current: string
  #started = false

  constructor(
    private readonly path: string,
    initialPem: string,
    private readonly apply: (pem: string) => void,
    private readonly log: Logger,
    private readonly intervalMs = 1000,
  ) {
    this.#current = initialPem
  }

  start(): void {
    if (this.#started) return
    this.#started = true
    watchFile(this.path, { interval: this.intervalMs }, () => this.reload())
  }

  stop(): void {
    if (this.#started) unwatchFile(this.path)
    this.#started = false
  }

  /** Reads the file now; returns true when a new bundle was applied. */
  reload(): boolean {
    let pem: string
    try {
      pem = readFileSync(this.path, 'utf8')
    } catch (err) {
      this.log.error({ path: this.path, err: (err as Error).message }, 'trust bundle file unreadable; keeping the roots in force')
      return false
    }
    if (pem === this.#current) return false
    let roots: number
    try {
      roots = parseBundle(pem, `trust bundle ${this.path}`).length
    } catch (err) {
      this.log.error({ path: this.path, err: (err as Error).message }, 'trust bundle not applied; keeping the roots in force')
      return false
    }
    try {
      this.apply(pem)
    } catch (err) {
      this.log.error({ path: this.path, err: (err as Error).message }, 'trust bundle not applied; keeping the roots in force (retried on the next change)')
      return false
    }
    this.#current = pem
    this.log.info({ path: this.path, roots }, 'trust bundle replaced')
    return true
  }
}
