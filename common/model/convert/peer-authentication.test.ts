import t from 'tap'
import { compileL4, policyMatches } from '../../policy/matcher.js'
import { prepareL4 } from '../../policy/fields.js'
import { type PeerAuthentication, effectiveMtls, selectPeerAuthentications } from '../peer-authentication.js'
import { STATIC_STRICT_POLICY_NAME, convertPeerAuthentication, mtlsAuthorization } from './peer-authentication.js'

const ROOT = 'istio-system'
type Obj = Record<string, unknown>
const pa = (namespace: string, name: string, spec: Obj, creationTimestamp?: string): Obj => ({
  kind: 'PeerAuthentication',
  metadata: { namespace, name, ...(creationTimestamp === undefined ? {} : { creationTimestamp }) },
  spec,
})
function model(o: Obj): PeerAuthentication {
  const r = convertPeerAuthentication(o)
  if (r.kind !== 'converted') throw r.error
  return r.policy
}
const web = { app: 'web' }
const sel = { selector: { matchLabels: web } }
const mode = (objects: readonly Obj[], port = 8080, ns = 'app', labels: Record<string, string> = web) =>
  effectiveMtls(selectPeerAuthentications(objects.map(model), ROOT, ns, labels), port)

t.test('levels and inheritance', async (t) => {
  const cases: ReadonlyArray<readonly [string, readonly Obj[], string, string | null, string]> = [
    ['nothing: PERMISSIVE', [], 'PERMISSIVE', null, 'default'],
    ['mesh STRICT', [pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } })], 'STRICT', 'istio-system/mesh', 'mesh'],
    [
      'namespace overrides mesh',
      [pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } }), pa('app', 'ns', { mtls: { mode: 'PERMISSIVE' } })],
      'PERMISSIVE',
      'app/ns',
      'namespace',
    ],
    ['namespace UNSET inherits', [pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } }), pa('app', 'ns', {})], 'STRICT', 'istio-system/mesh', 'mesh'],
    [
      'workload overrides namespace',
      [pa('app', 'ns', { mtls: { mode: 'PERMISSIVE' } }), pa('app', 'w', { ...sel, mtls: { mode: 'STRICT' } })],
      'STRICT',
      'app/w',
      'workload',
    ],
    ['workload UNSET inherits', [pa('app', 'ns', { mtls: { mode: 'STRICT' } }), pa('app', 'w', { ...sel })], 'STRICT', 'app/ns', 'namespace'],
    ['workload selector not matching', [pa('app', 'w', { selector: { matchLabels: { app: 'db' } }, mtls: { mode: 'STRICT' } })], 'PERMISSIVE', null, 'default'],
    ['other namespace ignored', [pa('other', 'ns', { mtls: { mode: 'STRICT' } })], 'PERMISSIVE', null, 'default'],
    ['root namespace selector ignored', [pa(ROOT, 'w', { ...sel, mtls: { mode: 'STRICT' } })], 'PERMISSIVE', null, 'default'],
    [
      'DISABLE is PERMISSIVE',
      [pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } }), pa('app', 'ns', { mtls: { mode: 'DISABLE' } })],
      'PERMISSIVE',
      'app/ns',
      'namespace',
    ],
    ['port STRICT', [pa('app', 'w', { ...sel, mtls: { mode: 'PERMISSIVE' }, portLevelMtls: { 8080: { mode: 'STRICT' } } })], 'STRICT', 'app/w', 'port'],
    ['port PERMISSIVE', [pa('app', 'w', { ...sel, mtls: { mode: 'STRICT' }, portLevelMtls: { 8080: { mode: 'PERMISSIVE' } } })], 'PERMISSIVE', 'app/w', 'port'],
    ['port UNSET inherits', [pa('app', 'w', { ...sel, mtls: { mode: 'STRICT' }, portLevelMtls: { 8080: { mode: 'UNSET' } } })], 'STRICT', 'app/w', 'workload'],
    [
      'other port unaffected',
      [pa('app', 'w', { ...sel, mtls: { mode: 'STRICT' }, portLevelMtls: { 9090: { mode: 'PERMISSIVE' } } })],
      'STRICT',
      'app/w',
      'workload',
    ],
    [
      'oldest namespace policy wins',
      [pa('app', 'b-new', { mtls: { mode: 'STRICT' } }, '2024-02-01T00:00:00Z'), pa('app', 'z-old', { mtls: { mode: 'PERMISSIVE' } }, '2024-01-01T00:00:00Z')],
      'PERMISSIVE',
      'app/z-old',
      'namespace',
    ],
  ]
  for (const [name, objects, want, policy, level] of cases) {
    const m = mode(objects)
    t.same([m.mode, m.policy === null ? null : `${m.policy.namespace}/${m.policy.name}`, m.level], [want, policy, level], name)
  }
})

t.test("Istio's converted DENY form agrees with the effective mode", async (t) => {
  const configs: ReadonlyArray<readonly Obj[]> = [
    [],
    [pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } })],
    [pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } }), pa('app', 'ns', { mtls: { mode: 'PERMISSIVE' } })],
    [pa('app', 'ns', { mtls: { mode: 'STRICT' } }), pa('app', 'w', { ...sel, portLevelMtls: { 8080: { mode: 'PERMISSIVE' }, 9090: { mode: 'DISABLE' } } })],
    [pa('app', 'w', { ...sel, mtls: { mode: 'PERMISSIVE' }, portLevelMtls: { 8080: { mode: 'STRICT' }, 9090: { mode: 'STRICT' } } })],
    [pa('app', 'w', { ...sel, mtls: { mode: 'STRICT' }, portLevelMtls: { 8080: { mode: 'STRICT' } } })],
    [pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } }), pa('app', 'w', { ...sel, mtls: { mode: 'DISABLE' }, portLevelMtls: { 9090: { mode: 'STRICT' } } })],
  ]
  configs.forEach((objects, i) => {
    const selected = selectPeerAuthentications(objects.map(model), ROOT, 'app', web)
    const a = mtlsAuthorization(selected, ROOT)
    for (const port of [8080, 9090, 80]) {
      for (const identity of [undefined, { trustDomain: 'cluster.local', namespace: 'c', serviceAccount: 's' }]) {
        const facts = prepareL4({ sourceIdentity: identity, sourceIp: '10.0.0.1', destination: { ip: '10.0.0.2', port, namespace: 'app', labels: web } })
        const denied = a !== null && policyMatches(compileL4(a), facts)
        const expected = identity === undefined && effectiveMtls(selected, port).mode === 'STRICT'
        t.equal(denied, expected, `config ${i} port ${port} ${identity === undefined ? 'plaintext' : 'mtls'}`)
      }
    }
  })
  const strict = mtlsAuthorization(selectPeerAuthentications([model(pa(ROOT, 'mesh', { mtls: { mode: 'STRICT' } }))], ROOT, 'app', web), ROOT)
  t.same([strict?.namespace, strict?.name, strict?.action], [ROOT, STATIC_STRICT_POLICY_NAME, 'DENY'], 'static strict policy')
})

t.test('conversion: warnings and malformed objects', async (t) => {
  const disable = convertPeerAuthentication(pa('app', 'd', { mtls: { mode: 'DISABLE' } }))
  t.same(disable.kind === 'converted' ? disable.warnings.map((w) => [w.code, w.field]) : disable.kind, [['AMBIENT_WARN_POLICY_MTLS_DISABLE', 'spec.mtls.mode']])
  const cases: ReadonlyArray<readonly [string, Obj, string]> = [
    ['bad mode', pa('app', 'x', { mtls: { mode: 'ON' } }), 'spec.mtls.mode'],
    ['port level without selector', pa('app', 'x', { portLevelMtls: { 80: { mode: 'STRICT' } } }), 'spec.portLevelMtls'],
    ['bad port', pa('app', 'x', { ...sel, portLevelMtls: { http: { mode: 'STRICT' } } }), 'spec.portLevelMtls["http"]'],
    ['empty port map', pa('app', 'x', { ...sel, portLevelMtls: {} }), 'spec.portLevelMtls'],
    ['unknown field', pa('app', 'x', { mtlsMode: 'STRICT' }), 'spec.mtlsMode'],
  ]
  for (const [name, obj, field] of cases) {
    const r = convertPeerAuthentication(obj)
    t.same(r.kind === 'invalid' ? [r.ref.name, r.error.field] : r.kind, ['x', field], name)
  }
})
