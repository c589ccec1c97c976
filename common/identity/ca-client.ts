// CaClient: ztunnel's CertificateSource backed by `ambient ca` over gRPC and
// mutual TLS. It presents the node certificate, checks the CA's SPIFFE id,
// and sends the impersonated identity as Istio's ztunnel does.
import * as grpc from '@grpc/grpc-js'
import { X509Certificate } from 'node:crypto'
import type { CertificateRequestOptions, CertificateSource, IssuedChain } from './certificate-source.js'
import { spiffeIdOf } from './pki.js'
import { CaError, caErrorCodeOf } from './ca-errors.js'
import { caSpiffeId } from './node-identity.js'
import { caService, type IstioCertificateRequest, type IstioCertificateResponse } from './ca-proto.js'

export interface CaClientOptions {
  /** host:port of `ambient ca`. */
  readonly address: string
  readonly trustDomain: string
  /** This node's certificate (spiffe://<td>/node/<name>), key and intermediates. */
  readonly node: { readonly certPem: string; readonly keyPem: string; readonly chainPem?: string }
  /** Roots the CA's serving certificate must chain to. */
  readonly trustBundlePem: string
  /** The CA's expected URI SAN (default spiffe://<td>/ns/ambient-system/sa/ambient-ca). */
  readonly caIdentity?: string
  /** Per-request deadline (default 10 s). */
  readonly timeoutMs?: number
}

type UnaryMethod = (
  request: IstioCertificateRequest,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, response?: IstioCertificateResponse) => void,
) => void

export class CaClient implements CertificateSource {
  private client: grpc.Client & { CreateCertificate: UnaryMethod }
  private node: CaClientOptions['node']
  private trustBundlePem: string

  constructor(private readonly options: CaClientOptions) {
    this.node = options.node
    this.trustBundlePem = options.trustBundlePem
    this.client = this.connect()
  }

  private connect(): grpc.Client & { CreateCertificate: UnaryMethod } {
    const { options, node } = this
    const expected = options.caIdentity ?? caSpiffeId(options.trustDomain)
    const credentials = grpc.credentials.createSsl(
      Buffer.from(this.trustBundlePem),
      Buffer.from(node.keyPem),
      Buffer.from(node.certPem + (node.chainPem ?? '')),
      {
        checkServerIdentity: (_host, cert) => {
          const actual = cert.raw ? spiffeIdOf(new X509Certificate(cert.raw)) : null
          return actual === expected
            ? undefined
            : new CaError('AMBIENT_ERR_CA_UNAVAILABLE', `ca at ${options.address} presents ${JSON.stringify(actual)}, expected ${expected}`)
        },
      },
    )
    const Client = caService().Client
    // The CA is checked by its SPIFFE id above; a fixed TLS server name keeps IP addresses out of SNI (RFC 6066).
    return new Client(options.address, credentials, { 'grpc.ssl_target_name_override': 'ambient-ca' }) as unknown as grpc.Client & {
      CreateCertificate: UnaryMethod
    }
  }

  /** New roots for checking the CA (a root rotation): later requests use a channel that trusts them. */
  setTrustBundle(trustBundlePem: string): void {
    this.trustBundlePem = trustBundlePem
    this.reconnect()
  }

  /** A rotated node certificate and key: later requests present them. */
  setNodeCredentials(node: CaClientOptions['node']): void {
    this.node = node
    this.reconnect()
  }

  private reconnect(): void {
    const old = this.client
    this.client = this.connect()
    old.close()
  }

  requestCertificate(csrPem: string, identity: string, options: CertificateRequestOptions = {}): Promise<IssuedChain> {
    const request: IstioCertificateRequest = {
      csr: csrPem,
      validity_duration: options.validityMs ? Math.ceil(options.validityMs / 1000) : 0,
      metadata: { fields: { ImpersonatedIdentity: { stringValue: identity } } },
    }
    const deadline = Date.now() + (this.options.timeoutMs ?? 10_000)
    return new Promise((resolve, reject) => {
      this.client.CreateCertificate(request, { deadline }, (err, response) => {
        if (err) {
          reject(new CaError(caErrorCodeOf(err.code), `ca refused ${identity} (${grpc.status[err.code]}): ${err.details}`, { cause: err }))
        } else if (!response || response.cert_chain.length === 0) {
          reject(new CaError('AMBIENT_ERR_CA_BAD_RESPONSE', `ca answered no certificate chain for ${identity}`))
        } else {
          resolve({ certChainPem: response.cert_chain })
        }
      })
    })
  }

  close(): void {
    this.client.close()
  }
}
