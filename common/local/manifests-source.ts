// Configuration without a cluster (`ambient agent --manifests DIR`): every *.yaml
// and *.yml in DIR (multi-document, `kind: List` too), the same kinds as the API
// source, converted by the same code into the same snapshot. The folder is watched
// (fs.watch, debounced) and rescanned periodically as a safety net. A malformed
// file or object is reported (file, object, field) and skipped; an object that
// was good before keeps its last good version.
import { watch, type FSWatcher } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
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
  readonly objects: number
  readonly rejectedObjects: number
}

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
    return { scans: this.#scans, files: this.#files, objects: this.#desired.size, rejectedObjects: this.#rejected.size }
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
    // Only this pod changes: a targeted update, not a full republish (the agent
    // annotates every pod it enrolls, and a full diff per pod is quadratic).
    const resource = this.#desired.get(refToString({ kind: 'Pod', namespace, name }))
    if (resource !== undefined) this.#apply([{ type: 'upsert', resource: this.#withAnnotations(resource) }])
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
    for (const file of names) {
      let text: string
      try {
        text = await readFile(join(this.#o.dir, file), 'utf8')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue // removed while reading
        out.errors.push(fileError(file, '(read)', errorMessage(err), 'AMBIENT_ERR_SOURCE_READ'))
        continue
      }
      parseAllDocuments(text).forEach((doc, document) => {
        if (doc.errors.length > 0) {
          out.errors.push(
            fileError(file, `(yaml document ${document + 1})`, doc.errors[0]?.message.split('\n')[0] ?? 'is not valid yaml', 'AMBIENT_ERR_SOURCE_BAD_YAML'),
          )
          return
        }
        // toJS throws on what parsing lets through (an alias to no anchor, an alias
        // bomb): that document alone is bad, not the folder.
        let value: unknown
        try {
          value = doc.toJS()
        } catch (err) {
          out.errors.push(fileError(file, `(yaml document ${document + 1})`, errorMessage(err), 'AMBIENT_ERR_SOURCE_BAD_YAML'))
          return
        }
        if (value === null || value === undefined) return // empty document
        const list = value as { kind?: unknown; items?: unknown }
        const objects = list.kind === 'List' && Array.isArray(list.items) ? list.items : [value]
        for (const object of objects) this.#accept(out, object, { file, document })
      })
    }
    return out
  }

  #accept(out: Scanned, object: unknown, origin: { file: string; document: number }): void {
    const options = { origin, defaultNamespace: 'default' }
    const result = convertObject(object, options)
    if (result.ok) {
      const key = refToString(refOf(result.resource))
      if (out.resources.has(key)) this.#log.warn({ object: key, file: origin.file }, 'object defined twice; the later file wins')
      out.resources.set(key, result.resource)
      return
    }
    out.errors.push(result.error)
    try {
      out.rejectedKeys.add(refToString(identify(object, options).ref))
    } catch {
      // cannot even be named: nothing to keep
    }
  }

  #publish(): void {
    const target = new Map<string, Resource>()
    for (const [key, resource] of this.#desired) target.set(key, this.#withAnnotations(resource))
    const changes: Change[] = []
    const current = new Map(resourcesOf(this.#snapshot).map((r) => [refToString(refOf(r)), r]))
    for (const resource of target.values()) {
      const existing = lookup(this.#snapshot, refOf(resource))
      if (existing === undefined || JSON.stringify(existing) !== JSON.stringify(resource)) changes.push({ type: 'upsert', resource })
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
    const value: Pod = Object.freeze({ ...resource.value, annotations: Object.freeze({ ...resource.value.annotations, ...extra }) })
    return { kind: 'Pod', value }
  }
}

function fileError(file: string, field: string, problem: string, code: 'AMBIENT_ERR_SOURCE_BAD_YAML' | 'AMBIENT_ERR_SOURCE_READ'): InvalidObjectError {
  return new InvalidObjectError({ kind: 'file', namespace: '', name: file, field, problem, file }, code)
}
