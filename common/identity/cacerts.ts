// The CA's key material in Istio's `cacerts` layout: ca-cert.pem and ca-key.pem
// (the signing CA), root-cert.pem (the roots workloads trust), cert-chain.pem
// (the signing CA's chain up to the root). Loaded from a directory, or, when the
// directory holds none of them, a self-signed root is generated and persisted
// there (key mode 0600) so that a restart keeps the same root.
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseBundle, splitPem, verifyChain } from './chain.js'
import { createRootCa, type CertifiedKey } from './pki.js'
import { CaError } from './ca-errors.js'

export const CACERTS_FILES = { caCert: 'ca-cert.pem', caKey: 'ca-key.pem', rootCert: 'root-cert.pem', certChain: 'cert-chain.pem' } as const

export interface CaBundle {
  /** The signing CA (ca-cert.pem, ca-key.pem). */
  readonly signing: CertifiedKey
  /** Certificates between the signing CA and the root, nearest first (neither included). */
  readonly intermediatesPem: readonly string[]
  /** The root that issued the chain, PEM. */
  readonly rootCertPem: string
  /** Every root workloads should trust (root-cert.pem), PEM. */
  readonly trustBundlePem: string
}

/** Leaf first, root last: what CreateCertificate answers. */
export function responseChain(bundle: CaBundle, leafPem: string): string[] {
  const signingIsRoot = bundle.signing.certPem.trim() === bundle.rootCertPem.trim()
  return [leafPem, ...(signingIsRoot ? [] : [bundle.signing.certPem]), ...bundle.intermediatesPem, bundle.rootCertPem]
}

function read(dir: string, file: string, required: boolean): string | null {
  const path = join(dir, file)
  if (!existsSync(path)) {
    if (required)
      throw new CaError(
        'AMBIENT_ERR_CA_CACERTS',
        `${path} is missing: --cacerts needs ${CACERTS_FILES.caCert} and ${CACERTS_FILES.caKey} (Istio's cacerts layout)`,
      )
    return null
  }
  return readFileSync(path, 'utf8')
}

/** Loads and checks a cacerts directory: key matches cert, ECDSA P-256, the CA chains to root-cert.pem. */
export function loadCacerts(dir: string): CaBundle {
  const bad = (message: string, cause?: unknown): CaError => new CaError('AMBIENT_ERR_CA_CACERTS', `${dir}: ${message}`, { cause })
  const certPem = read(dir, CACERTS_FILES.caCert, true)!
  const keyPem = read(dir, CACERTS_FILES.caKey, true)!
  let signing: X509Certificate
  try {
    signing = parseBundle(certPem, CACERTS_FILES.caCert)[0]!
    const key = createPrivateKey(keyPem)
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw bad(`${CACERTS_FILES.caKey} is a ${key.asymmetricKeyType} key; ambient ca signs with ECDSA P-256 keys only (openssl ecparam -name prime256v1)`)
    }
    if (!signing.checkPrivateKey(key)) throw bad(`${CACERTS_FILES.caKey} does not match ${CACERTS_FILES.caCert}`)
  } catch (err) {
    if (err instanceof CaError) throw err
    throw bad(`cannot parse ${CACERTS_FILES.caCert} or ${CACERTS_FILES.caKey}: ${(err as Error).message}`, err)
  }
  if (!signing.ca) throw bad(`${CACERTS_FILES.caCert} is not a CA certificate (basicConstraints CA:TRUE)`)
  const selfSigned = signing.checkIssued(signing)
  const rootText = read(dir, CACERTS_FILES.rootCert, !selfSigned) ?? certPem
  const chainText = read(dir, CACERTS_FILES.certChain, false) ?? ''
  const signingPem = splitPem(certPem)[0]!
  try {
    const roots = parseBundle(rootText, CACERTS_FILES.rootCert)
    const chain = splitPem(chainText).map((pem) => ({ pem, x509: new X509Certificate(pem) }))
    const intermediates = chain.filter((c) => !c.x509.checkIssued(c.x509) && c.pem.trim() !== signingPem.trim())
    const path = verifyChain({ leaf: signing, intermediates: intermediates.map((c) => c.x509), roots })
    const root = path[path.length - 1]!
    return {
      signing: { certPem: signingPem, keyPem },
      intermediatesPem: path.slice(1, -1).map((x) => intermediates.find((c) => c.x509 === x)!.pem),
      rootCertPem: splitPem(rootText).find((pem) => new X509Certificate(pem).fingerprint256 === root.fingerprint256)!,
      trustBundlePem: splitPem(rootText).join(''),
    }
  } catch (err) {
    throw bad(`${CACERTS_FILES.caCert} does not chain to ${CACERTS_FILES.rootCert}: ${(err as Error).message}`, err)
  }
}

/** Loads `dir`, or generates a self-signed root there when it holds no CA yet. */
export function loadOrCreateCacerts(
  dir: string,
  options: { readonly commonName?: string; readonly ttlMs?: number } = {},
): { readonly bundle: CaBundle; readonly created: boolean } {
  const present = Object.values(CACERTS_FILES).filter((f) => existsSync(join(dir, f)))
  if (present.length > 0) return { bundle: loadCacerts(dir), created: false }
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const root = createRootCa({ commonName: options.commonName ?? 'ambient root CA', ttlMs: options.ttlMs })
  // The key first, exclusively and private: a concurrent start fails instead of mixing roots.
  writeFileSync(join(dir, CACERTS_FILES.caKey), root.keyPem, { mode: 0o600, flag: 'wx' })
  writeFileSync(join(dir, CACERTS_FILES.caCert), root.certPem, { flag: 'wx' })
  writeFileSync(join(dir, CACERTS_FILES.rootCert), root.certPem, { flag: 'wx' })
  writeFileSync(join(dir, CACERTS_FILES.certChain), root.certPem, { flag: 'wx' })
  return { bundle: loadCacerts(dir), created: true }
}
