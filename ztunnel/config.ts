// ztunnel's configuration, read once from flags and named environment variables
// into a frozen object. A bad value throws ConfigError naming the setting.
import { ConfigError, parseAddress, parseDuration, requireString, type Address } from '../common/config.js'
import { DEFAULT_CA_ROOT_CERT } from '../common/identity/ca-client.js'
import { NODE_DEFAULTS, parseNodeSettings, type NodeFlags, type NodeSettings } from '../common/node-settings.js'

export interface ZtunnelConfig extends NodeSettings {
  /** Workloads and policies from a YAML file; null when they come from the agent (xdsAddress). */
  readonly localConfig: string | null
  /** The node agent's Unix socket (delta xDS); null with localConfig. */
  readonly xdsAddress: string | null
  /** `ambient ca` address; null in local mode (cacertsDir). */
  readonly caAddress: string | null
  /** The node's certificate for the CA (`ambient ca node-cert`); null with caTokenFile or in local mode. */
  readonly nodeCertDir: string | null
  /** A service-account token file for the CA (a projected token, re-read on every request); null with nodeCertDir. */
  readonly caTokenFile: string | null
  /** With caTokenFile: the roots that check the CA and peers (the istio-ca-root-cert ConfigMap, mounted), watched. */
  readonly caRootCert: string | null
  readonly cacertsDir: string | null
  readonly certTtlMs: number
  readonly metrics: Address
  readonly readiness: Address
  readonly admin: Address
}

export interface ZtunnelFlags extends NodeFlags {
  readonly localConfig?: string
  readonly xdsAddress?: string
  readonly cacerts?: string
  readonly caAddress?: string
  readonly nodeCertDir?: string
  readonly caTokenFile?: string
  readonly caRootCert?: string
  readonly certTtl: string
  readonly metricsAddr: string
  readonly readinessAddr: string
  readonly adminAddr: string
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
  })
}

export const ZTUNNEL_DEFAULTS = {
  ...NODE_DEFAULTS,
  certTtl: '24h',
  metricsAddr: '127.0.0.1:15020',
  readinessAddr: '127.0.0.1:15021',
  adminAddr: '127.0.0.1:15000',
} as const

export { DEFAULT_CA_ROOT_CERT }

type CertificateSourceConfig = Pick<ZtunnelConfig, 'caAddress' | 'nodeCertDir' | 'caTokenFile' | 'caRootCert' | 'cacertsDir'>

function certificateSource(flags: ZtunnelFlags): CertificateSourceConfig {
  if (flags.caAddress !== undefined && flags.cacerts !== undefined)
    throw new ConfigError('--ca-address', 'give either --ca-address (with --node-cert-dir or --ca-token-file) or --cacerts (local mode), not both')
  if (flags.caAddress === undefined) {
    for (const [flag, value] of [
      ['--node-cert-dir', flags.nodeCertDir],
      ['--ca-token-file', flags.caTokenFile],
      ['--ca-root-cert', flags.caRootCert],
    ] as const)
      if (value !== undefined) throw new ConfigError(flag, 'is for calling `ambient ca`: give --ca-address too')
  }
  if (flags.caAddress !== undefined) {
    if (!/^[^\s:]+:\d+$/.test(flags.caAddress)) throw new ConfigError('--ca-address', `${JSON.stringify(flags.caAddress)} is not host:port`)
    if (flags.nodeCertDir !== undefined && flags.caTokenFile !== undefined)
      throw new ConfigError('--ca-token-file', 'give either --node-cert-dir (a node certificate) or --ca-token-file (a service-account token), not both')
    if (flags.caTokenFile !== undefined)
      return {
        caAddress: flags.caAddress,
        nodeCertDir: null,
        caTokenFile: requireString('--ca-token-file', flags.caTokenFile),
        caRootCert: requireString('--ca-root-cert', flags.caRootCert ?? DEFAULT_CA_ROOT_CERT),
        cacertsDir: null,
      }
    if (flags.caRootCert !== undefined)
      throw new ConfigError('--ca-root-cert', 'goes with --ca-token-file; with --node-cert-dir the roots are its root-cert.pem')
    if (flags.nodeCertDir === undefined)
      throw new ConfigError(
        '--node-cert-dir',
        '--ca-address needs credentials: --node-cert-dir DIR (ambient ca node-cert) or --ca-token-file FILE (a projected service-account token)',
      )
    return {
      caAddress: flags.caAddress,
      nodeCertDir: requireString('--node-cert-dir', flags.nodeCertDir),
      caTokenFile: null,
      caRootCert: null,
      cacertsDir: null,
    }
  }
  if (flags.cacerts === undefined)
    throw new ConfigError('--ca-address', 'workload certificates need --ca-address with --node-cert-dir or --ca-token-file, or --cacerts for local mode')
  return { caAddress: null, nodeCertDir: null, caTokenFile: null, caRootCert: null, cacertsDir: flags.cacerts }
}

function stateSource(flags: ZtunnelFlags): { localConfig: string | null; xdsAddress: string | null } {
  if (flags.localConfig !== undefined && flags.xdsAddress !== undefined)
    throw new ConfigError('--xds-address', 'give either --xds-address (the node agent) or --local-config (a static file), not both')
  if (flags.xdsAddress !== undefined) return { localConfig: null, xdsAddress: requireString('--xds-address', flags.xdsAddress) }
  if (flags.localConfig === undefined)
    throw new ConfigError('--xds-address', "workloads and policies need --xds-address (the node agent's socket) or --local-config FILE")
  return { localConfig: requireString('--local-config', flags.localConfig), xdsAddress: null }
}
