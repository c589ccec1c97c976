// The install manifests and the rendered waypoint template against Kubernetes'
// schemas (kubernetes-models: types, required fields; and, through TypeScript's
// excess-property check on its interfaces, no unknown field, as the API server's
// strict field validation refuses one), every flag they pass against the real
// CLI, and the pieces that must agree across files (service account, audience,
// CA address, root ConfigMap).
import t from 'tap'
import ts from 'typescript'
import { join } from 'node:path'
import type { Command } from 'commander'
import { REPO_ROOT } from '../common/paths.js'
import { buildProgram } from '../cli/main.js'
import { find, installManifests, renderWaypointTemplate, WAYPOINT_PLACEHOLDERS, type Located, type Manifest } from './manifests.js'

const WAYPOINT_VALUES = {
  NAME: 'shop-waypoint',
  NAMESPACE: 'shop',
  GATEWAY_UID: '3f1c9a52-8a7e-4d0c-9a0e-2b1f6a1e0c11',
  IMAGE: 'ambient:0.1.0',
  CA_ADDRESS: 'ambient-ca.ambient-system.svc:15012',
  TRUST_DOMAIN: 'cluster.local',
  ROOT_NAMESPACE: 'ambient-system',
  CLUSTER_DOMAIN: 'cluster.local',
} as const

const install = installManifests()
const waypoint = renderWaypointTemplate(WAYPOINT_VALUES)
const label = (m: Located): string => `${m.file.slice(REPO_ROOT.length + 1)} #${m.index + 1} ${m.object.kind} ${m.object.metadata?.name}`

/** kubernetes-models' module and interface for an apiVersion/kind. */
function modelPath(o: Manifest): { module: string; iface: string } {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion]
  return { module: `kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`, iface: `I${o.kind}` }
}

/** Schema errors of kubernetes-models' validator (types, required fields, formats). */
async function schemaErrors(o: Manifest): Promise<string[]> {
  const { module } = modelPath(o)
  const mod = (await import(module)) as Record<string, new (d: unknown) => { validate(): void }>
  const Model = mod[o.kind]
  if (Model === undefined) return [`no model for ${o.apiVersion} ${o.kind}`]
  try {
    new Model(o).validate()
    return []
  } catch (err) {
    const errors = (err as { errors?: { instancePath: string; message: string }[] }).errors
    return errors ? errors.map((e) => `${e.instancePath} ${e.message}`) : [(err as Error).message]
  }
}

/**
 * Unknown fields, by compiling each object as an object literal of its
 * kubernetes-models interface: TypeScript refuses properties the type does not have.
 * Returns the diagnostics by object index.
 */
function unknownFields(objects: readonly Manifest[]): Map<number, string[]> {
  const file = join(REPO_ROOT, 'daemonset', '__strict_fields_check__.ts')
  const lines = objects.map((o, i) => {
    const { module, iface } = modelPath(o)
    return `import type { ${iface} as T${i} } from '${module}'\nexport const o${i}: T${i} = ${JSON.stringify(o, null, 1)}\n// end ${i}`
  })
  const source = lines.join('\n')
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    skipLibCheck: true,
    types: [],
  }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (name, lang, ...rest) => (name === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest))
  const fileExists = host.fileExists.bind(host)
  host.fileExists = (name) => name === file || fileExists(name)
  const program = ts.createProgram([file], options, host)
  const out = new Map<number, string[]>()
  const ends = [...source.matchAll(/\/\/ end (\d+)/g)].map((m) => m.index!)
  for (const d of ts.getPreEmitDiagnostics(program)) {
    if (d.file?.fileName !== file) {
      out.set(-1, [...(out.get(-1) ?? []), ts.flattenDiagnosticMessageText(d.messageText, '\n')])
      continue
    }
    const index = ends.findIndex((end) => (d.start ?? 0) < end)
    out.set(index, [...(out.get(index) ?? []), ts.flattenDiagnosticMessageText(d.messageText, ' ')])
  }
  return out
}

t.test('every manifest passes Kubernetes schemas, with no unknown field', async (t) => {
  const all = [...install, ...waypoint]
  t.ok(all.length >= 14, `${all.length} objects`)
  for (const m of all) t.same(await schemaErrors(m.object), [], label(m))
  const unknown = unknownFields(all.map((m) => m.object))
  t.same(unknown.get(-1) ?? [], [], 'the check itself compiles')
  all.forEach((m, i) => t.same(unknown.get(i) ?? [], [], `${label(m)}: no unknown field`))
})

t.test('the checks can fail: a typo, a wrong type, a missing field', async (t) => {
  const ds = structuredClone(find(install, 'DaemonSet', 'ambient-node')) as any
  ds.spec.template.spec.containers[0].readinesProbe = ds.spec.template.spec.containers[0].readinessProbe
  const typo = unknownFields([ds])
  t.match(typo.get(0)?.join('\n'), /readinesProbe/, 'an unknown field is found')
  const wrongType = structuredClone(find(install, 'Deployment', 'ambient-ca')) as any
  wrongType.spec.replicas = 'one'
  t.match((await schemaErrors(wrongType)).join('\n'), /\/spec\/replicas must be integer/)
  const missing = structuredClone(find(install, 'DaemonSet', 'ambient-node')) as any
  delete missing.spec.selector
  t.match((await schemaErrors(missing)).join('\n'), /\/spec must have required property selector/)
})

/** A process's long options as commander knows them (with the parent's for subcommands). */
function optionsOf(command: Command | undefined): Set<string> {
  const out = new Set<string>()
  for (let c = command; c; c = c.parent ?? undefined) for (const o of c.options) if (o.long) out.add(o.long)
  return out
}

function flagsIn(args: readonly string[]): string[] {
  return args.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]!)
}

t.test('every flag in the manifests is one the command has', async (t) => {
  const program = buildProgram()
  const containers = [...install, ...waypoint].flatMap((m) => {
    const spec = (m.object as any).spec?.template?.spec
    return ((spec?.containers ?? []) as { name: string; command: string[]; args: string[] }[]).map((c) => ({ m, c }))
  })
  t.equal(containers.length, 4, 'ca, agent, ztunnel, waypoint')
  for (const { m, c } of containers) {
    t.same(c.command, ['ambient'], `${label(m)} ${c.name} runs the ambient CLI`)
    const name = c.args[0]!
    const command = program.commands.find((x) => x.name() === name)
    if (command === undefined) {
      t.fail(`${label(m)} ${c.name} runs \`ambient ${name}\`, which is not a command of ambient`)
      continue
    }
    const known = optionsOf(command)
    for (const flag of flagsIn(c.args)) t.ok(known.has(flag), `${name} ${flag} exists`)
  }
})

t.test('the files agree with each other', async (t) => {
  const ds = find(install, 'DaemonSet', 'ambient-node') as any
  const ca = find(install, 'Deployment', 'ambient-ca') as any
  const svc = find(install, 'Service', 'ambient-ca') as any
  const arg = (args: string[], flag: string): string | undefined => args[args.indexOf(flag) + 1]
  const [agent, ztunnel] = ds.spec.template.spec.containers
  const caArgs: string[] = ca.spec.template.spec.containers[0].args
  t.equal(
    arg(caArgs, '--ztunnel-service-account'),
    `${ds.metadata.namespace}/${ds.spec.template.spec.serviceAccountName}`,
    "the CA treats the node DaemonSet's tokens as nodes",
  )
  const istioToken = ds.spec.template.spec.volumes.find((v: any) => v.name === 'istio-token').projected.sources[0].serviceAccountToken
  t.equal(istioToken.audience, arg(caArgs, '--token-audience'), "ztunnel's token is for the CA's audience")
  t.equal(arg(ztunnel.args, '--ca-token-file'), `${ztunnel.volumeMounts.find((v: any) => v.name === 'istio-token').mountPath}/${istioToken.path}`)
  t.equal(arg(ztunnel.args, '--ca-address'), `${svc.metadata.name}.${svc.metadata.namespace}.svc:${svc.spec.ports[0].port}`)
  t.equal(ds.spec.template.spec.volumes.find((v: any) => v.name === 'istio-ca-root-cert').configMap.name, arg(caArgs, '--root-cert-configmap'))
  t.equal(arg(agent.args, '--xds-socket'), arg(ztunnel.args, '--xds-address'))
  t.equal(arg(agent.args, '--root-namespace'), ds.metadata.namespace)
  t.equal(arg(agent.args, '--pin-root'), arg(ztunnel.args, '--pin-root'))
  t.notOk(
    ztunnel.volumeMounts.some((v: any) => v.name === 'kube-api-access'),
    'ztunnel has no API token',
  )

  const [sa, crb, deployment, service] = waypoint.map((m) => m.object as any)
  t.same([sa.kind, crb.kind, deployment.kind, service.kind], ['ServiceAccount', 'ClusterRoleBinding', 'Deployment', 'Service'])
  const pod = deployment.spec.template
  t.equal(pod.metadata.labels['gateway.networking.k8s.io/gateway-name'], 'shop-waypoint')
  t.equal(pod.metadata.labels['istio.io/dataplane-mode'], 'none')
  t.equal(pod.spec.serviceAccountName, 'shop-waypoint')
  t.same(
    service.spec.ports.map((p: any) => [p.name, p.port]),
    [
      ['mesh', 15008],
      ['metrics', 15020],
      ['status-port', 15021],
    ],
  )
  t.same(pod.spec.containers[0].readinessProbe.httpGet, { path: '/healthz/ready', port: 15021 })
  t.equal(crb.roleRef.name, find(install, 'ClusterRole', 'ambient-waypoint').metadata.name)
  t.equal(WAYPOINT_PLACEHOLDERS.length, Object.keys(WAYPOINT_VALUES).length, 'every placeholder has a sample value')
  t.notMatch(JSON.stringify(waypoint.map((m) => m.object)), /\{\{/, 'nothing left unrendered')
})
