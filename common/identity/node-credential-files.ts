// The node's credentials for calling `ambient ca`: node-cert.pem, node-key.pem and
// node-chain.pem in --node-cert-dir, as `ambient ca node-cert --out` writes them.
// They are checked at start and re-read when they change, so an operator rotates a
// node certificate by writing new files into the directory, without restarting
// ztunnel; a half-written rotation (a new certificate beside the old key) is
// refused until the key arrives, and the credentials in force stay meanwhile.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto'
import { join } from 'node:path'
import type { Logger } from '../log.js'
import { nodeSpiffeId } from './node-identity.js'
import { splitPem } from './chain.js'
import { IdentityError } from './errors.js'
import { spiffeIdOf } from './pki.js'
import { WatchedFiles } from './watched-files.js'

export const NODE_CREDENTIAL_FILES = ['node-cert.pem', 'node-key.pem', 'node-chain.pem'] as const

export interface NodeCredentials {
  readonly certPem: string
  readonly keyPem: string
  /** Intermediates above the node certificate ('' under a root CA). */
  readonly chainPem: string
  /** The certificate's notAfter, ISO 8601. */
  readonly expires: string
}

export interface NodeIdentity {
  readonly trustDomain: string
  readonly node: string
}

function bad(message: string): IdentityError {
  return new IdentityError('AMBIENT_ERR_IDENTITY_WRONG_CERT', message)
}

/**
 * Checks a node's credentials: the certificate parses, names this node
 * (spiffe://<td>/node/<name>), is valid now, and the key is its key. Throws
 * naming the file and what is wrong.
 */
export function parseNodeCredentials(contents: readonly string[], expected: NodeIdentity, now = Date.now()): NodeCredentials {
  const [certPem = '', keyPem = '', chainPem = ''] = contents
  let cert: X509Certificate
  try {
    cert = new X509Certificate(certPem)
  } catch (err) {
    throw new IdentityError('AMBIENT_ERR_IDENTITY_BAD_PEM', `node-cert.pem is not a certificate: ${(err as Error).message}`)
  }
  const want = nodeSpiffeId(expected.trustDomain, expected.node)
  const id = spiffeIdOf(cert)
  if (id !== want) throw bad(`node-cert.pem names ${JSON.stringify(id)}, not this node (${want})`)
  if (now > Date.parse(cert.validTo))
    throw bad(`node-cert.pem expired at ${new Date(cert.validTo).toISOString()}: issue a new one with \`ambient ca node-cert\``)
  if (now < Date.parse(cert.validFrom)) throw bad(`node-cert.pem is not valid before ${new Date(cert.validFrom).toISOString()}`)
  let key: KeyObject
  try {
    key = createPrivateKey(keyPem)
  } catch (err) {
    throw new IdentityError('AMBIENT_ERR_IDENTITY_BAD_PEM', `node-key.pem is not a private key: ${(err as Error).message}`)
  }
  if (!cert.checkPrivateKey(key)) throw bad('node-key.pem is not the key of node-cert.pem (a rotation half written?)')
  if (chainPem.trim() !== '' && splitPem(chainPem).length === 0)
    throw new IdentityError('AMBIENT_ERR_IDENTITY_BAD_PEM', 'node-chain.pem holds no CERTIFICATE PEM block')
  return { certPem, keyPem, chainPem, expires: new Date(cert.validTo).toISOString() }
}

/** Watches --node-cert-dir and applies rotated node credentials (the CA client reconnects with them). */
export class NodeCredentialFiles extends WatchedFiles<NodeCredentials> {
  constructor(dir: string, expected: NodeIdentity, initial: NodeCredentials, apply: (credentials: NodeCredentials) => void, log: Logger, intervalMs = 1000) {
    super(
      {
        what: 'node certificate',
        kept: 'node certificate',
        paths: NODE_CREDENTIAL_FILES.map((f) => join(dir, f)),
        parse: (contents) => parseNodeCredentials(contents, expected),
        apply,
        describe: (c) => ({ expires: c.expires }),
      },
      [initial.certPem, initial.keyPem, initial.chainPem],
      log,
      intervalMs,
    )
  }
}
