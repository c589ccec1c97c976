// Workload certificates issued in-process from a CA key this ztunnel holds: the
// local mode (`ambient ztunnel --cacerts DIR`, the demo). In a cluster ztunnel
// asks `ambient ca` instead. Each identity's certificate and TLS context are made
// once and reused for every connection until renewal at half-life.
import type tls from 'node:tls'
import { createIdentityContext, type IdentityCredentials } from '../hbone/tls.js'
import { issueWorkloadCertificate, type CertifiedKey } from './pki.js'

export type { IdentityCredentials }

export interface IdentityProvider {
  credentials(identity: string): IdentityCredentials
  /** The client/server TLS context of an identity, built once per certificate. */
  context(identity: string): tls.SecureContext
  readonly trustBundlePem: string
  /** Certificates held, without private keys (admin /config_dump). */
  describe(): { identity: string; notAfter: string }[]
}

interface Held {
  readonly credentials: IdentityCredentials
  readonly context: tls.SecureContext
  readonly notAfter: number
  readonly renewAt: number
}

export class LocalCaIdentities implements IdentityProvider {
  private readonly held = new Map<string, Held>()
  readonly trustBundlePem: string

  constructor(private readonly ca: CertifiedKey, private readonly ttlMs = 24 * 3600_000) {
    this.trustBundlePem = ca.certPem
  }

  private get(identity: string): Held {
    const now = Date.now()
    const current = this.held.get(identity)
    if (current && now < current.renewAt) return current
    const issued = issueWorkloadCertificate({ spiffeId: identity, ca: this.ca, ttlMs: this.ttlMs })
    const credentials = { keyPem: issued.keyPem, certPem: issued.certPem, trustBundlePem: this.trustBundlePem }
    const held: Held = {
      credentials,
      context: createIdentityContext(credentials),
      notAfter: now + this.ttlMs,
      renewAt: now + this.ttlMs / 2,
    }
    this.held.set(identity, held)
    return held
  }

  credentials(identity: string): IdentityCredentials {
    return this.get(identity).credentials
  }

  context(identity: string): tls.SecureContext {
    return this.get(identity).context
  }

  describe(): { identity: string; notAfter: string }[] {
    return [...this.held.entries()].map(([identity, h]) => ({ identity, notAfter: new Date(h.notAfter).toISOString() }))
  }
}
