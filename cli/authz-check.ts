// `ambient authz check`: evaluates one connection offline against policy YAML (the
// manifests the agent reads), for operators puzzled by a refusal. runAuthzCheck is
// pure (objects in, result out); the command reads the files and prints.
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { Command } from 'commander'
import { parseAllDocuments } from 'yaml'
import { ConfigError, parsePort } from '../common/config.js'
import { DEFAULT_ROOT_NAMESPACE } from '../common/model/convert/authorization-policy.js'
import { convertPolicies, kindOf, type PolicyProblem } from '../common/model/convert/policies.js'
import { parseLabelList, parseLabelMap } from '../common/model/convert/labels.js'
import type { Labels } from '../common/model/workload.js'
import { isRecord } from '../common/model/convert/object-fields.js'
import { parseIp } from '../common/policy/ip.js'
import type { SourceIdentity } from '../common/policy/fields.js'
import { type DecisionRule, type DryRunMatch, evaluate } from '../common/policy/matcher.js'
import { PolicySet } from '../common/policy/policy-set.js'
import { AmbientError } from '../common/errors.js'

export class AuthzCheckError extends AmbientError<'AMBIENT_ERR_AUTHZ_CHECK_INPUT' | 'AMBIENT_ERR_AUTHZ_CHECK_MANIFEST'> {}

/** One parsed manifest document, with where it came from. */
export interface ManifestObject {
  readonly origin: string
  readonly object: unknown
}

export interface AuthzCheckOptions {
  readonly objects: readonly ManifestObject[]
  readonly rootNamespace?: string
  readonly destNamespace?: string
  readonly destLabels?: Labels
  readonly destIp: string
  readonly destPort: number
  /** `td/ns/NS/sa/SA`, with or without `spiffe://`; undefined for plaintext. */
  readonly sourcePrincipal?: string
  readonly sourceIp?: string
}

export type { PolicyProblem }

export interface AuthzCheckResult {
  readonly decision: 'allow' | 'deny'
  /** `namespace/name` of the policy that decided, or null. */
  readonly policy: string | null
  readonly rule: DecisionRule
  readonly reason: string
  readonly mtls: { readonly mode: 'STRICT' | 'PERMISSIVE'; readonly policy: string | null; readonly level: string }
  readonly destination: { readonly namespace: string; readonly labels: Labels; readonly ip: string; readonly port: number; readonly pod: string | null }
  readonly source: { readonly principal: string | null; readonly ip: string | null }
  readonly dryRun: readonly { readonly policy: string; readonly action: DryRunMatch['action'] }[]
  readonly dryRunWouldDeny: boolean
  /** Warnings about the policies that select the destination (L7 attributes ignored at L4, ...). */
  readonly warnings: readonly PolicyProblem[]
  /** Malformed policies, left out (each reported by name and field). */
  readonly invalid: readonly PolicyProblem[]
  /** Policies not enforced by ztunnel (targetRefs, CUSTOM, AUDIT). */
  readonly ignored: readonly PolicyProblem[]
  readonly notes: readonly string[]
}

const metaOf = (o: unknown): Readonly<Record<string, unknown>> => (isRecord(o) && isRecord(o['metadata']) ? o['metadata'] : {})

/** Parses a `td/ns/NS/sa/SA` principal (optionally `spiffe://`-prefixed). */
export function parsePrincipal(text: string): SourceIdentity {
  const m = /^(?:spiffe:\/\/)?([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(text)
  if (m === null)
    throw new ConfigError(
      '--source-principal',
      `${JSON.stringify(text)} is not TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT (e.g. cluster.local/ns/default/sa/sleep)`,
    )
  return { trustDomain: m[1]!, namespace: m[2]!, serviceAccount: m[3]! }
}

interface Destination {
  readonly namespace: string
  readonly labels: Labels
  readonly pod: string | null
  readonly notes: string[]
}

/** The destination's namespace and labels: from a Pod with that IP, overridden by flags. */
function resolveDestination(options: AuthzCheckOptions): Destination {
  const notes: string[] = []
  const pod = options.objects.map((o) => o.object).find((o) => kindOf(o) === 'Pod' && podIps(o).includes(options.destIp))
  const meta = metaOf(pod)
  const podNamespace = typeof meta['namespace'] === 'string' ? meta['namespace'] : pod === undefined ? undefined : 'default'
  const podName = pod === undefined ? null : `${podNamespace}/${String(meta['name'])}`
  const namespace = options.destNamespace ?? podNamespace
  if (namespace === undefined) {
    throw new AuthzCheckError('AMBIENT_ERR_AUTHZ_CHECK_INPUT', `no Pod with IP ${options.destIp} in the manifests; give --dest-namespace (and --dest-labels)`)
  }
  if (podNamespace !== undefined && podNamespace !== namespace) notes.push(`--dest-namespace ${namespace} differs from the namespace of pod ${podName}`)
  const podLabels = parseLabelMap(meta['labels'])
  const labels = { ...(podLabels.ok ? podLabels.labels : {}), ...(options.destLabels ?? {}) }
  const ns = options.objects.map((o) => o.object).find((o) => kindOf(o) === 'Namespace' && metaOf(o)['name'] === namespace)
  if (ns !== undefined) {
    const nsLabels = parseLabelMap(metaOf(ns)['labels'])
    const podMode = labels['istio.io/dataplane-mode']
    if (podMode === 'none' || (podMode !== 'ambient' && (!nsLabels.ok || nsLabels.labels['istio.io/dataplane-mode'] !== 'ambient'))) {
      notes.push(`destination is not enrolled in ambient (istio.io/dataplane-mode); ztunnel would not see this connection`)
    }
  }
  return { namespace, labels: Object.freeze(labels), pod: podName, notes }
}

function podIps(pod: unknown): string[] {
  const status = isRecord(pod) && isRecord(pod['status']) ? pod['status'] : {}
  const ips = Array.isArray(status['podIPs']) ? status['podIPs'].map((p) => (isRecord(p) ? p['ip'] : undefined)) : []
  return [status['podIP'], ...ips].filter((ip): ip is string => typeof ip === 'string')
}

export function runAuthzCheck(options: AuthzCheckOptions): AuthzCheckResult {
  const rootNamespace = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE
  if (parseIp(options.destIp) === undefined) throw new ConfigError('--dest-ip', `${JSON.stringify(options.destIp)} is not an IP address`)
  if (options.sourceIp !== undefined && parseIp(options.sourceIp) === undefined)
    throw new ConfigError('--source-ip', `${JSON.stringify(options.sourceIp)} is not an IP address`)
  const identity = options.sourcePrincipal === undefined ? undefined : parsePrincipal(options.sourcePrincipal)
  const loaded = convertPolicies(
    options.objects.map((o) => o.object),
    rootNamespace,
  )
  const dest = resolveDestination(options)
  const set = PolicySet.build({ authorizations: loaded.authorizations, peerAuthentications: loaded.peerAuthentications, rootNamespace })
  const decision = evaluate(set, {
    sourceIdentity: identity,
    sourceIp: options.sourceIp ?? '',
    destination: { ip: options.destIp, port: options.destPort, namespace: dest.namespace, labels: dest.labels },
  })
  const relevant = relevantPolicies(set, dest)
  const notes = [...dest.notes]
  if (options.sourceIp === undefined) notes.push('no --source-ip: ipBlocks never match and notIpBlocks always do')
  const key = (p: { readonly namespace: string; readonly name: string } | null): string | null => (p === null ? null : `${p.namespace}/${p.name}`)
  return {
    decision: decision.allowed ? 'allow' : 'deny',
    policy: key(decision.policy),
    rule: decision.rule,
    reason: decision.reason,
    mtls: { mode: decision.mtls.mode, policy: key(decision.mtls.policy), level: decision.mtls.level },
    destination: { namespace: dest.namespace, labels: dest.labels, ip: options.destIp, port: options.destPort, pod: dest.pod },
    source: {
      principal: identity === undefined ? null : `${identity.trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`,
      ip: options.sourceIp ?? null,
    },
    dryRun: decision.dryRun.map((d) => ({ policy: `${d.policy.namespace}/${d.policy.name}`, action: d.action })),
    dryRunWouldDeny: decision.dryRunWouldDeny,
    warnings: loaded.warnings.filter((w) => relevant.has(w.policy)),
    invalid: loaded.invalid,
    ignored: loaded.ignored,
    notes,
  }
}

/** `namespace/name` of every policy that selects the destination (for filtering warnings). */
function relevantPolicies(set: PolicySet, dest: Destination): Set<string> {
  const d = set.forDestination(dest.namespace, dest.labels)
  const names = [...d.allow, ...d.deny, ...d.allowDryRun, ...d.denyDryRun].map((p) => `${p.namespace}/${p.name}`)
  const pa = d.peerAuthentications
  for (const p of [pa.mesh, pa.namespace, pa.workload]) if (p !== null) names.push(`${p.namespace}/${p.name}`)
  return new Set(names)
}

/** Every document of a YAML/JSON file, or of every such file under a folder (sorted, recursive); `kind: List` is expanded. */
export function loadManifests(path: string): ManifestObject[] {
  let files: string[]
  try {
    files = statSync(path).isDirectory() ? listFiles(path) : [path]
  } catch (cause) {
    throw new AuthzCheckError('AMBIENT_ERR_AUTHZ_CHECK_MANIFEST', `cannot read --policies ${path}: ${(cause as Error).message}`, { cause })
  }
  const out: ManifestObject[] = []
  for (const file of files) {
    const docs = parseAllDocuments(readFileSync(file, 'utf8'))
    docs.forEach((doc, i) => {
      if (doc.errors.length > 0) {
        throw new AuthzCheckError('AMBIENT_ERR_AUTHZ_CHECK_MANIFEST', `${file}: document ${i + 1} is not valid YAML: ${doc.errors[0]!.message}`)
      }
      const object: unknown = doc.toJS()
      if (object === null || object === undefined) return
      const items = kindOf(object) === 'List' && isRecord(object) && Array.isArray(object['items']) ? object['items'] : [object]
      for (const item of items) out.push({ origin: `${file}#${i + 1}`, object: item })
    })
  }
  return out
}

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name)) : /\.(ya?ml|json)$/.test(e.name) ? [join(dir, e.name)] : []))
}

interface AuthzCheckFlags {
  policies: string
  destNamespace?: string
  destLabels?: string
  destIp: string
  destPort: string
  sourcePrincipal?: string
  plaintext?: boolean
  sourceIp?: string
  rootNamespace: string
  json?: boolean
}

export function registerAuthzCommand(program: Command): void {
  const authz = program.command('authz').description('L4 authorization policy tools')
  authz
    .command('check')
    .description('evaluate one connection offline against AuthorizationPolicy/PeerAuthentication YAML, as the destination ztunnel would')
    .requiredOption('--policies <path>', 'a YAML file or folder of manifests (AuthorizationPolicy, PeerAuthentication, Namespace, Pod)')
    .option('--dest-namespace <ns>', 'destination namespace (default: the namespace of the Pod with --dest-ip)')
    .option('--dest-labels <k=v,...>', 'destination pod labels (added over the labels of the Pod with --dest-ip)')
    .requiredOption('--dest-ip <ip>', 'destination pod IP')
    .requiredOption('--dest-port <port>', 'destination port')
    .option('--source-principal <id>', 'source identity TRUST_DOMAIN/ns/NS/sa/SA (an HBONE connection)')
    .option('--plaintext', 'the source has no identity (plaintext from outside the mesh)')
    .option('--source-ip <ip>', 'source IP')
    .option('--root-namespace <ns>', "Istio's root namespace", DEFAULT_ROOT_NAMESPACE)
    .option('--json', 'print the result as JSON')
    .action((flags: AuthzCheckFlags) => {
      if ((flags.sourcePrincipal === undefined) === (flags.plaintext !== true)) {
        throw new ConfigError('--source-principal', 'give exactly one of --source-principal or --plaintext')
      }
      let destLabels: Labels | undefined
      try {
        destLabels = flags.destLabels === undefined ? undefined : parseLabelList(flags.destLabels)
      } catch (err) {
        throw new ConfigError('--dest-labels', (err as Error).message)
      }
      const result = runAuthzCheck({
        objects: loadManifests(flags.policies),
        rootNamespace: flags.rootNamespace,
        ...(flags.destNamespace === undefined ? {} : { destNamespace: flags.destNamespace }),
        ...(destLabels === undefined ? {} : { destLabels }),
        destIp: flags.destIp,
        destPort: parsePort('--dest-port', flags.destPort),
        ...(flags.sourcePrincipal === undefined ? {} : { sourcePrincipal: flags.sourcePrincipal }),
        ...(flags.sourceIp === undefined ? {} : { sourceIp: flags.sourceIp }),
      })
      console.log(flags.json === true ? JSON.stringify(result, null, 2) : formatResult(result).join('\n'))
    })
}

/** The human form of a result. */
export function formatResult(r: AuthzCheckResult): string[] {
  const labels = Object.entries(r.destination.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')
  const lines = [
    `decision:    ${r.decision}`,
    `policy:      ${r.policy ?? '(none)'}`,
    `reason:      ${r.reason}`,
    `mtls:        ${r.mtls.mode}${r.mtls.policy === null ? ' (no PeerAuthentication)' : ` (PeerAuthentication ${r.mtls.policy}, ${r.mtls.level} level)`}`,
    `destination: ${r.destination.ip}:${r.destination.port} in ${r.destination.namespace}${r.destination.pod === null ? '' : ` (pod ${r.destination.pod})`} labels ${labels || '(none)'}`,
    `source:      ${r.source.principal ?? 'plaintext (no identity)'}${r.source.ip === null ? '' : ` from ${r.source.ip}`}`,
  ]
  for (const d of r.dryRun) lines.push(`dry-run:     ${d.action} policy ${d.policy} matched (not enforced)`)
  if (r.dryRunWouldDeny) lines.push('dry-run:     no dry-run ALLOW policy matched: enforcing them would deny')
  const section = (title: string, list: readonly PolicyProblem[]): void => {
    if (list.length === 0) return
    lines.push(`${title}:`)
    for (const p of list) lines.push(`  ${p.policy} ${p.field}: ${p.message}`)
  }
  section('warnings (attributes ignored at L4)', r.warnings)
  section('ignored policies (not enforced by ztunnel)', r.ignored)
  section('invalid policies (left out)', r.invalid)
  for (const n of r.notes) lines.push(`note:        ${n}`)
  return lines
}
