import t from 'tap'
import { convertObject } from './convert.js'
import { backoffDelay } from './reflector.js'

const bad: readonly [string, unknown, string][] = [
  ['label not a string', { kind: 'Pod', apiVersion: 'v1', metadata: { name: 'p', namespace: 'n', labels: { a: 1 } } }, 'metadata.labels.a'],
  ['bad pod IP', { kind: 'Pod', apiVersion: 'v1', metadata: { name: 'p', namespace: 'n' }, status: { podIP: '1.2.3' } }, 'status.podIP'],
  ['bad phase', { kind: 'Pod', apiVersion: 'v1', metadata: { name: 'p', namespace: 'n' }, status: { phase: 'Dancing' } }, 'status.phase'],
  ['hostNetwork not boolean', { kind: 'Pod', apiVersion: 'v1', metadata: { name: 'p', namespace: 'n' }, spec: { hostNetwork: 'yes' } }, 'spec.hostNetwork'],
  [
    'service port out of range',
    { kind: 'Service', apiVersion: 'v1', metadata: { name: 's', namespace: 'n' }, spec: { ports: [{ port: 70000 }] } },
    'spec.ports[0].port',
  ],
  ['bad cluster IP', { kind: 'Service', apiVersion: 'v1', metadata: { name: 's', namespace: 'n' }, spec: { clusterIPs: ['x'] } }, 'spec.clusterIPs[0]'],
  [
    'endpoint address',
    {
      kind: 'EndpointSlice',
      apiVersion: 'discovery.k8s.io/v1',
      metadata: { name: 'e', namespace: 'n' },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['nope'] }],
    },
    'endpoints[0].addresses[0]',
  ],
  ['missing name', { kind: 'Namespace', apiVersion: 'v1', metadata: {} }, 'metadata.name'],
  ['wrong apiVersion', { kind: 'EndpointSlice', apiVersion: 'v1', metadata: { name: 'e', namespace: 'n' } }, 'apiVersion'],
  [
    'policy spec not an object',
    { kind: 'AuthorizationPolicy', apiVersion: 'security.istio.io/v1', metadata: { name: 'a', namespace: 'n' }, spec: 'x' },
    'spec',
  ],
]

t.test('a bad field rejects its object, naming object and field', async (t) => {
  for (const [name, obj, field] of bad) {
    const r = convertObject(obj)
    t.equal(r.ok, false, name)
    if (!r.ok) {
      t.equal(r.error.field, field, `${name}: field`)
      t.match(r.error.message, new RegExp(`: ${field.replace(/[.[\]]/g, '\\$&')} `), `${name}: message`)
    }
  }
})

t.test('good objects convert with defaults', async (t) => {
  const r = convertObject({ metadata: { name: 'p', namespace: 'n', labels: { a: 'b' } }, spec: {}, status: { podIPs: [{ ip: 'fd00::1' }] } }, { kind: 'Pod' })
  t.match(r, {
    ok: true,
    resource: { kind: 'Pod', value: { serviceAccount: 'default', phase: 'Pending', podIP: '', podIPs: ['fd00::1'], hostNetwork: false, labels: { a: 'b' } } },
  })
  const s = convertObject({
    kind: 'Service',
    apiVersion: 'v1',
    metadata: { name: 's', namespace: 'n' },
    spec: { clusterIP: 'None', ports: [{ port: 80, targetPort: 'http' }] },
  })
  t.match(s, { ok: true, resource: { value: { clusterIPs: [], ports: [{ port: 80, targetPort: 'http', protocol: 'TCP', name: '' }] } } })
  const d = convertObject({ kind: 'Pod', apiVersion: 'v1', metadata: { name: 'p' } }, { defaultNamespace: 'default' })
  t.match(d, { ok: true, resource: { value: { namespace: 'default' } } })
})

t.test('backoff grows, is capped and jittered', async (t) => {
  const b = { initialMs: 100, maxMs: 1000 }
  t.same(
    [0, 1, 2, 3, 10].map((a) => backoffDelay(b, a, () => 0)),
    [50, 100, 200, 400, 500],
  )
  t.same(
    [0, 10].map((a) => backoffDelay(b, a, () => 1)),
    [100, 1000],
  )
})
