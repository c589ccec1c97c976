// Reading the install manifests and the waypoint template for tests: every YAML
// document under daemonset/install/, and the template rendered with values.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { REPO_ROOT } from '../common/paths.js'

export const INSTALL_DIR = join(REPO_ROOT, 'daemonset', 'install')
export const WAYPOINT_TEMPLATE = join(REPO_ROOT, 'daemonset', 'waypoint-template.yaml')

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

export const WAYPOINT_PLACEHOLDERS = ['NAME', 'NAMESPACE', 'GATEWAY_UID', 'IMAGE', 'CA_ADDRESS', 'TRUST_DOMAIN', 'ROOT_NAMESPACE', 'CLUSTER_DOMAIN'] as const
export type WaypointValues = Readonly<Record<(typeof WAYPOINT_PLACEHOLDERS)[number], string>>

/** The template with every {{PLACEHOLDER}} replaced; throws on an unknown or missing one. */
export function renderWaypointTemplate(values: WaypointValues): Located[] {
  const text = readFileSync(WAYPOINT_TEMPLATE, 'utf8')
  const body = text.replace(/^#.*$/gm, '') // the header documents the placeholders
  const used = new Set([...body.matchAll(/\{\{([A-Z_]+)\}\}/g)].map((m) => m[1]!))
  for (const name of used)
    if (!(WAYPOINT_PLACEHOLDERS as readonly string[]).includes(name)) throw new Error(`waypoint-template.yaml uses an undocumented placeholder {{${name}}}`)
  const rendered = body.replace(/\{\{([A-Z_]+)\}\}/g, (_, name: string) => values[name as keyof WaypointValues])
  return readManifests(WAYPOINT_TEMPLATE, rendered)
}

export function find(manifests: readonly Located[], kind: string, name: string): Manifest {
  const found = manifests.find((m) => m.object.kind === kind && m.object.metadata.name === name)
  if (found === undefined) throw new Error(`no ${kind} ${name} in the manifests`)
  return found.object
}
