// `ambient ca`'s configuration: flags parsed once into a frozen object; a bad
// value throws ConfigError naming the flag.
import { ConfigError, parseAddress, parseDuration, parseLogLevel, requireString, type Address } from '../common/config.js'

export interface CaConfig {
  readonly listen: Address
  readonly cacertsDir: string
  readonly trustDomain: string
  /** Lifetime of workload certificates when the request names none. */
  readonly certTtlMs: number
  /** Longest lifetime granted to a request. */
  readonly maxCertTtlMs: number
  /** YAML map node name → SPIFFE ids, re-read on change; null: no node may get anything yet. */
  readonly nodeIdentitiesFile: string | null
  /** A manifests folder (as `ambient agent --manifests`): pods' spec.nodeName give each node its identities. */
  readonly manifestsDir: string | null
  /** DNS SANs of the CA's serving certificate. */
  readonly dnsNames: readonly string[]
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error'
}

export interface CaFlags {
  readonly listen: string
  readonly cacerts?: string
  readonly trustDomain: string
  readonly certTtl: string
  readonly maxCertTtl: string
  readonly nodeIdentities?: string
  readonly manifests?: string
  readonly dnsName: readonly string[]
  readonly logLevel: string
}

export const CA_DEFAULTS = {
  listen: '0.0.0.0:15012',
  trustDomain: 'cluster.local',
  certTtl: '24h',
  maxCertTtl: '2160h',
  dnsNames: ['localhost'],
  logLevel: 'info',
} as const

const TRUST_DOMAIN = /^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/

export function parseCaConfig(flags: CaFlags): CaConfig {
  if (flags.nodeIdentities !== undefined && flags.manifests !== undefined)
    throw new ConfigError('--manifests', 'give either --node-identities or --manifests, not both')
  const trustDomain = flags.trustDomain
  if (!TRUST_DOMAIN.test(trustDomain))
    throw new ConfigError('--trust-domain', `${JSON.stringify(trustDomain)} is not a SPIFFE trust domain (lowercase letters, digits, '.', '-', '_')`)
  const certTtlMs = parseDuration('--cert-ttl', flags.certTtl)
  const maxCertTtlMs = parseDuration('--max-cert-ttl', flags.maxCertTtl)
  if (certTtlMs > maxCertTtlMs) throw new ConfigError('--cert-ttl', `${flags.certTtl} is longer than --max-cert-ttl ${flags.maxCertTtl}`)
  if (certTtlMs < 1000) throw new ConfigError('--cert-ttl', `${flags.certTtl} is shorter than one second`)
  const logLevel = parseLogLevel(flags.logLevel)
  return Object.freeze({
    listen: parseAddress('--listen', flags.listen),
    cacertsDir: requireString('--cacerts', flags.cacerts),
    trustDomain,
    certTtlMs,
    maxCertTtlMs,
    nodeIdentitiesFile: flags.nodeIdentities ?? null,
    manifestsDir: flags.manifests ?? null,
    dnsNames: Object.freeze(flags.dnsName.length > 0 ? [...flags.dnsName] : [...CA_DEFAULTS.dnsNames]),
    logLevel,
  })
}
