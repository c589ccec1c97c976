// ztunnel's CA credentials: a node certificate folder or a service-account token
// file (with the mounted roots), never both, each flag refused where it has no use.
import t from 'tap'
import { parseZtunnelConfig, ZTUNNEL_DEFAULTS, type ZtunnelFlags } from './config.js'

const base: ZtunnelFlags = { ...ZTUNNEL_DEFAULTS, node: 'n1', xdsAddress: '/run/ambient/agent.sock' }

t.test('--ca-token-file: the token and the mounted roots', async (t) => {
  const config = parseZtunnelConfig({ ...base, caAddress: 'ambient-ca.ambient-system.svc:15012', caTokenFile: '/var/run/secrets/tokens/istio-token' }, {})
  t.same(config.certificates, {
    kind: 'ca-token',
    caAddress: 'ambient-ca.ambient-system.svc:15012',
    tokenFile: '/var/run/secrets/tokens/istio-token',
    rootCertFile: '/var/run/secrets/istio/root-cert.pem',
  })
  t.match(parseZtunnelConfig({ ...base, caAddress: 'ca:15012', caTokenFile: '/t', caRootCert: '/roots.pem' }, {}).certificates, { rootCertFile: '/roots.pem' })
  t.same(parseZtunnelConfig({ ...base, caAddress: 'ca:15012', nodeCertDir: '/n' }, {}).certificates, { kind: 'ca', caAddress: 'ca:15012', nodeCertDir: '/n' })
})

t.test('wrong combinations name the flag', async (t) => {
  const refused: [Partial<ZtunnelFlags>, RegExp][] = [
    [{ caAddress: 'ca:15012', nodeCertDir: '/n', caTokenFile: '/t' }, /--ca-token-file: give either --node-cert-dir .* or --ca-token-file/],
    [{ caAddress: 'ca:15012' }, /--node-cert-dir: --ca-address needs credentials: --node-cert-dir DIR .* or --ca-token-file FILE/],
    [{ caAddress: 'ca:15012', nodeCertDir: '/n', caRootCert: '/r' }, /--ca-root-cert: goes with --ca-token-file/],
    [{ cacerts: '/c', caTokenFile: '/t' }, /--ca-token-file: is for calling `ambient ca`: give --ca-address too/],
    [{}, /--ca-address: workload certificates need --ca-address with --node-cert-dir or --ca-token-file, or --cacerts/],
  ]
  for (const [flags, message] of refused) t.throws(() => parseZtunnelConfig({ ...base, ...flags }, {}), { code: 'AMBIENT_ERR_CONFIG', message })
})

t.test('--handoff-socket and --drain-timeout', async (t) => {
  const flags = { ...base, cacerts: '/c' }
  const defaults = parseZtunnelConfig(flags, {})
  t.equal(defaults.handoffSocket, null, 'no handoff unless asked')
  t.equal(defaults.drainTimeoutMs, 20_000)
  const set = parseZtunnelConfig({ ...flags, handoffSocket: '/var/run/ambient-ztunnel/handoff.sock', drainTimeout: '90s' }, {})
  t.equal(set.handoffSocket, '/var/run/ambient-ztunnel/handoff.sock')
  t.equal(set.drainTimeoutMs, 90_000)
  t.throws(() => parseZtunnelConfig({ ...flags, handoffSocket: 'handoff.sock' }, {}), {
    code: 'AMBIENT_ERR_CONFIG',
    message: /--handoff-socket: "handoff.sock" is not an absolute path/,
  })
  t.throws(() => parseZtunnelConfig({ ...flags, handoffSocket: `/${'x'.repeat(120)}` }, {}), {
    message: /--handoff-socket: .* longer than a Unix socket path may be/,
  })
  t.throws(() => parseZtunnelConfig({ ...flags, drainTimeout: 'soon' }, {}), { message: /--drain-timeout: "soon" is not a duration/ })
})
