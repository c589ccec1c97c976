// `ambient ca`'s gRPC server: istio.v1.auth.IstioCertificateService over TLS.
// Clients authenticate with a node certificate (requested, not required by the
// handshake, so that a caller without one gets a clear UNAUTHENTICATED) or, with
// a Kubernetes API, a service-account token in the `authorization: Bearer`
// metadata (token-auth.ts). The serving certificate is issued from the CA itself
// and renewed at half-life.
import { X509Certificate } from 'node:crypto'
import * as grpc from '@grpc/grpc-js'
import type { Logger } from 'pino'
import { describeCaller, type Caller, type CertificateAuthority } from './authority.js'
import type { TokenAuthenticator } from './token-auth.js'
import { CaError } from '../common/identity/ca-errors.js'
import type { CaBundle } from '../common/identity/cacerts.js'
import { grpcStatusOf } from '../common/identity/ca-errors.js'
import { issueServingCertificate } from '../common/identity/node-identity.js'
import { caService, type IstioCertificateRequest, type IstioCertificateResponse } from '../common/identity/ca-proto.js'

export interface CaServerOptions {
  readonly authority: CertificateAuthority
  readonly bundle: CaBundle
  readonly trustDomain: string
  readonly listen: { readonly host: string; readonly port: number }
  readonly log: Logger
  /** DNS SANs of the serving certificate (default localhost). */
  readonly dnsNames?: readonly string[]
  /** Lifetime of the serving certificate (default 24 h, renewed at half-life). */
  readonly servingTtlMs?: number
  /** Service-account token callers (with a Kubernetes API); without it only node certificates are accepted. */
  readonly tokens?: TokenAuthenticator
}

/**
 * A grpc-js certificate provider whose identity can be replaced while serving.
 * A new listener is told asynchronously: grpc-js registers the server's watcher
 * only after adding its listener, so a synchronous first update would be lost.
 */
class ServingCertificates implements grpc.experimental.CertificateProvider {
  private identity: grpc.experimental.IdentityCertificateUpdate | null = null
  private readonly identityListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>()
  private readonly caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>()

  constructor(private readonly ca: Buffer) {}

  update(certificate: string, privateKey: string): void {
    this.identity = { certificate: Buffer.from(certificate), privateKey: Buffer.from(privateKey) }
    for (const listener of this.identityListeners) listener(this.identity)
  }

  addCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener)
    setImmediate(() => this.caListeners.has(listener) && listener({ caCertificate: this.ca }))
  }
  removeCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener)
  }
  addIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener)
    setImmediate(() => this.identity && this.identityListeners.has(listener) && listener(this.identity))
  }
  removeIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener)
  }
}

export class CaServer {
  private server: grpc.Server | null = null
  private renewTimer: NodeJS.Timeout | null = null
  private readonly certificates: ServingCertificates
  private boundPort = 0

  constructor(private readonly options: CaServerOptions) {
    this.certificates = new ServingCertificates(Buffer.from(options.bundle.trustBundlePem))
  }

  /** host:port the server listens on (after start). */
  get address(): string {
    return `${this.options.listen.host}:${this.boundPort}`
  }

  async start(): Promise<void> {
    this.renewServingCertificate()
    const server = new grpc.Server()
    server.addService(caService().service, { CreateCertificate: this.createCertificate.bind(this) })
    const credentials = grpc.experimental.createCertificateProviderServerCredentials(this.certificates, this.certificates, false)
    this.boundPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${this.options.listen.host}:${this.options.listen.port}`, credentials, (err, port) => (err ? reject(err) : resolve(port)))
    })
    this.server = server
    this.options.log.info({ address: this.address, trustDomain: this.options.trustDomain }, 'ca listening')
  }

  async stop(): Promise<void> {
    if (this.renewTimer) clearTimeout(this.renewTimer)
    this.renewTimer = null
    const server = this.server
    this.server = null
    if (!server) return
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        server.forceShutdown()
        resolve()
      }, 2000)
      server.tryShutdown(() => {
        clearTimeout(force)
        resolve()
      })
    })
  }

  private renewServingCertificate(): void {
    const ttlMs = this.options.servingTtlMs ?? 24 * 3600_000
    const serving = issueServingCertificate({
      bundle: this.options.bundle,
      trustDomain: this.options.trustDomain,
      dnsNames: this.options.dnsNames ?? ['localhost'],
      ttlMs,
    })
    this.certificates.update(serving.certPem + serving.chainPem, serving.keyPem)
    this.renewTimer = setTimeout(() => this.renewServingCertificate(), ttlMs / 2)
    this.renewTimer.unref()
  }

  /** Parsed once per distinct DER (a node sends the same certificate on every call). */
  private readonly parsedCallers = new Map<string, X509Certificate>()
  private callerCertificate(raw: Buffer): X509Certificate {
    const key = raw.toString('base64')
    let cert = this.parsedCallers.get(key)
    if (!cert) {
      if (this.parsedCallers.size >= 4096) this.parsedCallers.delete(this.parsedCallers.keys().next().value!)
      cert = new X509Certificate(raw)
      this.parsedCallers.set(key, cert)
    }
    return cert
  }

  /** The caller: its client certificate when it sent one, else its bearer token. */
  private async caller(call: grpc.ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>): Promise<Caller> {
    const raw = call.getAuthContext()?.sslPeerCertificate?.raw
    if (raw) return { kind: 'node', node: this.options.authority.authenticate(this.callerCertificate(raw)), via: 'certificate' }
    const header = call.metadata.get('authorization')[0]
    const token = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header)?.[1] : undefined
    if (token !== undefined && this.options.tokens !== undefined) return this.options.tokens.authenticate(token)
    if (token !== undefined)
      throw new CaError(
        'AMBIENT_ERR_CA_UNAUTHENTICATED',
        'service-account tokens are accepted only when the CA reaches the Kubernetes API (run it in the cluster, or with --kubeconfig); present a node certificate instead',
      )
    return { kind: 'node', node: this.options.authority.authenticate(null), via: 'certificate' } // throws UNAUTHENTICATED naming both ways
  }

  private createCertificate(
    call: grpc.ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>,
    callback: grpc.sendUnaryData<IstioCertificateResponse>,
  ): void {
    const { log, authority } = this.options
    const impersonated = call.request.metadata?.fields?.ImpersonatedIdentity?.stringValue
    this.caller(call)
      .then((caller) => {
        const issued = authority.issueFor(caller, {
          csrPem: call.request.csr,
          validitySeconds: Number(call.request.validity_duration ?? 0),
          impersonatedIdentity: impersonated || undefined,
        })
        log.info(
          { caller: describeCaller(caller), via: caller.kind === 'node' ? caller.via : 'token', identity: issued.identity, serial: issued.serialNumber },
          'certificate issued',
        )
        callback(null, { cert_chain: issued.certChainPem })
      })
      .catch((err: unknown) => {
        const code = grpcStatusOf(err)
        log.warn({ peer: call.getPeer(), impersonated, code: grpc.status[code], err: (err as Error).message }, 'certificate refused')
        callback({ code, details: (err as Error).message })
      })
  }
}
