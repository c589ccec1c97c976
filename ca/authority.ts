// The CA's decision for one CreateCertificate call, apart from gRPC: who is
// calling (a node, by its client certificate, or a caller a service-account token
// proved: token-auth.ts), is the CSR well formed and in our trust domain, and may
// that caller have that identity: a node only the identities of pods scheduled on
// it, any other service account only its own.
import { X509Certificate } from 'node:crypto'
import { verifyChain, splitPem, parseBundle } from '../common/identity/chain.js'
import { IdentityError } from '../common/identity/errors.js'
import { parseCsr, parseSpiffeId, signCsr, spiffeIdOf } from '../common/identity/pki.js'
import { responseChain, type CaBundle } from '../common/identity/cacerts.js'
import { CaError } from '../common/identity/ca-errors.js'
import { parseNodeSpiffeId } from '../common/identity/node-identity.js'
import type { PodRegistry } from './pod-registry.js'

export const DEFAULT_WORKLOAD_TTL_MS = 24 * 3600_000
export const DEFAULT_MAX_WORKLOAD_TTL_MS = 90 * 24 * 3600_000

export interface AuthorityOptions {
  readonly bundle: CaBundle
  readonly trustDomain: string
  readonly registry: PodRegistry
  /** Lifetime when the request names none (default 24 h). */
  readonly defaultTtlMs?: number
  /** Longest lifetime granted (default 90 days). */
  readonly maxTtlMs?: number
}

export interface CertificateRequest {
  readonly csrPem: string
  /** IstioCertificateRequest.validity_duration, seconds; 0 or absent for the default. */
  readonly validitySeconds?: number
  /** metadata.ImpersonatedIdentity, when the caller sent it. */
  readonly impersonatedIdentity?: string
  /** The caller's TLS client certificate, or null when it sent none. */
  readonly callerCertificate: X509Certificate | null
}

/** Who is asking, once authenticated. */
export type Caller =
  /** A node (node certificate, or the ztunnel service account's token bound to a pod on it): its pods' identities. */
  | { readonly kind: 'node'; readonly node: string; readonly via: 'certificate' | 'token' }
  /** Any other service account (a waypoint): exactly its own identity. */
  | { readonly kind: 'workload'; readonly identity: string }

export function describeCaller(caller: Caller): string {
  return caller.kind === 'node' ? `node ${caller.node}` : `service account ${caller.identity}`
}

export interface Issued {
  /** The node for a node caller, null for a workload. */
  readonly node: string | null
  readonly caller: string
  readonly identity: string
  readonly serialNumber: string
  readonly certChainPem: readonly string[]
}

export class CertificateAuthority {
  private readonly roots: X509Certificate[]
  private readonly chain: X509Certificate[]
  /** Callers already authenticated, by DER: a node reuses one certificate for many requests. */
  private readonly callers = new Map<string, { readonly node: string; readonly notAfter: number }>()

  constructor(private readonly options: AuthorityOptions) {
    this.roots = parseBundle(options.bundle.trustBundlePem, 'the trust bundle')
    this.chain = [options.bundle.signing.certPem, ...options.bundle.intermediatesPem].map((pem) => new X509Certificate(pem))
  }

  get trustBundlePem(): string {
    return this.options.bundle.trustBundlePem
  }

  /** The node a caller's certificate proves, or UNAUTHENTICATED / PERMISSION_DENIED. */
  authenticate(caller: X509Certificate | null): string {
    const key = caller?.raw.toString('base64')
    const known = key ? this.callers.get(key) : undefined
    if (known && Date.now() < known.notAfter) return known.node
    const node = this.authenticateOnce(caller)
    if (this.callers.size >= 4096) this.callers.delete(this.callers.keys().next().value!)
    this.callers.set(key!, { node, notAfter: Date.parse(caller!.validTo) })
    return node
  }

  private authenticateOnce(caller: X509Certificate | null): string {
    // grpc-js shows only certificates the TLS handshake authorized: missing, expired and foreign ones all land here.
    if (!caller)
      throw new CaError(
        'AMBIENT_ERR_CA_UNAUTHENTICATED',
        'no valid client certificate (missing, expired or from another CA) and no service-account token: call the CA with an unexpired node certificate it issued (ambient ca node-cert) or, in a cluster, a projected token (ztunnel --ca-token-file)',
      )
    try {
      verifyChain({ leaf: caller, intermediates: this.chain, roots: this.roots })
    } catch (err) {
      throw new CaError('AMBIENT_ERR_CA_UNAUTHENTICATED', `client certificate not accepted: ${(err as Error).message}`, { cause: err })
    }
    const uri = spiffeIdOf(caller)
    const node = uri ? parseNodeSpiffeId(uri) : null
    if (!node || node.trustDomain !== this.options.trustDomain) {
      throw new CaError(
        'AMBIENT_ERR_CA_PERMISSION_DENIED',
        `caller ${JSON.stringify(uri)} is not a node of trust domain ${this.options.trustDomain} (expected spiffe://${this.options.trustDomain}/node/<node-name>)`,
      )
    }
    return node.node
  }

  /** A caller with a client certificate (a node). */
  issue(request: CertificateRequest): Issued {
    return this.issueFor({ kind: 'node', node: this.authenticate(request.callerCertificate), via: 'certificate' }, request)
  }

  /** Checks the CSR and whether `caller` may have its identity; signs it. */
  issueFor(caller: Caller, request: Omit<CertificateRequest, 'callerCertificate'>): Issued {
    let csr
    try {
      csr = parseCsr(request.csrPem)
    } catch (err) {
      const message = err instanceof IdentityError ? err.message : `malformed CSR: ${(err as Error).message}`
      throw new CaError(
        'AMBIENT_ERR_CA_BAD_REQUEST',
        `${message}; send a PKCS#10 request with one spiffe://${this.options.trustDomain}/ns/<ns>/sa/<sa> URI SAN`,
        { cause: err },
      )
    }
    const identity = csr.spiffeId
    const { trustDomain } = parseSpiffeId(identity)
    if (trustDomain !== this.options.trustDomain) {
      throw new CaError(
        'AMBIENT_ERR_CA_BAD_REQUEST',
        `CSR identity ${identity} is in trust domain ${trustDomain}; this CA issues only for ${this.options.trustDomain}`,
      )
    }
    if (request.impersonatedIdentity !== undefined && request.impersonatedIdentity !== identity) {
      throw new CaError('AMBIENT_ERR_CA_BAD_REQUEST', `metadata ImpersonatedIdentity ${request.impersonatedIdentity} differs from the CSR identity ${identity}`)
    }
    if (caller.kind === 'node' && !this.options.registry.identitiesOnNode(caller.node).has(identity)) {
      throw new CaError(
        'AMBIENT_ERR_CA_PERMISSION_DENIED',
        `node ${caller.node} may not get a certificate for ${identity}: no pod with that identity is scheduled on it`,
      )
    }
    if (caller.kind === 'workload' && caller.identity !== identity) {
      throw new CaError(
        'AMBIENT_ERR_CA_PERMISSION_DENIED',
        `service account ${caller.identity} may get a certificate only for its own identity, not ${identity}`,
      )
    }
    const seconds = request.validitySeconds ?? 0
    if (!Number.isFinite(seconds) || seconds < 0)
      throw new CaError('AMBIENT_ERR_CA_BAD_REQUEST', `validity_duration ${seconds} must be a positive number of seconds (or 0 for the default)`)
    const ttlMs = Math.min(
      seconds > 0 ? seconds * 1000 : (this.options.defaultTtlMs ?? DEFAULT_WORKLOAD_TTL_MS),
      this.options.maxTtlMs ?? DEFAULT_MAX_WORKLOAD_TTL_MS,
    )
    const leafPem = signCsr({ csrPem: request.csrPem, ca: this.options.bundle.signing, ttlMs })
    return {
      node: caller.kind === 'node' ? caller.node : null,
      caller: describeCaller(caller),
      identity,
      serialNumber: new X509Certificate(leafPem).serialNumber,
      certChainPem: responseChain(this.options.bundle, splitPem(leafPem)[0]!),
    }
  }
}
