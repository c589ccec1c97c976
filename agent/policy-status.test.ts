import t from 'tap'
import { convertPolicies } from '../common/model/convert/policies.js'
import { policyStatusPatches } from './policy-status.js'

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
