// Where workload certificates come from. IdentityManager sends a CSR and gets
// Istio's answer shape back: the chain, leaf first, root last. Two sources: the
// gRPC client of `ambient ca` (common/identity/ca-client.ts) and InProcessCertificateSource
// below, which signs with a CA key held in this process (tests, local mode).
import { X509Certificate } from 'node:crypto'
import { splitPem } from './chain.js'
import { IdentityError } from './errors.js'
import { parseCsr, parseSpiffeId, signCsr, type CertifiedKey } from './pki.js'

export interface CertificateRequestOptions {
  /** Requested lifetime; the issuer may shorten it. */
  readonly validityMs?: number
}

export interface IssuedChain {
  /** Leaf first, then intermediates, root last (IstioCertificateResponse.cert_chain). */
  readonly certChainPem: readonly string[]
}

export interface CertificateSource {
  requestCertificate(csrPem: string, identity: string, options?: CertificateRequestOptions): Promise<IssuedChain>
}

export interface InProcessSourceOptions {
  /** The signing CA (a root, or an intermediate with `chainPem` above it). */
  readonly ca: CertifiedKey
  /** Certificates between the signing CA and the root, root last; empty when `ca` is the root. */
  readonly chainPem?: string
  /** Only identities of this trust domain are issued. */
  readonly trustDomain?: string
  readonly defaultTtlMs?: number
  readonly maxTtlMs?: number
}

/** Signs CSRs in-process with the same checks as the CA, minus node authorization. */
export class InProcessCertificateSource implements CertificateSource {
  private readonly above: string[]
  requests = 0

  constructor(private readonly options: InProcessSourceOptions) {
    const chain = splitPem(options.chainPem ?? '')
    const selfSigned = new X509Certificate(options.ca.certPem).checkIssued(new X509Certificate(options.ca.certPem))
    this.above = selfSigned ? [options.ca.certPem] : [options.ca.certPem, ...chain]
  }

  async requestCertificate(csrPem: string, identity: string, options: CertificateRequestOptions = {}): Promise<IssuedChain> {
    this.requests++
    const csr = parseCsr(csrPem)
    if (csr.spiffeId !== identity)
      throw new IdentityError('AMBIENT_ERR_IDENTITY_NOT_ALLOWED', `the CSR asks for ${csr.spiffeId} but the request is for ${identity}`)
    const td = parseSpiffeId(identity).trustDomain
    if (this.options.trustDomain && td !== this.options.trustDomain) {
      throw new IdentityError('AMBIENT_ERR_IDENTITY_NOT_ALLOWED', `identity ${identity} is outside the trust domain ${this.options.trustDomain}`)
    }
    const ttlMs = Math.min(options.validityMs ?? this.options.defaultTtlMs ?? 24 * 3600_000, this.options.maxTtlMs ?? Infinity)
    const leaf = signCsr({ csrPem, ca: this.options.ca, ttlMs })
    return { certChainPem: [leaf, ...this.above] }
  }
}
