// IdentityManager: the node's workload certificates, one per SPIFFE identity.
// A certificate and its TLS context are made once and shared by every
// connection; concurrent callers share one request; renewal runs at half-life,
// retried with jittered exponential backoff while the still-valid certificate
// stays in use (without one, callers fail fast during the backoff); a new trust
// bundle rebuilds the contexts.
import { EventEmitter } from 'node:events'
import { createPublicKey, X509Certificate } from 'node:crypto'
import type tls from 'node:tls'
import type { Logger } from 'pino'
import { createIdentityContext } from '../hbone/tls.js'
import type { CertificateSource, IssuedChain } from './certificate-source.js'
import { parseBundle, splitPem, verifyChain } from './chain.js'
import { IdentityError } from './errors.js'
import { createCsr, generateKeyPair, parseSpiffeId, spiffeIdOf, type KeyPair } from './pki.js'

export const DEFAULT_CERT_TTL_MS = 24 * 3600_000

export interface ManagedCertificate {
  readonly identity: string
  readonly certPem: string
  readonly keyPem: string
  /** Intermediates sent after the leaf ('' when the CA is the root). */
  readonly chainPem: string
  readonly trustBundlePem: string
  readonly serialNumber: string
  readonly notBefore: Date
  readonly notAfter: Date
  /** Built once per certificate (and per trust bundle), never per connection. */
  readonly secureContext: tls.SecureContext
}

export type RotationReason = 'issued' | 'renewed' | 'trust-bundle'

export interface IdentityManagerEvents {
  certificate: [certificate: ManagedCertificate, reason: RotationReason]
  /** A request failed; retried after `retryInMs`. `notAfter` of the certificate still held, or null. */
  'request-failed': [failure: RequestFailure]
  'trust-bundle': [bundle: { readonly roots: number }]
}

export interface RequestFailure {
  readonly identity: string
  readonly error: Error
  readonly attempt: number
  readonly retryInMs: number
  readonly notAfter: Date | null
}

export interface IdentityManagerOptions {
  readonly source: CertificateSource
  /** PEM roots every certificate (ours and peers') must chain to. */
  readonly trustBundlePem: string
  /** Requested certificate lifetime (default 24 h). */
  readonly certTtlMs?: number
  /** Renewal retry backoff: first delay and cap (default 1 s, 5 min), jittered. */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number }
  readonly log?: Logger
  readonly random?: () => number
}

interface Entry {
  current: ManagedCertificate | null
  inflight: Promise<ManagedCertificate> | null
  timer: NodeJS.Timeout | null
  failures: number
  /** After a failed request, callers without a valid certificate fail fast until then. */
  failedUntil: number
  lastError: Error | null
}

export class IdentityManager extends EventEmitter<IdentityManagerEvents> {
  private readonly entries = new Map<string, Entry>()
  private trustBundlePem: string
  private roots: X509Certificate[]
  private stopped = false
  private readonly ttlMs: number
  private readonly retryInitialMs: number
  private readonly retryMaxMs: number
  private readonly random: () => number

  constructor(private readonly options: IdentityManagerOptions) {
    super()
    this.roots = parseBundle(options.trustBundlePem, 'the trust bundle')
    this.trustBundlePem = options.trustBundlePem
    this.ttlMs = options.certTtlMs ?? DEFAULT_CERT_TTL_MS
    this.retryInitialMs = options.retry?.initialMs ?? 1000
    this.retryMaxMs = options.retry?.maxMs ?? 5 * 60_000
    this.random = options.random ?? Math.random
  }

  async start(): Promise<void> {
    this.stopped = false
  }

  /** Drops every certificate and timer; later calls to getCertificate fail. */
  async stop(): Promise<void> {
    this.stopped = true
    for (const entry of this.entries.values()) if (entry.timer) clearTimeout(entry.timer)
    this.entries.clear()
  }

  /** The identity's current certificate, requesting one if none is valid. */
  getCertificate(identity: string): Promise<ManagedCertificate> {
    if (this.stopped)
      return Promise.reject(new IdentityError('AMBIENT_ERR_IDENTITY_STOPPED', `identity manager is stopped; cannot get a certificate for ${identity}`))
    try {
      parseSpiffeId(identity)
    } catch (err) {
      return Promise.reject(err)
    }
    let entry = this.entries.get(identity)
    if (!entry) {
      entry = { current: null, inflight: null, timer: null, failures: 0, failedUntil: 0, lastError: null }
      this.entries.set(identity, entry)
    }
    if (entry.current && Date.now() < entry.current.notAfter.getTime()) return Promise.resolve(entry.current)
    if (entry.inflight) return entry.inflight
    // Backing off after a failure: fail closed at once rather than hammer the CA per connection.
    if (entry.lastError && Date.now() < entry.failedUntil) return Promise.reject(entry.lastError)
    return this.request(identity, entry, entry.current ? 'renewed' : 'issued')
  }

  /** The current certificate without waiting (null when none is held or it expired). */
  peek(identity: string): ManagedCertificate | null {
    const current = this.entries.get(identity)?.current
    return current && Date.now() < current.notAfter.getTime() ? current : null
  }

  /** Stops renewing an identity (its last pod left the node). */
  forget(identity: string): void {
    const entry = this.entries.get(identity)
    if (entry?.timer) clearTimeout(entry.timer)
    this.entries.delete(identity)
  }

  /** Replaces the roots; every held certificate gets a new context (renewed now if it no longer chains). */
  setTrustBundle(trustBundlePem: string): void {
    this.roots = parseBundle(trustBundlePem, 'the trust bundle')
    this.trustBundlePem = trustBundlePem
    this.emit('trust-bundle', { roots: this.roots.length })
    for (const [identity, entry] of this.entries) {
      const old = entry.current
      if (!old) continue
      const credentials = { keyPem: old.keyPem, certPem: old.certPem, chainPem: old.chainPem, trustBundlePem }
      entry.current = { ...old, trustBundlePem, secureContext: createIdentityContext(credentials) }
      this.emit('certificate', entry.current, 'trust-bundle')
      try {
        verifyChain({ leaf: new X509Certificate(old.certPem), intermediates: splitPem(old.chainPem).map((pem) => new X509Certificate(pem)), roots: this.roots })
      } catch (err) {
        this.options.log?.warn({ identity, err: (err as Error).message }, 'certificate does not chain to the new trust bundle; renewing now')
        this.schedule(identity, entry, 0)
      }
    }
  }

  get trustBundle(): string {
    return this.trustBundlePem
  }

  /** Held certificates, without keys (admin /config_dump). */
  describe(): { identity: string; serialNumber: string; notAfter: string; pending: boolean }[] {
    return [...this.entries.entries()].map(([identity, e]) => ({
      identity,
      serialNumber: e.current?.serialNumber ?? '',
      notAfter: e.current?.notAfter.toISOString() ?? '',
      pending: e.inflight !== null,
    }))
  }

  private request(identity: string, entry: Entry, reason: RotationReason): Promise<ManagedCertificate> {
    const inflight = (async () => {
      const keys = generateKeyPair()
      const csrPem = createCsr({ spiffeId: identity, ...keys })
      let issued: IssuedChain
      try {
        issued = await this.options.source.requestCertificate(csrPem, identity, { validityMs: this.ttlMs })
      } catch (err) {
        if (err instanceof IdentityError) throw err
        throw new IdentityError('AMBIENT_ERR_IDENTITY_SOURCE', `certificate request for ${identity} failed: ${(err as Error).message}`, { cause: err })
      }
      return this.accept(identity, keys, issued)
    })()
    entry.inflight = inflight
    inflight.then(
      (certificate) => {
        entry.inflight = null
        if (this.entries.get(identity) !== entry || this.stopped) return
        entry.current = certificate
        entry.failures = 0
        entry.lastError = null
        const receivedAt = Date.now()
        this.schedule(identity, entry, (certificate.notAfter.getTime() - receivedAt) / 2)
        this.options.log?.info({ identity, serial: certificate.serialNumber, notAfter: certificate.notAfter.toISOString(), reason }, 'certificate rotated')
        this.emit('certificate', certificate, reason)
      },
      (error: Error) => {
        entry.inflight = null
        if (this.entries.get(identity) !== entry || this.stopped) return
        entry.failures++
        const base = Math.min(this.retryMaxMs, this.retryInitialMs * 2 ** (entry.failures - 1))
        const retryInMs = Math.round(base / 2 + (this.random() * base) / 2)
        entry.failedUntil = Date.now() + retryInMs
        entry.lastError = error
        this.schedule(identity, entry, retryInMs)
        const notAfter = entry.current?.notAfter ?? null
        this.options.log?.warn(
          { identity, err: error.message, attempt: entry.failures, retryInMs, notAfter: notAfter?.toISOString() },
          notAfter ? 'certificate renewal failed; keeping the current certificate' : 'certificate request failed',
        )
        this.emit('request-failed', { identity, error, attempt: entry.failures, retryInMs, notAfter })
      },
    )
    return inflight
  }

  private schedule(identity: string, entry: Entry, delayMs: number): void {
    if (entry.timer) clearTimeout(entry.timer)
    entry.timer = setTimeout(
      () => {
        entry.timer = null
        if (this.entries.get(identity) === entry && !entry.inflight && !this.stopped) {
          this.request(identity, entry, entry.current ? 'renewed' : 'issued').catch(() => undefined)
        }
      },
      Math.max(0, delayMs),
    )
    entry.timer.unref()
  }

  /** Checks what the source returned: our key, our identity, a chain to our roots. */
  private accept(identity: string, keys: KeyPair, issued: IssuedChain): ManagedCertificate {
    const wrong = (why: string): IdentityError => new IdentityError('AMBIENT_ERR_IDENTITY_WRONG_CERT', `certificate issued for ${identity} ${why}`)
    const blocks = issued.certChainPem.flatMap((pem) => splitPem(pem))
    if (blocks.length === 0) throw wrong('is missing: the chain is empty')
    const [leafPem, ...rest] = blocks as [string, ...string[]]
    const leaf = new X509Certificate(leafPem)
    const actual = spiffeIdOf(leaf)
    if (actual !== identity) throw wrong(`carries ${JSON.stringify(actual)} instead`)
    if (!leaf.publicKey.equals(createPublicKey(keys.publicKeyPem))) {
      throw wrong('is not for the key this node generated')
    }
    const others = rest.map((pem) => new X509Certificate(pem))
    verifyChain({ leaf, intermediates: others, roots: this.roots })
    const chainPem = rest.filter((_, i) => !others[i]!.checkIssued(others[i]!)).join('')
    const credentials = { keyPem: keys.privateKeyPem, certPem: leafPem, chainPem, trustBundlePem: this.trustBundlePem }
    return {
      identity,
      ...credentials,
      serialNumber: leaf.serialNumber,
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
      secureContext: createIdentityContext(credentials),
    }
  }
}
