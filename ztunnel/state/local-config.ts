// `ambient ztunnel --local-config FILE`: workloads from a static YAML file, in the
// shape of Istio ztunnel's LOCAL_XDS_PATH file (workloads: [{uid, name,
// namespace, serviceAccount, workloadIps, protocol, node, trustDomain}]), plus a
// node-local `netns` for this node's pods (what Istio's ZDS hands ztunnel), and
// `policies`: security.istio.io/v1 AuthorizationPolicy and PeerAuthentication
// manifests as users write them (Istio's file carries them pre-converted).
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import type { Workload } from '../../common/model/workload-store.js'
import { AmbientError } from '../../common/errors.js'

export class LocalConfigError extends AmbientError<'AMBIENT_ERR_LOCAL_CONFIG'> {
  constructor(message: string, options?: { readonly cause?: unknown }) {
    super('AMBIENT_ERR_LOCAL_CONFIG', message, options)
  }
}

export interface LocalConfig {
  readonly workloads: readonly Workload[]
  /** AuthorizationPolicy and PeerAuthentication manifests, as written (converted by PolicyStore). */
  readonly policies: readonly unknown[]
  /** Entries that could not be read, each naming the entry and the bad field. */
  readonly errors: readonly string[]
}

function str(entry: Record<string, unknown>, field: string, where: string, fallback?: string): string {
  const value = entry[field]
  if (value === undefined && fallback !== undefined) return fallback
  if (typeof value !== 'string') throw new LocalConfigError(`${where}: ${field} must be a string, got ${JSON.stringify(value)}`)
  return value
}

function labels(entry: Record<string, unknown>, where: string): Record<string, string> {
  const value = entry.labels ?? {}
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new LocalConfigError(`${where}: labels must be a map`)
  for (const [k, v] of Object.entries(value))
    if (typeof v !== 'string') throw new LocalConfigError(`${where}: label ${k} must be a string, got ${JSON.stringify(v)}`)
  return value as Record<string, string>
}

export function parseLocalConfig(text: string, source: string, defaults: { readonly trustDomain: string }): LocalConfig {
  let doc: unknown
  try {
    doc = parse(text)
  } catch (err) {
    throw new LocalConfigError(`${source}: not valid YAML: ${(err as Error).message}`, { cause: err })
  }
  if (doc === null || typeof doc !== 'object' || !Array.isArray((doc as { workloads?: unknown }).workloads)) {
    throw new LocalConfigError(`${source}: expected a map with a 'workloads' list`)
  }
  const workloads: Workload[] = []
  const errors: string[] = []
  const rawPolicies = (doc as { policies?: unknown }).policies ?? []
  if (!Array.isArray(rawPolicies)) throw new LocalConfigError(`${source}: 'policies' must be a list of AuthorizationPolicy and PeerAuthentication manifests`)
  ;(doc as { workloads: unknown[] }).workloads.forEach((raw, i) => {
    const where = `${source}: workloads[${i}]`
    try {
      if (raw === null || typeof raw !== 'object') throw new LocalConfigError(`${where}: must be a map`)
      const e = raw as Record<string, unknown>
      const name = str(e, 'name', where)
      const namespace = str(e, 'namespace', where)
      const ips = e.workloadIps
      if (!Array.isArray(ips) || ips.some((ip) => typeof ip !== 'string'))
        throw new LocalConfigError(`${where} (${namespace}/${name}): workloadIps must be a list of strings`)
      const protocol = str(e, 'protocol', where, 'HBONE').toUpperCase()
      const podLabels = labels(e, where)
      workloads.push({
        uid: str(e, 'uid', where, `${namespace}/${name}`),
        name,
        namespace,
        serviceAccount: str(e, 'serviceAccount', where, 'default'),
        // The file has no services, so no waypoint (a waypoint is reached through its service).
        waypoint: null,
        trustDomain: str(e, 'trustDomain', where, defaults.trustDomain),
        ips: ips as string[],
        tunnelProtocol: protocol === 'TCP' ? 'NONE' : (protocol as 'HBONE' | 'NONE'),
        node: str(e, 'node', where, ''),
        network: '',
        canonicalName: str(
          e,
          'canonicalName',
          where,
          podLabels['service.istio.io/canonical-name'] ?? podLabels['app.kubernetes.io/name'] ?? podLabels['app'] ?? name,
        ),
        canonicalRevision: str(
          e,
          'canonicalRevision',
          where,
          podLabels['service.istio.io/canonical-revision'] ?? podLabels['app.kubernetes.io/version'] ?? podLabels['version'] ?? 'latest',
        ),
        workloadType: 'POD',
        workloadName: str(e, 'workloadName', where, name),
        services: {},
        authorizationPolicies: null,
        status: 'HEALTHY',
        clusterId: '',
        labels: podLabels,
        netnsPath: e.netns === undefined ? undefined : str(e, 'netns', where),
      })
    } catch (err) {
      errors.push((err as Error).message)
    }
  })
  return { workloads, policies: rawPolicies, errors }
}

export function readLocalConfig(path: string, defaults: { readonly trustDomain: string }): LocalConfig {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new LocalConfigError(`cannot read local config ${path}: ${(err as Error).message}`, { cause: err })
  }
  return parseLocalConfig(text, path, defaults)
}
