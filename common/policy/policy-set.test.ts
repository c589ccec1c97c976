import t from 'tap'
import type { WorkloadAuthorization } from '../model/authorization.js'
import { convertAuthorizationPolicy } from '../model/convert/authorization-policy.js'
import { convertPeerAuthentication } from '../model/convert/peer-authentication.js'
import type { PeerAuthentication } from '../model/peer-authentication.js'
import type { ConnectionAttributes } from './fields.js'
import { type DecisionRule, evaluate } from './matcher.js'
import { PolicySet, sourceNamespaceBound } from './policy-set.js'

const ROOT = 'istio-system'

type Obj = Record<string, unknown>
function ap(namespace: string, name: string, spec: Obj, annotations?: Obj): Obj {
  return { kind: 'AuthorizationPolicy', metadata: { namespace, name, ...(annotations ? { annotations } : {}) }, spec }
}
function pa(namespace: string, name: string, spec: Obj, creationTimestamp?: string): Obj {
  return { kind: 'PeerAuthentication', metadata: { namespace, name, ...(creationTimestamp ? { creationTimestamp } : {}) }, spec }
}

function buildSet(objects: readonly Obj[], rootNamespace = ROOT): PolicySet {
  const authorizations: WorkloadAuthorization[] = []
  const peerAuthentications: PeerAuthentication[] = []
  for (const o of objects) {
    if (o['kind'] === 'PeerAuthentication') {
      const r = convertPeerAuthentication(o)
      if (r.kind !== 'converted') throw r.error
      peerAuthentications.push(r.policy)
    } else {
      const r = convertAuthorizationPolicy(o, { rootNamespace })
      if (r.kind === 'invalid') throw r.error
      if (r.kind === 'converted') authorizations.push(r.policy)
    }
  }
  return PolicySet.build({ authorizations, peerAuthentications, rootNamespace })
}

function conn(opts: { from?: string | null; ip?: string; ns?: string; labels?: Record<string, string>; port?: number }): ConnectionAttributes {
  const from = opts.from === undefined ? 'cluster.local/ns/client/sa/sleep' : opts.from
  const id = from === null ? undefined : /^([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(from)
  return {
    sourceIdentity: id === undefined || id === null ? undefined : { trustDomain: id[1]!, namespace: id[2]!, serviceAccount: id[3]! },
    sourceIp: opts.ip ?? '10.0.0.5',
    destination: { ip: '10.0.1.7', port: opts.port ?? 8080, namespace: opts.ns ?? 'app', labels: opts.labels ?? { app: 'web' } },
  }
}

interface Case {
  readonly name: string
  readonly objects: readonly Obj[]
  readonly conn: ConnectionAttributes
  readonly allowed: boolean
  readonly policy: string | null
  readonly rule: DecisionRule
}

const allowFromNs = (ns: string, name = 'allow-client', extra: Obj = {}): Obj =>
  ap(ns === '' ? 'app' : ns, name, { rules: [{ from: [{ source: { namespaces: ['client'] } }] }], ...extra })

const cases: readonly Case[] = [
  { name: 'no policies: allow', objects: [], conn: conn({}), allowed: true, policy: null, rule: 'no-allow-policies' },
  {
    name: 'ALLOW with rules [{}] allows all',
    objects: [ap('app', 'all', { rules: [{}] })],
    conn: conn({ from: null }),
    allowed: true,
    policy: 'app/all',
    rule: 'allow-policy',
  },
  { name: 'ALLOW with no rules denies all', objects: [ap('app', 'none', {})], conn: conn({}), allowed: false, policy: null, rule: 'no-allow-match' },
  { name: 'ALLOW match', objects: [allowFromNs('app')], conn: conn({}), allowed: true, policy: 'app/allow-client', rule: 'allow-policy' },
  {
    name: 'ALLOW no match',
    objects: [allowFromNs('app')],
    conn: conn({ from: 'cluster.local/ns/other/sa/x' }),
    allowed: false,
    policy: null,
    rule: 'no-allow-match',
  },
  {
    name: 'DENY over ALLOW',
    objects: [allowFromNs('app'), ap('app', 'deny-8080', { action: 'DENY', rules: [{ to: [{ operation: { ports: ['8080'] } }] }] })],
    conn: conn({}),
    allowed: false,
    policy: 'app/deny-8080',
    rule: 'deny-policy',
  },
  {
    name: 'DENY not matching leaves ALLOW',
    objects: [allowFromNs('app'), ap('app', 'deny-9090', { action: 'DENY', rules: [{ to: [{ operation: { ports: ['9090'] } }] }] })],
    conn: conn({}),
    allowed: true,
    policy: 'app/allow-client',
    rule: 'allow-policy',
  },
  {
    name: 'namespace policy of another namespace does not apply',
    objects: [ap('other', 'none', {})],
    conn: conn({}),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
  {
    name: 'root namespace without selector is global',
    objects: [ap(ROOT, 'global-none', {})],
    conn: conn({}),
    allowed: false,
    policy: null,
    rule: 'no-allow-match',
  },
  {
    name: 'global DENY beats namespace ALLOW',
    objects: [ap(ROOT, 'deny-plain', { action: 'DENY', rules: [{ from: [{ source: { notPrincipals: ['*'] } }] }] }), ap('app', 'all', { rules: [{}] })],
    conn: conn({ from: null }),
    allowed: false,
    policy: `${ROOT}/deny-plain`,
    rule: 'deny-policy',
  },
  {
    name: 'workload selector matches labels',
    objects: [ap('app', 'web-only', { selector: { matchLabels: { app: 'web' } } })],
    conn: conn({}),
    allowed: false,
    policy: null,
    rule: 'no-allow-match',
  },
  {
    name: 'workload selector not matching',
    objects: [ap('app', 'db-only', { selector: { matchLabels: { app: 'db' } } })],
    conn: conn({}),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
  {
    name: 'selector needs every label',
    objects: [ap('app', 'web-v2', { selector: { matchLabels: { app: 'web', version: 'v2' } } })],
    conn: conn({ labels: { app: 'web', version: 'v1' } }),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
  {
    name: 'root namespace selector applies in every namespace',
    objects: [ap(ROOT, 'web-everywhere', { selector: { matchLabels: { app: 'web' } } })],
    conn: conn({ ns: 'elsewhere' }),
    allowed: false,
    policy: null,
    rule: 'no-allow-match',
  },
  {
    name: 'other namespace selector does not apply',
    objects: [ap('other', 'web', { selector: { matchLabels: { app: 'web' } } })],
    conn: conn({}),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
  {
    name: 'empty selector selects nothing',
    objects: [ap('app', 'empty-sel', { selector: {} })],
    conn: conn({}),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
  {
    name: 'ALLOW in any scope allows',
    objects: [ap('app', 'ns-none', {}), ap('app', 'web-all', { selector: { matchLabels: { app: 'web' } }, rules: [{}] })],
    conn: conn({}),
    allowed: true,
    policy: 'app/web-all',
    rule: 'allow-policy',
  },
  {
    name: 'dry-run DENY is not enforced',
    objects: [ap('app', 'dry-deny', { action: 'DENY', rules: [{}] }, { 'istio.io/dry-run': 'true' })],
    conn: conn({}),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
  {
    name: 'dry-run ALLOW does not count as an ALLOW policy',
    objects: [ap('app', 'dry-none', {}, { 'istio.io/dry-run': 'true' })],
    conn: conn({}),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
  {
    name: 'ALLOW rule with L7 never matches',
    objects: [ap('app', 'get-only', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] })],
    conn: conn({}),
    allowed: false,
    policy: null,
    rule: 'no-allow-match',
  },
  {
    name: 'DENY rule with L7 beside ports denies the ports',
    objects: [ap('app', 'deny-get-8080', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['GET'], ports: ['8080'] } }] }] })],
    conn: conn({}),
    allowed: false,
    policy: 'app/deny-get-8080',
    rule: 'deny-policy',
  },
  {
    name: 'DENY rule with only L7 has no effect',
    objects: [ap('app', 'deny-get', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['GET'] } }] }] })],
    conn: conn({}),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
  {
    name: 'DENY when L7 key makes the rule a no-op',
    objects: [
      ap('app', 'deny-hdr', {
        action: 'DENY',
        rules: [{ from: [{ source: { namespaces: ['client'] } }], when: [{ key: 'request.headers[x]', values: ['1'] }] }],
      }),
    ],
    conn: conn({}),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
  {
    name: 'when source.ip',
    objects: [ap('app', 'from-net', { rules: [{ when: [{ key: 'source.ip', values: ['10.0.0.0/24'] }] }] })],
    conn: conn({ ip: '10.0.0.9' }),
    allowed: true,
    policy: 'app/from-net',
    rule: 'allow-policy',
  },
  {
    name: 'when notValues destination.port',
    objects: [ap('app', 'not-8080', { rules: [{ when: [{ key: 'destination.port', notValues: ['8080'] }] }] })],
    conn: conn({}),
    allowed: false,
    policy: null,
    rule: 'no-allow-match',
  },
  {
    name: 'serviceAccounts short form uses the policy namespace',
    objects: [
      ap('client', 'sa', { rules: [{ from: [{ source: { serviceAccounts: ['sleep'] } }] }] }),
      ap('app', 'sa', { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { serviceAccounts: ['client/sleep'] } }] }] }),
    ],
    conn: conn({}),
    allowed: true,
    policy: 'app/sa',
    rule: 'allow-policy',
  },
  {
    name: 'STRICT mesh refuses plaintext',
    objects: [pa(ROOT, 'default', { mtls: { mode: 'STRICT' } })],
    conn: conn({ from: null }),
    allowed: false,
    policy: `${ROOT}/default`,
    rule: 'mtls-strict',
  },
  {
    name: 'STRICT mesh accepts mTLS',
    objects: [pa(ROOT, 'default', { mtls: { mode: 'STRICT' } })],
    conn: conn({}),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
  {
    name: 'namespace PERMISSIVE overrides mesh STRICT',
    objects: [pa(ROOT, 'default', { mtls: { mode: 'STRICT' } }), pa('app', 'ns', { mtls: { mode: 'PERMISSIVE' } })],
    conn: conn({ from: null }),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
  {
    name: 'port-level PERMISSIVE exception under STRICT',
    objects: [pa('app', 'web', { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { '8080': { mode: 'PERMISSIVE' } } })],
    conn: conn({ from: null }),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
  {
    name: 'port-level STRICT under PERMISSIVE',
    objects: [pa('app', 'web', { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'PERMISSIVE' }, portLevelMtls: { '8080': { mode: 'STRICT' } } })],
    conn: conn({ from: null }),
    allowed: false,
    policy: 'app/web',
    rule: 'mtls-strict',
  },
  {
    name: 'DISABLE behaves as PERMISSIVE',
    objects: [pa(ROOT, 'default', { mtls: { mode: 'STRICT' } }), pa('app', 'ns', { mtls: { mode: 'DISABLE' } })],
    conn: conn({ from: null }),
    allowed: true,
    policy: null,
    rule: 'no-allow-policies',
  },
]

t.test('evaluation table', async (t) => {
  for (const c of cases) {
    const d = evaluate(buildSet(c.objects), c.conn)
    t.same(
      { allowed: d.allowed, policy: d.policy === null ? null : `${d.policy.namespace}/${d.policy.name}`, rule: d.rule },
      { allowed: c.allowed, policy: c.policy, rule: c.rule },
      c.name,
    )
  }
})

t.test('dry-run matches are reported', async (t) => {
  const set = buildSet([
    ap('app', 'dry-deny', { action: 'DENY', rules: [{}] }, { 'istio.io/dry-run': 'true' }),
    ap('app', 'dry-allow-other', { rules: [{ from: [{ source: { namespaces: ['other'] } }] }] }, { 'istio.io/dry-run': 'true' }),
  ])
  const d = evaluate(set, conn({}))
  t.same(d.dryRun, [{ policy: { namespace: 'app', name: 'dry-deny' }, action: 'DENY' }])
  t.equal(d.dryRunWouldDeny, true, 'no dry-run ALLOW matched')
  t.equal(d.allowed, true)
})

t.test('policy set indexes and caches', async (t) => {
  const objects: Obj[] = []
  for (let i = 0; i < 200; i++) objects.push(ap('app', `sel-${i}`, { selector: { matchLabels: { app: `svc-${i}` } }, rules: [{}] }))
  const set = buildSet(objects)
  t.equal(set.size, 200)
  const d = set.forDestination('app', { app: 'svc-42', other: 'x' })
  t.same(
    d.allow.map((p) => p.name),
    ['sel-42'],
  )
  t.equal(set.forDestination('app', { other: 'x', app: 'svc-42' }), d, 'same label set, same cached entry')
})

t.test('namespace index: only policies that can match the peer are scanned, same answers as a linear scan', async (t) => {
  const mk = (name: string, spec: unknown) => {
    const r = convertAuthorizationPolicy({ kind: 'AuthorizationPolicy', metadata: { namespace: 'app', name }, spec }, { rootNamespace: 'istio-system' })
    if (r.kind !== 'converted') throw new Error(`${name} did not convert`)
    return r.policy
  }
  const byNs = mk('by-ns', { rules: [{ from: [{ source: { namespaces: ['a', 'b'] } }] }] })
  const bySa = mk('by-sa', { rules: [{ from: [{ source: { serviceAccounts: ['c/x'] } }] }] })
  const wildcard = mk('wildcard', { rules: [{ from: [{ source: { namespaces: ['d*'] } }] }] })
  const portsOnly = mk('ports', { rules: [{ to: [{ operation: { ports: ['9090'] } }] }] })
  const twoRules = mk('two-rules', { rules: [{ from: [{ source: { namespaces: ['e'] } }] }, { to: [{ operation: { ports: ['1'] } }] }] })
  t.same([...sourceNamespaceBound(byNs.authorization)!].sort(), ['a', 'b'])
  t.same([...sourceNamespaceBound(bySa.authorization)!], ['c'])
  t.equal(sourceNamespaceBound(wildcard.authorization), null, 'a prefix match bounds nothing')
  t.equal(sourceNamespaceBound(portsOnly.authorization), null, 'no source condition bounds nothing')
  t.equal(sourceNamespaceBound(twoRules.authorization), null, 'one unbounded rule (group) makes the policy unbounded')
  const set = PolicySet.build({ authorizations: [byNs, bySa, wildcard, portsOnly, twoRules], peerAuthentications: [], rootNamespace: 'istio-system' })
  const decide = (ns: string | undefined, port = 8080) =>
    evaluate(set, {
      sourceIdentity: ns === undefined ? undefined : { trustDomain: 'cluster.local', namespace: ns, serviceAccount: 'x' },
      sourceIp: '10.0.0.1',
      destination: { ip: '10.0.0.2', port, namespace: 'app', labels: {} },
    })
  t.equal(decide('a').policy?.name, 'by-ns')
  t.equal(decide('b').policy?.name, 'by-ns')
  t.equal(decide('c').policy?.name, 'by-sa')
  t.equal(decide('dx').policy?.name, 'wildcard')
  t.equal(decide('e').policy?.name, 'two-rules')
  t.equal(decide('zz').allowed, false, 'a namespace no policy names is refused')
  t.equal(decide('zz', 9090).policy?.name, 'ports', 'but an unbounded policy still applies to it')
  t.equal(decide(undefined).allowed, false, 'plaintext matches no namespace-bound policy')
})
