// Configuration without a cluster (`ambient agent --manifests DIR`): every *.yaml
// and *.yml in DIR (multi-document, `kind: List` too), the same kinds as the API
// source, converted by the same code into the same snapshot. The folder is watched
// (fs.watch, debounced) and rescanned periodically as a safety net. A malformed
// file or object is reported (file, object, field) and skipped; an object that
// was good before keeps its last good version.
import { watch, type FSWatcher } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { eachLimited } from '../concurrency.js'
import type { Logger } from '../log.js'
import { convertObject, identify } from '../kube/convert.js'
import { errorMessage, InvalidObjectError, SourceError } from '../kube/errors.js'
import { RejectedObjects, type SnapshotListener } from '../kube/rejected-objects.js'
import { applyBatch, emptySnapshot, lookup, refOf, refToString, resourcesOf, type Change, type Resource, type Snapshot } from '../model/snapshot.js'
import type { Pod } from '../model/workload.js'

export interface ManifestsSourceOptions {
  readonly dir: string
  readonly logger: Logger
  /** Changes seen by fs.watch within this window are read as one; default 50 ms. */
  readonly debounceMs?: number
  /** Full rescan interval, in case fs.watch misses something; default 5000 ms, 0 disables. */
  readonly rescanIntervalMs?: number
}

export interface ManifestsSourceStats {
  readonly scans: number
  readonly files: number
  /** Files the last scan read and parsed; the others were unchanged since the scan before. */
  readonly parsedFiles: number
  readonly objects: number
  readonly rejectedObjects: number
}

/** One object of a file: converted, or why not (with its key when it could be named: its last good version stays). */
type ParsedEntry =
  | { readonly kind: 'resource'; readonly key: string; readonly resource: Resource }
  | { readonly kind: 'error'; readonly error: InvalidObjectError; readonly rejectedKey: string | null }

/** A file's objects as last read; `stamp` (inode, size, mtime, ctime) says when they may be reused, null: never. */
interface ParsedFile {
  readonly stamp: string | null
  readonly entries: readonly ParsedEntry[]
}

/** A file changed this recently before it was read is read again on the next scan (file timestamps are coarse). */
const STAMP_MARGIN_MS = 1000
/** Files stat'ed or read at once in a scan. */
const FILES_IN_FLIGHT = 32

interface Scanned {
  readonly resources: Map<string, Resource>
  /** Keys of objects that were named but rejected: their last good version stays. */
  readonly rejectedKeys: Set<string>
  readonly errors: InvalidObjectError[]
  readonly files: number
}

export class ManifestsSource {
  readonly #o: ManifestsSourceOptions
  readonly #log: Logger
  readonly #listeners = new Set<SnapshotListener>()
  readonly #rejected: RejectedObjects
  /** Annotations the agent set on pods ("annotating" locally), keyed by namespace/name. */
  readonly #annotations = new Map<string, Record<string, string>>()
  #desired = new Map<string, Resource>()
  #snapshot: Snapshot = emptySnapshot()
  #watcher: FSWatcher | undefined
  #debounce: NodeJS.Timeout | undefined
  #rescan: NodeJS.Timeout | undefined
  #scanning: Promise<void> = Promise.resolve()
  #started = false
  #stopped = false
  #scans = 0
  #files = 0
  /** Pods annotated since the last update, and that update (applied once the current tick's calls are in). */
  readonly #annotated = new Set<string>()
  #annotating: Promise<void> | null = null
  /** The annotated version of each pod object, while its annotations stay the same object. */
  readonly #withExtra = new WeakMap<Pod, { readonly extra: Record<string, string>; readonly resource: Resource }>()
  /** Each file's objects as last read, by file name. */
  #parsed = new Map<string, ParsedFile>()
  #parsedFiles = 0

  constructor(options: ManifestsSourceOptions) {
    this.#o = options
    this.#log = options.logger.child({ component: 'manifests-source', dir: options.dir })
    this.#rejected = new RejectedObjects(this.#log)
  }

  /** Reads the folder once (ready when this resolves) and starts watching it. */
  async start(): Promise<void> {
    if (this.#stopped) throw new SourceError('AMBIENT_ERR_SOURCE_STOPPED', 'manifests source was stopped; create a new one')
    if (this.#started) return
    this.#started = true
    await this.rescan()
    try {
      this.#watcher = watch(this.#o.dir, { persistent: false }, () => this.#changed())
      this.#watcher.on('error', (err) => this.#log.warn({ err: errorMessage(err) }, 'folder watch failed; relying on rescans'))
    } catch (err) {
      throw new SourceError('AMBIENT_ERR_SOURCE_READ', `cannot watch manifests folder ${this.#o.dir}: ${errorMessage(err)}`, { cause: err })
    }
    const interval = this.#o.rescanIntervalMs ?? 5000
    if (interval > 0) {
      this.#rescan = setInterval(() => void this.rescan(), interval)
      this.#rescan.unref()
    }
    this.#log.info({ objects: this.#desired.size, rejected: this.#rejected.size }, 'manifests source started')
  }

  /** Resolves with the current snapshot once the first read is done. */
  async ready(): Promise<Snapshot> {
    await this.#scanning
    return this.#snapshot
  }

  async stop(): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    this.#watcher?.close()
    if (this.#debounce) clearTimeout(this.#debounce)
    if (this.#rescan) clearInterval(this.#rescan)
    await this.#scanning.catch(() => undefined)
    this.#listeners.clear()
  }

  snapshot(): Snapshot {
    return this.#snapshot
  }

  onChange(listener: SnapshotListener): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /** Every problem of the last read: bad YAML, unsupported kinds, bad fields. */
  errors(): readonly InvalidObjectError[] {
    return this.#rejected.list()
  }

  stats(): ManifestsSourceStats {
    return { scans: this.#scans, files: this.#files, parsedFiles: this.#parsedFiles, objects: this.#desired.size, rejectedObjects: this.#rejected.size }
  }

  /** The annotations recorded by annotatePod, per `namespace/name`. */
  annotations(): ReadonlyMap<string, Readonly<Record<string, string>>> {
    return new Map(this.#annotations)
  }

  /** Records annotations on a pod (null removes one); they show in the snapshot's pod. */
  async annotatePod(namespace: string, name: string, annotations: Readonly<Record<string, string | null>>): Promise<void> {
    if (this.#snapshot.pods.get(`${namespace}/${name}`) === undefined) {
      throw new SourceError('AMBIENT_ERR_SOURCE_NOT_FOUND', `cannot annotate pod ${namespace}/${name}: not in the manifests of ${this.#o.dir}`)
    }
    const current = { ...(this.#annotations.get(`${namespace}/${name}`) ?? {}) }
    for (const [k, v] of Object.entries(annotations)) {
      if (v === null) delete current[k]
      else current[k] = v
    }
    this.#annotations.set(`${namespace}/${name}`, current)
    // Only the annotated pods change: a targeted update, not a full republish (the
    // agent annotates every pod it enrolls, and a full diff per pod is quadratic);
    // the calls of one tick (the agent makes several at once) share one update.
    this.#annotated.add(refToString({ kind: 'Pod', namespace, name }))
    this.#annotating ??= Promise.resolve().then(() => {
      const changes: Change[] = []
      for (const key of this.#annotated) {
        const resource = this.#desired.get(key)
        if (resource !== undefined) changes.push({ type: 'upsert', resource: this.#withAnnotations(resource) })
      }
      this.#annotated.clear()
      this.#annotating = null
      this.#apply(changes)
    })
    return this.#annotating
  }

  /** Reads the folder now (also what the timer and fs.watch do). */
  rescan(): Promise<void> {
    this.#scanning = this.#scanning.then(async () => {
      if (this.#stopped && this.#scans > 0) return
      try {
        const scanned = await this.#read()
        this.#scans += 1
        this.#files = scanned.files
        this.#rejected.replace(scanned.errors)
        const desired = scanned.resources
        for (const key of scanned.rejectedKeys) {
          const previous = this.#desired.get(key)
          if (previous !== undefined && !desired.has(key)) desired.set(key, previous)
        }
        this.#desired = desired
        this.#publish()
      } catch (err) {
        this.#log.error({ err: errorMessage(err) }, 'cannot read manifests folder')
        this.#rejected.replace([
          new InvalidObjectError(
            { kind: 'folder', namespace: '', name: this.#o.dir, field: '(read)', problem: errorMessage(err), file: this.#o.dir },
            'AMBIENT_ERR_SOURCE_READ',
          ),
        ])
      }
    })
    return this.#scanning
  }

  #changed(): void {
    if (this.#stopped) return
    if (this.#debounce) clearTimeout(this.#debounce)
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined
      void this.rescan()
    }, this.#o.debounceMs ?? 50)
  }

  async #read(): Promise<Scanned> {
    const names = (await readdir(this.#o.dir)).filter((n) => /\.ya?ml$/i.test(n) && !n.startsWith('.')).sort()
    const out: Scanned = { resources: new Map(), rejectedKeys: new Set(), errors: [], files: names.length }
    const parsed = new Map<string, ParsedFile>()
    let parsedFiles = 0
    // Many files' stat (and read, when changed) in flight at once: a thread-pool trip each, not one after another
    // (bounded: each read holds a descriptor).
    const files: (ParsedFile | null)[] = new Array<ParsedFile | null>(names.length).fill(null)
    const order = new Map(names.map((file, i) => [file, i]))
    await eachLimited(names, FILES_IN_FLIGHT, async (file) => {
      files[order.get(file)!] = await this.#parseFile(file)
    })
    for (const [i, file] of names.entries()) {
      const entries = files[i]!
      if (entries === null) continue // removed while reading
      parsed.set(file, entries)
      if (entries !== this.#parsed.get(file)) parsedFiles++
      for (const entry of entries.entries) {
        if (entry.kind === 'error') {
          out.errors.push(entry.error)
          if (entry.rejectedKey !== null) out.rejectedKeys.add(entry.rejectedKey)
          continue
        }
        if (out.resources.has(entry.key)) this.#log.warn({ object: entry.key, file }, 'object defined twice; the later file wins')
        out.resources.set(entry.key, entry.resource)
      }
    }
    this.#parsed = parsed
    this.#parsedFiles = parsedFiles
    return out
  }

  /**
   * A file's objects, converted: from the last read while the file is unchanged
   * (same inode, size, mtime and ctime; the testbed and most tools replace a file
   * by renaming, which changes the inode), else read and parsed again. A file
   * written within STAMP_MARGIN_MS before it was read is read again next time: a
   * second write within the clock's granularity may leave its stamp as it was.
   */
  async #parseFile(file: string): Promise<ParsedFile | null> {
    const path = join(this.#o.dir, file)
    let stamp: string | null = null
    try {
      const st = await stat(path, { bigint: true })
      const cached = this.#parsed.get(file)
      const current = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`
      if (cached !== undefined && cached.stamp === current) return cached
      // (A write moves mtime; ctime and the inode tell a rename or a chmod.)
      if (Number(st.mtimeNs / 1_000_000n) < Date.now() - STAMP_MARGIN_MS) stamp = current
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    }
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      return { stamp: null, entries: [{ kind: 'error', error: fileError(file, '(read)', errorMessage(err), 'AMBIENT_ERR_SOURCE_READ'), rejectedKey: null }] }
    }
    const entries: ParsedEntry[] = []
    parseAllDocuments(text).forEach((doc, document) => {
      if (doc.errors.length > 0) {
        const problem = doc.errors[0]?.message.split('\n')[0] ?? 'is not valid yaml'
        entries.push({ kind: 'error', error: fileError(file, `(yaml document ${document + 1})`, problem, 'AMBIENT_ERR_SOURCE_BAD_YAML'), rejectedKey: null })
        return
      }
      // toJS throws on what parsing lets through (an alias to no anchor, an alias
      // bomb): that document alone is bad, not the folder.
      let value: unknown
      try {
        value = doc.toJS()
      } catch (err) {
        entries.push({
          kind: 'error',
          error: fileError(file, `(yaml document ${document + 1})`, errorMessage(err), 'AMBIENT_ERR_SOURCE_BAD_YAML'),
          rejectedKey: null,
        })
        return
      }
      if (value === null || value === undefined) return // empty document
      const list = value as { kind?: unknown; items?: unknown }
      const objects = list.kind === 'List' && Array.isArray(list.items) ? list.items : [value]
      for (const object of objects) entries.push(convert(object, { file, document }))
    })
    return { stamp, entries }
  }

  #publish(): void {
    const target = new Map<string, Resource>()
    for (const [key, resource] of this.#desired) target.set(key, this.#withAnnotations(resource))
    const changes: Change[] = []
    const current = new Map(resourcesOf(this.#snapshot).map((r) => [refToString(refOf(r)), r]))
    for (const resource of target.values()) {
      const existing = lookup(this.#snapshot, refOf(resource))
      if (existing === undefined || !sameResource(existing, resource)) changes.push({ type: 'upsert', resource })
    }
    for (const [key, resource] of current) if (!target.has(key)) changes.push({ type: 'delete', ref: refOf(resource) })
    this.#apply(changes)
  }

  #apply(changes: readonly Change[]): void {
    const next = applyBatch(this.#snapshot, changes)
    if (next === this.#snapshot) return
    this.#snapshot = next
    this.#log.debug({ version: next.version, changes: changes.length }, 'manifests applied')
    for (const listener of [...this.#listeners]) {
      try {
        listener(next)
      } catch (err) {
        this.#log.error({ err: errorMessage(err) }, 'snapshot listener failed')
      }
    }
  }

  #withAnnotations(resource: Resource): Resource {
    if (resource.kind !== 'Pod') return resource
    const extra = this.#annotations.get(`${resource.value.namespace}/${resource.value.name}`)
    if (extra === undefined) return resource
    // The same object while neither changes: #publish then sees an unchanged pod without comparing its JSON.
    const known = this.#withExtra.get(resource.value)
    if (known?.extra === extra) return known.resource
    const value: Pod = Object.freeze({ ...resource.value, annotations: Object.freeze({ ...resource.value.annotations, ...extra }) })
    const annotated: Resource = { kind: 'Pod', value }
    this.#withExtra.set(resource.value, { extra, resource: annotated })
    return annotated
  }
}

function fileError(file: string, field: string, problem: string, code: 'AMBIENT_ERR_SOURCE_BAD_YAML' | 'AMBIENT_ERR_SOURCE_READ'): InvalidObjectError {
  return new InvalidObjectError({ kind: 'file', namespace: '', name: file, field, problem, file }, code)
}

function convert(object: unknown, origin: { file: string; document: number }): ParsedEntry {
  const options = { origin, defaultNamespace: 'default' }
  const result = convertObject(object, options)
  if (result.ok) return { kind: 'resource', key: refToString(refOf(result.resource)), resource: result.resource }
  let rejectedKey: string | null = null
  try {
    rejectedKey = refToString(identify(object, options).ref)
  } catch {
    // cannot even be named: nothing to keep
  }
  return { kind: 'error', error: result.error, rejectedKey }
}

/** Whether two versions of an object are equal: the same object (a file not read again), else the same JSON. */
function sameResource(a: Resource, b: Resource): boolean {
  if ('value' in a && 'value' in b && a.value === b.value) return true
  if ('object' in a && 'object' in b && a.object === b.object) return true
  return JSON.stringify(a) === JSON.stringify(b)
}
