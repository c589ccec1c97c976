// CaClient: ztunnel's (and a waypoint's) CertificateSource backed by `ambient ca`
// over gRPC and TLS. It authenticates with the node certificate (mutual TLS) or,
// in a cluster, with a service-account token file sent as `authorization: Bearer`
// and re-read for every request (the kubelet rotates projected tokens); it checks
// the CA's SPIFFE id, and sends the impersonated identity as Istio's ztunnel does.
import { readFileSync } from 'node:fs'
import * as grpc from '@grpc/grpc-js'
import { X509Certificate } from 'node:crypto'
import type { CertificateRequestOptions, CertificateSource, IssuedChain } from './certificate-source.js'
import { spiffeIdOf } from './pki.js'
import { CaError, caErrorCodeOf } from './ca-errors.js'
import { caSpiffeId } from './node-identity.js'
import { caService, type IstioCertificateRequest, type IstioCertificateResponse } from './ca-proto.js'

/**
 * Where the mesh roots are mounted in a pod (the istio-ca-root-cert ConfigMap, at
 * Istio's path): the default of --ca-root-cert for token callers (ztunnel, waypoints).
 */
export const DEFAULT_CA_ROOT_CERT = '/var/run/secrets/istio/root-cert.pem'

/** Where a pod mounts its projected token for the CA (audience istio-ca), as Istio does. */
export const DEFAULT_CA_TOKEN_FILE = '/var/run/secrets/tokens/istio-token'

export interface CaClientOptions {
  /** host:port of `ambient ca`. */
  readonly address: string
  readonly trustDomain: string
  /** This node's certificate (spiffe://<td>/node/<name>), key and intermediates; or tokenFile. */
  readonly node?: NodeCredentialsPem
  /** A service-account token file (a projected token for the CA's audience), read for every request; or node. */
  readonly tokenFile?: string
  /** Roots the CA's serving certificate must chain to. */
  readonly trustBundlePem: string
  /** The CA's expected URI SAN (default spiffe://<td>/ns/ambient-system/sa/ambient-ca). */
  readonly caIdentity?: string
  /** Per-request deadline (default 10 s). */
  readonly timeoutMs?: number
}

export interface NodeCredentialsPem {
  readonly certPem: string
  readonly keyPem: string
  readonly chainPem?: string
}

type UnaryMethod = (
  request: IstioCertificateRequest,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, response?: IstioCertificateResponse) => void,
) => void

export class CaClient implements CertificateSource {
  private client: grpc.Client & { CreateCertificate: UnaryMethod }
  private node: NodeCredentialsPem | undefined
  private trustBundlePem: string

  constructor(private readonly options: CaClientOptions) {
    if ((options.node === undefined) === (options.tokenFile === undefined))
      throw new CaError('AMBIENT_ERR_CA_BAD_REQUEST', 'the CA client needs either node credentials or a token file, not both and not neither')
    this.node = options.node
    this.trustBundlePem = options.trustBundlePem
    this.client = this.connect()
  }

  private connect(): grpc.Client & { CreateCertificate: UnaryMethod } {
    const { options, node } = this
    const expected = options.caIdentity ?? caSpiffeId(options.trustDomain)
    const ssl = grpc.credentials.createSsl(
      Buffer.from(this.trustBundlePem),
      node ? Buffer.from(node.keyPem) : null,
      node ? Buffer.from(node.certPem + (node.chainPem ?? '')) : null,
      {
        checkServerIdentity: (_host, cert) => {
          const actual = cert.raw ? spiffeIdOf(new X509Certificate(cert.raw)) : null
          return actual === expected
            ? undefined
            : new CaError('AMBIENT_ERR_CA_UNAVAILABLE', `ca at ${options.address} presents ${JSON.stringify(actual)}, expected ${expected}`)
        },
      },
    )
    const tokenFile = options.tokenFile
    const credentials =
      tokenFile === undefined
        ? ssl
        : grpc.credentials.combineChannelCredentials(
            ssl,
            grpc.credentials.createFromMetadataGenerator((_params, callback) => {
              let token: string
              try {
                token = readFileSync(tokenFile, 'utf8').trim()
                if (token === '') throw new Error('the file is empty')
              } catch (err) {
                callback(new CaError('AMBIENT_ERR_CA_UNAUTHENTICATED', `cannot read the CA token file ${tokenFile}: ${(err as Error).message}`))
                return
              }
              const metadata = new grpc.Metadata()
              metadata.set('authorization', `Bearer ${token}`)
              callback(null, metadata)
            }),
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
  setNodeCredentials(node: NodeCredentialsPem): void {
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
