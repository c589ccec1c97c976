// The agent's reconciler on the real kernel, without ztunnel: pods of the testbed
// (kubelet cgroup layout, sandbox processes) enrolled into the real pinned datapath
// from an in-memory source; label changes, opt-out and deletion un-enroll; a second
// reconciler (an agent restart) adopts the maps and removes what went stale
// meanwhile; the resources handed to ztunnel carry netns only for enrolled pods.
import t from 'tap'
import { Datapath } from '../../datapath/datapath.js'
import { DEFAULT_DELIVERY_MARK, DEFAULT_HBONE_PORT, DEFAULT_PROXY_MARK } from '../../datapath/abi.js'
import { AgentMetrics } from '../../agent/metrics.js'
import { Reconciler, type AgentSource, type ResourceSink } from '../../agent/reconciler.js'
import { REDIRECTION_ANNOTATION } from '../../common/model/enrollment.js'
import { applyBatch, emptySnapshot, type Change, type Snapshot } from '../../common/model/snapshot.js'
import type { Pod, Workload } from '../../common/model/workload.js'
import { BPF_OBJECTS_DIR } from '../../common/paths.js'
import { silentLogger } from '../../common/log.js'
import { Testbed } from '../../testbed/testbed.js'

const tb = await Testbed.create({
  name: 'reconciler',
  nodes: [
    { name: 'n1', pods: ['a', 'b', 'c'] },
    { name: 'n2', pods: ['r'] },
  ],
})
const settings = {
  pinRoot: `${tb.pinRoot}/n1`,
  objectsDir: BPF_OBJECTS_DIR,
  proxyMark: DEFAULT_PROXY_MARK,
  deliveryMark: DEFAULT_DELIVERY_MARK,
  hbonePort: DEFAULT_HBONE_PORT,
}
const datapath = Datapath.load(settings, tb.node('n1').podsCgroup)
t.teardown(async () => {
  datapath.close()
  Datapath.unload(settings.pinRoot)
  await tb.destroy()
})

class MemorySource implements AgentSource {
  snap: Snapshot = emptySnapshot()
  readonly annotations: string[] = []
  private readonly listeners = new Set<(s: Snapshot) => void>()
  async ready(): Promise<Snapshot> {
    return this.snap
  }
  snapshot(): Snapshot {
    return this.snap
  }
  onChange(listener: (s: Snapshot) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }
  apply(changes: Change[]): void {
    this.snap = applyBatch(this.snap, changes)
    for (const l of this.listeners) l(this.snap)
  }
  async annotatePod(namespace: string, name: string, annotations: Readonly<Record<string, string | null>>): Promise<void> {
    this.annotations.push(`${namespace}/${name}=${annotations[REDIRECTION_ANNOTATION]}`)
    const pod = this.snap.pods.get(`${namespace}/${name}`)!
    const merged = { ...pod.annotations }
    for (const [k, v] of Object.entries(annotations))
      if (v === null) delete merged[k]
      else merged[k] = v
    this.snap = applyBatch(this.snap, [{ type: 'upsert', resource: { kind: 'Pod', value: { ...pod, annotations: merged } } }])
  }
}

class RecordingSink implements ResourceSink {
  last: readonly Workload[] = []
  updates = 0
  update(resources: { workloads: readonly Workload[] }): void {
    this.last = resources.workloads
    this.updates += 1
  }
}

const podOf = (name: string, namespace: string, labels: Record<string, string> = {}): Pod => {
  const p = tb.pod(name)
  return {
    uid: p.uid,
    namespace,
    name,
    nodeName: p.node,
    podIP: p.ip,
    podIPs: [p.ip],
    serviceAccount: name,
    labels,
    annotations: {},
    hostNetwork: false,
    phase: 'Running',
    containerIDs: [],
  }
}
const ns = (name: string, labels: Record<string, string> = {}): Change => ({ type: 'upsert', resource: { kind: 'Namespace', value: { name, labels } } })
const upsertPod = (pod: Pod): Change => ({ type: 'upsert', resource: { kind: 'Pod', value: pod } })

function reconciler(source: MemorySource, sink: ResourceSink): Reconciler {
  return new Reconciler({
    node: 'n1',
    source,
    datapath,
    sink,
    cgroupRoot: tb.node('n1').cgroup,
    trustDomain: 'cluster.local',
    rootNamespace: 'istio-system',
    clusterDomain: 'cluster.local',
    outboundPort: 15001,
    listenerWaitMs: 50,
    retryMs: 200,
    log: silentLogger(),
    metrics: new AgentMetrics({ defaultMetrics: false }),
  })
}
const enrolledIps = (): string[] =>
  datapath
    .enrolledPods()
    .map((p) => p.ip)
    .sort()

const source = new MemorySource()
source.apply([
  ns('shop'),
  ns('other'),
  upsertPod(podOf('a', 'shop')),
  upsertPod(podOf('b', 'shop')),
  upsertPod(podOf('c', 'other')),
  upsertPod(podOf('r', 'shop')),
])
const sink = new RecordingSink()
let agent = reconciler(source, sink)
await agent.start()

t.test('no label: nothing captured, every pod still sent to ztunnel without netns', async (t) => {
  t.same(enrolledIps(), [])
  t.same(
    sink.last.map((w) => [w.name, w.tunnelProtocol, w.netnsPath ?? null]),
    [
      ['c', 'NONE', null],
      ['a', 'NONE', null],
      ['b', 'NONE', null],
      ['r', 'NONE', null],
    ],
  )
})

t.test('labelling the namespace captures its pods on this node, found through their cgroups', async (t) => {
  source.apply([ns('shop', { 'istio.io/dataplane-mode': 'ambient' })])
  await agent.schedule()
  t.same(enrolledIps(), [tb.pod('a').ip, tb.pod('b').ip].sort())
  const a = agent.pods().find((p) => p.name === 'a')!
  t.equal(a.state, 'captured')
  t.match(a.netnsPath, /^\/proc\/\d+\/ns\/net$/)
  const byName = new Map(sink.last.map((w) => [w.name, w]))
  t.equal(byName.get('a')!.netnsPath, a.netnsPath, 'ztunnel gets the same netns')
  t.equal(byName.get('r')!.tunnelProtocol, 'HBONE', 'the remote pod of the namespace is HBONE')
  t.equal(byName.get('r')!.netnsPath, undefined)
  t.same(source.annotations.sort(), ['shop/a=enabled', 'shop/b=enabled'])
})

t.test('opt-out and deletion un-enroll; running it again changes nothing', async (t) => {
  const b = source.snapshot().pods.get('shop/b')!
  source.apply([upsertPod({ ...b, labels: { 'istio.io/dataplane-mode': 'none' } })])
  await agent.schedule()
  t.same(enrolledIps(), [tb.pod('a').ip])
  t.ok(source.annotations.includes('shop/b=null'), 'annotation removed')
  const updates = sink.updates
  await agent.schedule()
  t.same(enrolledIps(), [tb.pod('a').ip], 'idempotent')
  t.equal(sink.updates, updates + 1)
})

t.test('a restarted agent adopts the maps and removes what went stale while it was down', async (t) => {
  await agent.stop()
  // While down: a is deleted, c's namespace joins the mesh.
  source.apply([{ type: 'delete', ref: { kind: 'Pod', namespace: 'shop', name: 'a' } }, ns('other', { 'istio.io/dataplane-mode': 'ambient' })])
  t.same(enrolledIps(), [tb.pod('a').ip], 'nothing changes without an agent')
  agent = reconciler(source, sink)
  await agent.start()
  t.same(enrolledIps(), [tb.pod('c').ip])
  t.same(datapath.staleNetnsLinks(), [], 'no sk_lookup link left for a')
})

t.test('a recreated sandbox (its process gone) is found again, not a failed pass', async (t) => {
  const before = agent.pods().find((p) => p.name === 'c')!
  const oldPid = Number(/\/proc\/(\d+)\//.exec(before.netnsPath!)![1])
  const fresh = tb.spawnInPod(tb.pod('c'), 'sleep', ['600'], { stdio: 'ignore' })
  t.teardown(() => void fresh.kill())
  await new Promise((r) => setTimeout(r, 200))
  process.kill(oldPid, 'SIGKILL')
  await new Promise((r) => setTimeout(r, 200))
  await agent.schedule()
  const after = agent.pods().find((p) => p.name === 'c')!
  t.equal(after.state, 'captured')
  t.not(after.netnsPath, before.netnsPath, 'the netns is reached through the new sandbox')
  t.equal(after.netnsCookie, before.netnsCookie, 'same network namespace, so the capture is unchanged')
  t.same(enrolledIps(), [tb.pod('c').ip])
})

t.test('a pod whose cgroup cannot be found stays pending with the reason, and the rest proceed', async (t) => {
  const ghost: Pod = { ...podOf('b', 'other'), name: 'ghost', uid: '00000000-0000-4000-8000-00000000abcd', podIP: '198.19.4.200', podIPs: ['198.19.4.200'] }
  source.apply([upsertPod(ghost)])
  await agent.schedule()
  const g = agent.pods().find((p) => p.name === 'ghost')!
  t.equal(g.state, 'pending')
  t.match(g.error, /no cgroup for pod 00000000-0000-4000-8000-00000000abcd/)
  t.same(enrolledIps(), [tb.pod('c').ip])
  source.apply([{ type: 'delete', ref: { kind: 'Pod', namespace: 'other', name: 'ghost' } }, ns('other'), ns('shop')])
  await agent.schedule()
  t.same(enrolledIps(), [])
  await agent.stop()
})
