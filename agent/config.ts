// The agent's configuration, read once from flags and named environment variables
// into a frozen object. A bad value throws ConfigError naming the setting.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, fromEnv, parseAddress, parseDuration, parsePort, requireString, type Address } from '../common/config.js'
import { parseSourceConfig, type SourceConfig, type SourceFlags } from '../common/config-source.js'
import { NODE_DEFAULTS, parseNodeSettings, type NodeFlags, type NodeSettings } from '../common/node-settings.js'

export interface AgentConfig extends NodeSettings {
  readonly source: SourceConfig
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
  /** The image of rendered waypoint Deployments (in a cluster, by the Lease holder). */
  readonly waypointImage: string
  readonly waypointCaAddress: string
}

export interface AgentFlags extends NodeFlags, SourceFlags {
  readonly cgroupRoot: string
  readonly podsCgroup?: string
  readonly outboundPort: string
  readonly xdsSocket: string
  readonly statusAddr: string
  readonly clusterDomain: string
  readonly listenerWait: string
  readonly policyStatus: boolean
  readonly waypointImage?: string
  readonly waypointCaAddress: string
}

export const AGENT_DEFAULTS = {
  ...NODE_DEFAULTS,
  cgroupRoot: '/sys/fs/cgroup',
  outboundPort: '15001',
  xdsSocket: '/var/run/ambient/agent.sock',
  statusAddr: '127.0.0.1:15014',
  clusterDomain: 'cluster.local',
  listenerWait: '5s',
  waypointCaAddress: 'ambient-ca.ambient-system.svc:15012',
} as const

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

function waypointCaAddress(value: string): string {
  if (!/^[^\s:]+:\d+$/.test(value)) throw new ConfigError('--waypoint-ca-address', `${JSON.stringify(value)} is not host:port`)
  return value
}

export function parseAgentConfig(flags: AgentFlags, env: NodeJS.ProcessEnv): AgentConfig {
  const node = parseNodeSettings(flags, env)
  const status = parseAddress('--status-addr', flags.statusAddr)
  return Object.freeze({
    ...node,
    source: parseSourceConfig(flags, env),
    cgroupRoot: requireString('--cgroup-root', flags.cgroupRoot),
    podsCgroup: podsCgroupOf(flags),
    outboundPort: parsePort('--outbound-port', flags.outboundPort),
    xdsSocket: requireString('--xds-socket', flags.xdsSocket),
    status,
    clusterDomain: requireString('--cluster-domain', flags.clusterDomain),
    listenerWaitMs: parseDuration('--listener-wait', flags.listenerWait),
    writePolicyStatus: flags.policyStatus !== false,
    waypointImage: flags.waypointImage ?? fromEnv(env, 'AMBIENT_IMAGE', ''),
    waypointCaAddress: waypointCaAddress(flags.waypointCaAddress),
  })
}
