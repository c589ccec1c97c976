import t from 'tap'
import { type Authorization, type Match, match } from '../model/authorization.js'
import { compileL4, policyMatches } from './matcher.js'
import { type ConnectionAttributes, prepareL4, stringMatcher } from './fields.js'
import { cidrContains, parseIp } from './ip.js'

// The three connections of ztunnel's src/rbac.rs tests.
const plaintext: ConnectionAttributes = {
  sourceIdentity: undefined,
  sourceIp: '127.0.0.1',
  destination: { ip: '127.0.0.2', port: 8080, namespace: 'namespace', labels: {} },
}
const tls: ConnectionAttributes = {
  sourceIdentity: { trustDomain: 'td', namespace: 'namespace', serviceAccount: 'account' },
  sourceIp: '127.0.0.1',
  destination: { ip: '127.0.0.2', port: 8080, namespace: 'namespace', labels: {} },
}
const tlsAlt: ConnectionAttributes = {
  sourceIdentity: { trustDomain: 'td-alt', namespace: 'ns-alt', serviceAccount: 'sa=alt' },
  sourceIp: '127.0.0.3',
  destination: { ip: '127.0.0.4', port: 9090, namespace: 'namespace', labels: {} },
}

function allow(groups: Authorization['groups']): Authorization {
  return { name: 'p', namespace: 'namespace', scope: 'GLOBAL', action: 'ALLOW', groups, dryRun: false }
}
const one = (m: Match): Authorization => allow([{ rules: [{ matches: [m] }] }])
const matches = (a: Authorization, c: ConnectionAttributes): boolean => policyMatches(compileL4(a), prepareL4(c))

t.test('every field and its not form (ztunnel rbac.rs table)', async (t) => {
  const ip = (address: string, length: number) => [{ address, length }]
  const cases: ReadonlyArray<readonly [string, Partial<Match>, readonly [boolean, boolean, boolean]]> = [
    ['namespaces', { namespaces: [{ kind: 'exact', value: 'namespace' }] }, [false, true, false]],
    ['notNamespaces', { notNamespaces: [{ kind: 'exact', value: 'namespace' }] }, [true, false, true]],
    ['serviceAccounts', { serviceAccounts: [{ namespace: 'namespace', serviceAccount: 'account' }] }, [false, true, false]],
    ['notServiceAccounts', { notServiceAccounts: [{ namespace: 'namespace', serviceAccount: 'account' }] }, [true, false, true]],
    ['principals', { principals: [{ kind: 'exact', value: 'td/ns/namespace/sa/account' }] }, [false, true, false]],
    ['notPrincipals', { notPrincipals: [{ kind: 'exact', value: 'td/ns/namespace/sa/account' }] }, [true, false, true]],
    ['sourceIps', { sourceIps: ip('127.0.0.1', 32) }, [true, true, false]],
    ['notSourceIps', { notSourceIps: ip('127.0.0.1', 32) }, [false, false, true]],
    ['destinationIps', { destinationIps: ip('127.0.0.2', 32) }, [true, true, false]],
    ['notDestinationIps', { notDestinationIps: ip('127.0.0.2', 32) }, [false, false, true]],
    ['destinationIps cidr', { destinationIps: ip('127.0.0.1', 24) }, [true, true, true]],
    ['destinationPorts', { destinationPorts: [8080] }, [true, true, false]],
    ['notDestinationPorts', { notDestinationPorts: [8080] }, [false, false, true]],
    ['principal presence', { principals: [{ kind: 'presence' }] }, [false, true, true]],
    ['not principal presence (STRICT)', { notPrincipals: [{ kind: 'presence' }] }, [true, false, false]],
    ['namespace presence', { namespaces: [{ kind: 'presence' }] }, [false, true, true]],
    ['values OR-ed', { destinationPorts: [1, 9090] }, [false, false, true]],
    ['fields AND-ed', { destinationPorts: [8080], namespaces: [{ kind: 'exact', value: 'namespace' }] }, [false, true, false]],
    ['positive and negative', { sourceIps: ip('127.0.0.0', 8), notSourceIps: ip('127.0.0.3', 32) }, [true, true, false]],
  ]
  for (const [name, fields, [p, s, a]] of cases) {
    const pol = one(match(fields))
    t.same([matches(pol, plaintext), matches(pol, tls), matches(pol, tlsAlt)], [p, s, a], name)
  }
})

t.test('string forms', async (t) => {
  const cases: ReadonlyArray<readonly [Parameters<typeof stringMatcher>[0], string, boolean]> = [
    [{ kind: 'exact', value: 'foo' }, 'foo', true],
    [{ kind: 'exact', value: 'foo' }, 'not', false],
    [{ kind: 'exact', value: 'foo' }, '', false],
    [{ kind: 'prefix', value: 'foo' }, 'foobar', true],
    [{ kind: 'prefix', value: 'foo' }, 'notfoo', false],
    [{ kind: 'prefix', value: 'foo' }, '', false],
    [{ kind: 'suffix', value: 'foo' }, 'barfoo', true],
    [{ kind: 'suffix', value: 'foo' }, 'foonot', false],
    [{ kind: 'suffix', value: 'foo' }, '', false],
    [{ kind: 'presence' }, 'foo', true],
    [{ kind: 'presence' }, '', false],
  ]
  for (const [m, value, want] of cases) t.equal(stringMatcher(m)(value), want, `${JSON.stringify(m)} ${JSON.stringify(value)}`)
  const byPrincipal = (value: Match['principals'][number]) => one(match({ principals: [value] }))
  t.ok(matches(byPrincipal({ kind: 'prefix', value: 'td/ns/namespace/' }), tls), 'principal prefix')
  t.ok(matches(byPrincipal({ kind: 'suffix', value: '/sa/account' }), tls), 'principal suffix')
  t.notOk(matches(byPrincipal({ kind: 'exact', value: 'spiffe://td/ns/namespace/sa/account' }), tls), 'spiffe:// form never matches')
})

t.test('empty semantics (ztunnel rbac_empty_policy)', async (t) => {
  t.notOk(matches(allow([]), plaintext), 'no groups: never matches')
  t.ok(matches(allow([{ rules: [] }]), plaintext), 'a group without rules (rules: [{}]) matches all')
  t.ok(matches(allow([{ rules: [{ matches: [] }] }]), plaintext), 'a rule without matches matches')
  t.notOk(matches(one(match({})), plaintext), 'an empty Match never matches')
  const emptyOrPort = allow([{ rules: [{ matches: [match({}), match({ destinationPorts: [8080] })] }] }])
  t.ok(matches(emptyOrPort, tls), 'an empty Match is skipped among others')
})

t.test('nesting: groups OR, rules AND, matches OR (ztunnel rbac_nesting)', async (t) => {
  const ns = (value: string) => match({ namespaces: [{ kind: 'exact', value }] })
  const pol = allow([{ rules: [{ matches: [ns('a'), ns('b')] }, { matches: [match({ destinationPorts: [80] })] }] }])
  const conn = (namespace: string, port: number): ConnectionAttributes => ({
    sourceIdentity: { trustDomain: 'td', namespace, serviceAccount: 'account' },
    sourceIp: '127.0.0.1',
    destination: { ip: '127.0.0.2', port, namespace: 'x', labels: {} },
  })
  const cases: ReadonlyArray<readonly [string, number, boolean]> = [
    ['a', 80, true],
    ['b', 80, true],
    ['bad', 80, false],
    ['b', 12345, false],
  ]
  for (const [n, port, want] of cases) t.equal(matches(pol, conn(n, port)), want, `${n}:${port}`)
  const multi = allow([{ rules: [{ matches: [ns('a')] }] }, { rules: [{ matches: [ns('b')] }] }])
  t.same(
    cases.map(([n, port]) => matches(multi, conn(n, port))),
    [true, true, false, true],
    'groups are OR-ed',
  )
})

t.test('IP parsing and CIDR', async (t) => {
  const cases: ReadonlyArray<readonly [string, number, string, boolean]> = [
    ['10.0.0.0', 8, '10.255.1.2', true],
    ['10.1.2.3', 8, '10.9.9.9', true],
    ['10.0.0.0', 8, '11.0.0.1', false],
    ['0.0.0.0', 0, '192.0.2.1', true],
    ['192.0.2.1', 32, '192.0.2.1', true],
    ['192.0.2.1', 32, '192.0.2.2', false],
    ['fd00::', 8, 'fd12:3456::1', true],
    ['fd00::', 16, 'fd01::1', false],
    ['::ffff:10.0.0.1', 128, '::ffff:10.0.0.1', true],
    ['2001:db8::1', 128, '2001:db8:0:0:0:0:0:1', true],
    ['10.0.0.0', 8, 'fd00::1', false],
    ['fd00::', 8, '10.0.0.1', false],
  ]
  for (const [address, length, ip, want] of cases) t.equal(cidrContains(address, length)(parseIp(ip)), want, `${ip} in ${address}/${length}`)
  t.equal(parseIp('not-an-ip'), undefined)
  t.notOk(cidrContains('10.0.0.0', 8)(undefined), 'unknown source ip never inside')
})
