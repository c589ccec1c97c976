// L4 policy enforced by the destination ztunnel on the testbed, with Istio's
// semantics: an ALLOW for one service account lets that pod in and refuses
// another (401 to a raw HBONE client, a reset for the app); STRICT refuses a
// legacy pod's plaintext and PERMISSIVE lets it in; a new DENY closes an open
// connection; a malformed policy is reported by name and changes nothing else.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import net from 'node:net'
import { MeshCluster } from '../../testbed/cluster.js'
import { connectMany, holdConnection, startServer, waitFor } from '../../testbed/pod-clients.js'
import { HbonePool } from '../../common/hbone/pool.js'
import { createIdentityContext } from '../../common/hbone/tls.js'
import { formatAuthority } from '../../common/hbone/headers.js'
import { issueWorkloadCertificate } from '../../common/identity/pki.js'
import { socketInNetns } from '../../native/index.js'
import { DEFAULT_PROXY_MARK } from '../../datapath/abi.js'

const cluster = await MeshCluster.start({
  name: 'policy',
  nodes: [
    {
      name: 'n1',
      pods: [
        { name: 'a', namespace: 'shop', serviceAccount: 'client', enrolled: true },
        { name: 'c', namespace: 'shop', serviceAccount: 'other', enrolled: true },
        { name: 'legacy', namespace: 'legacy', serviceAccount: 'default', enrolled: false },
      ],
    },
    { name: 'n2', pods: [{ name: 'b', namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' }, enrolled: true }] },
  ],
})
t.teardown(() => cluster.stop())
await startServer(cluster.tb, cluster.pod('b'), 8080)
const b = cluster.pod('b')
const target = `${b.ip}:8080`

const allowClient = {
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'web-allow-client', namespace: 'shop' },
  spec: { selector: { matchLabels: { app: 'web' } }, action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/client'] } }] }] },
}
const peerAuth = (mode: string) => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'PeerAuthentication',
  metadata: { name: 'shop-mtls', namespace: 'shop' },
  spec: { mtls: { mode } },
})
const denyClient = {
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'web-deny-client', namespace: 'shop' },
  spec: { action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/client'] } }] }] },
}

/** Applies policies to every ztunnel and waits until node 2's has loaded them (its policy generation moved on). */
async function applyPolicies(
  objects: unknown[],
  expected: { authorizations: number; peerAuthentications: number; invalid?: number },
): Promise<{ invalid: { policy: string; field: string }[] }> {
  type Dump = { policies: { generation: number; authorizations: number; peerAuthentications: number; invalid: { policy: string; field: string }[] } }
  const dump = async (): Promise<Dump> => (await fetch(`http://127.0.0.1:${cluster.ztunnels.get('n2')!.admin.port}/config_dump`)).json() as Promise<Dump>
  const before = (await dump()).policies.generation
  cluster.setPolicies(objects)
  let after: Dump | undefined
  await waitFor(async () => (after = await dump()).policies.generation > before, 'ztunnel reloaded its policies')
  const p = after!.policies
  if (p.authorizations !== expected.authorizations || p.peerAuthentications !== expected.peerAuthentications || p.invalid.length !== (expected.invalid ?? 0)) {
    throw new Error(`ztunnel applied ${JSON.stringify(p)}, expected ${JSON.stringify(expected)}`)
  }
  return p
}

/** A raw HBONE CONNECT from pod c's namespace with c's own certificate. */
async function rawHboneFromC(): Promise<number> {
  const ca = { certPem: readFileSync(join(cluster.workDir, 'ca-cert.pem'), 'utf8'), keyPem: readFileSync(join(cluster.workDir, 'ca-key.pem'), 'utf8') }
  const identity = cluster.identity('c')
  const cert = issueWorkloadCertificate({ spiffeId: identity, ca, ttlMs: 3600_000 })
  const context = createIdentityContext({ ...cert, trustBundlePem: ca.certPem })
  const c = cluster.pod('c')
  const pool = new HbonePool({
    contextFor: () => context,
    dial: async ({ nextHop }) => {
      const fd = await socketInNetns(c.netnsPath, { family: 4, mark: DEFAULT_PROXY_MARK })
      const socket = new net.Socket({ fd, readable: true, writable: true })
      return new Promise((resolve, reject) => socket.connect(nextHop.port, nextHop.ip, () => resolve(socket)).once('error', reject))
    },
  })
  try {
    const stream = await pool.connect({
      sourceIdentity: identity,
      destinationIdentity: cluster.identity('b'),
      nextHop: { ip: b.ip, port: 15008 },
      authority: formatAuthority({ ip: b.ip, port: 8080 }),
    })
    stream.destroy()
    return 200
  } catch (err) {
    return (err as { status?: number }).status ?? -1
  } finally {
    await pool.stop()
  }
}

t.test('ALLOW for one service account: that pod gets in, another gets 401 (raw HBONE) and a reset (app)', async (t) => {
  await applyPolicies([allowClient], { authorizations: 1, peerAuthentications: 0 })
  const allowed = await connectMany(cluster.tb, cluster.pod('a'), target, { count: 5, concurrency: 1 })
  t.equal(allowed.ok, 5, 'shop/client is allowed')
  const refused = await connectMany(cluster.tb, cluster.pod('c'), target, { count: 3, concurrency: 1 })
  t.equal(refused.ok, 0, 'shop/other is refused')
  t.same(Object.keys(refused.errors), ['ECONNRESET'], `the app sees a reset (${JSON.stringify(refused.errors)})`)
  t.equal(await rawHboneFromC(), 401, 'a raw HBONE client with the other identity gets 401')
  const metrics = await (await fetch(`http://127.0.0.1:${cluster.ztunnels.get('n2')!.metrics.port}/metrics`)).text()
  t.match(
    metrics,
    new RegExp(`istio_tcp_connections_opened_total\\{[^}]*source_principal="${cluster.identity('c')}"[^}]*response_flags="DENY"[^}]*\\} [1-9]`),
    'denials are counted with response_flags DENY',
  )
  t.match(
    cluster.ztunnels.get('n2')!.logs(),
    /"source":"spiffe:\/\/cluster.local\/ns\/shop\/sa\/other".*"rule":"no-allow-match".*"msg":"connection denied by policy"/,
    'and logged',
  )
})

t.test('STRICT refuses a legacy pod; PERMISSIVE lets it in', async (t) => {
  await applyPolicies([peerAuth('STRICT')], { authorizations: 0, peerAuthentications: 1 })
  const strict = await connectMany(cluster.tb, cluster.pod('legacy'), target, { count: 3, concurrency: 1 })
  t.equal(strict.ok, 0, 'plaintext refused under STRICT')
  t.same(Object.keys(strict.errors), ['ECONNRESET'], `reset (${JSON.stringify(strict.errors)})`)
  const mesh = await connectMany(cluster.tb, cluster.pod('a'), target, { count: 3, concurrency: 1 })
  t.equal(mesh.ok, 3, 'mutual TLS from the mesh still gets in')
  await applyPolicies([peerAuth('PERMISSIVE')], { authorizations: 0, peerAuthentications: 1 })
  const permissive = await connectMany(cluster.tb, cluster.pod('legacy'), target, { count: 3, concurrency: 1 })
  t.equal(permissive.ok, 3, 'plaintext accepted under PERMISSIVE')
})

t.test('a new DENY closes an open connection it now denies', async (t) => {
  await applyPolicies([], { authorizations: 0, peerAuthentications: 0 })
  const held = await holdConnection(cluster.tb, cluster.pod('a'), target)
  const other = await holdConnection(cluster.tb, cluster.pod('c'), target)
  await new Promise((r) => setTimeout(r, 300))
  await applyPolicies([denyClient], { authorizations: 1, peerAuthentications: 0 })
  const ended = await held.ended(10_000).catch((err: Error) => {
    throw new Error(`${err.message}; ztunnel n2 log tail:\n${cluster.ztunnels.get('n2')!.logs().slice(-2000)}`)
  })
  t.ok(ended.error, `the denied connection was closed (${ended.error})`)
  const still = await other.stop()
  t.ok(still.sent > 0 && still.sent === still.echoed, `a connection the DENY does not match kept flowing (${still.echoed} echoed)`)
})

t.test('a malformed policy is reported by name and field; the others still apply', async (t) => {
  const malformed = {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'broken', namespace: 'shop' },
    spec: { action: 'ALLOW', rules: [{ to: [{ operation: { ports: ['not-a-port'] } }] }] },
  }
  const update = await applyPolicies([malformed, allowClient], { authorizations: 1, peerAuthentications: 0, invalid: 1 })
  t.equal(update.invalid.length, 1)
  t.equal(update.invalid[0]!.policy, 'shop/broken', 'named')
  t.match(update.invalid[0]!.field, /ports/, `with its bad field (${update.invalid[0]!.field})`)
  t.match(cluster.ztunnels.get('n2')!.logs(), /"policy":"shop\/broken".*policy rejected/, 'logged by name')
  const metrics = await (await fetch(`http://127.0.0.1:${cluster.ztunnels.get('n2')!.metrics.port}/metrics`)).text()
  t.match(
    metrics,
    /ambient_ztunnel_policy_problems\{policy="shop\/broken",kind="invalid",field="spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]",code="AMBIENT_ERR_POLICY_BAD_VALUE"\} 1/,
    'and counted in a metric',
  )
  t.equal((await connectMany(cluster.tb, cluster.pod('a'), target, { count: 2, concurrency: 1 })).ok, 2, 'the valid ALLOW still lets shop/client in')
  t.equal((await connectMany(cluster.tb, cluster.pod('c'), target, { count: 2, concurrency: 1 })).ok, 0, 'and still refuses shop/other')
})
