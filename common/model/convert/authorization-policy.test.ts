import t from 'tap'
import { type Match, match } from '../authorization.js'
import { type AuthorizationConversion, convertAuthorizationPolicy, stringMatch } from './authorization-policy.js'

const ROOT = 'istio-system'
type Obj = Record<string, unknown>
const ap = (spec: Obj, namespace = 'app', extra: Obj = {}): Obj => ({ kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace, ...extra }, spec })
const convert = (o: unknown): AuthorizationConversion => convertAuthorizationPolicy(o, { rootNamespace: ROOT })
function converted(o: unknown) {
  const r = convert(o)
  if (r.kind !== 'converted') throw new Error(`expected converted, got ${r.kind}: ${r.kind === 'invalid' ? r.error.message : ''}`)
  return r
}
/** The single Match of the single Rules of the single group. */
const onlyMatch = (spec: Obj): Match => converted(ap(spec)).policy.authorization.groups[0]!.rules[0]!.matches[0]!

t.test('scope', async (t) => {
  const cases: ReadonlyArray<readonly [string, Obj, string, string]> = [
    ['no selector', {}, 'app', 'NAMESPACE'],
    ['root namespace, no selector', {}, ROOT, 'GLOBAL'],
    ['selector', { selector: { matchLabels: { app: 'web' } } }, 'app', 'WORKLOAD_SELECTOR'],
    ['root namespace with selector', { selector: { matchLabels: { app: 'web' } } }, ROOT, 'WORKLOAD_SELECTOR'],
  ]
  for (const [name, spec, ns, scope] of cases) t.equal(converted(ap(spec, ns)).policy.authorization.scope, scope, name)
  const custom = convertAuthorizationPolicy(ap({}, 'mesh-root'), { rootNamespace: 'mesh-root' })
  t.equal(custom.kind === 'converted' ? custom.policy.authorization.scope : custom.kind, 'GLOBAL', 'configured root namespace')
  t.equal(converted(ap({}, 'mesh-root')).policy.authorization.scope, 'NAMESPACE', 'root namespace is a parameter')
})

t.test('string forms', async (t) => {
  t.same(stringMatch('*'), { kind: 'presence' })
  t.same(stringMatch('*.example'), { kind: 'suffix', value: '.example' })
  t.same(stringMatch('cluster.local/ns/a/*'), { kind: 'prefix', value: 'cluster.local/ns/a/' })
  t.same(stringMatch('exact'), { kind: 'exact', value: 'exact' })
})

t.test('from, to and when fields', async (t) => {
  const from = (source: Obj): Obj => ({ rules: [{ from: [{ source }] }] })
  const when = (key: string, values: string[], notValues: string[] = []): Obj => ({ rules: [{ when: [{ key, values, notValues }] }] })
  const td = 'cluster.local/ns/a/sa/b'
  const cases: ReadonlyArray<readonly [string, Obj, Partial<Match>]> = [
    ['principals', from({ principals: [td] }), { principals: [{ kind: 'exact', value: td }] }],
    ['notPrincipals', from({ notPrincipals: ['*'] }), { notPrincipals: [{ kind: 'presence' }] }],
    ['namespaces', from({ namespaces: ['a*'] }), { namespaces: [{ kind: 'prefix', value: 'a' }] }],
    ['notNamespaces', from({ notNamespaces: ['*-dev'] }), { notNamespaces: [{ kind: 'suffix', value: '-dev' }] }],
    [
      'ipBlocks',
      from({ ipBlocks: ['10.0.0.0/8', '192.0.2.1'] }),
      {
        sourceIps: [
          { address: '10.0.0.0', length: 8 },
          { address: '192.0.2.1', length: 32 },
        ],
      },
    ],
    ['notIpBlocks', from({ notIpBlocks: ['fd00::/8'] }), { notSourceIps: [{ address: 'fd00::', length: 8 }] }],
    [
      'serviceAccounts',
      from({ serviceAccounts: ['sleep', 'other/curl'] }),
      {
        serviceAccounts: [
          { namespace: 'app', serviceAccount: 'sleep' },
          { namespace: 'other', serviceAccount: 'curl' },
        ],
      },
    ],
    ['notServiceAccounts', from({ notServiceAccounts: ['x'] }), { notServiceAccounts: [{ namespace: 'app', serviceAccount: 'x' }] }],
    ['ports', { rules: [{ to: [{ operation: { ports: ['80', 8080] } }] }] }, { destinationPorts: [80, 8080] }],
    ['notPorts', { rules: [{ to: [{ operation: { notPorts: ['22'] } }] }] }, { notDestinationPorts: [22] }],
    [
      'when source.ip',
      when('source.ip', ['10.0.0.1'], ['10.0.0.2']),
      { sourceIps: [{ address: '10.0.0.1', length: 32 }], notSourceIps: [{ address: '10.0.0.2', length: 32 }] },
    ],
    [
      'when source.namespace',
      when('source.namespace', ['a'], ['b']),
      { namespaces: [{ kind: 'exact', value: 'a' }], notNamespaces: [{ kind: 'exact', value: 'b' }] },
    ],
    ['when source.principal', when('source.principal', ['*'], []), { principals: [{ kind: 'presence' }] }],
    ['when destination.ip', when('destination.ip', ['10.1.0.0/16'], []), { destinationIps: [{ address: '10.1.0.0', length: 16 }] }],
    ['when destination.port', when('destination.port', ['80'], ['81']), { destinationPorts: [80], notDestinationPorts: [81] }],
  ]
  for (const [name, spec, want] of cases) t.same(onlyMatch(spec), match(want), name)
})

t.test('rule shapes and empty semantics', async (t) => {
  const groups = (spec: Obj) => converted(ap(spec)).policy.authorization.groups
  t.same(groups({}), [], 'no rules: no groups (an ALLOW that matches nothing)')
  t.same(groups({ rules: [{}] }), [{ rules: [] }], 'rules [{}]: one group without rules (matches all)')
  const g = groups({
    rules: [
      {
        from: [{ source: { namespaces: ['a'] } }, { source: { namespaces: ['b'] } }],
        to: [{ operation: { ports: ['80'] } }],
        when: [{ key: 'source.ip', values: ['10.0.0.1'] }],
      },
    ],
  })
  t.equal(g.length, 1)
  t.same(
    g[0]!.rules.map((r) => r.matches.length),
    [1, 2, 1],
    'to, from (two sources OR-ed), one when',
  )
  t.equal(converted(ap({ action: 'DENY', rules: [{}] })).policy.authorization.action, 'DENY')
  t.equal(converted(ap({}, 'app', { annotations: { 'istio.io/dry-run': 'true' } })).policy.authorization.dryRun, true)
  const bad = converted(ap({}, 'app', { annotations: { 'istio.io/dry-run': 'yes' } }))
  t.same([bad.policy.authorization.dryRun, bad.warnings[0]?.code], [false, 'AMBIENT_WARN_POLICY_DRY_RUN_VALUE'])
})

t.test('L7 attributes', async (t) => {
  const cases: ReadonlyArray<readonly [string, Obj, number, readonly string[]]> = [
    ['ALLOW methods: rule dropped', { rules: [{ to: [{ operation: { methods: ['GET'], ports: ['80'] } }] }] }, 0, ['spec.rules[0].to[0].operation.methods']],
    [
      'ALLOW requestPrincipals: rule dropped',
      { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }, {}] },
      1,
      ['spec.rules[0].from[0].source.requestPrincipals'],
    ],
    [
      'ALLOW when request.headers: rule dropped',
      { rules: [{ when: [{ key: 'request.headers[x-user]', values: ['a'] }] }] },
      0,
      ['spec.rules[0].when[0][key=request.headers[x-user]]'],
    ],
    [
      'ALLOW remoteIpBlocks + notPaths',
      { rules: [{ from: [{ source: { remoteIpBlocks: ['1.2.3.4'] } }], to: [{ operation: { notPaths: ['/x'] } }] }] },
      0,
      ['spec.rules[0].to[0].operation.notPaths', 'spec.rules[0].from[0].source.remoteIpBlocks'],
    ],
  ]
  for (const [name, spec, groupCount, fields] of cases) {
    const r = converted(ap(spec))
    t.equal(r.policy.authorization.groups.length, groupCount, `${name}: groups`)
    t.same(
      r.warnings.map((w) => w.field),
      fields,
      `${name}: warnings name the field`,
    )
    t.ok(
      r.warnings.every((w) => w.policy.name === 'p' && w.code === 'AMBIENT_WARN_POLICY_L7_ATTRIBUTE'),
      `${name}: warnings name the policy`,
    )
  }
  const deny = converted(ap({ action: 'DENY', rules: [{ to: [{ operation: { methods: ['GET'], ports: ['80'] } }] }] }))
  t.same(deny.policy.authorization.groups, [{ rules: [{ matches: [match({ destinationPorts: [80] })] }] }], 'DENY keeps the L4 part')
  t.equal(deny.warnings.length, 1)
  const noop = converted(ap({ action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }))
  t.same(noop.policy.authorization.groups, [{ rules: [{ matches: [match({})] }] }], 'DENY keeps an empty match (never matches)')
  t.match(noop.warnings.map((w) => w.message).join('\n'), /no effect/, 'no-effect DENY is warned')
  const tdw = converted(ap({ rules: [{ from: [{ source: { trustDomains: ['td'], namespaces: ['a'] } }] }] }))
  t.same(
    tdw.warnings.map((w) => [w.code, w.field]),
    [['AMBIENT_WARN_POLICY_IGNORED_FIELD', 'spec.rules[0].from[0].source.trustDomains']],
  )
  const sp = converted(ap({ rules: [{ from: [{ source: { principals: ['spiffe://cluster.local/ns/a/sa/b'] } }] }] }))
  t.equal(sp.warnings[0]?.code, 'AMBIENT_WARN_POLICY_SPIFFE_PREFIX')
})

t.test('not enforced at L4', async (t) => {
  const cases: ReadonlyArray<readonly [string, Obj, string, string]> = [
    ['targetRefs', { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }], rules: [{}] }, 'target-refs', 'spec.targetRefs'],
    ['targetRef', { targetRef: { kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' } }, 'target-refs', 'spec.targetRef'],
    ['CUSTOM', { action: 'CUSTOM', provider: { name: 'ext' }, rules: [{}] }, 'unsupported-action', 'spec.action'],
    ['AUDIT', { action: 'AUDIT', rules: [{}] }, 'unsupported-action', 'spec.action'],
  ]
  for (const [name, spec, reason, field] of cases) {
    const r = convert(ap(spec))
    t.same(r.kind === 'ignored' ? [r.reason, r.warnings.map((w) => w.field)] : r.kind, [reason, [field]], name)
  }
  const empty = converted(ap({ selector: {} }))
  t.equal(empty.warnings[0]?.code, 'AMBIENT_WARN_POLICY_EMPTY_SELECTOR')
})

t.test('malformed policies are reported by name and field', async (t) => {
  const cases: ReadonlyArray<readonly [string, unknown, string]> = [
    ['not an object', 'nope', '(object)'],
    ['no name', { kind: 'AuthorizationPolicy', metadata: {}, spec: {} }, 'metadata.name'],
    ['bad action', ap({ action: 'MAYBE' }), 'spec.action'],
    ['DENY without rules', ap({ action: 'DENY' }), 'spec.rules'],
    ['bad port', ap({ rules: [{ to: [{ operation: { ports: ['http'] } }] }] }), 'spec.rules[0].to[0].operation.ports[0]'],
    ['port out of range', ap({ rules: [{ to: [{ operation: { notPorts: ['70000'] } }] }] }), 'spec.rules[0].to[0].operation.notPorts[0]'],
    ['bad ip', ap({ rules: [{ from: [{ source: { ipBlocks: ['10.0.0.300'] } }] }] }), 'spec.rules[0].from[0].source.ipBlocks[0]'],
    ['bad cidr', ap({ rules: [{ from: [{ source: { notIpBlocks: ['10.0.0.0/33'] } }] }] }), 'spec.rules[0].from[0].source.notIpBlocks[0]'],
    ['empty value', ap({ rules: [{ from: [{ source: { principals: [''] } }] }] }), 'spec.rules[0].from[0].source.principals[0]'],
    ['unknown source field', ap({ rules: [{ from: [{ source: { principal: ['x'] } }] }] }), 'spec.rules[0].from[0].source.principal'],
    ['empty source', ap({ rules: [{ from: [{ source: {} }] }] }), 'spec.rules[0].from[0].source'],
    ['empty from', ap({ rules: [{ from: [] }] }), 'spec.rules[0].from'],
    [
      'serviceAccounts with namespaces',
      ap({ rules: [{ from: [{ source: { namespaces: ['a'], serviceAccounts: ['b'] } }] }] }),
      'spec.rules[0].from[0].source.serviceAccounts',
    ],
    ['serviceAccount wildcard', ap({ rules: [{ from: [{ source: { serviceAccounts: ['a/*'] } }] }] }), 'spec.rules[0].from[0].source.serviceAccounts[0]'],
    ['unknown when key', ap({ rules: [{ when: [{ key: 'source.color', values: ['red'] }] }] }), 'spec.rules[0].when[0].key'],
    ['destination.labels key', ap({ rules: [{ when: [{ key: 'destination.labels[app]', values: ['x'] }] }] }), 'spec.rules[0].when[0].key'],
    ['when without values', ap({ rules: [{ when: [{ key: 'source.ip' }] }] }), 'spec.rules[0].when[0]'],
    ['selector and targetRefs', ap({ selector: { matchLabels: { a: 'b' } }, targetRefs: [{ name: 'w' }] }), 'spec.selector'],
    ['rules not a list', ap({ rules: { from: [] } }), 'spec.rules'],
  ]
  for (const [name, obj, field] of cases) {
    const r = convert(obj)
    t.same(r.kind === 'invalid' ? [r.error.field, r.error.code.startsWith('AMBIENT_ERR_POLICY_')] : r.kind, [field, true], name)
    if (r.kind === 'invalid' && name !== 'not an object' && name !== 'no name')
      t.match(r.error.message, /^AuthorizationPolicy app\/p: /, `${name}: message names the policy`)
  }
})

t.test('a value that is not an object is rejected naming (object) as the field, the value cut short', async (t) => {
  // Found by test/fuzz/manifests.test.ts: the field was empty and a huge string was echoed whole.
  for (const value of ['x'.repeat(10_000), [], 7, null]) {
    const r = convert(value)
    if (r.kind !== 'invalid') return t.fail(`expected invalid, got ${r.kind}`)
    t.equal(r.error.code, 'AMBIENT_ERR_POLICY_NOT_AN_OBJECT')
    t.equal(r.error.field, '(object)')
    t.ok(r.error.message.length < 200, `message is short (${r.error.message.length})`)
  }
})
