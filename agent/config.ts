// The agent's configuration, read once from flags and named environment variables
// into a frozen object. A bad value throws ConfigError naming the setting.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, fromEnv, parseAddress, parseDuration, parsePort, requireString, type Address } from '../common/config.js'
import { NODE_DEFAULTS, parseNodeSettings, type NodeFlags, type NodeSettings } from '../common/node-settings.js'
import type { KubeConnection } from '../common/kube/kube-client.js'

export type AgentSourceConfig = { readonly kind: 'manifests'; readonly dir: string } | { readonly kind: 'kube'; readonly connection: KubeConnection }

export interface AgentConfig extends NodeSettings {
  readonly source: AgentSourceConfig
  /** cgroup v2 folder holding kubelet's pod cgroups (kubepods or kubepods.slice). */
  readonly cgroupRoot: string
  /** The cgroup the datapath's connect hooks attach to: every pod's cgroup is below it. */
  readonly podsCgroup: string
  readonly outboundPort: number
  readonly xdsSocket: string
  readonly status: Address
  readonly clusterDomain: string
  readonly listenerWaitMs: number
  /** Write the ZtunnelAccepted condition onto policies (Kubernetes source only). */
  readonly writePolicyStatus: boolean
}

export interface AgentFlags extends NodeFlags {
  readonly manifests?: string
  readonly kubeconfig?: string
  readonly context?: string
  readonly kubeServer?: string
  readonly kubeInsecure?: boolean
  readonly cgroupRoot: string
  readonly podsCgroup?: string
  readonly outboundPort: string
  readonly xdsSocket: string
  readonly statusAddr: string
  readonly clusterDomain: string
  readonly listenerWait: string
  readonly policyStatus: boolean
}

export const AGENT_DEFAULTS = {
  ...NODE_DEFAULTS,
  cgroupRoot: '/sys/fs/cgroup',
  outboundPort: '15001',
  xdsSocket: '/var/run/ambient/agent.sock',
  statusAddr: '127.0.0.1:15014',
  clusterDomain: 'cluster.local',
  listenerWait: '5s',
} as const

function sourceOf(flags: AgentFlags, env: NodeJS.ProcessEnv): AgentSourceConfig {
  const given = [flags.manifests && '--manifests', flags.kubeconfig && '--kubeconfig', flags.kubeServer && '--kube-server'].filter(Boolean)
  if (given.length > 1) throw new ConfigError(given[1] as string, `give one source, not ${given.join(' and ')}`)
  if (flags.manifests) return { kind: 'manifests', dir: flags.manifests }
  if (flags.kubeconfig)
    return { kind: 'kube', connection: { kind: 'kubeconfig', path: flags.kubeconfig, ...(flags.context ? { context: flags.context } : {}) } }
  if (flags.kubeServer) {
    if (!/^https?:\/\//.test(flags.kubeServer)) throw new ConfigError('--kube-server', `${JSON.stringify(flags.kubeServer)} is not an http(s):// URL`)
    if (flags.kubeServer.startsWith('http://') && !flags.kubeInsecure)
      throw new ConfigError('--kube-server', `${flags.kubeServer} is plain http: add --kube-insecure to allow it (tests only)`)
    return { kind: 'kube', connection: { kind: 'server', server: flags.kubeServer, insecure: flags.kubeInsecure === true } }
  }
  const host = fromEnv(env, 'KUBERNETES_SERVICE_HOST', '')
  if (host !== '') {
    const port = fromEnv(env, 'KUBERNETES_SERVICE_PORT', '443')
    return { kind: 'kube', connection: { kind: 'in-cluster', server: `https://${host.includes(':') ? `[${host}]` : host}:${port}` } }
  }
  throw new ConfigError(
    '--manifests',
    'no configuration source: give --manifests DIR, --kubeconfig FILE or --kube-server URL, or run in a pod (KUBERNETES_SERVICE_HOST)',
  )
}

function podsCgroupOf(flags: AgentFlags): string {
  if (flags.podsCgroup) return flags.podsCgroup
  for (const name of ['kubepods.slice', 'kubepods']) {
    const dir = join(flags.cgroupRoot, name)
    if (existsSync(dir)) return dir
  }
  throw new ConfigError(
    '--cgroup-root',
    `no kubepods.slice or kubepods cgroup under ${flags.cgroupRoot}: is it the cgroup v2 mount of a kubelet node? (or give --pods-cgroup)`,
  )
}

export function parseAgentConfig(flags: AgentFlags, env: NodeJS.ProcessEnv): AgentConfig {
  const node = parseNodeSettings(flags, env)
  const status = parseAddress('--status-addr', flags.statusAddr)
  return Object.freeze({
    ...node,
    source: sourceOf(flags, env),
    cgroupRoot: requireString('--cgroup-root', flags.cgroupRoot),
    podsCgroup: podsCgroupOf(flags),
    outboundPort: parsePort('--outbound-port', flags.outboundPort),
    xdsSocket: requireString('--xds-socket', flags.xdsSocket),
    status,
    clusterDomain: requireString('--cluster-domain', flags.clusterDomain),
    listenerWaitMs: parseDuration('--listener-wait', flags.listenerWait),
    writePolicyStatus: flags.policyStatus !== false,
  })
}
