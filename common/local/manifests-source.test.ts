import { mkdtemp, rename, rm, unlink, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { silentLogger } from '../log.js'
import { diff, enrolledPods, REDIRECTION_ANNOTATION } from '../model/enrollment.js'
import type { Snapshot } from '../model/snapshot.js'
import { ManifestsSource } from './manifests-source.js'

const NODE = 'node-1'

const namespace = (name: string, ambient: boolean) => `apiVersion: v1
kind: Namespace
metadata:
  name: ${name}
${ambient ? '  labels:\n    istio.io/dataplane-mode: ambient\n' : ''}`

const pod = (name: string, ip: string, extraLabels = '') => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: shop
  labels:
    app: ${name}
${extraLabels}spec:
  nodeName: ${NODE}
  serviceAccountName: web
status:
  phase: Running
  podIP: ${ip}
`

const policies = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-web, namespace: shop}
spec: {action: ALLOW}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {mtls: {mode: STRICT}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [198.18.1.10]}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
`

async function setup(t: any, rescanIntervalMs = 0) {
  const dir = await mkdtemp(join(tmpdir(), 'ambient-manifests-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'namespaces.yaml'), `${namespace('shop', true)}---\n${namespace('plain', false)}`)
  await writeFile(join(dir, 'pods.yml'), `${pod('web', '198.18.1.10')}---\n${pod('api', '198.18.1.11')}`)
  await writeFile(join(dir, 'policies.yaml'), policies)
  await writeFile(join(dir, 'notes.txt'), 'not a manifest')
  const source = new ManifestsSource({ dir, logger: silentLogger(), debounceMs: 10, rescanIntervalMs })
  t.teardown(() => source.stop())
  await source.start()
  const until = async (predicate: (s: Snapshot) => boolean, what: string): Promise<Snapshot> => {
    const deadline = Date.now() + 10_000
    while (!predicate(source.snapshot())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 10))
    }
    return source.snapshot()
  }
  return { dir, source, until }
}

const names = (pods: readonly { namespace: string; name: string }[]) => pods.map((p) => `${p.namespace}/${p.name}`)

t.test('reads every kind from the folder into one snapshot', async (t) => {
  const { source } = await setup(t)
  const snap = await source.ready()
  t.same([...snap.namespaces.keys()].sort(), ['plain', 'shop'])
  t.same(names(enrolledPods(snap, NODE)), ['shop/api', 'shop/web'])
  t.match(snap.services.get('shop/web'), { clusterIPs: ['10.96.0.10'], ports: [{ port: 80, targetPort: 8080 }] })
  t.match(snap.endpointSlices.get('shop/web-abc'), { serviceName: 'web', endpoints: [{ addresses: ['198.18.1.10'], ready: true }] })
  t.ok(snap.serviceAccounts.has('shop/web'))
  t.match(snap.authorizationPolicies, [{ kind: 'AuthorizationPolicy', metadata: { name: 'allow-web' } }])
  t.match(snap.peerAuthentications, [{ spec: { mtls: { mode: 'STRICT' } } }])
  t.same(source.errors(), [])
  t.match(source.stats(), { scans: 1, files: 3, parsedFiles: 3, objects: 9 })
})

t.test('file changes label, opt out, and delete pods (fs.watch)', async (t) => {
  const { dir, source, until } = await setup(t)
  const first = await source.ready()
  const seen: Snapshot[] = []
  source.onChange((s) => seen.push(s))
  await writeFile(join(dir, 'namespaces.yaml'), `${namespace('shop', false)}`)
  const unlabelled = await until((s) => enrolledPods(s, NODE).length === 0, 'shop un-enrolled')
  t.same(
    diff(first, unlabelled, NODE)
      .unenroll.map((p) => p.name)
      .sort(),
    ['api', 'web'],
  )
  t.notOk(unlabelled.namespaces.has('plain'), 'a namespace removed from the file is deleted')
  await writeFile(join(dir, 'namespaces.yaml'), `${namespace('shop', true)}`)
  await until((s) => enrolledPods(s, NODE).length === 2, 'shop enrolled again')
  await writeFile(join(dir, 'pods.yml'), `${pod('web', '198.18.1.10')}---\n${pod('api', '198.18.1.11', '    istio.io/dataplane-mode: none\n')}`)
  const optedOut = await until((s) => enrolledPods(s, NODE).length === 1, 'api opted out')
  t.same(names(enrolledPods(optedOut, NODE)), ['shop/web'])
  await unlink(join(dir, 'pods.yml'))
  const gone = await until((s) => s.pods.size === 0, 'pods deleted with their file')
  t.same(enrolledPods(gone, NODE), [])
  t.ok(seen.length >= 4, 'onChange saw the batches')
})

t.test('the periodic rescan catches changes too', async (t) => {
  const { dir, source, until } = await setup(t, 30)
  await source.ready()
  await writeFile(join(dir, 'more.yaml'), pod('late', '198.18.1.20'))
  await until((s) => s.pods.has('shop/late'), 'the new file read')
  t.ok(source.stats().scans >= 2)
})

t.test('malformed files and objects are reported by file, name and field; the rest keeps working', async (t) => {
  const { dir, source, until } = await setup(t)
  await source.ready()
  await writeFile(
    join(dir, 'bad.yaml'),
    [
      pod('bad-label', '198.18.1.30', '    replicas: 3\n'),
      pod('bad-ip', 'not-an-ip'),
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: dep, namespace: shop}\n',
      'apiVersion: v2\nkind: Pod\nmetadata: {name: wrong-version, namespace: shop}\n',
      pod('good', '198.18.1.31'),
    ].join('---\n'),
  )
  await writeFile(join(dir, 'broken.yaml'), 'kind: Pod\nmetadata: [unclosed\n')
  const snap = await until((s) => s.pods.has('shop/good'), 'the good pod of the bad file')
  t.notOk(snap.pods.has('shop/bad-label'))
  t.notOk(snap.pods.has('shop/bad-ip'))
  t.ok(snap.pods.has('shop/web'))
  const errors = source
    .errors()
    .map((e) => [e.code, e.file, e.objectName, e.field])
    .sort()
  t.same(errors, [
    ['AMBIENT_ERR_SOURCE_BAD_YAML', 'broken.yaml', 'broken.yaml', '(yaml document 1)'],
    ['AMBIENT_ERR_SOURCE_INVALID_OBJECT', 'bad.yaml', 'bad-ip', 'status.podIP'],
    ['AMBIENT_ERR_SOURCE_INVALID_OBJECT', 'bad.yaml', 'bad-label', 'metadata.labels.replicas'],
    ['AMBIENT_ERR_SOURCE_INVALID_OBJECT', 'bad.yaml', 'wrong-version', 'apiVersion'],
    ['AMBIENT_ERR_SOURCE_UNSUPPORTED_KIND', 'bad.yaml', 'dep', 'kind'],
  ])
  t.match(source.errors().find((e) => e.objectName === 'bad-ip')?.message, /^bad\.yaml \(document 2\): pod shop\/bad-ip: status\.podIP must be an IP address/)
  // a good object turned bad keeps its last good version
  await writeFile(join(dir, 'pods.yml'), `${pod('web', '198.18.1.99', '    tier: {a: b}\n')}---\n${pod('api', '198.18.1.11')}`)
  await until(() => source.errors().some((e) => e.objectName === 'web'), 'web reported')
  t.equal(source.snapshot().pods.get('shop/web')?.podIP, '198.18.1.10')
  await unlink(join(dir, 'bad.yaml'))
  await unlink(join(dir, 'broken.yaml'))
  await until(() => source.errors().length === 1, 'errors of removed files forgotten')
})

t.test('a YAML document that parses but cannot be built (alias to nothing, alias bomb) is named; other files keep working', async (t) => {
  // Found by test/fuzz/manifests.test.ts: yaml's toJS() threw, and the whole folder read failed.
  const { dir, source, until } = await setup(t)
  await source.ready()
  await writeFile(join(dir, 'alias.yaml'), `${pod('fine', '198.18.1.40')}---\nkind: Pod\nmetadata: *nowhere\n`)
  const bomb = ['a: &a [x,x,x,x,x,x,x,x,x]', 'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]', 'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]', 'd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]']
  await writeFile(join(dir, 'bomb.yaml'), bomb.join('\n') + '\n')
  await writeFile(join(dir, 'more.yaml'), pod('later', '198.18.1.41'))
  await until((s) => s.pods.has('shop/later') && s.pods.has('shop/fine'), 'the good objects of every file')
  const errors = source
    .errors()
    .map((e) => [e.code, e.file, e.field])
    .sort()
  t.same(errors, [
    ['AMBIENT_ERR_SOURCE_BAD_YAML', 'alias.yaml', '(yaml document 2)'],
    ['AMBIENT_ERR_SOURCE_BAD_YAML', 'bomb.yaml', '(yaml document 1)'],
  ])
  t.match(source.errors().find((e) => e.file === 'alias.yaml')?.message, /nowhere/)
})

t.test('annotating a pod locally records it in the snapshot', async (t) => {
  const { source, until } = await setup(t)
  await source.ready()
  await source.annotatePod('shop', 'web', { [REDIRECTION_ANNOTATION]: 'enabled' })
  t.equal(source.snapshot().pods.get('shop/web')?.annotations[REDIRECTION_ANNOTATION], 'enabled')
  t.same(source.annotations().get('shop/web'), { [REDIRECTION_ANNOTATION]: 'enabled' })
  await source.rescan()
  t.equal(source.snapshot().pods.get('shop/web')?.annotations[REDIRECTION_ANNOTATION], 'enabled', 'kept across rescans')
  await source.annotatePod('shop', 'web', { [REDIRECTION_ANNOTATION]: null })
  await until((s) => s.pods.get('shop/web')?.annotations[REDIRECTION_ANNOTATION] === undefined, 'annotation removed')
  await t.rejects(source.annotatePod('shop', 'nope', { a: 'b' }), { code: 'AMBIENT_ERR_SOURCE_NOT_FOUND' })
})

t.test('annotations made in the same tick reach listeners as one snapshot; a rescan keeps the annotated pods as they are', async (t) => {
  const { source } = await setup(t)
  await source.ready()
  const seen: Snapshot[] = []
  source.onChange((s) => seen.push(s))
  await Promise.all(['web', 'api'].map((name) => source.annotatePod('shop', name, { [REDIRECTION_ANNOTATION]: 'enabled' })))
  t.equal(seen.length, 1, 'one update for both')
  t.same(
    ['shop/web', 'shop/api'].map((k) => seen[0]!.pods.get(k)?.annotations[REDIRECTION_ANNOTATION]),
    ['enabled', 'enabled'],
  )
  const annotated = source.snapshot().pods.get('shop/web')
  await source.rescan()
  t.equal(seen.length, 1, 'nothing changed: no update')
  t.equal(source.snapshot().pods.get('shop/web'), annotated)
})

t.test('a missing folder fails start with a read error naming it', async (t) => {
  const source = new ManifestsSource({ dir: '/nonexistent/ambient-manifests', logger: silentLogger(), rescanIntervalMs: 0 })
  await t.rejects(source.start(), { code: 'AMBIENT_ERR_SOURCE_READ', message: /nonexistent/ })
  await source.stop()
})

t.test('a file rewritten in place at once, at the same size, is read again (its timestamps may not have moved)', async (t) => {
  const { dir, source } = await setup(t)
  await source.ready()
  await writeFile(join(dir, 'pods.yml'), pod('web', '198.18.1.10'))
  await source.rescan()
  t.ok(source.snapshot().pods.has('shop/web'))
  // Same length, written within the same clock tick as likely as not.
  await writeFile(join(dir, 'pods.yml'), pod('wex', '198.18.1.10'))
  await source.rescan()
  t.same(names([...source.snapshot().pods.values()]), ['shop/wex'])
})

t.test('files unchanged since a scan are not parsed again; a replaced one is', async (t) => {
  const { dir, source } = await setup(t)
  await source.ready()
  // Old enough that their stamps are trusted (file timestamps move by clock ticks).
  const old = new Date(Date.now() - 60_000)
  for (const file of ['namespaces.yaml', 'pods.yml', 'policies.yaml']) await utimes(join(dir, file), old, old)
  await source.rescan()
  t.match(source.stats(), { files: 3, parsedFiles: 3 }, 'stamps changed: read again')
  await source.rescan()
  t.match(source.stats(), { files: 3, parsedFiles: 0, objects: 9 }, 'nothing changed: nothing parsed')
  await writeFile(join(dir, 'pods.yml.tmp'), pod('web', '198.18.1.12'))
  await rename(join(dir, 'pods.yml.tmp'), join(dir, 'pods.yml'))
  await source.rescan()
  t.match(source.stats(), { files: 3, parsedFiles: 1, objects: 8 })
  t.equal(source.snapshot().pods.get('shop/web')?.podIP, '198.18.1.12')
  t.notOk(source.snapshot().pods.has('shop/api'))
})
