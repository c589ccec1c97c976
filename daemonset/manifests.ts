// Reading the install manifests and the waypoint template for tests: every YAML
// document under daemonset/install/, and the template rendered with values.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { REPO_ROOT } from '../common/paths.js'
import { renderWaypointObjects, WAYPOINT_TEMPLATE, type WaypointValues } from '../agent/waypoint-template.js'

export { WAYPOINT_TEMPLATE }

export const INSTALL_DIR = join(REPO_ROOT, 'daemonset', 'install')

export type Manifest = Record<string, unknown> & {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; [k: string]: unknown }
}

export interface Located {
  readonly file: string
  readonly index: number
  readonly object: Manifest
}

/** Every document of a YAML file; a parse error names the file. */
export function readManifests(file: string, text = readFileSync(file, 'utf8')): Located[] {
  return parseAllDocuments(text).flatMap((doc, index) => {
    if (doc.errors.length > 0) throw new Error(`${file} (document ${index + 1}): ${doc.errors[0]!.message}`)
    const object = doc.toJS() as Manifest | null
    return object === null ? [] : [{ file, index, object }]
  })
}

/** The install manifests in the order `kubectl apply -f daemonset/install/` applies them. */
export function installManifests(): Located[] {
  return readdirSync(INSTALL_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((f) => readManifests(join(INSTALL_DIR, f)))
}

export { WAYPOINT_PLACEHOLDERS, type WaypointValues } from '../agent/waypoint-template.js'

/** The waypoint template as the agent renders it, located for the tests' messages. */
export function renderWaypointTemplate(values: WaypointValues): Located[] {
  return renderWaypointObjects(values).map((object, index) => ({ file: WAYPOINT_TEMPLATE, index, object: object as Manifest }))
}

export function find(manifests: readonly Located[], kind: string, name: string): Manifest {
  const found = manifests.find((m) => m.object.kind === kind && m.object.metadata.name === name)
  if (found === undefined) throw new Error(`no ${kind} ${name} in the manifests`)
  return found.object
}
