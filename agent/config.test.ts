import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { AGENT_DEFAULTS, parseAgentConfig, type AgentFlags } from './config.js'

const root = mkdtempSync(join(tmpdir(), 'agent-config-'))
mkdirSync(join(root, 'kubepods'))
t.teardown(() => rmSync(root, { recursive: true, force: true }))
const flags = (extra: Partial<AgentFlags>): AgentFlags => ({
  ...AGENT_DEFAULTS,
  cgroupRoot: root,
  policyStatus: true,
  node: 'n1',
  manifests: '/etc/ambient',
  ...extra,
})

t.test('defaults and sources', async (t) => {
  const c = parseAgentConfig(flags({}), {})
  t.match(c, {
    node: 'n1',
    source: { kind: 'manifests', dir: '/etc/ambient' },
    podsCgroup: join(root, 'kubepods'),
    status: { host: '127.0.0.1', port: 15014 },
    listenerWaitMs: 5000,
    writePolicyStatus: true,
  })
  t.ok(Object.isFrozen(c))
  t.match(parseAgentConfig(flags({ manifests: undefined, kubeconfig: '/k' }), {}).source, { kind: 'kube', connection: { kind: 'kubeconfig', path: '/k' } })
  t.match(parseAgentConfig(flags({ manifests: undefined }), { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '6443' }).source, {
    kind: 'kube',
    connection: { kind: 'in-cluster', server: 'https://10.0.0.1:6443' },
  })
  t.equal(parseAgentConfig(flags({ node: undefined }), { AMBIENT_NODE_NAME: 'from-env' }).node, 'from-env')
  t.equal(parseAgentConfig(flags({ policyStatus: false }), {}).writePolicyStatus, false)
  t.equal(c.bpfStats, false, 'kernel run-time statistics of BPF programs are off unless asked for')
  t.equal(parseAgentConfig(flags({ bpfStats: true }), {}).bpfStats, true)
  t.same(parseAgentConfig(flags({ statusAddr: '0.0.0.0:15014' }), {}).status, { host: '0.0.0.0', port: 15014 }, 'a node address, for a cluster Prometheus')
})

t.test('a bad value is refused naming the setting and the value', async (t) => {
  const cases: [Partial<AgentFlags>, RegExp][] = [
    [{ manifests: undefined }, /^--manifests: no configuration source/],
    [{ kubeconfig: '/k' }, /^--kubeconfig: give one source, not --manifests and --kubeconfig/],
    [{ manifests: undefined, kubeServer: 'http://127.0.0.1:1' }, /^--kube-server: http:\/\/127\.0\.0\.1:1 is plain http: add --kube-insecure/],
    [{ manifests: undefined, kubeServer: 'ftp://x' }, /^--kube-server: "ftp:\/\/x" is not an http\(s\):\/\/ URL/],
    [{ statusAddr: 'localhost' }, /^--status-addr: /],
    [{ listenerWait: 'soon' }, /^--listener-wait: "soon" is not a duration/],
    [{ hbonePort: '70000' }, /^--hbone-port: "70000" is not a port/],
    [{ proxyMark: '0' }, /^--proxy-mark: "0" is not an integer/],
    [{ logLevel: 'loud' }, /^--log-level: "loud" must be debug, info, warn or error/],
    [{ node: undefined }, /^--node \(or AMBIENT_NODE_NAME\): is required/],
    [{ cgroupRoot: join(root, 'nope') }, /^--cgroup-root: no kubepods\.slice or kubepods cgroup under/],
  ]
  for (const [extra, message] of cases) t.throws(() => parseAgentConfig(flags(extra), {}), { code: 'AMBIENT_ERR_CONFIG', message }, JSON.stringify(extra))
})
