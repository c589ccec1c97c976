// The install manifests run on the testbed against the fake API server, as a
// kubelet would run them (pod-runner.ts): the CA Deployment's container and the
// node DaemonSet's agent and ztunnel containers, with their own command, args,
// env, volume mounts, users and capabilities, and in-cluster configuration (a
// TLS API server at KUBERNETES_SERVICE_HOST/PORT, the projected service-account
// token and CA file). The fake enforces the RBAC of 10-rbac.yaml on the tokens it
// issued, so a missing rule, a wrong flag, path or capability fails here. Then:
// pods are enrolled and annotated, ztunnel gets certificates from the CA with its
// token and carries mutual TLS, policy status and the Lease are written, nothing was
// refused; and with a rule removed, the 403 is logged naming verb and resource.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chownSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomInt } from 'node:crypto'
import type { ChildProcess } from 'node:child_process'
import { REPO_ROOT } from '../common/paths.js'
import { REDIRECTION_ANNOTATION } from '../common/model/enrollment.js'
import { Datapath } from '../datapath/datapath.js'
import { FakeKubeApiServer, type KubeObject } from '../testbed/kube-api-server.js'
import { API_AUDIENCE } from '../testbed/kube-auth.js'
import { Testbed } from '../testbed/testbed.js'
import { connectMany, startServer } from '../testbed/pod-clients.js'
import { find, installManifests, type Manifest } from './manifests.js'
import { runContainer, type PodSpec } from './pod-runner.js'

const manifests = installManifests()
const work = mkdtempSync(join(tmpdir(), 'ambient-install-'))
chmodSync(work, 0o755)
const children: { name: string; child: ChildProcess; root: string; logs: () => string }[] = []
let tb: Testbed | undefined
let fake: FakeKubeApiServer | undefined
t.teardown(async () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGTERM')
  await new Promise((r) => setTimeout(r, 500))
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL')
  if (tb) Datapath.unload(join(tb.pinRoot, 'n1', 'ambient'))
  await fake?.stop()
  await tb?.destroy()
  for (const c of children) rmSync(c.root, { recursive: true, force: true })
  rmSync(work, { recursive: true, force: true })
})

const dir = (name: string, mode = 0o755): string => {
  const path = join(work, name)
  mkdirSync(path, { recursive: true, mode })
  chmodSync(path, mode)
  return path
}
const loopback = (): string => `127.${randomInt(1, 254)}.${randomInt(1, 254)}.${randomInt(2, 254)}`
const until = async (what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> => {
  const deadline = Date.now() + ms
  let last: unknown
  while (Date.now() < deadline) {
    try {
      if (await check()) return
    } catch (err) {
      last = err
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  const logs = children.map((c) => `--- ${c.name}\n${c.logs().slice(-4000)}`).join('\n')
  throw new Error(`timed out waiting for ${what}${last ? ` (${(last as Error).message})` : ''}\n${logs}`)
}

// The API server: TLS (in-cluster clients insist on it), tokens required, RBAC from the manifests.
const pki = dir('apiserver-pki')
const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: pki, stdio: 'pipe' })
openssl(
  'req',
  '-x509',
  '-newkey',
  'ec',
  '-pkeyopt',
  'ec_paramgen_curve:P-256',
  '-nodes',
  '-keyout',
  'ca.key',
  '-subj',
  '/CN=fake-apiserver-ca',
  '-days',
  '2',
  '-out',
  'ca.crt',
  '-addext',
  'basicConstraints=critical,CA:TRUE',
  '-addext',
  'keyUsage=critical,keyCertSign',
)
openssl(
  'req',
  '-new',
  '-newkey',
  'ec',
  '-pkeyopt',
  'ec_paramgen_curve:P-256',
  '-nodes',
  '-keyout',
  'server.key',
  '-subj',
  '/CN=kube-apiserver',
  '-out',
  'server.csr',
)
writeFileSync(join(pki, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
openssl(
  'x509',
  '-req',
  '-in',
  'server.csr',
  '-CA',
  'ca.crt',
  '-CAkey',
  'ca.key',
  '-CAcreateserial',
  '-days',
  '2',
  '-extfile',
  'server.ext',
  '-out',
  'server.crt',
)
const apiCa = readFileSync(join(pki, 'ca.crt'), 'utf8')

fake = await FakeKubeApiServer.start({
  tls: { certPem: readFileSync(join(pki, 'server.crt'), 'utf8'), keyPem: readFileSync(join(pki, 'server.key'), 'utf8') },
  authenticate: true,
  token: 'admin',
  bookmarkIntervalMs: 200,
})
const api = fake
api.loadRbac(manifests.map((m) => m.object).filter((o) => o.apiVersion.startsWith('rbac.authorization.k8s.io/')))
const kubeEnv = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: new URL(api.url).port }

// The cluster: what kubectl apply would create, the kubelet's kube-root-ca.crt, an enrolled namespace with two pods and a policy.
for (const m of manifests) {
  if (m.object.kind === 'Namespace' || m.object.kind === 'ServiceAccount') api.create(m.object.kind, m.object as KubeObject)
}
api.create('ConfigMap', { metadata: { name: 'kube-root-ca.crt', namespace: 'ambient-system' }, data: { 'ca.crt': apiCa } })
api.create('Namespace', { metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } })
tb = await Testbed.create({ name: 'install', nodes: [{ name: 'n1', pods: ['client', 'web'] }] })
const testbed = tb
const node = testbed.node('n1')
for (const [name, sa] of [
  ['client', 'client'],
  ['web', 'web'],
] as const) {
  const pod = testbed.pod(name)
  api.create('Pod', {
    metadata: { name, namespace: 'shop', uid: pod.uid, labels: { app: name } },
    spec: { nodeName: 'n1', serviceAccountName: sa, containers: [{ name: 'app', image: 'app' }] },
    status: { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }] },
  })
}
api.create('AuthorizationPolicy', {
  metadata: { name: 'web-from-client', namespace: 'shop' },
  spec: { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/client'] } }] }] },
})

/** A pod object for a workload of the manifests, scheduled on n1 (its uid binds the projected tokens). */
function podFor(owner: Manifest, name: string, ip: string): { spec: PodSpec; uid: string; name: string; namespace: string; sa: string; ip: string } {
  const template = (owner as any).spec.template
  const namespace = owner.metadata.namespace!
  const created = api.create('Pod', {
    metadata: { name, namespace, labels: template.metadata.labels },
    spec: { ...template.spec, nodeName: 'n1' },
    status: { phase: 'Running', podIP: ip, hostIP: ip },
  })
  return { spec: template.spec as PodSpec, uid: created.metadata!['uid'] as string, name, namespace, sa: template.spec.serviceAccountName, ip }
}

/** The files of a pod's volumes, as the kubelet would write them; ownership as fsGroup/runAsUser ask. */
function materialize(pod: ReturnType<typeof podFor>, prefix: string, hostPaths: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  const sc = (pod.spec as any).securityContext ?? {}
  const owner = (path: string, mode: number): void => {
    if (sc.runAsUser !== undefined) chownSync(path, sc.runAsUser, sc.fsGroup ?? sc.runAsGroup ?? sc.runAsUser)
    chmodSync(path, mode)
  }
  for (const v of (pod.spec as any).volumes as any[]) {
    const path = dir(`${prefix}-${v.name}`)
    if (v.hostPath) {
      const mapped = hostPaths[v.hostPath.path]
      if (mapped === undefined) throw new Error(`hostPath ${v.hostPath.path} of volume ${v.name} has no testbed equivalent`)
      out[v.name] = mapped
      continue
    }
    out[v.name] = path
    if (v.emptyDir) owner(path, 0o777)
    else if (v.secret) {
      if (v.secret.secretName !== 'cacerts') throw new Error(`unknown secret ${v.secret.secretName}`)
      execFileSync('bash', [join(REPO_ROOT, 'daemonset', 'make-cacerts.sh'), join(path, 'made')], { stdio: 'pipe' })
      for (const f of ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem']) {
        writeFileSync(join(path, f), readFileSync(join(path, 'made', f)))
        owner(join(path, f), v.secret.defaultMode ?? 0o644)
      }
      rmSync(join(path, 'made'), { recursive: true })
    } else if (v.configMap) {
      const data = (api.get('ConfigMap', pod.namespace, v.configMap.name)?.['data'] ?? {}) as Record<string, string>
      if (Object.keys(data).length === 0) throw new Error(`ConfigMap ${pod.namespace}/${v.configMap.name} does not exist (yet)`)
      for (const [k, value] of Object.entries(data)) writeFileSync(join(path, k), value)
    } else if (v.projected) {
      for (const s of v.projected.sources) {
        if (s.serviceAccountToken) {
          const token = api.issueToken({
            namespace: pod.namespace,
            serviceAccount: pod.sa,
            pod: { name: pod.name, uid: pod.uid },
            node: 'n1',
            audiences: [s.serviceAccountToken.audience ?? API_AUDIENCE],
            expiresInSeconds: s.serviceAccountToken.expirationSeconds ?? 3600,
          })
          writeFileSync(join(path, s.serviceAccountToken.path), token)
          owner(join(path, s.serviceAccountToken.path), 0o600)
        } else if (s.configMap) {
          const data = api.get('ConfigMap', pod.namespace, s.configMap.name)?.['data'] as Record<string, string>
          for (const item of s.configMap.items) writeFileSync(join(path, item.path), data[item.key]!)
        } else if (s.downwardAPI) {
          for (const item of s.downwardAPI.items) {
            if (item.fieldRef.fieldPath !== 'metadata.namespace') throw new Error(`downward API ${item.fieldRef.fieldPath} not materialized`)
            writeFileSync(join(path, item.path), pod.namespace)
          }
        } else throw new Error(`projected source ${JSON.stringify(s)} not materialized`)
      }
    } else throw new Error(`volume ${v.name} has a kind the test does not materialize`)
  }
  return out
}

function start(name: string, pod: ReturnType<typeof podFor>, container: string, volumes: Record<string, string>, extra: { hostsFile?: string } = {}): void {
  const { child, root } = runContainer({
    tb: testbed,
    cgroup: node.systemCgroup,
    pod: pod.spec,
    container,
    volumes,
    fields: { 'spec.nodeName': 'n1', 'status.hostIP': pod.ip, 'status.podIP': pod.ip, 'metadata.namespace': pod.namespace },
    extraEnv: kubeEnv,
    ...extra,
  })
  let logs = ''
  child.stdout?.on('data', (d) => (logs += d))
  child.stderr?.on('data', (d) => (logs += d))
  children.push({ name, child, root, logs: () => logs })
}
const logsOf = (name: string): string => children.find((c) => c.name === name)?.logs() ?? ''
/** A container's JSON log lines (pino). */
const logLines = (name: string): Record<string, unknown>[] =>
  logsOf(name)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
const exited = (name: string): boolean => {
  const c = children.find((x) => x.name === name)!.child
  return c.exitCode !== null || c.signalCode !== null
}
/** The container's readinessProbe, as the kubelet runs it (httpGet on the pod IP, or a TCP connect). */
async function ready(owner: Manifest, container: string, ip: string): Promise<boolean> {
  const probe = ((owner as any).spec.template.spec.containers as any[]).find((c) => c.name === container).readinessProbe
  if (probe.httpGet) return (await fetch(`http://${ip}:${probe.httpGet.port}${probe.httpGet.path}`)).status === 200
  const { connect } = await import('node:net')
  return new Promise((resolve) => {
    const s = connect(probe.tcpSocket.port, ip, () => {
      s.destroy()
      resolve(true)
    })
    s.on('error', () => resolve(false))
  })
}

const caDeployment = find(manifests, 'Deployment', 'ambient-ca')
const daemonSet = find(manifests, 'DaemonSet', 'ambient-node')
const caPod = podFor(caDeployment, 'ambient-ca-7d9f8', loopback())
const nodePod = podFor(daemonSet, 'ambient-node-x2k4p', loopback())

t.test('the CA Deployment starts in-cluster, publishes the roots and is ready', async (t) => {
  start('ca', caPod, 'ca', materialize(caPod, 'ca', {}))
  await until('the CA readiness probe', () => !exited('ca') && ready(caDeployment, 'ca', caPod.ip))
  await until('istio-ca-root-cert in every namespace', () =>
    ['ambient-system', 'shop', 'default'].filter((ns) => api.get('Namespace', '', ns)).every((ns) => api.get('ConfigMap', ns, 'istio-ca-root-cert')),
  )
  t.match(logsOf('ca'), /service-account tokens accepted/)
})

t.test('the node DaemonSet: agent and ztunnel start, enroll, get certificates with the token, carry mTLS', async (t) => {
  const bpffs = join(testbed.pinRoot, 'n1')
  mkdirSync(bpffs, { recursive: true })
  // The handoff socket's folder on the host (daemonset/install/30-node.yaml): one per test run.
  const handoff = join(work, 'ztunnel-handoff')
  mkdirSync(handoff, { recursive: true })
  const volumes = materialize(nodePod, 'node', { '/sys/fs/bpf': bpffs, '/sys/fs/cgroup': node.cgroup, '/var/run/ambient-ztunnel': handoff })
  const hosts = join(work, 'hosts')
  writeFileSync(hosts, `127.0.0.1 localhost\n${caPod.ip} ambient-ca.ambient-system.svc ambient-ca.ambient-system.svc.cluster.local\n`)
  start('agent', nodePod, 'agent', volumes)
  await until('the agent readiness probe', () => !exited('agent') && ready(daemonSet, 'agent', nodePod.ip))
  start('ztunnel', nodePod, 'ztunnel', volumes, { hostsFile: hosts })
  await until('the ztunnel readiness probe', () => !exited('ztunnel') && ready(daemonSet, 'ztunnel', nodePod.ip))

  const annotation = (name: string): unknown => ((api.get('Pod', 'shop', name)?.['metadata'] as any)?.annotations ?? {})[REDIRECTION_ANNOTATION]
  await until('both pods annotated', () => annotation('client') === 'enabled' && annotation('web') === 'enabled')
  await startServer(testbed, testbed.pod('web'), 8080)
  const r = await connectMany(testbed, testbed.pod('client'), `${testbed.pod('web').ip}:8080`, { count: 5, concurrency: 1 })
  t.equal(r.ok, 5, JSON.stringify(r.errors))
  const metrics = await (await fetch(`http://${nodePod.ip}:15020/metrics`)).text()
  t.match(metrics, /istio_tcp_connections_opened_total\{[^}]*reporter="destination"[^}]*connection_security_policy="mutual_tls"/, 'mutual TLS into web')
  t.match(logsOf('ca'), /"caller":"node n1","via":"token","identity":"spiffe:\/\/cluster.local\/ns\/shop\/sa\/client"/, 'the CA issued to node n1 by its token')
  await until('policy status written', () =>
    JSON.stringify(api.get('AuthorizationPolicy', 'shop', 'web-from-client')?.['status'] ?? {}).includes('ZtunnelAccepted'),
  )
  t.ok(api.get('Lease', 'ambient-system', 'ambient-policy-status'), 'the Lease in the root namespace')
  t.same(api.denied(), [], 'RBAC refused nothing')
})

t.test('a missing RBAC rule is logged with its verb, resource and namespace', async (t) => {
  // The same roles without the agent's pod patch: a new pod cannot be annotated.
  const roles = manifests.map((m) => structuredClone(m.object)).filter((o) => o.apiVersion.startsWith('rbac.authorization.k8s.io/')) as any[]
  const agentRole = roles.find((o) => o.kind === 'ClusterRole' && o.metadata.name === 'ambient-agent')
  agentRole.rules = agentRole.rules.filter((r: any) => !(r.resources.includes('pods') && r.verbs.includes('patch')))
  api.setRbac(roles)
  // Opting client out makes the agent remove its annotation: a PATCH the roles no longer allow.
  const client = api.get('Pod', 'shop', 'client')!
  api.update('Pod', { ...client, metadata: { ...(client.metadata as object), labels: { app: 'client', 'istio.io/dataplane-mode': 'none' } } })
  const refused = (): Record<string, unknown> | undefined =>
    logLines('agent').find((l) => typeof l['err'] === 'string' && (l['err'] as string).includes('forbidden: patch pods (group "") in namespace shop'))
  await until('the refused PATCH is logged', () => refused() !== undefined)
  t.match(refused(), {
    msg: 'cannot update the redirection annotation',
    pod: 'shop/client',
    err: /status 403: forbidden: .*needs an RBAC rule with verb "patch" on resource "pods" in apiGroup ""/,
  })
  t.ok(api.denied().some((d) => d.includes('cannot patch resource "pods" in API group "" in the namespace "shop"')))
})
