// The objects a waypoint Gateway needs in a cluster (its ServiceAccount,
// ClusterRoleBinding, Deployment running `ambient waypoint` and Service), rendered
// from daemonset/waypoint-template.yaml, the file operators read and the install
// tests check against Kubernetes' schemas. Every placeholder is a plain string
// documented at the top of the file; an undocumented one is refused.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { AmbientError } from '../common/errors.js'
import { REPO_ROOT } from '../common/paths.js'

export const WAYPOINT_TEMPLATE = join(REPO_ROOT, 'daemonset', 'waypoint-template.yaml')
export const WAYPOINT_PLACEHOLDERS = ['NAME', 'NAMESPACE', 'GATEWAY_UID', 'IMAGE', 'CA_ADDRESS', 'TRUST_DOMAIN', 'ROOT_NAMESPACE', 'CLUSTER_DOMAIN'] as const
export type WaypointValues = Readonly<Record<(typeof WAYPOINT_PLACEHOLDERS)[number], string>>

export type RenderedObject = Record<string, unknown> & {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string>; [k: string]: unknown }
}

export class WaypointTemplateError extends AmbientError<'AMBIENT_ERR_WAYPOINT_TEMPLATE'> {
  constructor(message: string) {
    super('AMBIENT_ERR_WAYPOINT_TEMPLATE', message)
  }
}

/** The template's documents with the values in place of the placeholders (the comment header left out). */
export function renderWaypointObjects(values: WaypointValues, text = readFileSync(WAYPOINT_TEMPLATE, 'utf8')): RenderedObject[] {
  const body = text.replace(/^#.*$/gm, '')
  for (const [, name] of body.matchAll(/\{\{([A-Z_]+)\}\}/g)) {
    if (!(WAYPOINT_PLACEHOLDERS as readonly string[]).includes(name!))
      throw new WaypointTemplateError(`waypoint-template.yaml uses an undocumented placeholder {{${name}}}`)
  }
  const rendered = body.replace(/\{\{([A-Z_]+)\}\}/g, (_, name: string) => values[name as keyof WaypointValues])
  return parseAllDocuments(rendered).flatMap((doc, index) => {
    if (doc.errors.length > 0) throw new WaypointTemplateError(`waypoint-template.yaml (document ${index + 1}): ${doc.errors[0]!.message}`)
    const object = doc.toJS() as RenderedObject | null
    return object === null ? [] : [object]
  })
}
