// The waypoint's configuration, read once from flags and named environment
// variables into a frozen object. A bad value throws ConfigError naming it.
import { ConfigError, fromEnv, parseAddress, parseLogLevel, requireString, type Address, type LogLevel } from '../common/config.js'
import { parseSourceConfig, type SourceConfig, type SourceFlags } from '../common/config-source.js'
import { CERTIFICATE_DEFAULTS, parseCertificateSource, type CertificateFlags, type CertificateSourceConfig } from '../common/identity/workload-identities.js'
import { DEFAULT_HBONE_PORT } from '../common/ports.js'

export interface WaypointConfig {
  /** The Gateway (class istio-waypoint) this process serves. */
  readonly gateway: { readonly namespace: string; readonly name: string }
  /** The waypoint's own service account: its identity is spiffe://<td>/ns/<gateway ns>/sa/<this>. */
  readonly serviceAccount: string
  /** The node this pod runs on (a node certificate names it). */
  readonly node: string
  readonly source: SourceConfig
  readonly certificates: CertificateSourceConfig
  readonly certTtlMs: number
  readonly trustDomain: string
  readonly rootNamespace: string
  readonly clusterDomain: string
  readonly hbone: Address
  readonly metrics: Address
  readonly readiness: Address
  readonly admin: Address
  readonly logLevel: LogLevel
}

export interface WaypointFlags extends SourceFlags, CertificateFlags {
  readonly gateway?: string
  readonly serviceAccount?: string
  readonly node?: string
  readonly trustDomain: string
  readonly rootNamespace: string
  readonly clusterDomain: string
  readonly hboneAddr: string
  readonly metricsAddr: string
  readonly readinessAddr: string
  readonly adminAddr: string
  readonly logLevel: string
}

export const WAYPOINT_DEFAULTS = {
  ...CERTIFICATE_DEFAULTS,
  trustDomain: 'cluster.local',
  rootNamespace: 'istio-system',
  clusterDomain: 'cluster.local',
  hboneAddr: `0.0.0.0:${DEFAULT_HBONE_PORT}`,
  metricsAddr: '0.0.0.0:15020',
  readinessAddr: '0.0.0.0:15021',
  adminAddr: '127.0.0.1:15000',
  logLevel: 'info',
} as const

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

function parseGateway(value: string): { namespace: string; name: string } {
  const parts = value.split('/')
  if (parts.length !== 2 || !NAME.test(parts[0]!) || !NAME.test(parts[1]!)) {
    throw new ConfigError('--gateway', `${JSON.stringify(value)} is not NAMESPACE/NAME of a Gateway`)
  }
  return { namespace: parts[0]!, name: parts[1]! }
}

export function parseWaypointConfig(flags: WaypointFlags, env: NodeJS.ProcessEnv): WaypointConfig {
  const gateway = parseGateway(requireString('--gateway (or AMBIENT_GATEWAY)', flags.gateway ?? fromEnv(env, 'AMBIENT_GATEWAY', '')))
  const serviceAccount = flags.serviceAccount ?? gateway.name
  if (!NAME.test(serviceAccount)) throw new ConfigError('--service-account', `${JSON.stringify(serviceAccount)} is not a service account name`)
  const admin = parseAddress('--admin-addr', flags.adminAddr)
  if (admin.host !== '127.0.0.1') throw new ConfigError('--admin-addr', `the admin endpoint is localhost only, got ${flags.adminAddr}`)
  const certificates = parseCertificateSource(flags)
  const node = flags.node ?? fromEnv(env, 'AMBIENT_NODE_NAME', '')
  if (certificates.certificates.kind === 'ca' && node === '')
    throw new ConfigError('--node (or AMBIENT_NODE_NAME)', 'is required with --node-cert-dir: the node certificate names the node')
  return Object.freeze({
    gateway,
    serviceAccount,
    node,
    source: parseSourceConfig(flags, env),
    ...certificates,
    trustDomain: requireString('--trust-domain', flags.trustDomain),
    rootNamespace: requireString('--root-namespace', flags.rootNamespace),
    clusterDomain: requireString('--cluster-domain', flags.clusterDomain),
    hbone: parseAddress('--hbone-addr', flags.hboneAddr),
    metrics: parseAddress('--metrics-addr', flags.metricsAddr),
    readiness: parseAddress('--readiness-addr', flags.readinessAddr),
    admin,
    logLevel: parseLogLevel(flags.logLevel),
  })
}
