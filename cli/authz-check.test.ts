import t from 'tap'
import { Command } from 'commander'
import { fileURLToPath } from 'node:url'
import { AuthzCheckError, loadManifests, parsePrincipal, registerAuthzCommand, runAuthzCheck } from './authz-check.js'

const TESTDATA = fileURLToPath(new URL('../common/model/testdata/authz', import.meta.url))
const objects = loadManifests(TESTDATA)
const WEB = '10.10.0.7'
const DB = '10.10.0.9'
const sa = (ns: string, name: string): string => `cluster.local/ns/${ns}/sa/${name}`

t.test('loads a folder of manifests', async (t) => {
  t.same([...new Set(objects.map((o) => (o.object as { kind: string }).kind))].sort(), ['AuthorizationPolicy', 'Namespace', 'PeerAuthentication', 'Pod'])
  t.equal(loadManifests(`${TESTDATA}/cluster.yaml`).length, 3, 'one file')
  t.throws(() => loadManifests(`${TESTDATA}/missing`), AuthzCheckError)
})

t.test('decisions', async (t) => {
  const cases: ReadonlyArray<readonly [string, { destIp: string; destPort: number; sourcePrincipal?: string }, string, string | null, string]> = [
    ['frontend to web:8080', { destIp: WEB, destPort: 8080, sourcePrincipal: sa('frontend', 'ui') }, 'allow', 'shop/web-from-frontend', 'allow-policy'],
    ['plaintext to web:8080 (mesh STRICT)', { destIp: WEB, destPort: 8080 }, 'deny', 'istio-system/default', 'mtls-strict'],
    ['plaintext to web:9100 (port PERMISSIVE)', { destIp: WEB, destPort: 9100 }, 'allow', 'shop/web-from-frontend', 'allow-policy'],
    ['admin to web:8080 (rule needs L7)', { destIp: WEB, destPort: 8080, sourcePrincipal: sa('admin', 'ops') }, 'deny', null, 'no-allow-match'],
    ['legacy to web:8080 (DENY)', { destIp: WEB, destPort: 8080, sourcePrincipal: sa('legacy', 'old') }, 'deny', 'shop/deny-legacy', 'deny-policy'],
    ['web to db (no ALLOW policy)', { destIp: DB, destPort: 5432, sourcePrincipal: sa('shop', 'web') }, 'allow', null, 'no-allow-policies'],
  ]
  for (const [name, opts, decision, policy, rule] of cases) {
    const r = runAuthzCheck({ objects, sourceIp: '10.10.0.50', ...opts })
    t.same([r.decision, r.policy, r.rule], [decision, policy, rule], name)
  }
})

t.test('explanations: warnings, dry-run, invalid and ignored policies', async (t) => {
  const r = runAuthzCheck({ objects, destIp: WEB, destPort: 8080, sourcePrincipal: sa('admin', 'ops') })
  t.same(
    r.warnings.map((w) => [w.policy, w.field]),
    [['shop/web-from-frontend', 'spec.rules[2].to[0].operation.methods']],
  )
  t.same(r.destination, { namespace: 'shop', labels: { app: 'web', version: 'v1' }, ip: WEB, port: 8080, pod: 'shop/web-1' })
  t.same(
    r.invalid.map((p) => [p.policy, p.field]),
    [['shop/typo', 'spec.rules[0].to[0].operation.ports[0]']],
    'malformed policy named with its field',
  )
  t.same(
    r.ignored.map((p) => [p.policy, p.field]),
    [['shop/waypoint-only', 'spec.targetRefs']],
  )
  t.match(r.notes.join('\n'), /no --source-ip/)
  const dry = runAuthzCheck({ objects, destIp: DB, destPort: 5432, sourcePrincipal: sa('shop', 'web') })
  t.same(dry.dryRun, [{ policy: 'shop/db-dry-run', action: 'ALLOW' }])
  const wouldDeny = runAuthzCheck({ objects, destIp: DB, destPort: 5432, sourcePrincipal: sa('shop', 'other') })
  t.same([wouldDeny.decision, wouldDeny.dryRunWouldDeny], ['allow', true])
  const labelled = runAuthzCheck({
    objects,
    destIp: '10.99.0.1',
    destPort: 8080,
    destNamespace: 'shop',
    destLabels: { app: 'web' },
    sourcePrincipal: sa('frontend', 'ui'),
  })
  t.same([labelled.decision, labelled.destination.pod], ['allow', null], 'labels from flags when no pod has the IP')
  t.throws(() => runAuthzCheck({ objects, destIp: '10.99.0.1', destPort: 80 }), { code: 'AMBIENT_ERR_AUTHZ_CHECK_INPUT' })
  t.throws(() => parsePrincipal('sleep'), { code: 'AMBIENT_ERR_CONFIG' })
  t.same(parsePrincipal('spiffe://td/ns/a/sa/b'), { trustDomain: 'td', namespace: 'a', serviceAccount: 'b' })
})

async function runCli(args: readonly string[]): Promise<string> {
  const program = new Command('ambient').exitOverride()
  registerAuthzCommand(program)
  const lines: string[] = []
  const log = console.log
  console.log = (...a: unknown[]) => void lines.push(a.join(' '))
  try {
    await program.parseAsync(['authz', 'check', '--policies', TESTDATA, ...args], { from: 'user' })
  } finally {
    console.log = log
  }
  return lines.join('\n')
}

t.test('command line', async (t) => {
  const json = JSON.parse(await runCli(['--dest-ip', DB, '--dest-port', '5432', '--plaintext', '--json'])) as Record<string, unknown>
  t.same([json['decision'], json['policy']], ['deny', 'istio-system/default'])
  const none = JSON.parse(await runCli(['--dest-ip', DB, '--dest-port', '5432', '--source-principal', sa('shop', 'web'), '--json'])) as Record<string, unknown>
  t.ok('policy' in none && none['policy'] === null, 'policy is always present, null when none decided')
  const human = await runCli(['--dest-ip', WEB, '--dest-port', '8080', '--source-principal', sa('admin', 'ops'), '--source-ip', '10.10.0.50'])
  t.match(human, /decision:\s+deny/)
  t.match(human, /spec\.rules\[2\]\.to\[0\]\.operation\.methods/)
  await t.rejects(runCli(['--dest-ip', WEB, '--dest-port', '8080']), { code: 'AMBIENT_ERR_CONFIG' }, 'needs --source-principal or --plaintext')
  await t.rejects(runCli(['--dest-ip', WEB, '--dest-port', 'http', '--plaintext']), { code: 'AMBIENT_ERR_CONFIG' })
})
