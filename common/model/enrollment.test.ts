import t from 'tap'
import { decide, diff, enrolledPods, type NotEnrolledReason } from './enrollment.js'
import { applyBatch, emptySnapshot } from './snapshot.js'
import type { Namespace, Pod } from './workload.js'

const NODE = 'node-1'
const ns = (labels: Record<string, string>): Namespace => ({ name: 'shop', labels })
const pod = (over: Partial<Pod> = {}): Pod => ({
  uid: 'u1',
  namespace: 'shop',
  name: 'web',
  nodeName: NODE,
  podIP: '198.18.1.10',
  podIPs: ['198.18.1.10'],
  serviceAccount: 'web',
  labels: {},
  annotations: {},
  hostNetwork: false,
  phase: 'Running',
  containerIDs: [],
  ...over,
})
const AMBIENT = { 'istio.io/dataplane-mode': 'ambient' }
const NONE = { 'istio.io/dataplane-mode': 'none' }

const table: readonly [string, Pod, Namespace | undefined, true | NotEnrolledReason][] = [
  ['namespace label enrolls', pod(), ns(AMBIENT), true],
  ['no label: not enrolled', pod(), ns({}), 'namespace-not-ambient'],
  ['unknown namespace: not enrolled', pod(), undefined, 'namespace-not-ambient'],
  ['pod opt-out wins over the namespace', pod({ labels: NONE }), ns(AMBIENT), 'opted-out'],
  ['pod label enrolls on its own (Istio)', pod({ labels: AMBIENT }), ns({}), true],
  ['hostNetwork never', pod({ hostNetwork: true }), ns(AMBIENT), 'host-network'],
  ['hostNetwork never, even with the pod label', pod({ hostNetwork: true, labels: AMBIENT }), ns(AMBIENT), 'host-network'],
  ['other node: not our business', pod({ nodeName: 'node-2' }), ns(AMBIENT), 'other-node'],
  ['no IP yet', pod({ podIP: '', podIPs: [] }), ns(AMBIENT), 'no-ip'],
  ['pending with an IP: captured from the first connection (init containers too)', pod({ phase: 'Pending' }), ns(AMBIENT), true],
  ['succeeded', pod({ phase: 'Succeeded' }), ns(AMBIENT), 'finished'],
  ['failed', pod({ phase: 'Failed' }), ns(AMBIENT), 'finished'],
  ['other mode value does not enroll', pod(), ns({ 'istio.io/dataplane-mode': 'sidecar' }), 'namespace-not-ambient'],
]

t.test('decide follows Istio ambient rules', async (t) => {
  for (const [name, p, n, want] of table) {
    t.same(decide(p, n, NODE), want === true ? { enrolled: true } : { enrolled: false, reason: want }, name)
  }
})

t.test('enrolledPods and diff', async (t) => {
  const base = applyBatch(emptySnapshot(), [
    { type: 'upsert', resource: { kind: 'Namespace', value: ns(AMBIENT) } },
    { type: 'upsert', resource: { kind: 'Pod', value: pod() } },
    { type: 'upsert', resource: { kind: 'Pod', value: pod({ name: 'api', uid: 'u2', podIP: '198.18.1.11' }) } },
    { type: 'upsert', resource: { kind: 'Pod', value: pod({ name: 'far', uid: 'u3', nodeName: 'node-2' }) } },
  ])
  t.same(
    enrolledPods(base, NODE).map((p) => p.name),
    ['api', 'web'],
  )
  t.same(
    diff(emptySnapshot(), base, NODE).enroll.map((p) => p.name),
    ['api', 'web'],
  )
  const unlabelled = applyBatch(base, [{ type: 'upsert', resource: { kind: 'Namespace', value: ns({}) } }])
  t.same(diff(base, unlabelled, NODE), { enroll: [], unenroll: enrolledPods(base, NODE) })
  const relabelled = applyBatch(base, [{ type: 'upsert', resource: { kind: 'Pod', value: pod({ labels: { app: 'x' } }) } }])
  t.same(diff(base, relabelled, NODE), { enroll: [], unenroll: [] }, 'a label change is not a re-enrollment')
  const recreated = applyBatch(base, [{ type: 'upsert', resource: { kind: 'Pod', value: pod({ uid: 'u9', podIP: '198.18.1.12' }) } }])
  const d = diff(base, recreated, NODE)
  t.same([d.unenroll.map((p) => p.uid), d.enroll.map((p) => p.uid)], [['u1'], ['u9']], 'a recreated pod is un-enrolled then enrolled')
})
