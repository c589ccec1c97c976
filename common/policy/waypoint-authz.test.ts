import t, { type Test } from 'tap'
import { parseAllDocuments } from 'yaml'
import { convertWaypointAuthorizationPolicy, convertWaypointPolicies } from '../model/convert/waypoint-authorization.js'
import type { WaypointAuthorization } from '../model/waypoint-authorization.js'
import { compileGroups, groupsMatch } from './matcher.js'
import { normalizePath } from './path-normalize.js'
import {
  type L7Decision,
  type L7Request,
  L7_FIELDS,
  WaypointPolicyIndex,
  authorizeL7,
  compileWaypointPolicies,
  identityNamespaces,
  policiesFor,
  prepareL7,
  remoteAddress,
} from './waypoint-authz.js'

const ROOT = 'istio-system'
type Obj = Record<string, unknown>
const GW = { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }

/** A converted policy (on the app/waypoint Gateway unless targetRefs are given). */
function pol(spec: Obj, name = 'p', namespace = 'app', annotations: Obj = {}): WaypointAuthorization {
  const r = convertWaypointAuthorizationPolicy(
    { kind: 'AuthorizationPolicy', metadata: { name, namespace, annotations }, spec: { targetRefs: [GW], ...spec } },
    { rootNamespace: ROOT },
  )
  if (r.kind !== 'converted') throw new Error(`${name}: ${r.kind === 'invalid' ? r.error.message : r.reason}`)
  return r.policy
}

const REQUEST: L7Request = {
  peerIdentity: 'spiffe://cluster.local/ns/frontend/sa/web',
  sourceIp: '10.1.0.5',
  destinationIp: '10.96.0.10',
  destinationPort: 8080,
  method: 'GET',
  path: '/api/v1/items?page=2',
  host: 'reviews.app.svc.cluster.local:8080',
  headers: { 'x-env': 'prod', 'x-multi': ['a', 'b'], 'x-empty': '', host: 'reviews.app.svc.cluster.local:8080' },
}
const req = (over: Partial<L7Request> = {}): L7Request => ({ ...REQUEST, ...over })
const decide = (policies: readonly WaypointAuthorization[], r: L7Request = REQUEST): L7Decision => authorizeL7(compileWaypointPolicies(policies), r)
/** Whether one ALLOW rule matches the request. */
const matches = (rule: Obj, r: L7Request = REQUEST): boolean => decide([pol({ rules: [rule] })], r).code === 'allow-policy'
const from = (source: Obj): Obj => ({ from: [{ source }] })
const to = (operation: Obj): Obj => ({ to: [{ operation }] })
const when = (key: string, values: string[], notValues: string[] = []): Obj => ({
  when: [{ key, ...(values.length ? { values } : {}), ...(notValues.length ? { notValues } : {}) }],
})
const plaintext = req({ peerIdentity: null })

type Case = readonly [string, Obj, boolean, L7Request?]

function table(t: Test, cases: readonly Case[]): void {
  for (const [name, rule, want, r] of cases) t.equal(matches(rule, r ?? REQUEST), want, name)
}

t.test('from.source: identity fields, their not forms and the string forms', async (t) => {
  table(t, [
    ['principal exact', from({ principals: ['cluster.local/ns/frontend/sa/web'] }), true],
    ['principal exact, other', from({ principals: ['cluster.local/ns/frontend/sa/api'] }), false],
    ['principal prefix', from({ principals: ['cluster.local/ns/frontend/*'] }), true],
    ['principal prefix, other', from({ principals: ['cluster.local/ns/back*'] }), false],
    ['principal suffix', from({ principals: ['*/sa/web'] }), true],
    ['principal suffix, other', from({ principals: ['*/sa/api'] }), false],
    ['principal presence', from({ principals: ['*'] }), true],
    ['principal presence, no identity', from({ principals: ['*'] }), false, plaintext],
    ['principal with spiffe:// never matches', from({ principals: ['spiffe://cluster.local/ns/frontend/sa/web'] }), false],
    ['principals OR-ed', from({ principals: ['x', 'cluster.local/ns/frontend/sa/web'] }), true],
    ['notPrincipals', from({ notPrincipals: ['cluster.local/ns/frontend/sa/web'] }), false],
    ['notPrincipals, other', from({ notPrincipals: ['cluster.local/ns/frontend/sa/api'] }), true],
    ['notPrincipals presence, no identity', from({ notPrincipals: ['*'] }), true, plaintext],
    ['notPrincipals presence', from({ notPrincipals: ['*'] }), false],
    ['namespace exact', from({ namespaces: ['frontend'] }), true],
    ['namespace exact, other', from({ namespaces: ['backend'] }), false],
    ['namespace prefix', from({ namespaces: ['front*'] }), true],
    ['namespace suffix', from({ namespaces: ['*end'] }), true],
    ['namespace suffix, other', from({ namespaces: ['*-prod'] }), false],
    ['namespace presence', from({ namespaces: ['*'] }), true],
    ['namespace, no identity', from({ namespaces: ['*'] }), false, plaintext],
    ['notNamespaces', from({ notNamespaces: ['frontend'] }), false],
    ['notNamespaces, other', from({ notNamespaces: ['backend'] }), true],
    ['notNamespaces, no identity', from({ notNamespaces: ['frontend'] }), true, plaintext],
    // Istio's regex .*/ns/.*a/.* also matches the "/sa" segment (warned by the converter)
    ['namespace "*a" matches any identity, as in Istio', from({ namespaces: ['*a'] }), true, req({ peerIdentity: 'spiffe://td/ns/x/sa/y' })],
    ['serviceAccounts ns/sa', from({ serviceAccounts: ['frontend/web'] }), true],
    ['serviceAccounts sa in the policy namespace (app)', from({ serviceAccounts: ['web'] }), false],
    [
      'serviceAccounts sa in the policy namespace, matching',
      from({ serviceAccounts: ['web'] }),
      true,
      req({ peerIdentity: 'spiffe://cluster.local/ns/app/sa/web' }),
    ],
    ['serviceAccounts is not a prefix match', from({ serviceAccounts: ['frontend/we'] }), false],
    ['serviceAccounts, no identity', from({ serviceAccounts: ['frontend/web'] }), false, plaintext],
    ['notServiceAccounts', from({ notServiceAccounts: ['frontend/web'] }), false],
    ['notServiceAccounts, other', from({ notServiceAccounts: ['frontend/api'] }), true],
    ['trustDomains exact', from({ trustDomains: ['cluster.local'] }), true],
    ['trustDomains exact is not a prefix', from({ trustDomains: ['cluster'] }), false],
    ['trustDomains prefix', from({ trustDomains: ['cluster.*'] }), true],
    ['trustDomains suffix', from({ trustDomains: ['*.local'] }), true],
    ['trustDomains suffix, other', from({ trustDomains: ['*.example'] }), false],
    ['trustDomains presence', from({ trustDomains: ['*'] }), true],
    ['trustDomains, no identity', from({ trustDomains: ['*'] }), false, plaintext],
    ['notTrustDomains', from({ notTrustDomains: ['cluster.local'] }), false],
    ['notTrustDomains, no identity', from({ notTrustDomains: ['cluster.local'] }), true, plaintext],
  ])
})

t.test('from.source: addresses and JWT', async (t) => {
  const xff = (value: string | readonly string[]) => req({ headers: { ...REQUEST.headers, 'x-forwarded-for': value } })
  table(t, [
    ['ipBlocks cidr', from({ ipBlocks: ['10.1.0.0/16'] }), true],
    ['ipBlocks single', from({ ipBlocks: ['10.1.0.5'] }), true],
    ['ipBlocks other', from({ ipBlocks: ['10.2.0.0/16'] }), false],
    ['notIpBlocks', from({ notIpBlocks: ['10.1.0.0/16'] }), false],
    ['notIpBlocks other', from({ notIpBlocks: ['10.2.0.0/16'] }), true],
    ['ipBlocks IPv6', from({ ipBlocks: ['fd00::/8'] }), true, req({ sourceIp: 'fd00::5' })],
    ['ipBlocks IPv6 against IPv4', from({ ipBlocks: ['::/0'] }), false],
    ['remoteIpBlocks without XFF: the source', from({ remoteIpBlocks: ['10.1.0.5'] }), true],
    ['remoteIpBlocks: the last XFF address', from({ remoteIpBlocks: ['198.51.100.1'] }), true, xff('203.0.113.7, 198.51.100.1')],
    ['remoteIpBlocks: not the first XFF address', from({ remoteIpBlocks: ['203.0.113.7'] }), false, xff('203.0.113.7, 198.51.100.1')],
    ['remoteIpBlocks: XFF sent twice', from({ remoteIpBlocks: ['198.51.100.2'] }), true, xff(['203.0.113.7', '198.51.100.2'])],
    ['remoteIpBlocks: garbage XFF falls back to the source', from({ remoteIpBlocks: ['10.1.0.5'] }), true, xff('unknown')],
    ['notRemoteIpBlocks', from({ notRemoteIpBlocks: ['198.51.100.1'] }), false, xff('198.51.100.1')],
    ['ipBlocks ignore XFF', from({ ipBlocks: ['198.51.100.1'] }), false, xff('198.51.100.1')],
    ['requestPrincipals never match (no JWT)', from({ requestPrincipals: ['*'] }), false],
    ['notRequestPrincipals always match (no JWT)', from({ notRequestPrincipals: ['*'] }), true],
    ['fields AND-ed', from({ ipBlocks: ['10.1.0.0/16'], namespaces: ['backend'] }), false],
    ['sources OR-ed', { from: [{ source: { namespaces: ['backend'] } }, { source: { ipBlocks: ['10.1.0.0/16'] } }] }, true],
  ])
  t.equal(remoteAddress(xff('192.0.2.1, 198.51.100.1'), 1), '192.0.2.1', 'one trusted hop: the second from the right')
  t.equal(remoteAddress(xff('198.51.100.1'), 1), REQUEST.sourceIp, 'fewer addresses than hops: the source')
  t.equal(remoteAddress(xff(' 2001:db8::1 '), 0), '2001:db8::1', 'whitespace trimmed')
  const hop = authorizeL7(compileWaypointPolicies([pol({ rules: [from({ remoteIpBlocks: ['192.0.2.1'] })] })]), xff('192.0.2.1, 198.51.100.1'), {
    xffNumTrustedHops: 1,
  })
  t.equal(hop.code, 'allow-policy', 'xffNumTrustedHops option')
})

t.test('to.operation', async (t) => {
  table(t, [
    ['hosts exact, case-insensitive', to({ hosts: ['REVIEWS.app.svc.cluster.local:8080'] }), true],
    ['hosts: the port is not stripped', to({ hosts: ['reviews.app.svc.cluster.local'] }), false],
    ['hosts prefix', to({ hosts: ['Reviews.*'] }), true],
    ['hosts suffix', to({ hosts: ['*:8080'] }), true],
    ['hosts suffix, other', to({ hosts: ['*.example.com'] }), false],
    ['hosts presence', to({ hosts: ['*'] }), true],
    ['notHosts', to({ notHosts: ['reviews.*'] }), false],
    ['notHosts other', to({ notHosts: ['ratings.*'] }), true],
    ['ports', to({ ports: ['8080'] }), true],
    ['ports other', to({ ports: ['9080'] }), false],
    ['notPorts', to({ notPorts: ['8080'] }), false],
    ['notPorts other', to({ notPorts: ['22'] }), true],
    ['methods exact', to({ methods: ['GET'] }), true],
    ['methods are case-sensitive', to({ methods: ['get'] }), false],
    ['methods prefix', to({ methods: ['G*'] }), true],
    ['methods suffix', to({ methods: ['*ET'] }), true],
    ['methods presence', to({ methods: ['*'] }), true],
    ['notMethods', to({ notMethods: ['GET', 'HEAD'] }), false],
    ['notMethods other', to({ notMethods: ['DELETE'] }), true],
    ['paths exact, query not matched', to({ paths: ['/api/v1/items'] }), true],
    ['paths exact with the query never matches', to({ paths: ['/api/v1/items?page=2'] }), false],
    ['paths prefix', to({ paths: ['/api/*'] }), true],
    ['paths suffix', to({ paths: ['*/items'] }), true],
    ['paths are case-sensitive', to({ paths: ['/API/*'] }), false],
    ['paths presence', to({ paths: ['*'] }), true],
    ['paths template {*}', to({ paths: ['/api/v1/{*}'] }), true],
    ['paths template {*} is one segment', to({ paths: ['/api/{*}'] }), false],
    ['paths template {**}', to({ paths: ['/api/{**}'] }), true],
    ['paths template in the middle', to({ paths: ['/{*}/v1/items'] }), true],
    ['paths against the normalized path', to({ paths: ['/api/v1/items'] }), true, req({ path: '/api/./v2/..\\v1/%69tems#x' })],
    ['paths: %2F is not a slash', to({ paths: ['/api/v1/items'] }), false, req({ path: '/api%2Fv1/items' })],
    ['notPaths', to({ notPaths: ['/api/*'] }), false],
    ['notPaths other', to({ notPaths: ['/admin/*'] }), true],
    ['notPaths after normalization', to({ notPaths: ['/admin/*'] }), false, req({ path: '/public/../admin/x' })],
    ['operation fields AND-ed', to({ methods: ['GET'], ports: ['9080'] }), false],
    ['operations OR-ed', { to: [{ operation: { ports: ['9080'] } }, { operation: { methods: ['GET'] } }] }, true],
  ])
})

t.test('when conditions', async (t) => {
  table(t, [
    ['header exact, name case-insensitive', when('request.headers[X-Env]', ['prod']), true],
    ['header values are case-sensitive', when('request.headers[x-env]', ['Prod']), false],
    ['header prefix', when('request.headers[x-env]', ['pr*']), true],
    ['header suffix', when('request.headers[x-env]', ['*od']), true],
    ['header presence', when('request.headers[x-env]', ['*']), true],
    ['header presence with an empty value', when('request.headers[x-empty]', ['*']), true],
    ['header absent', when('request.headers[x-none]', ['*']), false],
    ['header absent, notValues', when('request.headers[x-none]', [], ['prod']), true],
    ['header notValues', when('request.headers[x-env]', [], ['prod']), false],
    ['header sent twice: values joined with ","', when('request.headers[x-multi]', ['a,b']), true],
    ['header sent twice: one value alone does not match', when('request.headers[x-multi]', ['b']), false],
    [':authority pseudo-header', when('request.headers[:authority]', ['reviews.*']), true],
    [':method pseudo-header', when('request.headers[:method]', ['GET']), true],
    [
      ':path pseudo-header has the normalized path and query',
      when('request.headers[:path]', ['/api/v1/items?page=2']),
      true,
      req({ path: '/x/../api/v1/items?page=2' }),
    ],
    ['host is never a header (it is :authority)', when('request.headers[host]', ['*']), false],
    ['source.ip', when('source.ip', ['10.1.0.0/24']), true],
    ['source.ip notValues', when('source.ip', [], ['10.1.0.5']), false],
    ['remote.ip', when('remote.ip', ['10.1.0.5']), true],
    ['destination.ip', when('destination.ip', ['10.96.0.0/12']), true],
    ['destination.ip other', when('destination.ip', ['10.0.0.0/16']), false],
    ['destination.port', when('destination.port', ['8080']), true],
    ['destination.port notValues', when('destination.port', [], ['8080']), false],
    ['source.namespace', when('source.namespace', ['frontend']), true],
    ['source.namespace notValues', when('source.namespace', [], ['frontend']), false],
    ['source.principal', when('source.principal', ['cluster.local/ns/frontend/sa/web']), true],
    ['source.principal notValues, no identity', when('source.principal', [], ['*']), true, plaintext],
    ['source.serviceAccount', when('source.serviceAccount', ['frontend/web']), true],
    ['source.trustDomain', when('source.trustDomain', ['cluster.local']), true],
    ['request.auth.principal never present', when('request.auth.principal', ['*']), false],
    ['request.auth.claims notValues pass', when('request.auth.claims[groups]', [], ['admin']), true],
    ['connection.sni never present', when('connection.sni', ['*']), false],
    ['connection.sni notValues pass', when('connection.sni', [], ['*']), true],
    ['experimental metadata never present', when('experimental.envoy.filters.a[b]', ['x']), false],
    ['values and notValues together', when('destination.port', ['8080'], ['8080']), false],
    [
      'conditions AND-ed',
      {
        when: [
          { key: 'destination.port', values: ['8080'] },
          { key: 'source.namespace', values: ['backend'] },
        ],
      },
      false,
    ],
    [
      'from, to and when AND-ed',
      { from: [{ source: { namespaces: ['frontend'] } }], to: [{ operation: { methods: ['GET'] } }], when: [{ key: 'destination.port', values: ['8080'] }] },
      true,
    ],
  ])
})

t.test('decisions: CUSTOM, AUDIT, DENY, ALLOW, dry-run', async (t) => {
  const allowAll = pol({ rules: [{}] }, 'allow-all')
  const allowOther = pol({ rules: [from({ namespaces: ['backend'] })] }, 'allow-backend')
  const denyGet = pol({ action: 'DENY', rules: [to({ methods: ['GET'] })] }, 'deny-get')
  const denyPost = pol({ action: 'DENY', rules: [to({ methods: ['POST'] })] }, 'deny-post')
  const audit = pol({ action: 'AUDIT', rules: [to({ paths: ['/api/*'] })] }, 'audit-api')
  const custom = pol({ action: 'CUSTOM', provider: { name: 'opa' }, rules: [to({ paths: ['/api/*'] })] }, 'ext')
  const customOther = pol({ action: 'CUSTOM', provider: { name: 'opa' }, rules: [to({ paths: ['/admin/*'] })] }, 'ext-admin')
  const dry = (spec: Obj, name: string) => pol(spec, name, 'app', { 'istio.io/dry-run': 'true' })
  type Row = readonly [string, readonly WaypointAuthorization[], { allowed: boolean; code: string; policy: string | null; rule: number | null }]
  const rows: readonly Row[] = [
    ['no policy: allowed', [], { allowed: true, code: 'no-allow-policies', policy: null, rule: null }],
    ['ALLOW matches', [allowAll], { allowed: true, code: 'allow-policy', policy: 'app/allow-all', rule: 0 }],
    ['ALLOW applies, none matches: denied', [allowOther], { allowed: false, code: 'no-allow-match', policy: null, rule: null }],
    ['ALLOW without rules: denies everything', [pol({}, 'allow-none')], { allowed: false, code: 'no-allow-match', policy: null, rule: null }],
    ['DENY before ALLOW', [allowAll, denyGet], { allowed: false, code: 'deny-policy', policy: 'app/deny-get', rule: 0 }],
    ['DENY not matching, no ALLOW', [denyPost], { allowed: true, code: 'no-allow-policies', policy: null, rule: null }],
    ['DENY not matching, ALLOW matching', [denyPost, allowAll], { allowed: true, code: 'allow-policy', policy: 'app/allow-all', rule: 0 }],
    ['AUDIT never decides', [audit], { allowed: true, code: 'no-allow-policies', policy: null, rule: null }],
    ['CUSTOM matching: denied (no external authorizer)', [custom, allowAll], { allowed: false, code: 'custom-unsupported', policy: 'app/ext', rule: 0 }],
    ['CUSTOM before DENY', [denyGet, custom], { allowed: false, code: 'custom-unsupported', policy: 'app/ext', rule: 0 }],
    ['CUSTOM not matching', [customOther, allowAll], { allowed: true, code: 'allow-policy', policy: 'app/allow-all', rule: 0 }],
    [
      'dry-run DENY is not enforced',
      [dry({ action: 'DENY', rules: [{}] }, 'dry-deny')],
      { allowed: true, code: 'no-allow-policies', policy: null, rule: null },
    ],
    [
      'dry-run ALLOW alone does not deny',
      [dry({ rules: [from({ namespaces: ['backend'] })] }, 'dry-allow')],
      { allowed: true, code: 'no-allow-policies', policy: null, rule: null },
    ],
  ]
  for (const [name, policies, want] of rows) {
    const d = decide(policies)
    const policy = d.policy === null ? null : `${d.policy.namespace}/${d.policy.name}`
    t.same({ allowed: d.allowed, code: d.code, policy, rule: d.rule }, want, name)
    t.equal(d.denyStatus, d.allowed ? null : 403, `${name}: status`)
  }

  const withAudit = decide([audit, allowAll, pol({ action: 'AUDIT', rules: [to({ paths: ['/other'] })] }, 'audit-other')])
  t.same(withAudit.audit, [{ policy: { namespace: 'app', name: 'audit-api' }, action: 'AUDIT', rule: 0 }], 'matching AUDIT policies reported')
  t.same(decide([custom, audit]).audit, [], 'a CUSTOM denial ends the evaluation (AUDIT runs after it)')
  t.match(decide([custom]).reason, /"opa"/, 'the reason names the provider')

  const dryDeny = decide([dry({ action: 'DENY', rules: [to({ methods: ['GET'] })] }, 'dry-deny'), allowAll])
  t.same([dryDeny.allowed, dryDeny.dryRun.map((m) => `${m.policy.name}/${m.action}/${m.rule}`)], [true, ['dry-deny/DENY/0']], 'dry-run DENY reported')
  t.same([dryDeny.dryRunDecision?.allowed, dryDeny.dryRunDecision?.code, dryDeny.dryRunDecision?.policy?.name], [false, 'deny-policy', 'dry-deny'])

  const dryAllowMiss = decide([dry({ rules: [from({ namespaces: ['backend'] })] }, 'dry-allow')])
  t.same([dryAllowMiss.allowed, dryAllowMiss.dryRun, dryAllowMiss.dryRunDecision?.code], [true, [], 'no-allow-match'], 'a dry-run ALLOW that would deny')

  const dryAllowHit = decide([allowOther, dry({ rules: [{}] }, 'dry-allow')])
  t.same(
    [dryAllowHit.allowed, dryAllowHit.code, dryAllowHit.dryRunDecision?.allowed, dryAllowHit.dryRunDecision?.policy?.name],
    [false, 'no-allow-match', true, 'dry-allow'],
    'a dry-run ALLOW that would allow',
  )
  const enforcedDeny = decide([denyGet, dry({ rules: [{}] }, 'dry-allow'), dry({ action: 'DENY', rules: [{}] }, 'a-dry-deny')])
  t.same(
    [enforcedDeny.code, enforcedDeny.dryRun.map((m) => m.policy.name), enforcedDeny.dryRunDecision?.policy?.name],
    ['deny-policy', ['a-dry-deny'], 'a-dry-deny'],
    'after an enforced DENY only the DENY dry-runs are evaluated; the first DENY in Envoy order decides the dry-run outcome',
  )
  t.equal(decide([allowAll]).dryRunDecision, null, 'no dry-run policy: no dry-run decision')
})

t.test("decisions: Envoy's order names the deciding policy and rule", async (t) => {
  const deny = (name: string, namespace = 'app') => pol({ action: 'DENY', rules: [{}] }, name, namespace)
  const first = (policies: readonly WaypointAuthorization[]) => {
    const d = decide(policies)
    return `${d.policy?.namespace}/${d.policy?.name}#${d.rule}`
  }
  t.equal(first([deny('b'), deny('a')]), 'app/a#0', 'by name, not by input order')
  t.equal(first([deny('b', 'app'), deny('a', 'zzz')]), 'app/b#0', 'namespace first')
  t.equal(first([deny('ab'), deny('a-b')]), 'app/a-b#0', 'as text: "-" sorts before "b"')
  const rules = Array.from({ length: 11 }, (_, i) => (i === 2 || i === 10 ? {} : to({ ports: ['1'] })))
  t.equal(first([pol({ action: 'DENY', rules }, 'many')]), 'app/many#10', 'rule[10] sorts before rule[2], as in Envoy')
  t.equal(first([pol({ action: 'DENY', rules: [to({ ports: ['1'] }), {}] }, 'second')]), 'app/second#1', 'the rule that matched')
  const a = decide([deny('b'), deny('a'), pol({ rules: [{}] }, 'x')])
  const b = decide([pol({ rules: [{}] }, 'x'), deny('a'), deny('b')])
  t.same(a, b, 'the decision does not depend on the order of the input')
})

t.test('paths Envoy refuses are refused before any policy', async (t) => {
  const bad = decide([], req({ path: '/api/%00' }))
  t.same([bad.allowed, bad.code, bad.denyStatus, bad.path], [false, 'bad-path', 400, null])
  t.match(bad.reason, /%00/)
  t.same(decide([], req({ path: 'api' })).denyStatus, 404, 'not relative: 404')
  t.equal(decide([], req({ path: '/a/./b/../c?x=/../y#frag' })).path, '/a/c?x=/../y', 'the path to forward')
  const merged = authorizeL7(compileWaypointPolicies([pol({ rules: [to({ paths: ['/a/b'] })] })]), req({ path: '//a//b' }), { mergeSlashes: true })
  t.same([merged.code, merged.path], ['allow-policy', '/a/b'], 'MERGE_SLASHES option')
  t.equal(decide([pol({ rules: [to({ paths: ['/a/b'] })] })], req({ path: '//a//b' })).code, 'no-allow-match', 'BASE does not merge')
})

t.test('which policies apply: Gateway, Service, GatewayClass', async (t) => {
  const target = (kind: string, name: string, group = kind === 'Service' ? '' : 'gateway.networking.k8s.io') => ({ group, kind, name })
  const on = (name: string, namespace: string, ...targetRefs: Obj[]) => pol({ targetRefs, rules: [{}] }, name, namespace)
  const all = [
    on('gw', 'app', target('Gateway', 'waypoint')),
    on('other-gw', 'app', target('Gateway', 'other')),
    on('gw-other-ns', 'team', target('Gateway', 'waypoint')),
    on('reviews', 'app', target('Service', 'reviews')),
    on('ratings', 'app', target('Service', 'ratings')),
    on('reviews-other-ns', 'team', target('Service', 'reviews')),
    on('both', 'app', target('Gateway', 'waypoint'), target('Service', 'reviews')),
    on('class', ROOT, target('GatewayClass', 'istio-waypoint')),
  ]
  const index = WaypointPolicyIndex.build(all)
  const names = (gateway: string, service: string | null) =>
    index
      .policiesFor({ gateway: { namespace: 'app', name: gateway }, service: service === null ? null : { namespace: 'app', name: service } })
      .policies.map((p) => `${p.namespace}/${p.name}`)
  t.same(names('waypoint', 'reviews'), ['app/both', 'app/gw', 'app/reviews', `${ROOT}/class`], 'Gateway, Service and GatewayClass policies, each once')
  t.same(names('waypoint', null), ['app/both', 'app/gw', `${ROOT}/class`], 'addressed to a workload: the Gateway only')
  t.same(names('other', 'ratings'), ['app/other-gw', 'app/ratings', `${ROOT}/class`], 'another waypoint and Service')
  t.same(names('none', null), [`${ROOT}/class`], 'a waypoint nothing targets: the GatewayClass policies')
  const key = { gateway: { namespace: 'app', name: 'waypoint' }, service: { namespace: 'app', name: 'reviews' } }
  t.equal(index.policiesFor(key), policiesFor(index, { ...key }), 'computed once per (gateway, service)')
  t.equal(index.size, all.length)

  const denyReviews = pol({ targetRefs: [target('Service', 'reviews')], action: 'DENY', rules: [{}] }, 'deny-reviews')
  const gwIndex = WaypointPolicyIndex.build([denyReviews])
  const through = (service: string | null) =>
    authorizeL7(
      gwIndex.policiesFor({ gateway: { namespace: 'app', name: 'waypoint' }, service: service === null ? null : { namespace: 'app', name: service } }),
      REQUEST,
    ).allowed
  t.same([through('reviews'), through('ratings'), through(null)], [false, true, true], 'a Service policy applies only to requests addressed to it')
})

t.test("Istio's YAML, unchanged, end to end", async (t) => {
  // The shape of Istio's ambient L7 example (docs/ambient/getting-started/enforce-auth-policies).
  const yaml = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-viewer
  namespace: default
spec:
  targetRefs:
  - kind: Service
    group: ""
    name: productpage
  action: ALLOW
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/default/sa/sleep
    to:
    - operation:
        methods: ["GET"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-admin
  namespace: default
spec:
  targetRefs:
  - kind: Gateway
    group: gateway.networking.k8s.io
    name: waypoint
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/admin", "/admin/*"]
`
  const converted = convertWaypointPolicies(
    parseAllDocuments(yaml).map((d) => d.toJS()),
    ROOT,
  )
  t.same([converted.policies.length, converted.invalid, converted.warnings], [2, [], []])
  const index = WaypointPolicyIndex.build(converted.policies)
  const policies = index.policiesFor({ gateway: { namespace: 'default', name: 'waypoint' }, service: { namespace: 'default', name: 'productpage' } })
  const base = { ...REQUEST, host: 'productpage:9080', destinationPort: 9080, headers: {} }
  const sleep = 'spiffe://cluster.local/ns/default/sa/sleep'
  const cases: ReadonlyArray<readonly [string, Partial<L7Request>, string]> = [
    ['sleep GET', { peerIdentity: sleep, method: 'GET', path: '/productpage' }, 'allow-policy'],
    ['sleep DELETE', { peerIdentity: sleep, method: 'DELETE', path: '/productpage' }, 'no-allow-match'],
    ['other GET', { peerIdentity: 'spiffe://cluster.local/ns/default/sa/curl', method: 'GET', path: '/productpage' }, 'no-allow-match'],
    ['sleep GET /admin', { peerIdentity: sleep, method: 'GET', path: '/admin' }, 'deny-policy'],
    ['sleep GET /admin through a dot segment', { peerIdentity: sleep, method: 'GET', path: '/static/../admin/x' }, 'deny-policy'],
    ['sleep GET /ADMIN is another path', { peerIdentity: sleep, method: 'GET', path: '/ADMIN' }, 'allow-policy'],
  ]
  for (const [name, over, code] of cases) t.equal(authorizeL7(policies, { ...base, ...over }).code, code, name)
})

t.test('the source-namespace index never changes a decision (against a linear scan)', async (t) => {
  t.same(identityNamespaces('spiffe://td/ns/a/sa/b'), ['a'])
  t.same(identityNamespaces('spiffe://td/ns/a/ns/b/sa/c'), ['a', 'b'], 'every /ns/X/ of the id')
  t.same(identityNamespaces(null), [])
  // A seeded generator (mulberry32), so a failure reproduces.
  let seed = 0x5eed
  const rand = (): number => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
  const NS = ['a', 'b', 'c', 'ns']
  const source = (): Obj =>
    pick<() => Obj>([
      () => ({ namespaces: [pick(NS), ...(rand() < 0.3 ? [pick(NS)] : [])] }),
      () => ({ namespaces: [`${pick(NS)}*`] }),
      () => ({ notNamespaces: [pick(NS)], namespaces: [pick(NS)] }),
      () => ({ serviceAccounts: [`${pick(NS)}/${pick(['x', 'y'])}`] }),
      () => ({ principals: [`td/ns/${pick(NS)}/sa/${pick(['x', 'y'])}`] }),
      () => ({ principals: [`td/ns/${pick(NS)}/*`] }),
      () => ({ principals: ['*/sa/x'] }),
      () => ({ principals: [`td/ns/${pick(['a', 'n'])}*`] }),
      () => ({ ipBlocks: [pick(['10.0.0.0/8', '192.0.2.0/24'])] }),
    ])()
  const rule = (): Obj => {
    const r: Obj = {}
    if (rand() < 0.7) r['from'] = [{ source: source() }, ...(rand() < 0.3 ? [{ source: source() }] : [])]
    if (rand() < 0.5) r['to'] = [{ operation: pick([{ methods: ['GET'] }, { paths: ['/a/*'] }, { paths: ['/b'] }, { ports: ['80'] }]) }]
    if (rand() < 0.2) r['when'] = [{ key: 'source.namespace', values: [pick(NS)] }]
    return Object.keys(r).length === 0 ? { from: [{ source: source() }] } : r
  }
  const policies: WaypointAuthorization[] = []
  for (let i = 0; i < 80; i++) {
    const action = pick(['ALLOW', 'ALLOW', 'ALLOW', 'DENY', 'AUDIT', 'CUSTOM'])
    const spec: Obj = { action, rules: Array.from({ length: 1 + Math.floor(rand() * 3) }, rule) }
    // DENY only on /b, so that the other paths reach the ALLOW stage
    if (action === 'DENY') spec['rules'] = (spec['rules'] as Obj[]).map((r) => ({ ...r, to: [{ operation: { paths: ['/b'] } }] }))
    if (action === 'CUSTOM') spec['provider'] = { name: 'x' }
    if (action === 'CUSTOM') spec['rules'] = [{ to: [{ operation: { paths: ['/custom'] } }] }]
    const dry = (action === 'ALLOW' || action === 'DENY') && rand() < 0.15 ? { 'istio.io/dry-run': 'true' } : {}
    policies.push(pol(spec, `p${i}`, pick(['app', 'app', 'zz']), dry))
  }
  const compiled = compileWaypointPolicies(policies)
  const requests: L7Request[] = []
  for (let i = 0; i < 400; i++) {
    const id = pick([null, `spiffe://td/ns/${pick(NS)}/sa/${pick(['x', 'y'])}`, `spiffe://td/ns/${pick(NS)}/ns/${pick(NS)}/sa/x`, 'spiffe://td/other'])
    // one request in ten from outside everything, so that some reach no ALLOW policy
    if (i % 10 === 0) requests.push(req({ peerIdentity: 'spiffe://td/other', method: 'PUT', path: '/z', destinationPort: 1, sourceIp: '203.0.113.1' }))
    requests.push(
      req({
        peerIdentity: id,
        method: pick(['GET', 'POST']),
        path: pick(['/a/1', '/b', '/custom', '/custom/x']),
        destinationPort: pick([80, 8080]),
        sourceIp: pick(['10.1.0.5', '192.0.2.9']),
      }),
    )
  }
  /** The decision recomputed by scanning every rule of every policy, without the index. */
  function linear(r: L7Request) {
    const n = normalizePath(r.path)
    if (!n.ok) throw new Error(n.reason)
    const facts = prepareL7(r, n.pathOnly, n.path)
    const rows = policies
      .flatMap((p) =>
        p.groups.length === 0
          ? [{ p, rule: 0, hit: false }]
          : p.groups.map((g, rule) => ({ p, rule, hit: groupsMatch(compileGroups([g], { fields: L7_FIELDS }), facts) })),
      )
      .map((x) => ({ ...x, id: `ns[${x.p.namespace}]-policy[${x.p.name}]-rule[${x.rule}]` }))
      .sort((x, y) => (x.id < y.id ? -1 : 1))
    const hits = (f: (p: WaypointAuthorization) => boolean) => rows.filter((x) => x.hit && f(x.p))
    const name = (x: { p: WaypointAuthorization; rule: number } | undefined) => (x === undefined ? null : `${x.p.namespace}/${x.p.name}#${x.rule}`)
    const perPolicy = (xs: typeof rows) => xs.filter((x, i) => xs.findIndex((y) => y.p === x.p) === i).map(name)
    const custom = hits((p) => p.action === 'CUSTOM')[0]
    if (custom !== undefined) return { code: 'custom-unsupported', by: name(custom), audit: [] as (string | null)[] }
    const audit = perPolicy(hits((p) => p.action === 'AUDIT'))
    const deny = hits((p) => p.action === 'DENY' && !p.dryRun)[0]
    if (deny !== undefined) return { code: 'deny-policy', by: name(deny), audit }
    const allow = rows.filter((x) => x.p.action === 'ALLOW' && !x.p.dryRun)
    const allowHit = allow.find((x) => x.hit)
    return { code: allow.length === 0 ? 'no-allow-policies' : allowHit ? 'allow-policy' : 'no-allow-match', by: name(allowHit), audit }
  }
  let mismatches = 0
  const codes = new Set<string>()
  for (const r of requests) {
    const d = authorizeL7(compiled, r)
    const got = {
      code: d.code,
      by: d.policy === null ? null : `${d.policy.namespace}/${d.policy.name}#${d.rule}`,
      audit: d.audit.map((m) => `${m.policy.namespace}/${m.policy.name}#${m.rule}`),
    }
    const want = linear(r)
    codes.add(want.code)
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      mismatches++
      if (mismatches <= 3) t.same(got, want, `request ${JSON.stringify(r)}`)
    }
  }
  t.equal(mismatches, 0, `${requests.length} random requests against ${policies.length} random policies`)
  t.same([...codes].sort(), ['allow-policy', 'custom-unsupported', 'deny-policy', 'no-allow-match'], 'the sample reaches every outcome')
})
