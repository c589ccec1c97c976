// `ambient waypoint check`: what a waypoint would do with one request, from the
// YAML users keep in git (a dry run for CI). It reads the manifests folder with the
// same source, builds the same state and calls the same decision function as the
// waypoint process (waypoint/decide.ts): path normalization, L7 policy, routing.
import { isIPv4 } from 'node:net'
import type { Command } from 'commander'
import { ConfigError, parseIPv4, parsePort } from '../common/config.js'
import { AmbientError } from '../common/errors.js'
import { ManifestsSource } from '../common/local/manifests-source.js'
import { silentLogger } from '../common/log.js'
import type { Snapshot } from '../common/model/snapshot.js'
import { serviceGateway, waypointIndex } from '../common/model/waypoint.js'
import type { Service } from '../common/model/workload.js'
import { decidePlan, problemsOf } from '../waypoint/decide.js'
import type { PlanInput } from '../waypoint/proxy/http-handler.js'
import { WaypointState, type WaypointTarget } from '../waypoint/state.js'

export class WaypointCheckError extends AmbientError<'AMBIENT_ERR_WAYPOINT_CHECK_INPUT'> {
  constructor(message: string) {
    super('AMBIENT_ERR_WAYPOINT_CHECK_INPUT', message)
  }
}

export interface CheckRequest {
  readonly manifests: string
  readonly waypoint: { readonly namespace: string; readonly name: string }
  readonly to: { readonly host: string; readonly port: number }
  readonly method: string
  readonly path: string
  /** As given, `Name: value`, in order (a repeated name sends several values). */
  readonly headers: readonly (readonly [string, string])[]
  /** `cluster.local/ns/N/sa/S`, Istio's principal form; null: no peer identity. */
  readonly sourcePrincipal: string | null
  readonly sourceIp: string
  readonly trustDomain: string
  readonly rootNamespace: string
  readonly clusterDomain: string
}

export interface CheckResult {
  readonly decision: 'allow' | 'deny'
  readonly policy: string | null
  /** What the waypoint answers itself (403, 404, 500, a redirect's 3xx, 400), or null when it forwards. */
  readonly status: number | null
  readonly route: string | null
  readonly rule: number | null
  readonly backends: readonly { readonly service: string; readonly port: number | null; readonly weight: number; readonly invalid?: string }[]
  readonly request: { readonly path: string; readonly headers: Readonly<Record<string, string | readonly string[]>> } | null
  readonly redirect: string | null
}

/** The manifests as the waypoint's source reads them (once, no watch). */
export async function readSnapshot(dir: string): Promise<{ snapshot: Snapshot; rejected: readonly string[] }> {
  const source = new ManifestsSource({ dir, logger: silentLogger() })
  try {
    await source.start()
    return { snapshot: await source.ready(), rejected: source.errors().map((e) => e.message) }
  } finally {
    await source.stop()
  }
}

/** The service (or pod) `--to` names: a cluster IP, a pod IP, or a service hostname (name[.ns[.svc[.domain]]]). */
function resolveTarget(state: WaypointState, snapshot: Snapshot, request: CheckRequest): WaypointTarget {
  const { host, port } = request.to
  let service: Service | undefined
  if (isIPv4(host)) {
    service = [...snapshot.services.values()].find((s) => s.clusterIPs.includes(host))
    if (service === undefined) {
      const workload = state.store.findByIp(host)
      if (workload === undefined) throw new WaypointCheckError(`--to ${host}: no service cluster IP or pod IP ${host} in the manifests`)
      return { kind: 'workload', workload, address: { ip: host, port } }
    }
  } else {
    const parts = host.replace(/\.$/, '').split('.')
    const [name, namespace = request.waypoint.namespace, svc, ...domain] = parts
    if ((svc !== undefined && svc !== 'svc') || (domain.length > 0 && domain.join('.') !== request.clusterDomain))
      throw new WaypointCheckError(`--to ${host}: not a service hostname NAME[.NAMESPACE[.svc[.${request.clusterDomain}]]]`)
    service = state.service(namespace, name!)
    if (service === undefined) throw new WaypointCheckError(`--to ${host}: no Service ${namespace}/${name} in the manifests`)
  }
  const bound = serviceGateway(snapshot, waypointIndex(snapshot), service)
  const waypoint = `${request.waypoint.namespace}/${request.waypoint.name}`
  if (bound.kind !== 'bound' || `${bound.gateway.namespace}/${bound.gateway.name}` !== waypoint) {
    const why =
      bound.kind === 'problem'
        ? bound.problem.message
        : bound.kind === 'none'
          ? 'it uses no waypoint'
          : `it uses ${bound.gateway.namespace}/${bound.gateway.name}`
    throw new WaypointCheckError(
      `Service ${service.namespace}/${service.name} does not go through waypoint ${waypoint}: ${why} (the waypoint would answer 503)`,
    )
  }
  const servicePort = service.ports.find((p) => p.port === port)
  if (servicePort === undefined) throw new WaypointCheckError(`--to ${host}:${port}: Service ${service.namespace}/${service.name} has no port ${port}`)
  return { kind: 'service', service, port: servicePort, address: { ip: service.clusterIPs[0] ?? '0.0.0.0', port } }
}

function headerMap(headers: readonly (readonly [string, string])[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of headers) {
    const n = name.toLowerCase()
    const current = out[n]
    out[n] = current === undefined ? value : Array.isArray(current) ? [...current, value] : [current, value]
  }
  return out
}

export async function checkRequest(request: CheckRequest): Promise<{ result: CheckResult; problems: readonly string[] }> {
  const { snapshot, rejected } = await readSnapshot(request.manifests)
  const state = WaypointState.build(snapshot, {
    gateway: request.waypoint,
    trustDomain: request.trustDomain,
    rootNamespace: request.rootNamespace,
    clusterDomain: request.clusterDomain,
  })
  if (state.gateway === null) throw new WaypointCheckError(`--waypoint ${request.waypoint.namespace}/${request.waypoint.name}: ${state.problems.join('; ')}`)
  const target = resolveTarget(state, snapshot, request)
  const { host: hostHeader, ...headers } = headerMap(request.headers)
  const authority = hostHeader === undefined ? `${request.to.host}:${request.to.port}` : Array.isArray(hostHeader) ? hostHeader[0]! : hostHeader
  const input: PlanInput = {
    peerIdentity: request.sourcePrincipal === null ? null : `spiffe://${request.sourcePrincipal}`,
    sourceIp: request.sourceIp,
    target,
    method: request.method,
    path: request.path,
    authority,
    headers,
  }
  const plan = decidePlan(state, input)
  const shown = plan.kind === 'forward' ? plan.forward.request : plan.request
  const backends: CheckResult['backends'] =
    plan.kind === 'respond' || plan.workload !== null
      ? []
      : plan.forward.backends.map((b) =>
          b.kind === 'service'
            ? { service: `${b.namespace}/${b.name}`, port: b.port, weight: b.weight }
            : { service: `${b.ref.namespace}/${b.ref.name}`, port: b.ref.port, weight: b.weight, invalid: b.reason },
        )
  const result: CheckResult = {
    decision: plan.decision,
    policy: plan.policy,
    status: plan.kind === 'respond' ? plan.status : null,
    route: plan.route,
    rule: plan.rule,
    backends,
    request: shown === null ? null : { path: shown.path, headers: { ...shown.headers, host: shown.host } },
    redirect: plan.kind === 'respond' ? plan.location : null,
  }
  // The waypoint's own rendered Service is usually not in a user's YAML: its absence is no problem here.
  const problems = [...rejected, ...problemsOf(state).map((p) => `${p.object}: ${p.field}: ${p.message} (${p.kind}, ${p.code})`)]
  return { result, problems }
}

function explain(r: CheckResult): string {
  const lines = [`decision: ${r.decision}${r.policy ? ` (by ${r.policy})` : ' (no policy decided: allowed by default)'}`]
  if (r.route !== null) lines.push(`route: ${r.route}, rule ${r.rule}`)
  else if (r.status === null && r.decision === 'allow') lines.push('route: none bound or matched: the addressed service')
  if (r.status !== null) lines.push(`the waypoint answers ${r.status}${r.redirect ? ` with Location: ${r.redirect}` : ''}`)
  for (const b of r.backends) lines.push(`backend: ${b.service}:${b.port ?? '?'} weight ${b.weight}${b.invalid ? ` (invalid, answers 500: ${b.invalid})` : ''}`)
  if (r.request !== null) {
    lines.push(`${r.status === null ? 'request sent' : 'request (not sent)'}: ${r.request.path}`)
    for (const [name, value] of Object.entries(r.request.headers)) lines.push(`  ${name}: ${Array.isArray(value) ? value.join(', ') : value}`)
  }
  return lines.join('\n')
}

interface CheckFlags {
  manifests?: string
  waypoint?: string
  to?: string
  method: string
  path: string
  header: string[]
  sourcePrincipal?: string
  sourceIp: string
  trustDomain: string
  rootNamespace: string
  clusterDomain: string
  json?: boolean
}

export function parseCheckFlags(flags: CheckFlags): CheckRequest {
  const need = (setting: string, value: string | undefined): string => {
    if (!value) throw new ConfigError(setting, 'is required')
    return value
  }
  const [ns, name, ...rest] = need('--waypoint', flags.waypoint).split('/')
  if (!ns || !name || rest.length > 0) throw new ConfigError('--waypoint', `${JSON.stringify(flags.waypoint)} is not NAMESPACE/NAME`)
  const to = need('--to', flags.to)
  const colon = to.lastIndexOf(':')
  if (colon <= 0) throw new ConfigError('--to', `${JSON.stringify(to)} is not HOST:PORT`)
  const headers = flags.header.map((h): [string, string] => {
    const i = h.indexOf(':')
    if (i <= 0) throw new ConfigError('--header', `${JSON.stringify(h)} is not 'Name: value'`)
    return [h.slice(0, i).trim(), h.slice(i + 1).trim()]
  })
  const principal = flags.sourcePrincipal ?? null
  if (principal !== null && !/^[^/]+\/ns\/[^/]+\/sa\/[^/]+$/.test(principal))
    throw new ConfigError('--source-principal', `${JSON.stringify(principal)} is not TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`)
  if (!flags.path.startsWith('/')) throw new ConfigError('--path', `${JSON.stringify(flags.path)} must start with /`)
  return {
    manifests: need('--manifests', flags.manifests),
    waypoint: { namespace: ns, name },
    to: { host: to.slice(0, colon), port: parsePort('--to', to.slice(colon + 1)) },
    method: flags.method,
    path: flags.path,
    headers,
    sourcePrincipal: principal,
    sourceIp: parseIPv4('--source-ip', flags.sourceIp),
    trustDomain: flags.trustDomain,
    rootNamespace: flags.rootNamespace,
    clusterDomain: flags.clusterDomain,
  }
}

export function registerWaypointCheck(waypoint: Command): void {
  // `ambient waypoint check --manifests ...`: the options after `check` are check's, though `waypoint` has some of the same names.
  waypoint.enablePositionalOptions()
  waypoint
    .command('check')
    .description(
      'what the waypoint would do with one request, from the manifests (a dry run for CI): the policy decision, the route and rule, the backends, the request as sent',
    )
    .requiredOption('--manifests <dir>', 'the YAML (Gateways, HTTPRoutes, AuthorizationPolicies, Services, Namespaces, Pods) as the waypoint would read it')
    .requiredOption('--waypoint <namespace/name>', 'the waypoint Gateway (gatewayClassName istio-waypoint)')
    .requiredOption('--to <host:port>', "where the client sends it: a service's hostname (NAME[.NAMESPACE[.svc[.DOMAIN]]]) or cluster IP, or a pod IP")
    .option('--method <method>', 'the request method', 'GET')
    .option('--path <path>', 'the request path, with its query', '/')
    .option(
      '--header <name: value>',
      "a request header (repeat for more); 'Host: x' sets the authority (default: --to)",
      (v: string, acc: string[]) => [...acc, v],
      [],
    )
    .option('--source-principal <principal>', "the client's identity, Istio's principal form: cluster.local/ns/NAMESPACE/sa/SERVICE_ACCOUNT (default: none)")
    .option('--source-ip <ip>', "the client's IP (for ipBlocks and source.ip)", '0.0.0.0')
    .option('--trust-domain <td>', 'SPIFFE trust domain of the mesh', 'cluster.local')
    .option('--root-namespace <ns>', "Istio's root namespace", 'istio-system')
    .option('--cluster-domain <domain>', 'Kubernetes cluster domain of service hostnames', 'cluster.local')
    .option('--json', 'print one JSON object: decision, policy, status, route, rule, backends, request, redirect')
    .action(async (flags: CheckFlags) => {
      const { result, problems } = await checkRequest(parseCheckFlags(flags))
      for (const p of problems) process.stderr.write(`ambient waypoint check: warning: ${p}\n`)
      if (flags.json) console.log(JSON.stringify(result, null, 2))
      else console.log(explain(result))
    })
}
