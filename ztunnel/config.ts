// ztunnel's configuration, read once from flags and named environment variables
// into a frozen object. A bad value throws ConfigError naming the setting.
import { ConfigError, fromEnv, parseAddress, parseDuration, parseInteger, requireString, type Address } from '../common/config.js'
import { CERTIFICATE_DEFAULTS, parseCertificateSource, type CertificateFlags, type CertificateSourceConfig } from '../common/identity/workload-identities.js'
import { NODE_DEFAULTS, parseNodeSettings, type NodeFlags, type NodeSettings } from '../common/node-settings.js'

export interface ZtunnelConfig extends NodeSettings {
  /** Workloads and policies from a YAML file; null when they come from the agent (xdsAddress). */
  readonly localConfig: string | null
  /** The node agent's Unix socket (delta xDS); null with localConfig. */
  readonly xdsAddress: string | null
  /** Where workload certificates come from: `ambient ca`, or local cacerts. */
  readonly certificates: CertificateSourceConfig
  readonly certTtlMs: number
  readonly metrics: Address
  readonly readiness: Address
  readonly admin: Address
  /** Who carries HBONE's bytes: the native addon's engine, or Node's TLS and HTTP/2 (the reference). */
  readonly hboneEngine: HboneEngineKind
  /** I/O threads of the native engine. */
  readonly hboneThreads: number
  /** Unix socket where a running ztunnel hands its pods' listening sockets to a new one (upgrade, restart); null: no handoff. */
  readonly handoffSocket: string | null
  /** How long open connections may finish after SIGTERM or a handoff before they are cut. */
  readonly drainTimeoutMs: number
}

export type HboneEngineKind = 'native' | 'node'

export interface ZtunnelFlags extends NodeFlags, CertificateFlags {
  readonly localConfig?: string
  readonly xdsAddress?: string
  readonly metricsAddr: string
  readonly readinessAddr: string
  readonly adminAddr: string
  readonly hboneEngine?: string
  readonly hboneThreads: string
  readonly handoffSocket?: string
  readonly drainTimeout: string
}

export function parseZtunnelConfig(flags: ZtunnelFlags, env: NodeJS.ProcessEnv): ZtunnelConfig {
  const admin = parseAddress('--admin-addr', flags.adminAddr)
  if (admin.host !== '127.0.0.1') throw new ConfigError('--admin-addr', `the admin endpoint is localhost only, got ${flags.adminAddr}`)
  const node = parseNodeSettings(flags, env)
  return Object.freeze({
    ...node,
    ...stateSource(flags),
    ...parseCertificateSource(flags),
    metrics: parseAddress('--metrics-addr', flags.metricsAddr),
    readiness: parseAddress('--readiness-addr', flags.readinessAddr),
    admin,
    ...hboneEngineSettings(flags, env),
    handoffSocket: handoffSocket(flags.handoffSocket),
    drainTimeoutMs: parseDuration('--drain-timeout', flags.drainTimeout),
  })
}

export const ZTUNNEL_DEFAULTS = {
  ...NODE_DEFAULTS,
  ...CERTIFICATE_DEFAULTS,
  metricsAddr: '127.0.0.1:15020',
  readinessAddr: '127.0.0.1:15021',
  adminAddr: '127.0.0.1:15000',
  hboneEngine: 'native',
  hboneThreads: '2',
  drainTimeout: '20s',
} as const

function handoffSocket(path: string | undefined): string | null {
  if (path === undefined) return null
  if (!path.startsWith('/')) throw new ConfigError('--handoff-socket', `${JSON.stringify(path)} is not an absolute path`)
  if (Buffer.byteLength(path) > 107) throw new ConfigError('--handoff-socket', `${path} is longer than a Unix socket path may be (107 bytes)`)
  return path
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
