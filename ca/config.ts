// `ambient ca`'s configuration: flags parsed once into a frozen object; a bad
// value throws ConfigError naming the flag.
import { ConfigError, parseAddress, parseDuration, parseLogLevel, requireString, type Address } from '../common/config.js'
import { kubeConnectionFromFlags, type KubeConnection } from '../common/kube/kube-config.js'

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
  /**
   * The Kubernetes API (--kubeconfig, --kube-server, or the pod's service account):
   * pods' spec.nodeName give each node its identities, callers may authenticate
   * with service-account tokens (TokenReview), and the root is published as a ConfigMap.
   */
  readonly kube: KubeConnection | null
  /** Audience service-account tokens must be issued for. */
  readonly tokenAudience: string
  /** The service account whose tokens stand for the node they are bound to (ztunnel's). */
  readonly ztunnelServiceAccount: { readonly namespace: string; readonly name: string }
  /** ConfigMap holding root-cert.pem in every namespace; null: not published. */
  readonly rootCertConfigMap: string | null
  /** How often every namespace's root ConfigMap is checked (besides namespace changes). */
  readonly rootCertResyncMs: number
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
  readonly kubeconfig?: string
  readonly context?: string
  readonly kubeServer?: string
  readonly kubeInsecure?: boolean
  readonly tokenAudience?: string
  readonly ztunnelServiceAccount?: string
  /** A name, or false with --no-root-cert-configmap. */
  readonly rootCertConfigmap?: string | false
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
  tokenAudience: 'istio-ca',
  ztunnelServiceAccount: 'ambient-system/ztunnel',
  rootCertConfigMap: 'istio-ca-root-cert',
} as const

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/

const TRUST_DOMAIN = /^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/

function serviceAccountOf(value: string): { namespace: string; name: string } {
  const [namespace = '', name = '', ...rest] = value.split('/')
  if (rest.length > 0 || !DNS_LABEL.test(namespace) || !DNS_SUBDOMAIN.test(name))
    throw new ConfigError('--ztunnel-service-account', `${JSON.stringify(value)} is not NAMESPACE/NAME of a service account`)
  return { namespace, name }
}

/** Flags, and the environment for the in-cluster API (KUBERNETES_SERVICE_HOST/PORT). */
export function parseCaConfig(flags: CaFlags, env: NodeJS.ProcessEnv = {}): CaConfig {
  const given = [
    flags.nodeIdentities && '--node-identities',
    flags.manifests && '--manifests',
    flags.kubeconfig && '--kubeconfig',
    flags.kubeServer && '--kube-server',
  ].filter(Boolean)
  if (given.length > 1) throw new ConfigError(given[1] as string, `give one source of pods, not ${given.join(' and ')}`)
  // Files or a folder name the pods: the in-cluster API is not used even inside a pod.
  const kube = given.length === 0 || flags.kubeconfig || flags.kubeServer ? kubeConnectionFromFlags(flags, env) : null
  const rootCertConfigMap = flags.rootCertConfigmap === false ? null : (flags.rootCertConfigmap ?? CA_DEFAULTS.rootCertConfigMap)
  if (rootCertConfigMap !== null && !DNS_SUBDOMAIN.test(rootCertConfigMap))
    throw new ConfigError('--root-cert-configmap', `${JSON.stringify(rootCertConfigMap)} is not a ConfigMap name`)
  const tokenAudience = flags.tokenAudience ?? CA_DEFAULTS.tokenAudience
  if (tokenAudience === '') throw new ConfigError('--token-audience', 'must not be empty')
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
    kube,
    tokenAudience,
    ztunnelServiceAccount: Object.freeze(serviceAccountOf(flags.ztunnelServiceAccount ?? CA_DEFAULTS.ztunnelServiceAccount)),
    rootCertConfigMap,
    rootCertResyncMs: 60_000,
    dnsNames: Object.freeze(flags.dnsName.length > 0 ? [...flags.dnsName] : [...CA_DEFAULTS.dnsNames]),
    logLevel,
  })
}
