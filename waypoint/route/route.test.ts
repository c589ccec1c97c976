import t from 'tap'
import { type RouteDecision, routeRequest } from './route.js'
import type { RouteRequest } from './request.js'
import { type Obj, PARENT, REVIEWS, convert, get, httpRoute, lookupService, ruleTo, table } from './route-test-helpers.js'
import { type RouteTable, buildRouteTable } from './table.js'

/** `ns/name#rule` for a routed forward or redirect, else the decision kind. */
function which(d: RouteDecision): string {
  if ((d.kind === 'forward' || d.kind === 'redirect' || d.kind === 'error') && d.route !== null) return `${d.route.namespace}/${d.route.name}#${d.rule}`
  return d.kind === 'forward' ? 'default' : d.kind
}
const route = (tbl: RouteTable, request: RouteRequest, target = REVIEWS): string => which(routeRequest(tbl, target, request))

t.test('match types', async (t) => {
  const matches = (match: Obj, request: RouteRequest): boolean => route(table([httpRoute('r', [ruleTo([match])])]), request) === 'shop/r#0'
  const exact = { path: { type: 'Exact', value: '/exact' } }
  const prefix = { path: { type: 'PathPrefix', value: '/foo' } }
  const slash = { path: { type: 'PathPrefix', value: '/foo/' } }
  const regex = { path: { type: 'RegularExpression', value: '/v[0-9]+/.*' } }
  const header = { headers: [{ name: 'X-Version', value: 'v2' }] }
  const headerRe = { headers: [{ type: 'RegularExpression', name: 'user-agent', value: '.*Firefox/[0-9]+.*' }] }
  const host = { headers: [{ name: 'Host', value: 'reviews.shop' }] }
  const query = { queryParams: [{ name: 'debug', value: '1' }] }
  const queryText = { queryParams: [{ name: 'q', value: 'a b' }] }
  const queryRe = { queryParams: [{ type: 'RegularExpression', name: 'id', value: '[0-9]{3}' }] }
  const method = { method: 'POST' }
  const all = { path: { value: '/api' }, method: 'PUT', headers: [{ name: 'x-a', value: '1' }], queryParams: [{ name: 'b', value: '2' }] }
  const cases: ReadonlyArray<readonly [string, Obj, RouteRequest, boolean]> = [
    ['Exact', exact, get('/exact'), true],
    ['Exact ignores the query', exact, get('/exact?x=1'), true],
    ['Exact: not with a trailing /', exact, get('/exact/'), false],
    ['Exact is case-sensitive', exact, get('/Exact'), false],
    ['Exact: not a prefix', exact, get('/exact/more'), false],
    ['PathPrefix: the path itself', prefix, get('/foo'), true],
    ['PathPrefix: trailing /', prefix, get('/foo/'), true],
    ['PathPrefix: below', prefix, get('/foo/bar?x'), true],
    ['PathPrefix: not /foobar', prefix, get('/foobar'), false],
    ['PathPrefix is case-sensitive', prefix, get('/FOO'), false],
    ['PathPrefix /foo/ matches /foo', slash, get('/foo'), true],
    ['PathPrefix /foo/ not /foobar', slash, get('/foobar'), false],
    ['RegularExpression', regex, get('/v12/items'), true],
    ['RegularExpression is a full match', regex, get('/api/v12/items'), false],
    ['RegularExpression ignores the query', regex, get('/v1/x?y=1'), true],
    ['RegularExpression: no match', regex, get('/v1'), false],
    ['header Exact, name in any case', header, get('/', { headers: { 'x-version': 'v2' } }), true],
    ['header Exact: other value', header, get('/', { headers: { 'x-version': 'v1' } }), false],
    ['header Exact: absent', header, get('/'), false],
    ['header Exact is case-sensitive in the value', header, get('/', { headers: { 'x-version': 'V2' } }), false],
    ['header repeated: values joined by ","', header, get('/', { headers: { 'x-version': ['v1', 'v2'] } }), false],
    ['header repeated once', header, get('/', { headers: { 'x-version': ['v2'] } }), true],
    ['header joined value', { headers: [{ name: 'x-version', value: 'v1,v2' }] }, get('/', { headers: { 'x-version': ['v1', 'v2'] } }), true],
    ['header RegularExpression', headerRe, get('/', { headers: { 'user-agent': 'Mozilla/5.0 Firefox/126.0' } }), true],
    ['header RegularExpression: no match', headerRe, get('/', { headers: { 'user-agent': 'curl/8.0' } }), false],
    ['Host header is the authority', host, get('/', { host: 'reviews.shop' }), true],
    ['Host header: port included as sent', host, get('/', { host: 'reviews.shop:9080' }), false],
    ['query Exact', query, get('/?debug=1'), true],
    ['query Exact: other value', query, get('/?debug=2'), false],
    ['query Exact: absent', query, get('/?x=1'), false],
    ['query Exact: no query', query, get('/'), false],
    ['query: the first value of a repeated parameter', query, get('/?debug=1&debug=2'), true],
    ['query: not a later value', query, get('/?debug=2&debug=1'), false],
    ['query names are case-sensitive', query, get('/?Debug=1'), false],
    ['query values are decoded', query, get('/?debug=%31'), true],
    ['query + is a space', queryText, get('/?q=a+b'), true],
    ['query RegularExpression', queryRe, get('/?id=123'), true],
    ['query RegularExpression is a full match', queryRe, get('/?id=1234'), false],
    ['method', method, get('/', { method: 'POST' }), true],
    ['method: other', method, get('/'), false],
    ['all conditions: every one holds', all, get('/api/x?b=2', { method: 'PUT', headers: { 'x-a': '1' } }), true],
    ['all conditions: method differs', all, get('/api/x?b=2', { headers: { 'x-a': '1' } }), false],
    ['all conditions: header differs', all, get('/api/x?b=2', { method: 'PUT', headers: { 'x-a': '2' } }), false],
    ['all conditions: query differs', all, get('/api/x?b=3', { method: 'PUT', headers: { 'x-a': '1' } }), false],
    ['all conditions: path differs', all, get('/apix?b=2', { method: 'PUT', headers: { 'x-a': '1' } }), false],
  ]
  for (const [name, match, request, expected] of cases) t.equal(matches(match, request), expected, name)
  const either = table([httpRoute('r', [ruleTo([exact, method])])])
  t.same(
    [route(either, get('/exact')), route(either, get('/x', { method: 'POST' })), route(either, get('/x'))],
    ['shop/r#0', 'shop/r#0', 'not-found'],
    'matches of a rule are OR-ed',
  )
})

t.test('precedence, one step at a time', async (t) => {
  const p = (value: string, type = 'PathPrefix'): Obj => ({ path: { type, value } })
  const h = (n: number): Obj[] => Array.from({ length: n }, (_, i) => ({ name: `h${i}`, value: 'x' }))
  const q = (n: number): Obj[] => Array.from({ length: n }, (_, i) => ({ name: `q${i}`, value: 'x' }))
  const request = get('/foo/bar/baz?q0=x&q1=x', { method: 'GET', headers: { h0: 'x', h1: 'x' } })
  // Each case: two matches that both match `request`, the winner second so list order alone would pick the loser.
  const cases: ReadonlyArray<readonly [string, Obj, Obj]> = [
    ['Exact over PathPrefix', p('/foo/bar/baz'), p('/foo/bar/baz', 'Exact')],
    ['the longer PathPrefix', p('/foo'), p('/foo/bar')],
    ['a longer prefix over a method', { ...p('/foo'), method: 'GET' }, p('/foo/bar')],
    ['method over headers', { ...p('/foo'), headers: h(2) }, { ...p('/foo'), method: 'GET' }],
    ['more headers', { ...p('/foo'), headers: h(1) }, { ...p('/foo'), headers: h(2) }],
    ['headers over query parameters', { ...p('/foo'), queryParams: q(2) }, { ...p('/foo'), headers: h(1) }],
    ['more query parameters', { ...p('/foo'), queryParams: q(1) }, { ...p('/foo'), queryParams: q(2) }],
    ['PathPrefix over RegularExpression', p('/foo/bar/baz', 'RegularExpression'), p('/')],
    ['the longer RegularExpression', p('/foo/.*', 'RegularExpression'), p('/foo/bar/.*', 'RegularExpression')],
    ['Exact over RegularExpression', p('/foo/bar/baz', 'RegularExpression'), p('/foo/bar/baz', 'Exact')],
  ]
  for (const [name, loser, winner] of cases) {
    const rules = table([httpRoute('r', [ruleTo([loser], 'v1'), ruleTo([winner], 'v2')])])
    t.equal(route(rules, request), 'shop/r#1', `${name}: across rules of one route`)
    const routes = table([httpRoute('a', [ruleTo([loser], 'v1')]), httpRoute('b', [ruleTo([winner], 'v2')])])
    t.equal(route(routes, request), 'shop/b#0', `${name}: across routes`)
  }
  const trailing = table([httpRoute('r', [ruleTo([p('/foo/')], 'v1'), ruleTo([{ ...p('/foo'), method: 'GET' }], 'v2')])])
  t.equal(route(trailing, request), 'shop/r#1', 'a trailing / does not count as a character: /foo/ and /foo tie, the method decides')
  const sameRule = table([httpRoute('r', [ruleTo([p('/foo')], 'v1'), ruleTo([p('/'), p('/foo/bar')], 'v2')])])
  t.equal(route(sameRule, request), 'shop/r#1', 'each match ranks on its own, not the rule as a whole')
})

t.test('ties between routes: oldest, then namespace/name, then rule order', async (t) => {
  const same = [ruleTo([{ path: { value: '/api' } }])]
  const at = (ts: string): Obj => ({ creationTimestamp: ts })
  const cases: ReadonlyArray<readonly [string, Obj[], Obj, string]> = [
    ['older route first', [httpRoute('a', same, at('2024-02-01T00:00:00Z')), httpRoute('b', same, at('2024-01-01T00:00:00Z'))], {}, 'shop/b#0'],
    [
      'older route first, whatever the list order',
      [httpRoute('b', same, at('2024-01-01T00:00:00Z')), httpRoute('a', same, at('2024-02-01T00:00:00Z'))],
      {},
      'shop/b#0',
    ],
    ['same time: a before b', [httpRoute('b', same, at('2024-01-01T00:00:00Z')), httpRoute('a', same, at('2024-01-01T00:00:00Z'))], {}, 'shop/a#0'],
    ['no times: a before b', [httpRoute('b', same), httpRoute('a', same)], {}, 'shop/a#0'],
    [
      'only one has a time: the one without is oldest (Istio: zero time)',
      [httpRoute('a', same, at('2024-01-01T00:00:00Z')), httpRoute('b', same)],
      {},
      'shop/b#0',
    ],
    [
      'namespace first: mesh/z before shop/a',
      [
        httpRoute('a', same),
        httpRoute('z', [ruleTo([{ path: { value: '/api' } }], 'v1', { backendRefs: [{ name: 'v1', namespace: 'shop', port: 9080 }] })], { namespace: 'mesh' }, [
          { ...PARENT, namespace: 'shop' },
        ]),
      ],
      { waypointNamespace: 'mesh' },
      'mesh/z#0',
    ],
    [
      'criteria before age: a newer route with a longer prefix wins',
      [httpRoute('old', same, at('2020-01-01T00:00:00Z')), httpRoute('new', [ruleTo([{ path: { value: '/api/v1' } }])], at('2024-01-01T00:00:00Z'))],
      {},
      'shop/new#0',
    ],
  ]
  for (const [name, routes, options, expected] of cases) t.equal(route(table(routes, options), get('/api/v1')), expected, name)
  const rules = table([httpRoute('r', [ruleTo([{ path: { value: '/api' } }], 'v1'), ruleTo([{ path: { value: '/api' } }], 'v2')])])
  t.equal(route(rules, get('/api')), 'shop/r#0', 'same route: the first rule')
})

t.test('binding to Service ports', async (t) => {
  const at9080 = httpRoute('port', [ruleTo([])], {}, [{ ...PARENT, port: 9080 }])
  const grpc = httpRoute('section', [ruleTo([])], {}, [{ ...PARENT, sectionName: 'grpc' }])
  const every = httpRoute('every', [ruleTo([{ path: { value: '/every' } }])])
  const tbl = table([at9080, grpc, every])
  const to = (port: number, path = '/x'): string => route(tbl, get(path), { ...REVIEWS, port })
  t.equal(to(9080), 'shop/port#0', 'port: the named port')
  t.equal(to(9090), 'shop/section#0', 'sectionName: the port of that name')
  t.equal(to(9080, '/every'), 'shop/every#0', 'no port: every port, merged with the port routes by precedence')
  t.equal(to(9090, '/every'), 'shop/every#0')
  t.equal(to(7000, '/every'), 'shop/every#0', 'no port: also a port the route table has no specific route for')
  t.same(tbl.routesFor('shop', 'reviews', 9080), [
    { namespace: 'shop', name: 'every' },
    { namespace: 'shop', name: 'port' },
  ])
  t.same(tbl.problems, [])
  const portOnly = table([at9080])
  t.equal(route(portOnly, get('/x'), { ...REVIEWS, port: 9090 }), 'default', 'a port without routes goes to the Service itself')
  t.equal(route(portOnly, get('/x'), { namespace: 'shop', name: 'v1', port: 9080 }), 'default', 'another Service too')
  const twice = table([
    httpRoute('two', [ruleTo([])], {}, [
      { ...PARENT, port: 9080 },
      { ...PARENT, port: 9090 },
    ]),
  ])
  t.same(
    [route(twice, get('/'), REVIEWS), route(twice, get('/'), { ...REVIEWS, port: 9090 })],
    ['shop/two#0', 'shop/two#0'],
    'one route, two ports of a Service',
  )
  // The conversion refuses two parentRefs that overlap like this (CEL); the table still lists a route once.
  const one = convert(httpRoute('both', [ruleTo([])]))
  const both = buildRouteTable([{ ...one, parents: [one.parents[0]!, { ...one.parents[0]!, port: 9080 }] }], { lookupService })
  t.equal(both.entries('shop', 'reviews', 9080)?.length, 1, 'bound to every port and to 9080: its matches appear once')
})

t.test('binding problems are reported, and the route is not applied there', async (t) => {
  const cases: ReadonlyArray<readonly [string, Obj, Obj, string, string]> = [
    [
      'unknown Service',
      { ...PARENT, name: 'nope' },
      {},
      'AMBIENT_WARN_ROUTE_PARENT_NOT_FOUND',
      'parent Service shop/nope not found; the route applies when it exists',
    ],
    ['no such port', { ...PARENT, port: 7000 }, {}, 'AMBIENT_WARN_ROUTE_PARENT_NOT_FOUND', 'parent Service shop/reviews has no port 7000'],
    [
      'no such port name',
      { ...PARENT, sectionName: 'admin' },
      {},
      'AMBIENT_WARN_ROUTE_PARENT_NOT_FOUND',
      'parent Service shop/reviews has no port named "admin" (sectionName)',
    ],
    [
      'sectionName and port disagree',
      { ...PARENT, sectionName: 'grpc', port: 9080 },
      {},
      'AMBIENT_WARN_ROUTE_PARENT_NOT_FOUND',
      'parent Service shop/reviews port "grpc" is 9090, not 9080: sectionName and port must name the same port',
    ],
    [
      'consumer route',
      { ...PARENT, namespace: 'shop' },
      { namespace: 'client' },
      'AMBIENT_WARN_ROUTE_CONSUMER_ROUTE',
      "a route in namespace client for Service shop/reviews (a consumer route) is not applied: the waypoint applies routes from the Service's namespace or its own namespace",
    ],
  ]
  for (const [name, parent, metadata, code, message] of cases) {
    const tbl = table([httpRoute('r', [ruleTo([])], metadata, [parent])])
    const ns = (metadata['namespace'] as string | undefined) ?? 'shop'
    t.same(tbl.problems, [{ kind: 'HTTPRoute', policy: `${ns}/r`, field: 'spec.parentRefs[0]', code, message }], name)
    t.equal(route(tbl, get('/')), 'default', `${name}: not bound`)
  }
  const toShop = { backendRefs: [{ name: 'v1', namespace: 'shop', port: 9080 }] }
  const consumer = table([httpRoute('r', [toShop], { namespace: 'mesh' }, [{ ...PARENT, namespace: 'shop' }])], { waypointNamespace: 'mesh' })
  t.same([route(consumer, get('/')), consumer.problems], ['mesh/r#0', []], "a route in the waypoint's own namespace applies (as Istio)")
})

t.test('decisions', async (t) => {
  const noRoute = routeRequest(table([]), REVIEWS, get('/a?b'))
  t.same(noRoute, {
    kind: 'forward',
    route: null,
    rule: null,
    backends: [{ kind: 'service', namespace: 'shop', name: 'reviews', port: 9080, weight: 1, filters: [] }],
    request: get('/a?b'),
    responseHeaders: null,
    mirrors: [],
    timeouts: { requestMs: null, backendRequestMs: null },
    retry: null,
  })
  t.same(routeRequest(table([httpRoute('r', [ruleTo([{ path: { value: '/api' } }])])]), REVIEWS, get('/web')), {
    kind: 'not-found',
    status: 404,
    route: null,
    rule: null,
  })

  const full = table([
    httpRoute('r', [
      {
        matches: [{ path: { value: '/old' } }],
        filters: [
          { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 }, percent: 10 } },
          {
            type: 'RequestHeaderModifier',
            requestHeaderModifier: { set: [{ name: 'x-env', value: 'prod' }], add: [{ name: 'x-tag', value: 'b' }], remove: ['x-secret'] },
          },
          { type: 'URLRewrite', urlRewrite: { hostname: 'reviews.internal', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } } },
          { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 } } },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-served-by', value: 'waypoint' }] } },
        ],
        backendRefs: [
          { name: 'v1', port: 9080, weight: 3 },
          { name: 'v2', port: 9080, weight: 0 },
          { name: 'v3', port: 9080 },
        ],
        timeouts: { request: '10s', backendRequest: '2s' },
        retry: { attempts: 3, codes: [503], backoff: '25ms' },
      },
    ]),
  ])
  const original = get('/old/item?id=1', { headers: { 'x-secret': 's', 'x-tag': 'a' } })
  const rewritten = { method: 'GET', path: '/new/item?id=1', host: 'reviews.internal', headers: { 'x-tag': ['a', 'b'], 'x-env': 'prod' } }
  t.same(routeRequest(full, REVIEWS, original), {
    kind: 'forward',
    route: { namespace: 'shop', name: 'r' },
    rule: 0,
    backends: [
      { kind: 'service', namespace: 'shop', name: 'v1', port: 9080, weight: 3, filters: [] },
      { kind: 'service', namespace: 'shop', name: 'v3', port: 9080, weight: 1, filters: [] },
    ],
    request: rewritten,
    responseHeaders: { set: [{ name: 'x-served-by', value: 'waypoint' }], add: [], remove: [] },
    mirrors: [
      { backend: { namespace: 'shop', name: 'shadow', port: 80 }, fraction: { numerator: 10, denominator: 100 }, request: original },
      { backend: { namespace: 'shop', name: 'shadow', port: 80 }, fraction: { numerator: 100, denominator: 100 }, request: rewritten },
    ],
    timeouts: { requestMs: 10_000, backendRequestMs: 2_000 },
    retry: { attempts: 3, codes: [503], backoffMs: 25 },
  })

  const redirect = table([
    httpRoute('r', [
      {
        matches: [{ path: { value: '/cayenne' } }],
        filters: [
          {
            type: 'RequestRedirect',
            requestRedirect: { scheme: 'https', statusCode: 301, path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/paprika' } },
          },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-moved', value: 'yes' }] } },
        ],
      },
    ]),
  ])
  t.same(routeRequest(redirect, REVIEWS, get('/cayenne/pinch?x=1', { host: 'redirect.example' })), {
    kind: 'redirect',
    status: 301,
    location: 'https://redirect.example/paprika/pinch?x=1',
    responseHeaders: { set: [], add: [{ name: 'x-moved', value: 'yes' }], remove: [] },
    route: { namespace: 'shop', name: 'r' },
    rule: 0,
  })
  const plainRedirect = table([httpRoute('r', [{ filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'example.org' } }] }])])
  const d = routeRequest(plainRedirect, REVIEWS, get('/a', { host: 'reviews:9080' }))
  t.same(
    d.kind === 'redirect' ? [d.status, d.location] : d.kind,
    [302, 'http://example.org:9080/a'],
    'no scheme: the Service port the request was sent to, kept in Location',
  )
})

t.test('500s: unsupported filters, no backends, invalid backends', async (t) => {
  const error = (rules: unknown[], options: Obj = {}): unknown => {
    const d = routeRequest(table([httpRoute('r', rules)], options), REVIEWS, get('/'))
    return d.kind === 'error' ? [d.status, d.reason, d.route, d.rule] : d.kind
  }
  const r = { namespace: 'shop', name: 'r' }
  t.same(
    error([{ filters: [{ type: 'CORS', cors: { allowOrigins: ['*'] } }], backendRefs: [{ name: 'v1', port: 9080 }] }]),
    [500, "filter spec.rules[0].filters[0] (CORS) is not implemented by ambient's waypoint", r, 0],
    'unsupported filter: never skipped',
  )
  t.same(error([{}]), [500, 'the rule has no backendRefs', r, 0], 'no backendRefs')
  t.same(error([{ backendRefs: [{ name: 'v1', port: 9080, weight: 0 }] }]), [500, 'every backendRef of the rule has weight 0', r, 0], 'only weight 0')
  t.same(
    error([
      {
        backendRefs: [
          { name: 'gone', port: 9080 },
          { group: 'example.com', kind: 'Bucket', name: 'b' },
        ],
      },
    ]),
    [
      500,
      'backend spec.rules[0].backendRefs[0]: Service shop/gone not found (BackendNotFound); backend spec.rules[0].backendRefs[1]: kind Bucket in group "example.com" is not supported (InvalidKind): only Services are',
      r,
      0,
    ],
    'every backend invalid',
  )
  t.same(
    error([{ backendRefs: [{ name: 'v1', port: 9080, filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x.io', kind: 'F', name: 'f' } }] }] }]),
    [500, "filter spec.rules[0].backendRefs[0].filters[0] (ExtensionRef) is not implemented by ambient's waypoint", r, 0],
    'a backend with an unsupported filter',
  )
})

t.test('backend validity', async (t) => {
  const backends = (refs: unknown[], options: Obj = {}) => {
    const tbl = table([httpRoute('r', [{ backendRefs: refs }])], options)
    const d = routeRequest(tbl, REVIEWS, get('/'))
    return { backends: d.kind === 'forward' ? d.backends : d.kind, problems: tbl.problems.map((p) => [p.field, p.code, p.message]) }
  }
  const ok = { name: 'v1', port: 9080 }
  const OK = { kind: 'service', namespace: 'shop', name: 'v1', port: 9080, weight: 1, filters: [] }
  const cases: ReadonlyArray<readonly [string, Obj, Obj, string]> = [
    ['unknown Service', { name: 'gone', port: 80 }, {}, 'Service shop/gone not found (BackendNotFound)'],
    ['port not on the Service', { name: 'v2', port: 8080 }, {}, 'Service shop/v2 has no port 8080 (BackendNotFound)'],
    [
      'not a Service',
      { group: 'multicluster.x-k8s.io', kind: 'ServiceImport', name: 'v1', port: 9080 },
      {},
      'kind ServiceImport in group "multicluster.x-k8s.io" is not supported (InvalidKind): only Services are',
    ],
    [
      'another namespace, when not allowed',
      { name: 'ext', namespace: 'other', port: 80 },
      { allowCrossNamespaceBackends: false },
      'Service other/ext is in another namespace and cross-namespace backends are not allowed here (RefNotPermitted)',
    ],
  ]
  for (const [name, ref, options, reason] of cases) {
    t.same(
      backends([ok, { ...ref, weight: 2 }], options),
      {
        backends: [
          OK,
          {
            kind: 'invalid',
            weight: 2,
            reason: `backend spec.rules[0].backendRefs[1]: ${reason}`,
            ref: { kind: ref['kind'] ?? 'Service', namespace: ref['namespace'] ?? 'shop', name: ref['name'], port: ref['port'] },
          },
        ],
        problems: [['spec.rules[0].backendRefs[1]', 'AMBIENT_WARN_ROUTE_INVALID_BACKEND', `${reason}; requests for this backend (weight 2) are answered 500`]],
      },
      name,
    )
  }
  t.same(
    backends([{ name: 'ext', namespace: 'other', port: 80 }]),
    { backends: [{ kind: 'service', namespace: 'other', name: 'ext', port: 80, weight: 1, filters: [] }], problems: [] },
    'another namespace is allowed by default (GEP-1294: no ReferenceGrant for mesh routes)',
  )
  t.same(
    backends([ok, { name: 'gone', port: 80, weight: 0 }]),
    {
      backends: [OK],
      problems: [
        [
          'spec.rules[0].backendRefs[1]',
          'AMBIENT_WARN_ROUTE_INVALID_BACKEND',
          'Service shop/gone not found (BackendNotFound); it has weight 0 and gets no requests',
        ],
      ],
    },
    'an invalid backend of weight 0 is reported but gets no traffic',
  )
  const mirror = table([
    httpRoute('r', [{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'gone', port: 80 } } }], backendRefs: [ok] }]),
  ])
  const d = routeRequest(mirror, REVIEWS, get('/'))
  t.same(d.kind === 'forward' ? d.mirrors : d.kind, [], 'a mirror to an invalid backend is dropped')
  t.same(
    mirror.problems.map((p) => [p.field, p.message]),
    [['spec.rules[0].filters[0].requestMirror.backendRef', 'Service shop/gone not found (BackendNotFound); the mirror is dropped']],
  )
})
