import t from 'tap'
import { type RandomSource, pickBackend, pickWeighted } from './pick.js'
import { type ForwardDecision, routeRequest } from './route.js'
import { type Obj, REVIEWS, get, httpRoute, table } from './route-test-helpers.js'

/** mulberry32: a small seeded generator, so the statistics below are the same on every run. */
function seeded(seed: number): RandomSource {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}
/** Returns the given numbers in order, and fails the test if asked for more. */
function sequence(...values: number[]): RandomSource {
  return () => {
    const v = values.shift()
    if (v === undefined) throw new Error('random() called more often than expected')
    return v
  }
}
const forward = (rules: unknown[], request = get('/')): ForwardDecision => {
  const d = routeRequest(table([httpRoute('r', rules)]), REVIEWS, request)
  if (d.kind !== 'forward') throw new Error(`expected forward, got ${d.kind}`)
  return d
}

t.test('pickWeighted: each item owns a slice of [0, 1) as wide as its weight', async (t) => {
  const items = [
    { id: 'a', weight: 1 },
    { id: 'zero', weight: 0 },
    { id: 'b', weight: 3 },
  ]
  const cases: ReadonlyArray<readonly [number, string]> = [
    [0, 'a'],
    [0.2499, 'a'],
    [0.25, 'b'],
    [0.9999999, 'b'],
  ]
  for (const [r, id] of cases) t.equal(pickWeighted(items, () => r)?.id, id, `random ${r}`)
  t.equal(
    pickWeighted([{ weight: 0 }, { weight: 0 }], () => 0.5),
    undefined,
    'all weights 0: nothing',
  )
  t.equal(
    pickWeighted([], () => 0.5),
    undefined,
    'no items: nothing',
  )
})

t.test('10,000 picks land within 1.5 percentage points of the weights', async (t) => {
  const d = forward([
    {
      backendRefs: [
        { name: 'v1', port: 9080, weight: 10 },
        { name: 'v2', port: 9080, weight: 20 },
        { name: 'v3', port: 9080, weight: 70 },
        { name: 'gone', port: 9080, weight: 0 },
      ],
    },
  ])
  const random = seeded(42)
  const counts: Record<string, number> = {}
  for (let i = 0; i < 10_000; i++) {
    const p = pickBackend(d, random)
    const key = p.kind === 'backend' ? p.backend.name : 'error'
    counts[key] = (counts[key] ?? 0) + 1
  }
  t.same(Object.keys(counts).sort(), ['v1', 'v2', 'v3'], 'the weight-0 backend gets nothing')
  for (const [name, share] of [
    ['v1', 0.1],
    ['v2', 0.2],
    ['v3', 0.7],
  ] as const) {
    const got = (counts[name] ?? 0) / 10_000
    t.ok(Math.abs(got - share) < 0.015, `${name}: ${(got * 100).toFixed(2)}% for weight ${share * 100}%`)
  }
})

t.test('an invalid backend answers 500 for its share', async (t) => {
  const d = forward([
    {
      backendRefs: [
        { name: 'v1', port: 9080, weight: 1 },
        { name: 'gone', port: 9080, weight: 1 },
      ],
    },
  ])
  t.same(
    pickBackend(d, () => 0.75),
    { kind: 'error', status: 500, reason: 'backend spec.rules[0].backendRefs[1]: Service shop/gone not found (BackendNotFound)' },
  )
  t.equal(pickBackend(d, () => 0.25).kind, 'backend')
  const random = seeded(7)
  let errors = 0
  for (let i = 0; i < 10_000; i++) if (pickBackend(d, random).kind === 'error') errors++
  t.ok(Math.abs(errors / 10_000 - 0.5) < 0.015, `${(errors / 100).toFixed(2)}% of requests get 500 for a half-weight invalid backend`)
})

t.test('the chosen backend: its own filters, response headers in order, mirrors sampled', async (t) => {
  const mirror = (name: string, fraction: Obj): Obj => ({ type: 'RequestMirror', requestMirror: { backendRef: { name, port: 9080 }, ...fraction } })
  const d = forward(
    [
      {
        matches: [{ path: { value: '/api' } }],
        filters: [
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-rule', value: '1' }] } },
          mirror('v2', { percent: 25 }),
          mirror('v3', { percent: 0 }),
        ],
        backendRefs: [
          {
            name: 'v1',
            port: 9080,
            filters: [
              { type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'x-backend', value: 'v1' }] } },
              { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1/api' } } },
              { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-backend', value: 'v1' }] } },
              mirror('v3', { fraction: { numerator: 1, denominator: 2 } }),
            ],
          },
        ],
      },
    ],
    get('/api/items?x=1'),
  )
  const backendRequest = { method: 'GET', path: '/v1/api/items?x=1', host: 'reviews:9080', headers: { 'x-backend': 'v1' } }
  // One backend: no draw for the choice; then one draw per mirror with 0 < fraction < 1: v2 (25%), v3 (1/2).
  t.same(pickBackend(d, sequence(0.2, 0.6)), {
    kind: 'backend',
    backend: { namespace: 'shop', name: 'v1', port: 9080 },
    request: backendRequest,
    responseHeaders: [
      { set: [{ name: 'x-rule', value: '1' }], add: [], remove: [] },
      { set: [{ name: 'x-backend', value: 'v1' }], add: [], remove: [] },
    ],
    mirrors: [{ backend: { namespace: 'shop', name: 'v2', port: 9080 }, fraction: { numerator: 25, denominator: 100 }, request: get('/api/items?x=1') }],
  })
  const other = pickBackend(d, sequence(0.3, 0.4))
  t.same(
    other.kind === 'backend' ? other.mirrors.map((m) => [m.backend.name, m.request.path]) : other.kind,
    [['v3', '/v1/api/items?x=1']],
    'a backend mirror copies the request as that backend gets it',
  )
  const none = pickBackend(d, sequence(0.99, 0.99))
  t.same(none.kind === 'backend' ? none.mirrors : none.kind, [], 'none sampled')
  const always = forward([{ filters: [mirror('v2', {})], backendRefs: [{ name: 'v1', port: 9080 }] }])
  const p = pickBackend(always, sequence())
  t.same(p.kind === 'backend' ? p.mirrors.map((m) => m.backend.name) : p.kind, ['v2'], 'a 100% mirror needs no draw')
})
