// HBONE's TLS: mutual TLS 1.3 with ALPN h2, SPIFFE identities in URI SANs.
// Contexts are built once per identity (createIdentityContext) and reused for
// every connection; peers are checked against SPIFFE ids, never hostnames.
import { X509Certificate } from 'node:crypto'
import tls from 'node:tls'
import { parseSpiffeId, spiffeIdOf } from '../identity/pki.js'
import { HbonePeerIdentityError } from './errors.js'

export const HBONE_ALPN = 'h2'

/** A workload's key and certificate chain plus the mesh trust bundle, all PEM. */
export interface IdentityCredentials {
  readonly keyPem: string
  /** Leaf certificate PEM. */
  readonly certPem: string
  /** Intermediates (may be empty); the root need not be included. */
  readonly chainPem?: string
  /** The roots every peer must chain to. */
  readonly trustBundlePem: string
}

/** The client or server context for one identity: TLS 1.3 only, mesh roots only. */
export function createIdentityContext(credentials: IdentityCredentials): tls.SecureContext {
  return tls.createSecureContext(contextOptions(credentials))
}

export function contextOptions(credentials: IdentityCredentials): tls.SecureContextOptions {
  const chain = credentials.chainPem ? `${credentials.certPem.trim()}\n${credentials.chainPem.trim()}\n` : credentials.certPem
  return {
    key: credentials.keyPem,
    cert: chain,
    ca: credentials.trustBundlePem,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
  }
}

/** The SPIFFE id of a TLS peer's leaf certificate, or null when it has none. */
export function peerIdentity(socket: tls.TLSSocket): string | null {
  const x509 = socket.getPeerX509Certificate()
  return x509 ? spiffeIdOf(x509) : null
}

/** The trust domain of a SPIFFE id, or null when it is not one. */
export function trustDomainOf(spiffeId: string): string | null {
  try {
    return parseSpiffeId(spiffeId).trustDomain
  } catch {
    return null
  }
}

/**
 * A `checkServerIdentity` for tls.connect that accepts exactly one SPIFFE id in
 * the server's URI SAN (the chain itself is verified by TLS against the bundle).
 */
export function expectServerIdentity(expected: string): (host: string, cert: tls.PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    let actual: string | null = null
    try {
      actual = cert.raw ? spiffeIdOf(new X509Certificate(cert.raw)) : null
    } catch {
      actual = null
    }
    if (actual === expected) return undefined
    return new HbonePeerIdentityError(`hbone server identity ${JSON.stringify(actual)} does not match the destination identity ${expected}`)
  }
}
