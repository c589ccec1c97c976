// Certificate chains as PEM text: splitting bundles into certificates and
// checking that a leaf chains, through intermediates, to one of a set of roots.
// TLS does the same check on every handshake; doing it when a certificate
// arrives lets a bad issuance be refused while the previous certificate is kept.
import { X509Certificate } from 'node:crypto'
import { IdentityError } from './errors.js'

const BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g

/** Each CERTIFICATE block of a PEM bundle, normalized to end with a newline. */
export function splitPem(bundle: string): string[] {
  return (bundle.match(BLOCK) ?? []).map((block) => `${block}\n`)
}

/** Parses every certificate of a bundle; throws BAD_PEM naming the first bad one. */
export function parseBundle(bundle: string, what: string): X509Certificate[] {
  const blocks = splitPem(bundle)
  if (blocks.length === 0) throw new IdentityError('AMBIENT_ERR_IDENTITY_BAD_PEM', `${what} holds no CERTIFICATE PEM block`)
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block)
    } catch (err) {
      throw new IdentityError('AMBIENT_ERR_IDENTITY_BAD_PEM', `certificate ${i + 1} of ${what} does not parse: ${(err as Error).message}`, { cause: err })
    }
  })
}

function validAt(cert: X509Certificate, at: number): boolean {
  return Date.parse(cert.validFrom) <= at && at <= Date.parse(cert.validTo)
}

const signedBy = (cert: X509Certificate, issuer: X509Certificate): boolean => cert.checkIssued(issuer) && cert.verify(issuer.publicKey)

/**
 * Checks that `leaf` is valid now and chains through `intermediates` (each a CA,
 * each valid) to one of `roots`. Returns the path, leaf first, root last.
 */
export function verifyChain(options: {
  readonly leaf: X509Certificate
  readonly intermediates: readonly X509Certificate[]
  readonly roots: readonly X509Certificate[]
  readonly at?: number
}): X509Certificate[] {
  const at = options.at ?? Date.now()
  const untrusted = (why: string): IdentityError =>
    new IdentityError(
      'AMBIENT_ERR_IDENTITY_UNTRUSTED_CERT',
      `certificate serial ${options.leaf.serialNumber} ${why}; check that the CA's root is in the trust bundle`,
    )
  if (!validAt(options.leaf, at)) throw untrusted(`is not valid now (${options.leaf.validFrom} to ${options.leaf.validTo})`)
  const path = [options.leaf]
  for (let depth = 0; depth <= options.intermediates.length; depth++) {
    const current = path[path.length - 1]!
    const root = options.roots.find((r) => signedBy(current, r))
    if (root) {
      if (!validAt(root, at)) throw untrusted(`chains to root ${root.subject} which is not valid now`)
      return [...path, root]
    }
    const next = options.intermediates.find((c) => c.ca && !path.includes(c) && validAt(c, at) && signedBy(current, c))
    if (!next) break
    path.push(next)
  }
  throw untrusted('does not chain to any root of the trust bundle')
}
