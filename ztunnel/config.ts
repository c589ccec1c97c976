// ztunnel's configuration, read once from flags and named environment variables
// into a frozen object. A bad value throws ConfigError naming the setting.
import { ConfigError, fromEnv, parseAddress, parseDuration, parseInteger, requireString, type Address } from '../common/config.js'
import { NODE_DEFAULTS, parseNodeSettings, type NodeFlags, type NodeSettings } from '../common/node-settings.js'

export interface ZtunnelConfig extends NodeSettings {
  /** Workloads and policies from a YAML file; null when they come from the agent (xdsAddress). */
  readonly localConfig: string | null
  /** The node agent's Unix socket (delta xDS); null with localConfig. */
  readonly xdsAddress: string | null
  /** `ambient ca` address; null in local mode (cacertsDir). */
  readonly caAddress: string | null
  readonly nodeCertDir: string | null
  readonly cacertsDir: string | null
  readonly certTtlMs: number
  readonly metrics: Address
  readonly readiness: Address
  readonly admin: Address
  /** Who carries HBONE's bytes: the native addon's engine, or Node's TLS and HTTP/2 (the reference). */
  readonly hboneEngine: HboneEngineKind
  /** I/O threads of the native engine. */
  readonly hboneThreads: number
}

export type HboneEngineKind = 'native' | 'node'

export interface ZtunnelFlags extends NodeFlags {
  readonly localConfig?: string
  readonly xdsAddress?: string
  readonly cacerts?: string
  readonly caAddress?: string
  readonly nodeCertDir?: string
  readonly certTtl: string
  readonly metricsAddr: string
  readonly readinessAddr: string
  readonly adminAddr: string
  readonly hboneEngine?: string
  readonly hboneThreads: string
}

export function parseZtunnelConfig(flags: ZtunnelFlags, env: NodeJS.ProcessEnv): ZtunnelConfig {
  const admin = parseAddress('--admin-addr', flags.adminAddr)
  if (admin.host !== '127.0.0.1') throw new ConfigError('--admin-addr', `the admin endpoint is localhost only, got ${flags.adminAddr}`)
  const node = parseNodeSettings(flags, env)
  return Object.freeze({
    ...node,
    ...stateSource(flags),
    ...certificateSource(flags),
    certTtlMs: parseDuration('--cert-ttl', flags.certTtl),
    metrics: parseAddress('--metrics-addr', flags.metricsAddr),
    readiness: parseAddress('--readiness-addr', flags.readinessAddr),
    admin,
    ...hboneEngineSettings(flags, env),
  })
}

export const ZTUNNEL_DEFAULTS = {
  ...NODE_DEFAULTS,
  certTtl: '24h',
  metricsAddr: '127.0.0.1:15020',
  readinessAddr: '127.0.0.1:15021',
  adminAddr: '127.0.0.1:15000',
  hboneEngine: 'native',
  hboneThreads: '2',
} as const

function certificateSource(flags: ZtunnelFlags): { caAddress: string | null; nodeCertDir: string | null; cacertsDir: string | null } {
  if (flags.caAddress !== undefined && flags.cacerts !== undefined)
    throw new ConfigError('--ca-address', 'give either --ca-address (with --node-cert-dir) or --cacerts (local mode), not both')
  if (flags.caAddress !== undefined) {
    if (!/^[^\s:]+:\d+$/.test(flags.caAddress)) throw new ConfigError('--ca-address', `${JSON.stringify(flags.caAddress)} is not host:port`)
    return { caAddress: flags.caAddress, nodeCertDir: requireString('--node-cert-dir', flags.nodeCertDir), cacertsDir: null }
  }
  if (flags.cacerts === undefined)
    throw new ConfigError('--ca-address', 'workload certificates need --ca-address with --node-cert-dir, or --cacerts for local mode')
  return { caAddress: null, nodeCertDir: null, cacertsDir: flags.cacerts }
}

function stateSource(flags: ZtunnelFlags): { localConfig: string | null; xdsAddress: string | null } {
  if (flags.localConfig !== undefined && flags.xdsAddress !== undefined)
    throw new ConfigError('--xds-address', 'give either --xds-address (the node agent) or --local-config (a static file), not both')
  if (flags.xdsAddress !== undefined) return { localConfig: null, xdsAddress: requireString('--xds-address', flags.xdsAddress) }
  if (flags.localConfig === undefined)
    throw new ConfigError('--xds-address', "workloads and policies need --xds-address (the node agent's socket) or --local-config FILE")
  return { localConfig: requireString('--local-config', flags.localConfig), xdsAddress: null }
}

/** --hbone-engine, else $AMBIENT_HBONE_ENGINE (how the test suite runs every ztunnel on the other engine), else native. */
function hboneEngineSettings(flags: ZtunnelFlags, env: NodeJS.ProcessEnv): { hboneEngine: HboneEngineKind; hboneThreads: number } {
  const engine = flags.hboneEngine ?? fromEnv(env, 'AMBIENT_HBONE_ENGINE', ZTUNNEL_DEFAULTS.hboneEngine)
  if (engine !== 'native' && engine !== 'node')
    throw new ConfigError('--hbone-engine (or AMBIENT_HBONE_ENGINE)', `${JSON.stringify(engine)} is not native or node`)
  return { hboneEngine: engine, hboneThreads: parseInteger('--hbone-threads', flags.hboneThreads, 1, 64) }
}
