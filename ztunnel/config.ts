// ztunnel's configuration, read once from flags and named environment variables
// into a frozen object. A bad value throws ConfigError naming the setting.
import { ConfigError, fromEnv, parseAddress, parseDuration, parseInteger, parsePort, requireString, type Address } from '../common/config.js'
import { DEFAULT_DELIVERY_MARK, DEFAULT_HBONE_PORT, DEFAULT_PROXY_MARK } from '../agent/dataplane/abi.js'

export interface ZtunnelConfig {
  readonly node: string
  /** Workloads and policies from a YAML file; null when they come from the agent (xdsAddress). */
  readonly localConfig: string | null
  /** The node agent's Unix socket (delta xDS); null with localConfig. */
  readonly xdsAddress: string | null
  readonly pinRoot: string
  readonly proxyMark: number
  readonly deliveryMark: number
  readonly hbonePort: number
  readonly trustDomain: string
  readonly rootNamespace: string
  /** `ambient ca` address; null in local mode (cacertsDir). */
  readonly caAddress: string | null
  readonly nodeCertDir: string | null
  readonly cacertsDir: string | null
  readonly certTtlMs: number
  readonly metrics: Address
  readonly readiness: Address
  readonly admin: Address
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error'
}

export interface ZtunnelFlags {
  readonly node?: string
  readonly localConfig?: string
  readonly xdsAddress?: string
  readonly pinRoot: string
  readonly proxyMark: string
  readonly deliveryMark: string
  readonly hbonePort: string
  readonly trustDomain: string
  readonly rootNamespace: string
  readonly cacerts?: string
  readonly caAddress?: string
  readonly nodeCertDir?: string
  readonly certTtl: string
  readonly metricsAddr: string
  readonly readinessAddr: string
  readonly adminAddr: string
  readonly logLevel: string
}

export function parseZtunnelConfig(flags: ZtunnelFlags, env: NodeJS.ProcessEnv): ZtunnelConfig {
  const admin = parseAddress('--admin-addr', flags.adminAddr)
  if (admin.host !== '127.0.0.1') throw new ConfigError('--admin-addr', `the admin endpoint is localhost only, got ${flags.adminAddr}`)
  const logLevel = flags.logLevel
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new ConfigError('--log-level', `${JSON.stringify(logLevel)} must be debug, info, warn or error`)
  return Object.freeze({
    node: requireString('--node (or AMBIENT_NODE_NAME)', flags.node ?? fromEnv(env, 'AMBIENT_NODE_NAME', '')),
    ...stateSource(flags),
    pinRoot: requireString('--pin-root', flags.pinRoot),
    proxyMark: parseInteger('--proxy-mark', flags.proxyMark, 1, 0xffffffff),
    deliveryMark: parseInteger('--delivery-mark', flags.deliveryMark, 1, 0xffffffff),
    hbonePort: parsePort('--hbone-port', flags.hbonePort),
    trustDomain: requireString('--trust-domain', flags.trustDomain),
    rootNamespace: requireString('--root-namespace', flags.rootNamespace),
    ...certificateSource(flags),
    certTtlMs: parseDuration('--cert-ttl', flags.certTtl),
    metrics: parseAddress('--metrics-addr', flags.metricsAddr),
    readiness: parseAddress('--readiness-addr', flags.readinessAddr),
    admin,
    logLevel: logLevel as ZtunnelConfig['logLevel'],
  })
}

export const ZTUNNEL_DEFAULTS = {
  pinRoot: '/sys/fs/bpf/ambient',
  proxyMark: String(DEFAULT_PROXY_MARK),
  deliveryMark: String(DEFAULT_DELIVERY_MARK),
  hbonePort: String(DEFAULT_HBONE_PORT),
  trustDomain: 'cluster.local',
  rootNamespace: 'istio-system',
  certTtl: '24h',
  metricsAddr: '127.0.0.1:15020',
  readinessAddr: '127.0.0.1:15021',
  adminAddr: '127.0.0.1:15000',
  logLevel: 'info',
} as const

function certificateSource(flags: ZtunnelFlags): { caAddress: string | null; nodeCertDir: string | null; cacertsDir: string | null } {
  if (flags.caAddress !== undefined && flags.cacerts !== undefined) throw new ConfigError('--ca-address', 'give either --ca-address (with --node-cert-dir) or --cacerts (local mode), not both')
  if (flags.caAddress !== undefined) {
    if (!/^[^\s:]+:\d+$/.test(flags.caAddress)) throw new ConfigError('--ca-address', `${JSON.stringify(flags.caAddress)} is not host:port`)
    return { caAddress: flags.caAddress, nodeCertDir: requireString('--node-cert-dir', flags.nodeCertDir), cacertsDir: null }
  }
  if (flags.cacerts === undefined) throw new ConfigError('--ca-address', 'workload certificates need --ca-address with --node-cert-dir, or --cacerts for local mode')
  return { caAddress: null, nodeCertDir: null, cacertsDir: flags.cacerts }
}

function stateSource(flags: ZtunnelFlags): { localConfig: string | null; xdsAddress: string | null } {
  if (flags.localConfig !== undefined && flags.xdsAddress !== undefined) throw new ConfigError('--xds-address', 'give either --xds-address (the node agent) or --local-config (a static file), not both')
  if (flags.xdsAddress !== undefined) return { localConfig: null, xdsAddress: requireString('--xds-address', flags.xdsAddress) }
  if (flags.localConfig === undefined) throw new ConfigError('--xds-address', 'workloads and policies need --xds-address (the node agent\'s socket) or --local-config FILE')
  return { localConfig: requireString('--local-config', flags.localConfig), xdsAddress: null }
}
