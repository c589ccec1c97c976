import t from 'tap'
import type { HttpRoute, HttpRouteFilter, HttpRouteRule } from '../http-route.js'
import { type HttpRouteConversion, convertHttpRoute, convertHttpRoutes } from './http-route.js'
import { parseGatewayDuration } from './http-route-filters.js'

type Obj = Record<string, unknown>
const SVC = { group: '', kind: 'Service', name: 'reviews' }
const route = (spec: Obj, extra: Obj = {}): Obj => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name: 'r', namespace: 'shop', ...extra },
  spec,
})
/** A route on the reviews Service with the given rules. */
const withRules = (rules: unknown): Obj => route({ parentRefs: [SVC], rules })
function converted(o: unknown): Extract<HttpRouteConversion, { kind: 'converted' }> {
  const r = convertHttpRoute(o)
  if (r.kind !== 'converted') throw new Error(`expected converted, got ${r.kind}: ${r.kind === 'invalid' ? r.error.message : JSON.stringify(r.warnings)}`)
  return r
}
const onlyRule = (rules: unknown): HttpRouteRule => converted(withRules(rules)).route.rules[0]!
const filtersOf = (filters: unknown[], rest: Obj = { backendRefs: [{ name: 'v1', port: 9080 }] }): readonly HttpRouteFilter[] =>
  onlyRule([{ filters, ...rest }]).filters
const BACKEND_V1 = { group: '', kind: 'Service', namespace: 'shop', name: 'v1', port: 9080, field: 'spec.rules[0].backendRefs[0]' }

t.test('a route, with every default filled in', async (t) => {
  const r = converted(route({ parentRefs: [SVC], rules: [{ backendRefs: [{ name: 'v1', port: 9080 }] }] }, { creationTimestamp: '2024-05-01T10:00:00Z' }))
  const expected: HttpRoute = {
    namespace: 'shop',
    name: 'r',
    creationTimestamp: '2024-05-01T10:00:00Z',
    parents: [{ namespace: 'shop', name: 'reviews', port: null, sectionName: null, field: 'spec.parentRefs[0]' }],
    rules: [
      {
        name: null,
        matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [], method: null }],
        filters: [],
        backendRefs: [{ backend: BACKEND_V1, weight: 1, filters: [] }],
        timeouts: null,
        retry: null,
      },
    ],
  }
  t.same(r.route, expected)
  t.same(r.warnings, [])
  const noRules = converted(route({ parentRefs: [SVC] })).route.rules
  t.same(
    noRules,
    [
      {
        name: null,
        matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [], method: null }],
        filters: [],
        backendRefs: [],
        timeouts: null,
        retry: null,
      },
    ],
    'no rules: the default rule',
  )
  t.same(onlyRule([{ matches: [] }]).matches, noRules[0]!.matches, 'matches: [] is the default match')
  t.same(onlyRule([{ matches: [{ path: { value: '/x' } }] }]).matches[0]!.path, { type: 'PathPrefix', value: '/x' }, 'path type defaults to PathPrefix')
  t.same(onlyRule([{ matches: [{ path: { type: 'Exact' } }] }]).matches[0]!.path, { type: 'Exact', value: '/' }, 'path value defaults to /')
  const v1beta1 = converted({ ...withRules([{}]), apiVersion: 'gateway.networking.k8s.io/v1beta1' })
  t.equal(v1beta1.route.name, 'r', 'v1beta1 is read like v1')
  t.equal(converted({ ...withRules([{}]), apiVersion: undefined }).route.name, 'r', 'a list item without apiVersion is accepted')
  t.equal(converted({ ...withRules([{}]), metadata: { name: 'r' } }).route.namespace, 'default', 'no namespace: default')
  t.equal(convertHttpRoute(withRules([{}]), { namespace: 'other' }).kind === 'converted' && converted(withRules([{}])).route.namespace, 'shop')
  const overridden = convertHttpRoute(withRules([{}]), { namespace: 'other' })
  t.same(
    overridden.kind === 'converted' ? [overridden.route.namespace, overridden.route.parents[0]!.namespace] : overridden.kind,
    ['other', 'other'],
    'namespace option overrides',
  )
})

t.test('parentRefs', async (t) => {
  const parents = (refs: unknown[]) => converted(route({ parentRefs: refs })).route.parents
  t.same(parents([{ ...SVC, port: 9080 }]), [{ namespace: 'shop', name: 'reviews', port: 9080, sectionName: null, field: 'spec.parentRefs[0]' }], 'port')
  t.same(
    parents([{ ...SVC, sectionName: 'http' }]),
    [{ namespace: 'shop', name: 'reviews', port: null, sectionName: 'http', field: 'spec.parentRefs[0]' }],
    'sectionName is the port name',
  )
  t.same(parents([{ ...SVC, sectionName: '' }])[0]!.sectionName, null, 'empty sectionName is unset')
  t.same(
    parents([{ ...SVC, group: 'core', namespace: 'other' }]),
    [{ namespace: 'other', name: 'reviews', port: null, sectionName: null, field: 'spec.parentRefs[0]' }],
    'group core, other namespace',
  )
  const mixed = converted(route({ parentRefs: [{ name: 'ingress' }, SVC] }))
  t.same(
    mixed.route.parents.map((p) => p.field),
    ['spec.parentRefs[1]'],
    'the Gateway parent is left out',
  )
  t.same(
    mixed.warnings.map((w) => [w.code, w.field, w.message]),
    [
      [
        'AMBIENT_WARN_ROUTE_PARENT_IGNORED',
        'spec.parentRefs[0]',
        "parent Gateway shop/ingress is ignored: ambient's waypoint applies routes attached to a Service (GAMMA)",
      ],
    ],
  )
  const cases: ReadonlyArray<readonly [string, Obj, RegExp]> = [
    [
      'Service without group: ""',
      { kind: 'Service', name: 'reviews' },
      /kind Service in group gateway\.networking\.k8s\.io, not a core Service .*write group: ""/,
    ],
    [
      'ServiceEntry',
      { group: 'networking.istio.io', kind: 'ServiceEntry', name: 'ext' },
      /parent ServiceEntry shop\/ext \(group "networking.istio.io"\) is ignored/,
    ],
    ['explicit Gateway', { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw', namespace: 'infra' }, /parent Gateway infra\/gw is ignored/],
  ]
  for (const [name, ref, message] of cases) {
    const r = convertHttpRoute(route({ parentRefs: [ref] }))
    t.equal(r.kind, 'ignored', `${name}: no Service parent, the route is ignored`)
    if (r.kind === 'ignored') {
      t.same(
        [r.reason, r.warnings.length, r.warnings[0]!.code, r.warnings[0]!.field],
        ['no-service-parent', 1, 'AMBIENT_WARN_ROUTE_PARENT_IGNORED', 'spec.parentRefs[0]'],
        name,
      )
      t.match(r.warnings[0]!.message, message, `${name}: message`)
    }
  }
  t.equal(convertHttpRoute(route({})).kind, 'ignored', 'no parentRefs at all')
  t.same(
    parents([
      { ...SVC, port: 80 },
      { ...SVC, port: 8080 },
    ]).map((p) => p.port),
    [80, 8080],
    'the same Service twice with different ports',
  )
})

t.test('hostnames are ignored for Service parents, with a warning', async (t) => {
  const r = converted(route({ parentRefs: [SVC], hostnames: ['reviews.shop.svc.cluster.local', '*.example.com'] }))
  t.same(
    r.warnings.map((w) => [w.code, w.field]),
    [['AMBIENT_WARN_ROUTE_HOSTNAMES_IGNORED', 'spec.hostnames']],
  )
  t.match(r.warnings[0]!.message, /GEP-1294.*Host header/)
})

t.test('matches', async (t) => {
  const m = onlyRule([
    {
      matches: [
        { path: { type: 'Exact', value: '/exact' }, method: 'POST' },
        { path: { type: 'PathPrefix', value: '/api/' } },
        { path: { type: 'RegularExpression', value: '/v[0-9]+/.*' } },
        {
          headers: [
            { name: 'X-Version', value: 'v2' },
            { type: 'RegularExpression', name: 'User-Agent', value: '.*Firefox.*' },
          ],
          queryParams: [
            { name: 'Debug', value: '1' },
            { type: 'RegularExpression', name: 'id', value: '[0-9]+' },
          ],
        },
      ],
    },
  ]).matches
  t.same(m, [
    { path: { type: 'Exact', value: '/exact' }, headers: [], queryParams: [], method: 'POST' },
    { path: { type: 'PathPrefix', value: '/api/' }, headers: [], queryParams: [], method: null },
    { path: { type: 'RegularExpression', value: '/v[0-9]+/.*' }, headers: [], queryParams: [], method: null },
    {
      path: { type: 'PathPrefix', value: '/' },
      headers: [
        { type: 'Exact', name: 'x-version', value: 'v2' },
        { type: 'RegularExpression', name: 'user-agent', value: '.*Firefox.*' },
      ],
      queryParams: [
        { type: 'Exact', name: 'Debug', value: '1' },
        { type: 'RegularExpression', name: 'id', value: '[0-9]+' },
      ],
      method: null,
    },
  ])
  const dup = converted(
    withRules([
      {
        matches: [
          {
            headers: [
              { name: 'x-a', value: '1' },
              { name: 'X-A', value: '2' },
            ],
            queryParams: [
              { name: 'q', value: '1' },
              { name: 'Q', value: '2' },
              { name: 'q', value: '3' },
            ],
          },
        ],
      },
    ]),
  )
  t.same(dup.route.rules[0]!.matches[0]!.headers, [{ type: 'Exact', name: 'x-a', value: '1' }], 'header names are equivalent regardless of case: first wins')
  t.same(
    dup.route.rules[0]!.matches[0]!.queryParams.map((q) => q.value),
    ['1', '2'],
    'query parameter names are case-sensitive: q and Q both kept, the second q dropped',
  )
  t.same(
    dup.warnings.map((w) => [w.code, w.field]),
    [
      ['AMBIENT_WARN_ROUTE_DUPLICATE_MATCH', 'spec.rules[0].matches[0].headers[1]'],
      ['AMBIENT_WARN_ROUTE_DUPLICATE_MATCH', 'spec.rules[0].matches[0].queryParams[2]'],
    ],
  )
})

t.test('filters', async (t) => {
  const hm = filtersOf([
    {
      type: 'RequestHeaderModifier',
      requestHeaderModifier: { set: [{ name: 'X-Set', value: 'a' }], add: [{ name: 'X-Add', value: 'b,c' }], remove: ['X-Gone'] },
    },
    { type: 'ResponseHeaderModifier', responseHeaderModifier: { remove: ['server'] } },
  ])
  t.same(hm, [
    { type: 'RequestHeaderModifier', modifier: { set: [{ name: 'x-set', value: 'a' }], add: [{ name: 'x-add', value: 'b,c' }], remove: ['x-gone'] } },
    { type: 'ResponseHeaderModifier', modifier: { set: [], add: [], remove: ['server'] } },
  ])
  const prefixRule = { matches: [{ path: { type: 'PathPrefix', value: '/old' } }] }
  t.same(
    filtersOf([{ type: 'URLRewrite', urlRewrite: { hostname: 'new.example', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } } }], {
      ...prefixRule,
      backendRefs: [{ name: 'v1', port: 9080 }],
    }),
    [{ type: 'URLRewrite', hostname: 'new.example', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } }],
  )
  t.same(filtersOf([{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/all' } } }]), [
    { type: 'URLRewrite', hostname: null, path: { type: 'ReplaceFullPath', replaceFullPath: '/all' } },
  ])
  t.same(filtersOf([{ type: 'RequestRedirect', requestRedirect: {} }], {}), [
    { type: 'RequestRedirect', scheme: null, hostname: null, path: null, port: null, statusCode: 302 },
  ])
  t.same(
    filtersOf(
      [
        {
          type: 'RequestRedirect',
          requestRedirect: {
            scheme: 'https',
            hostname: 'x.example',
            port: 8443,
            statusCode: 308,
            path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' },
          },
        },
      ],
      prefixRule,
    ),
    [
      {
        type: 'RequestRedirect',
        scheme: 'https',
        hostname: 'x.example',
        path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' },
        port: 8443,
        statusCode: 308,
      },
    ],
  )
  t.same(
    filtersOf([
      { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 } } },
      { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80, namespace: 'qa' }, percent: 25 } },
      { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 }, fraction: { numerator: 1 } } },
      { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 }, fraction: { numerator: 1, denominator: 3 } } },
    ]).map((f) => (f.type === 'RequestMirror' ? [f.backend.namespace, f.backend.field, f.fraction] : f.type)),
    [
      ['shop', 'spec.rules[0].filters[0].requestMirror.backendRef', { numerator: 100, denominator: 100 }],
      ['qa', 'spec.rules[0].filters[1].requestMirror.backendRef', { numerator: 25, denominator: 100 }],
      ['shop', 'spec.rules[0].filters[2].requestMirror.backendRef', { numerator: 1, denominator: 100 }],
      ['shop', 'spec.rules[0].filters[3].requestMirror.backendRef', { numerator: 1, denominator: 3 }],
    ],
    'mirrors: default 100%, percent, fraction with default denominator 100',
  )
})

t.test('filters the waypoint does not implement are kept as 500s and warned about', async (t) => {
  const cases: ReadonlyArray<readonly [string, Obj]> = [
    ['ExtensionRef', { type: 'ExtensionRef', extensionRef: { group: 'example.com', kind: 'Filter', name: 'f' } }],
    ['CORS', { type: 'CORS', cors: { allowOrigins: ['https://a.example'] } }],
    ['ExternalAuth', { type: 'ExternalAuth', externalAuth: { protocol: 'HTTP', backendRef: { name: 'auth', port: 80 } } }],
  ]
  for (const [type, filter] of cases) {
    const r = converted(withRules([{ filters: [filter], backendRefs: [{ name: 'v1', port: 9080 }] }]))
    t.same(r.route.rules[0]!.filters, [{ type: 'Unsupported', filterType: type, field: 'spec.rules[0].filters[0]' }], type)
    t.same(
      r.warnings.map((w) => [w.code, w.field]),
      [['AMBIENT_WARN_ROUTE_UNSUPPORTED_FILTER', 'spec.rules[0].filters[0]']],
      `${type}: warned`,
    )
    t.match(r.warnings[0]!.message, new RegExp(`${type} filter.*answered 500`), `${type}: says what happens`)
  }
  const onBackend = converted(withRules([{ backendRefs: [{ name: 'v1', port: 9080, filters: [{ type: 'RequestRedirect', requestRedirect: { port: 81 } }] }] }]))
  t.same(onBackend.route.rules[0]!.backendRefs[0]!.filters, [
    { type: 'Unsupported', filterType: 'RequestRedirect', field: 'spec.rules[0].backendRefs[0].filters[0]' },
  ])
  t.match(onBackend.warnings[0]!.message, /RequestRedirect filter here; requests sent to this backend are answered 500/)
  const host = converted(
    withRules([
      {
        filters: [
          {
            type: 'RequestHeaderModifier',
            requestHeaderModifier: {
              set: [
                { name: 'Host', value: 'x' },
                { name: 'a', value: 'b' },
              ],
            },
          },
        ],
      },
    ]),
  )
  t.same(
    host.route.rules[0]!.filters,
    [{ type: 'RequestHeaderModifier', modifier: { set: [{ name: 'a', value: 'b' }], add: [], remove: [] } }],
    'Host is not modified',
  )
  t.same(
    host.warnings.map((w) => [w.code, w.field]),
    [['AMBIENT_WARN_ROUTE_IGNORED_FIELD', 'spec.rules[0].filters[0].requestHeaderModifier.set[0]']],
  )
})

t.test('backendRefs, timeouts and retry', async (t) => {
  const rule = onlyRule([
    {
      backendRefs: [
        { name: 'v1', port: 9080, weight: 0 },
        { group: 'core', kind: 'Service', name: 'v2', namespace: 'other', port: 80, weight: 3 },
        { group: 'example.com', kind: 'Bucket', name: 'b' },
      ],
      timeouts: { request: '10s', backendRequest: '1s500ms' },
      retry: { attempts: 3, codes: [503, 429], backoff: '100ms' },
    },
  ])
  t.same(
    rule.backendRefs.map((b) => [b.backend.group, b.backend.kind, b.backend.namespace, b.backend.name, b.backend.port, b.weight]),
    [
      ['', 'Service', 'shop', 'v1', 9080, 0],
      ['', 'Service', 'other', 'v2', 80, 3],
      ['example.com', 'Bucket', 'shop', 'b', null, 1],
    ],
  )
  t.same(rule.timeouts, { requestMs: 10_000, backendRequestMs: 1_500 })
  t.same(rule.retry, { attempts: 3, codes: [503, 429], backoffMs: 100 })
  t.same(onlyRule([{ retry: {} }]).retry, { attempts: 2, codes: [], backoffMs: null }, 'attempts default to 2 (Istio)')
  t.same(onlyRule([{ retry: { attempts: 0 } }]).retry?.attempts, 0, 'attempts 0: no retries')
  t.same(
    onlyRule([{ timeouts: { request: '0s', backendRequest: '1h' } }]).timeouts,
    { requestMs: 0, backendRequestMs: 3_600_000 },
    'request 0s disables the bound',
  )
  t.same(onlyRule([{ timeouts: { backendRequest: '5s' } }]).timeouts, { requestMs: null, backendRequestMs: 5_000 })
})

t.test('GEP-2257 durations', async (t) => {
  const valid: ReadonlyArray<readonly [string, number]> = [
    ['0h', 0],
    ['0s', 0],
    ['0h0m0s', 0],
    ['1h', 3_600_000],
    ['30m', 1_800_000],
    ['10s', 10_000],
    ['500ms', 500],
    ['2h30m', 9_000_000],
    ['150m', 9_000_000],
    ['7230s', 7_230_000],
    ['1h30m10s', 5_410_000],
    ['10s30m1h', 5_410_000],
    ['100ms200ms300ms', 600],
    ['01h', 3_600_000],
    ['1ms1m', 60_001],
  ]
  for (const [text, ms] of valid) t.equal(parseGatewayDuration(text), ms, text)
  for (const text of ['1', '1m1', '1d', '1h30m10s20ms50h', '999999h', '1.5h', '-15m', '', '0', '1 s', '1H']) {
    t.equal(parseGatewayDuration(text), undefined, `invalid: ${JSON.stringify(text)}`)
  }
})

t.test('malformed routes are rejected naming the field and the value', async (t) => {
  const rule = (r: Obj): Obj => withRules([r])
  const filter = (f: Obj, r: Obj = {}): Obj => rule({ filters: [f], ...r })
  const cases: ReadonlyArray<readonly [string, unknown, string, RegExp]> = [
    ['not an object', 'nope', '(object)', /expected a HTTPRoute object/],
    ['no name', { kind: 'HTTPRoute', metadata: {}, spec: {} }, 'metadata.name', /is required/],
    ['wrong apiVersion', { ...withRules([{}]), apiVersion: 'gateway.networking.k8s.io/v1alpha1' }, 'apiVersion', /"gateway.networking.k8s.io\/v1alpha1"/],
    ['bad creationTimestamp', route({ parentRefs: [SVC] }, { creationTimestamp: 'yesterday' }), 'metadata.creationTimestamp', /"yesterday"/],
    ['no spec', { kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'shop' } }, 'spec', /is required/],
    ['unknown spec field', route({ parentRefs: [SVC], rule: [] }), 'spec.rule', /unknown field/],
    ['parent without name', route({ parentRefs: [{ group: '', kind: 'Service' }] }), 'spec.parentRefs[0].name', /is required/],
    ['parent port out of range', route({ parentRefs: [{ ...SVC, port: 70000 }] }), 'spec.parentRefs[0].port', /70000 is out of range/],
    ['parent port as text', route({ parentRefs: [{ ...SVC, port: '80' }] }), 'spec.parentRefs[0].port', /expected an integer, got "80"/],
    ['parent namespace', route({ parentRefs: [{ ...SVC, namespace: 'Shop_1' }] }), 'spec.parentRefs[0].namespace', /"Shop_1" is not a namespace name/],
    ['parent kind', route({ parentRefs: [{ ...SVC, kind: 'Ser/vice' }] }), 'spec.parentRefs[0].kind', /"Ser\/vice" is not a kind/],
    ['same parent twice', route({ parentRefs: [SVC, SVC] }), 'spec.parentRefs[1]', /same parent as spec.parentRefs\[0\]: sectionName or port must differ/],
    [
      'same parent, port on one only',
      route({ parentRefs: [SVC, { ...SVC, port: 80 }] }),
      'spec.parentRefs[1]',
      /both must set sectionName or port, the same way/,
    ],
    ['too many parents', route({ parentRefs: Array.from({ length: 33 }, (_, i) => ({ ...SVC, port: i + 1 })) }), 'spec.parentRefs', /has 33 items; at most 32/],
    ['bad hostname', route({ parentRefs: [SVC], hostnames: ['Reviews:80'] }), 'spec.hostnames[0]', /"Reviews:80" is not a hostname/],
    ['empty rules', route({ parentRefs: [SVC], rules: [] }), 'spec.rules', /must not be empty/],
    ['duplicate rule names', withRules([{ name: 'a' }, { name: 'a' }]), 'spec.rules[1].name', /"a" is already the name of spec.rules\[0\]/],
    ['unknown rule field', rule({ match: [] }), 'spec.rules[0].match', /unknown field/],
    ['path type', rule({ matches: [{ path: { type: 'Prefix', value: '/a' } }] }), 'spec.rules[0].matches[0].path.type', /"Prefix" is not a path match type/],
    ['path not absolute', rule({ matches: [{ path: { value: 'a' } }] }), 'spec.rules[0].matches[0].path.value', /"a" must be an absolute path/],
    [
      'path with //',
      rule({ matches: [{ path: { type: 'Exact', value: '/a//b' } }] }),
      'spec.rules[0].matches[0].path.value',
      /"\/a\/\/b" must not contain "\/\/"/,
    ],
    ['path with %2F', rule({ matches: [{ path: { value: '/a%2Fb' } }] }), 'spec.rules[0].matches[0].path.value', /must not contain "%2F"/],
    ['path ending /..', rule({ matches: [{ path: { value: '/a/..' } }] }), 'spec.rules[0].matches[0].path.value', /must not end with/],
    ['path with a space', rule({ matches: [{ path: { value: '/a b' } }] }), 'spec.rules[0].matches[0].path.value', /"\/a b" has characters a path cannot hold/],
    [
      'bad path regex',
      rule({ matches: [{ path: { type: 'RegularExpression', value: '/a(' } }] }),
      'spec.rules[0].matches[0].path.value',
      /"\/a\(" is not a valid regular expression/,
    ],
    ['lookahead regex', rule({ matches: [{ path: { type: 'RegularExpression', value: '/(?!admin)' } }] }), 'spec.rules[0].matches[0].path.value', /lookahead/],
    [
      'header match type',
      rule({ matches: [{ headers: [{ type: 'Prefix', name: 'a', value: 'b' }] }] }),
      'spec.rules[0].matches[0].headers[0].type',
      /"Prefix" is not a match type/,
    ],
    [
      'header name',
      rule({ matches: [{ headers: [{ name: ':authority', value: 'b' }] }] }),
      'spec.rules[0].matches[0].headers[0].name',
      /":authority" is not a header name/,
    ],
    ['header value missing', rule({ matches: [{ headers: [{ name: 'a' }] }] }), 'spec.rules[0].matches[0].headers[0].value', /is required/],
    [
      'header regex',
      rule({ matches: [{ headers: [{ type: 'RegularExpression', name: 'a', value: '(\\1)' }] }] }),
      'spec.rules[0].matches[0].headers[0].value',
      /backreferences/,
    ],
    [
      'query regex',
      rule({ matches: [{ queryParams: [{ type: 'RegularExpression', name: 'a', value: '[[:digit:]]' }] }] }),
      'spec.rules[0].matches[0].queryParams[0].value',
      /POSIX/,
    ],
    ['method', rule({ matches: [{ method: 'get' }] }), 'spec.rules[0].matches[0].method', /"get" is not a method/],
    ['too many matches', rule({ matches: Array.from({ length: 65 }, () => ({})) }), 'spec.rules[0].matches', /has 65 items; at most 64/],
    [
      'more than 128 matches in all',
      withRules([0, 1, 2].map(() => ({ matches: Array.from({ length: 60 }, () => ({})) }))),
      'spec.rules[2].matches',
      /more than 128 matches/,
    ],
    ['filter type', filter({ type: 'Rewrite' }), 'spec.rules[0].filters[0].type', /"Rewrite" is not a filter type/],
    ['filter config missing', filter({ type: 'URLRewrite' }), 'spec.rules[0].filters[0].urlRewrite', /must be set for filter type URLRewrite/],
    [
      'filter config of another type',
      filter({ type: 'URLRewrite', urlRewrite: {}, requestRedirect: {} }),
      'spec.rules[0].filters[0].requestRedirect',
      /must not be set for filter type URLRewrite/,
    ],
    [
      'repeated filter',
      rule({ filters: [0, 1].map(() => ({ type: 'RequestHeaderModifier', requestHeaderModifier: { remove: ['a'] } })) }),
      'spec.rules[0].filters[1].type',
      /RequestHeaderModifier filter cannot be repeated/,
    ],
    [
      'redirect and rewrite',
      rule({
        filters: [
          { type: 'RequestRedirect', requestRedirect: {} },
          { type: 'URLRewrite', urlRewrite: {} },
        ],
      }),
      'spec.rules[0].filters',
      /either a RequestRedirect or a URLRewrite/,
    ],
    [
      'redirect with backendRefs',
      filter({ type: 'RequestRedirect', requestRedirect: {} }, { backendRefs: [{ name: 'v1', port: 80 }] }),
      'spec.rules[0].filters',
      /must not be used together with backendRefs/,
    ],
    [
      'redirect status',
      filter({ type: 'RequestRedirect', requestRedirect: { statusCode: 304 } }),
      'spec.rules[0].filters[0].requestRedirect.statusCode',
      /304 is not a redirect status/,
    ],
    [
      'redirect scheme',
      filter({ type: 'RequestRedirect', requestRedirect: { scheme: 'ftp' } }),
      'spec.rules[0].filters[0].requestRedirect.scheme',
      /"ftp" is not a redirect scheme/,
    ],
    ['redirect port', filter({ type: 'RequestRedirect', requestRedirect: { port: 0 } }), 'spec.rules[0].filters[0].requestRedirect.port', /0 is out of range/],
    [
      'redirect hostname',
      filter({ type: 'RequestRedirect', requestRedirect: { hostname: '*.example.com' } }),
      'spec.rules[0].filters[0].requestRedirect.hostname',
      /"\*\.example\.com" is not a hostname/,
    ],
    [
      'ReplacePrefixMatch without a PathPrefix match',
      filter(
        { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/x' } } },
        { matches: [{ path: { type: 'Exact', value: '/a' } }] },
      ),
      'spec.rules[0].filters[0].urlRewrite.path.type',
      /exactly one match, of type PathPrefix/,
    ],
    [
      'ReplacePrefixMatch with two matches',
      filter({ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/x' } } }, { matches: [{}, {}] }),
      'spec.rules[0].filters[0].requestRedirect.path.type',
      /exactly one match/,
    ],
    [
      'path modifier value of the other type',
      filter({ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replacePrefixMatch: '/x' } } }),
      'spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch',
      /must not be set when type is 'ReplaceFullPath'/,
    ],
    [
      'path modifier type',
      filter({ type: 'URLRewrite', urlRewrite: { path: { type: 'Regex' } } }),
      'spec.rules[0].filters[0].urlRewrite.path.type',
      /"Regex" is not a path modifier/,
    ],
    [
      'header set twice',
      filter({ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'A', value: '1' }], remove: ['a'] } }),
      'spec.rules[0].filters[0].responseHeaderModifier.remove[0]',
      /header "a" already has an action at spec.rules\[0\].filters\[0\].responseHeaderModifier.set\[0\]/,
    ],
    [
      'header value with a newline',
      filter({ type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'a', value: 'x\r\nInjected: 1' }] } }),
      'spec.rules[0].filters[0].requestHeaderModifier.add[0].value',
      /"x\\r\\nInjected: 1" is not a valid header value/,
    ],
    [
      'mirror percent and fraction',
      filter({ type: 'RequestMirror', requestMirror: { backendRef: { name: 'm', port: 80 }, percent: 5, fraction: { numerator: 1 } } }),
      'spec.rules[0].filters[0].requestMirror.fraction',
      /only one of percent or fraction/,
    ],
    [
      'mirror fraction over 1',
      filter({ type: 'RequestMirror', requestMirror: { backendRef: { name: 'm', port: 80 }, fraction: { numerator: 3, denominator: 2 } } }),
      'spec.rules[0].filters[0].requestMirror.fraction',
      /numerator 3 must be less than or equal to denominator 2/,
    ],
    [
      'mirror percent',
      filter({ type: 'RequestMirror', requestMirror: { backendRef: { name: 'm', port: 80 }, percent: 101 } }),
      'spec.rules[0].filters[0].requestMirror.percent',
      /101 is out of range/,
    ],
    [
      'mirror backend port',
      filter({ type: 'RequestMirror', requestMirror: { backendRef: { name: 'm' } } }),
      'spec.rules[0].filters[0].requestMirror.backendRef.port',
      /is required for a Service reference/,
    ],
    ['backend without port', rule({ backendRefs: [{ name: 'v1' }] }), 'spec.rules[0].backendRefs[0].port', /is required for a Service reference/],
    [
      'backend hostname as name',
      rule({ backendRefs: [{ name: 'v1.shop.svc.cluster.local', port: 80 }] }),
      'spec.rules[0].backendRefs[0].name',
      /use the name of the Service, not its hostname/,
    ],
    [
      'backend weight',
      rule({ backendRefs: [{ name: 'v1', port: 80, weight: -1 }] }),
      'spec.rules[0].backendRefs[0].weight',
      /-1 is out of range \(0-1000000\)/,
    ],
    ['backend unknown field', rule({ backendRefs: [{ name: 'v1', port: 80, wieght: 2 }] }), 'spec.rules[0].backendRefs[0].wieght', /unknown field/],
    ['timeout', rule({ timeouts: { request: '10' } }), 'spec.rules[0].timeouts.request', /"10" is not a Gateway API duration/],
    [
      'backendRequest over request',
      rule({ timeouts: { request: '1s', backendRequest: '2s' } }),
      'spec.rules[0].timeouts.backendRequest',
      /"2s" is longer than the request timeout "1s"/,
    ],
    ['retry code', rule({ retry: { codes: [200] } }), 'spec.rules[0].retry.codes[0]', /200 is out of range \(400-599\)/],
    ['retry code twice', rule({ retry: { codes: [503, 503] } }), 'spec.rules[0].retry.codes[1]', /503 is listed twice/],
    ['retry attempts', rule({ retry: { attempts: -1 } }), 'spec.rules[0].retry.attempts', /-1 is out of range/],
    ['retry backoff', rule({ retry: { backoff: '1.5s' } }), 'spec.rules[0].retry.backoff', /"1.5s" is not a Gateway API duration/],
  ]
  for (const [name, obj, field, message] of cases) {
    const r = convertHttpRoute(obj)
    t.same(r.kind === 'invalid' ? [r.error.field, r.error.code.startsWith('AMBIENT_ERR_POLICY_')] : r.kind, [field, true], name)
    if (r.kind === 'invalid') {
      t.match(r.error.message, message, `${name}: message names the value`)
      if (name !== 'not an object' && name !== 'no name')
        t.match(r.error.message, new RegExp(`^HTTPRoute shop/r: ${field.replace(/[[\].]/g, '\\$&')}: `), `${name}: names route and field`)
    }
  }
})

t.test('convertHttpRoutes sorts a manifest list into routes, warnings, invalid and ignored', async (t) => {
  const out = convertHttpRoutes([
    withRules([{ backendRefs: [{ name: 'v1', port: 9080 }] }]),
    { kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'shop' }, spec: {} },
    route({ parentRefs: [SVC], hostnames: ['a.example'] }, { name: 'with-hostnames' }),
    route({ parentRefs: [SVC], rules: [] }, { name: 'broken' }),
    route({ parentRefs: [{ name: 'ingress' }] }, { name: 'for-gateway' }),
    route({}, { name: 'orphan' }),
  ])
  t.same(
    out.routes.map((r) => r.name),
    ['r', 'with-hostnames'],
  )
  t.same(out.warnings, [
    {
      kind: 'HTTPRoute',
      policy: 'shop/with-hostnames',
      field: 'spec.hostnames',
      code: 'AMBIENT_WARN_ROUTE_HOSTNAMES_IGNORED',
      message:
        'hostnames do not select requests for a Service parent (GAMMA, GEP-1294): the route applies to every request to the Service; match the Host header in rules[].matches[].headers instead',
    },
  ])
  t.same(
    out.invalid.map((p) => [p.policy, p.field, p.code]),
    [['shop/broken', 'spec.rules', 'AMBIENT_ERR_POLICY_BAD_VALUE']],
  )
  t.same(
    out.ignored.map((p) => [p.policy, p.field, p.code]),
    [
      ['shop/for-gateway', 'spec.parentRefs[0]', 'AMBIENT_WARN_ROUTE_PARENT_IGNORED'],
      ['shop/orphan', 'spec.parentRefs', 'AMBIENT_WARN_ROUTE_PARENT_IGNORED'],
    ],
  )
})
