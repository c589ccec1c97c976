import t from 'tap'
import { applyBatch, emptySnapshot, lookup, resourcesOf } from './snapshot.js'
import { spiffeIdentity, workloadUid, type Pod } from './workload.js'

const pod: Pod = {
  uid: 'u1',
  namespace: 'shop',
  name: 'web',
  nodeName: 'n1',
  podIP: '198.18.1.10',
  podIPs: ['198.18.1.10'],
  serviceAccount: 'web',
  labels: { app: 'web' },
  annotations: {},
  hostNetwork: false,
  phase: 'Running',
  containerIDs: [],
}

t.test('applyBatch copies only what changes and is idempotent for deletes', async (t) => {
  const empty = emptySnapshot()
  t.equal(applyBatch(empty, []), empty)
  t.equal(applyBatch(empty, [{ type: 'delete', ref: { kind: 'Pod', namespace: 'shop', name: 'web' } }]), empty, 'deleting what is gone changes nothing')
  const one = applyBatch(empty, [
    { type: 'upsert', resource: { kind: 'Pod', value: pod } },
    { type: 'upsert', resource: { kind: 'AuthorizationPolicy', namespace: 'shop', name: 'b', object: { metadata: { name: 'b' } } } },
    { type: 'upsert', resource: { kind: 'AuthorizationPolicy', namespace: 'shop', name: 'a', object: { metadata: { name: 'a' } } } },
  ])
  t.equal(one.version, 1)
  t.equal(empty.pods.size, 0, 'the previous snapshot is untouched')
  t.equal(one.pods.get('shop/web'), pod)
  t.equal(one.namespaces, empty.namespaces, 'untouched maps are shared')
  t.same(one.authorizationPolicies, [{ metadata: { name: 'a' } }, { metadata: { name: 'b' } }], 'policies ordered by namespace/name')
  t.equal(one.peerAuthentications, empty.peerAuthentications)
  t.same(lookup(one, { kind: 'Pod', namespace: 'shop', name: 'web' }), { kind: 'Pod', value: pod })
  t.equal(resourcesOf(one).length, 3)
  const two = applyBatch(one, [
    { type: 'delete', ref: { kind: 'Pod', namespace: 'shop', name: 'web' } },
    { type: 'delete', ref: { kind: 'AuthorizationPolicy', namespace: 'shop', name: 'a' } },
  ])
  t.equal(two.pods.size, 0)
  t.same(two.authorizationPolicies, [{ metadata: { name: 'b' } }])
  t.equal(two.version, 2)
})

t.test('SPIFFE identity and workload uid follow Istio', async (t) => {
  t.equal(spiffeIdentity('td', 'a', 'b'), 'spiffe://td/ns/a/sa/b')
  t.equal(workloadUid('shop', 'web'), 'Kubernetes//Pod/shop/web')
})
