import t from 'tap'
import { convertPolicies } from '../common/model/convert/policies.js'
import { convertWaypointPolicies } from '../common/model/convert/waypoint-authorization.js'
import { policyStatusPatches, waypointStatusPatches } from './policy-status.js'

const ap = (name: string, spec: Record<string, unknown>, status?: unknown) => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { namespace: 'shop', name, generation: 3 },
  spec,
  ...(status ? { status } : {}),
})

t.test('one ZtunnelAccepted condition per policy, naming the field ztunnel could not apply', async (t) => {
  const objects = [
    ap('clean', { rules: [{ from: [{ source: { namespaces: ['a'] } }] }] }),
    ap('http', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }),
    ap('custom', { action: 'CUSTOM', provider: { name: 'x' }, rules: [{}] }),
    ap('broken', { action: 'SOMETIMES' }),
    { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { namespace: 'shop', name: 'off' }, spec: { mtls: { mode: 'DISABLE' } } },
  ]
  const patches = policyStatusPatches(objects, convertPolicies(objects, 'istio-system'))
  const by = new Map(patches.map((p) => [p.name, p.condition]))
  t.match(by.get('clean'), { type: 'ZtunnelAccepted', status: 'True', reason: 'Accepted', observedGeneration: 3 })
  t.match(by.get('http'), { status: 'False', reason: 'UnsupportedValue', message: /spec\.rules\[0\]\.to\[0\]\.operation\.methods/ })
  t.match(by.get('custom'), { status: 'False', reason: 'UnsupportedValue', message: /not enforced by ztunnel: spec\.action/ })
  t.match(by.get('broken'), { status: 'False', reason: 'Invalid', message: /spec\.action/ })
  t.match(by.get('off'), { status: 'False', reason: 'UnsupportedValue', message: /spec\.mtls\.mode.*PERMISSIVE/ })
  t.equal(patches.find((p) => p.name === 'off')!.kind, 'PeerAuthentication')
})

t.test('a policy that already carries its condition is not patched again', async (t) => {
  const first = [ap('clean', { rules: [{}] })]
  const [patch] = policyStatusPatches(first, convertPolicies(first, 'istio-system'))
  const written = [ap('clean', { rules: [{}] }, { conditions: [patch!.condition] })]
  t.same(policyStatusPatches(written, convertPolicies(written, 'istio-system')), [])
  const stale = [ap('clean', { rules: [{}] }, { conditions: [{ ...patch!.condition, observedGeneration: 2 }] })]
  t.equal(policyStatusPatches(stale, convertPolicies(stale, 'istio-system')).length, 1, 'a new generation is written again')
})

t.test("same name, two kinds: each gets its own condition; other controllers' conditions are kept", async (t) => {
  const objects = [
    { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { namespace: 'shop', name: 'default' }, spec: { action: 'SOMETIMES' } },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'PeerAuthentication',
      metadata: { namespace: 'shop', name: 'default' },
      spec: { mtls: { mode: 'STRICT' } },
      status: { conditions: [{ type: 'Reconciled', status: 'True' }] },
    },
  ]
  const patches = policyStatusPatches(objects, convertPolicies(objects, 'istio-system'))
  const ap = patches.find((p) => p.kind === 'AuthorizationPolicy')!
  const pa = patches.find((p) => p.kind === 'PeerAuthentication')!
  t.match(ap.condition, { status: 'False', reason: 'Invalid' })
  t.match(pa.condition, { status: 'True', reason: 'Accepted' }, 'the PeerAuthentication is not blamed for the AuthorizationPolicy of the same name')
  t.same(
    pa.conditions.map((c) => (c as { type: string }).type),
    ['Reconciled', 'ZtunnelAccepted'],
    "another controller's condition stays",
  )
})

t.test('a waypoint policy gets WaypointAccepted (not ZtunnelAccepted): bound, invalid, partial, or no waypoint there', async (t) => {
  const gw = [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }]
  const objects = [
    ap('l7', { targetRefs: gw, rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }),
    ap('jwt', { targetRefs: gw, rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] }),
    ap('bad', { targetRefs: gw, action: 'SOMETIMES' }),
    ap('nowhere', { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'ingress' }], rules: [{}] }),
    ap('plain', { rules: [{}] }),
  ]
  const targetProblem = (target: { kind: string; name: string }) =>
    target.kind === 'Gateway' && target.name !== 'waypoint' ? `Gateway shop/${target.name} is not a waypoint` : null
  const patches = waypointStatusPatches(objects, convertWaypointPolicies(objects, 'istio-system'), targetProblem)
  const by = new Map(patches.map((p) => [p.name, p.condition]))
  t.match(by.get('l7'), { type: 'WaypointAccepted', status: 'True', reason: 'Accepted', message: 'bound to Gateway shop/waypoint', observedGeneration: 3 })
  t.match(by.get('jwt'), { status: 'False', reason: 'UnsupportedValue', message: /requestPrincipals/ })
  t.match(by.get('bad'), { status: 'False', reason: 'Invalid', message: /spec\.action/ })
  t.match(by.get('nowhere'), { status: 'False', reason: 'TargetNotFound', message: 'Gateway shop/ingress is not a waypoint' })
  t.notOk(by.has('plain'), 'a policy without targetRefs is ztunnel business')
  const ztunnel = policyStatusPatches(objects, convertPolicies(objects, 'istio-system')).map((p) => p.name)
  t.same(ztunnel, ['plain'], 'no ZtunnelAccepted on the waypoint policies')
  const written = objects.map((o) => ({ ...o, status: { conditions: [by.get(o.metadata.name)].filter(Boolean) } }))
  t.same(waypointStatusPatches(written, convertWaypointPolicies(written, 'istio-system'), targetProblem), [], 'written once')
})
