// The mesh's PKI: ECDSA P-256 keys (node:crypto), PKCS#10 requests carrying a
// SPIFFE URI SAN, and X.509 v3 certificates (roots and workload leaves) encoded
// in DER by der.ts and signed by node:crypto, with no PKI library; every
// certificate is checked by OpenSSL in the tests.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, X509Certificate, type KeyObject } from 'node:crypto'
import * as der from './der.js'
import { IdentityError } from './errors.js'

export { IdentityError }

const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  prime256v1: '1.2.840.10045.3.1.7',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  extensionRequest: '1.2.840.113549.1.9.14',
} as const

export interface SpiffeId {
  readonly trustDomain: string
  readonly namespace: string
  readonly serviceAccount: string
}

const SPIFFE_RE = /^spiffe:\/\/([a-z0-9._-]+)\/ns\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/sa\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/

/** `spiffe://<td>/ns/<ns>/sa/<sa>`, strictly. */
export function parseSpiffeId(uri: string): SpiffeId {
  const m = SPIFFE_RE.exec(uri)
  if (!m)
    throw new IdentityError(
      'AMBIENT_ERR_IDENTITY_BAD_SPIFFE_ID',
      `${JSON.stringify(uri)} is not a workload SPIFFE id (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)`,
    )
  return { trustDomain: m[1]!, namespace: m[2]!, serviceAccount: m[4]! }
}

export function spiffeIdString(id: SpiffeId): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`
}

/** The first spiffe:// URI SAN of a certificate, or null. */
export function spiffeIdOf(cert: X509Certificate): string | null {
  const san = cert.subjectAltName ?? ''
  for (const entry of san.split(/,\s*/)) {
    const m = /^URI:(spiffe:\/\/.*)$/.exec(entry.trim())
    if (m) return m[1]!
  }
  return null
}

export interface KeyPair {
  readonly privateKeyPem: string
  readonly publicKeyPem: string
}

export function generateKeyPair(): KeyPair {
  const { privateKey: key, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const privateKeyPem = key.export({ type: 'pkcs8', format: 'pem' }).toString()
  remember(freshKeys, privateKeyPem, key, 64)
  return { privateKeyPem, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }
}

const sigAlg = (): Buffer => der.seq(der.oid(OID.ecdsaWithSha256))

function spki(publicKeyPem: string): Buffer {
  return createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' })
}

function keyId(spkiDer: Buffer): Buffer {
  const bits = der.children(der.read(spkiDer))[1]!.content.subarray(1)
  return createHash('sha1').update(bits).digest()
}

function name(attrs: readonly [string, string][]): Buffer {
  return der.seq(...attrs.map(([type, value]) => der.set(der.seq(der.oid(type), der.utf8(value)))))
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? der.seq(der.oid(id), der.bool(true), der.octets(value)) : der.seq(der.oid(id), der.octets(value))
}

const uriSan = (uri: string): Buffer => der.seq(der.tlv(0x86, Buffer.from(uri, 'ascii')))

// OpenSSL 3 parses a PEM private key slowly (~1 ms): keep the few signing keys in
// use (CA keys), and the keys generateKeyPair just made (their CSR follows).
const parsedKeys = new Map<string, KeyObject>()
const freshKeys = new Map<string, KeyObject>()
function remember<V>(cache: Map<string, V>, pem: string, value: V, max: number): V {
  if (cache.size >= max) cache.delete(cache.keys().next().value!)
  cache.set(pem, value)
  return value
}
function privateKey(pem: string): KeyObject {
  return parsedKeys.get(pem) ?? freshKeys.get(pem) ?? remember(parsedKeys, pem, createPrivateKey(pem), 16)
}

/** An issuing CA's parsed certificate: subject and key, parsed once per PEM. */
const issuers = new Map<string, { readonly subject: Buffer; readonly spki: Buffer }>()
function issuer(certPem: string): { readonly subject: Buffer; readonly spki: Buffer } {
  const known = issuers.get(certPem)
  if (known) return known
  const cert = new X509Certificate(certPem)
  return remember(issuers, certPem, { subject: subjectOf(cert), spki: cert.publicKey.export({ type: 'spki', format: 'der' }) }, 16)
}

function signed(tbs: Buffer, keyPem: string | KeyObject): Buffer {
  const signature = sign('sha256', tbs, { key: typeof keyPem === 'string' ? privateKey(keyPem) : keyPem, dsaEncoding: 'der' })
  return der.seq(tbs, sigAlg(), der.bitString(signature))
}

const pem = (label: string, body: Buffer): string =>
  `-----BEGIN ${label}-----\n${body
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '')}\n-----END ${label}-----\n`

function fromPem(text: string, label: string): Buffer {
  const m = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`).exec(text)
  if (!m)
    throw new IdentityError(label === 'CERTIFICATE REQUEST' ? 'AMBIENT_ERR_IDENTITY_BAD_CSR' : 'AMBIENT_ERR_IDENTITY_BAD_PEM', `no ${label} PEM block found`)
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')
}

interface CertificateSpec {
  readonly subject: Buffer
  readonly issuer: Buffer
  readonly subjectSpki: Buffer
  readonly issuerSpki: Buffer
  readonly notBefore: Date
  readonly notAfter: Date
  readonly extensions: Buffer[]
}

function certificate(spec: CertificateSpec, issuerKeyPem: string): string {
  const serial = randomBytes(16)
  serial[0]! &= 0x7f
  const tbs = der.seq(
    der.explicit(0, der.integer(Buffer.from([2]))),
    der.integer(serial),
    sigAlg(),
    spec.issuer,
    der.seq(der.time(spec.notBefore), der.time(spec.notAfter)),
    spec.subject,
    spec.subjectSpki,
    der.explicit(
      3,
      der.seq(
        ...spec.extensions,
        extension(OID.subjectKeyId, false, der.octets(keyId(spec.subjectSpki))),
        extension(OID.authorityKeyId, false, der.seq(der.tlv(0x80, keyId(spec.issuerSpki)))),
      ),
    ),
  )
  return pem('CERTIFICATE', signed(tbs, issuerKeyPem))
}

export interface CertifiedKey {
  readonly certPem: string
  readonly keyPem: string
}

/** A self-signed root CA (5 minutes of back-dating for clock skew). */
export function createRootCa(options: { readonly commonName?: string; readonly organization?: string; readonly ttlMs?: number } = {}): CertifiedKey {
  const keys = generateKeyPair()
  const subject = name([
    [OID.organization, options.organization ?? 'ambient'],
    [OID.commonName, options.commonName ?? 'ambient root CA'],
  ])
  const key = spki(keys.publicKeyPem)
  const now = Date.now()
  const certPem = certificate(
    {
      subject,
      issuer: subject,
      subjectSpki: key,
      issuerSpki: key,
      notBefore: new Date(now - 5 * 60_000),
      notAfter: new Date(now + (options.ttlMs ?? 10 * 365 * 24 * 3600_000)),
      extensions: [
        extension(OID.basicConstraints, true, der.seq(der.bool(true))),
        extension(OID.keyUsage, true, der.bitString(Buffer.from([0x86]), 1)), // digitalSignature, keyCertSign, cRLSign
      ],
    },
    keys.privateKeyPem,
  )
  return { certPem, keyPem: keys.privateKeyPem }
}

/** An intermediate CA signed by `parent` (for Istio's plugged-in cacerts layout). */
export function createIntermediateCa(options: {
  readonly parent: CertifiedKey
  readonly commonName?: string
  readonly organization?: string
  readonly ttlMs?: number
}): CertifiedKey {
  const keys = generateKeyPair()
  const parent = new X509Certificate(options.parent.certPem)
  const now = Date.now()
  const certPem = certificate(
    {
      subject: name([
        [OID.organization, options.organization ?? 'ambient'],
        [OID.commonName, options.commonName ?? 'ambient intermediate CA'],
      ]),
      issuer: subjectOf(parent),
      subjectSpki: spki(keys.publicKeyPem),
      issuerSpki: parent.publicKey.export({ type: 'spki', format: 'der' }),
      notBefore: new Date(now - 5 * 60_000),
      notAfter: new Date(now + (options.ttlMs ?? 365 * 24 * 3600_000)),
      extensions: [
        extension(OID.basicConstraints, true, der.seq(der.bool(true), der.integer(Buffer.from([0])))), // pathLen 0
        extension(OID.keyUsage, true, der.bitString(Buffer.from([0x86]), 1)),
      ],
    },
    options.parent.keyPem,
  )
  return { certPem, keyPem: keys.privateKeyPem }
}

/** A PKCS#10 request for `spiffeId`, signed with the workload's own key. */
export function createCsr(options: { readonly spiffeId: string; readonly privateKeyPem: string; readonly publicKeyPem: string }): string {
  parseSpiffeId(options.spiffeId)
  const fresh = freshKeys.get(options.privateKeyPem)
  freshKeys.delete(options.privateKeyPem)
  const key = fresh ?? createPrivateKey(options.privateKeyPem)
  // A fresh key's public half is derived without parsing PEM; otherwise the given PEM is used.
  const publicKey = fresh ? createPublicKey(fresh).export({ type: 'spki', format: 'der' }) : spki(options.publicKeyPem)
  const extensions = der.seq(extension(OID.subjectAltName, true, uriSan(options.spiffeId)))
  const info = der.seq(der.integer(Buffer.from([0])), der.seq(), publicKey, der.tlv(0xa0, der.seq(der.oid(OID.extensionRequest), der.set(extensions))))
  return pem('CERTIFICATE REQUEST', signed(info, key))
}

export interface ParsedCsr {
  readonly spiffeId: string
  readonly publicKeyPem: string
  /** The SubjectPublicKeyInfo, DER. */
  readonly spkiDer: Buffer
}

/** Parses a CSR and verifies its self-signature; throws BAD_CSR naming what is wrong. */
export function parseCsr(csrPem: string): ParsedCsr {
  try {
    const [info, alg, sig] = der.children(der.read(fromPem(csrPem, 'CERTIFICATE REQUEST')))
    if (!info || !alg || !sig) throw new Error('not a CertificationRequest')
    if (der.oidString(der.children(alg)[0]!) !== OID.ecdsaWithSha256) throw new Error('signature algorithm is not ecdsa-with-SHA256')
    const fields = der.children(info)
    const spkiDer = fields[2]!.raw
    const publicKey = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' })
    if (publicKey.asymmetricKeyType !== 'ec' || publicKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new Error('key is not ECDSA P-256')
    if (!verify('sha256', info.raw, { key: publicKey, dsaEncoding: 'der' }, sig.content.subarray(1))) throw new Error('signature does not verify')
    let spiffeId: string | null = null
    for (const attr of fields[3] ? der.children(fields[3]) : []) {
      const [type, values] = der.children(attr)
      if (der.oidString(type!) !== OID.extensionRequest) continue
      for (const ext of der.children(der.children(values!)[0]!)) {
        const parts = der.children(ext)
        if (der.oidString(parts[0]!) !== OID.subjectAltName) continue
        const sans = der.children(der.read(parts[parts.length - 1]!.content))
        const uri = sans.find((s) => s.tag === 0x86)
        if (uri) spiffeId = uri.content.toString('ascii')
      }
    }
    if (!spiffeId) throw new Error('no URI subjectAltName')
    parseSpiffeId(spiffeId)
    return { spiffeId, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), spkiDer: Buffer.from(spkiDer) }
  } catch (err) {
    if (err instanceof IdentityError && err.code === 'AMBIENT_ERR_IDENTITY_BAD_SPIFFE_ID')
      throw new IdentityError('AMBIENT_ERR_IDENTITY_BAD_CSR', `malformed CSR: ${err.message}`, { cause: err })
    throw new IdentityError('AMBIENT_ERR_IDENTITY_BAD_CSR', `malformed CSR: ${(err as Error).message}`, { cause: err })
  }
}

/** The DER Name of a certificate's subject (TBSCertificate field 6, after the explicit version). */
function subjectOf(cert: X509Certificate): Buffer {
  const tbs = der.children(der.read(Buffer.from(cert.raw)))[0]!
  return der.children(tbs)[5]!.raw
}

/** What a leaf certificate may be used for: workloads (HBONE) are TLS clients and servers. */
export type LeafUsage = 'client-and-server' | 'client'

export interface LeafSpec {
  readonly publicKeyPem: string
  /** The same key as DER SubjectPublicKeyInfo, when at hand (saves a parse). */
  readonly spkiDer?: Buffer
  /** URI SANs (SPIFFE ids); the subject is empty, so SANs are critical (RFC 5280). */
  readonly uris: readonly string[]
  readonly dnsNames?: readonly string[]
  readonly ca: CertifiedKey
  readonly ttlMs: number
  readonly usage?: LeafUsage
  /** Defaults to one minute ago (clock skew); set in the past to issue an expired certificate. */
  readonly notBefore?: Date
}

/** Signs a leaf certificate for a public key: SANs only, not a CA. */
export function issueLeaf(spec: LeafSpec): string {
  const ca = issuer(spec.ca.certPem)
  const notBefore = spec.notBefore ?? new Date(Date.now() - 60_000)
  const sans = [
    ...spec.uris.map((uri) => der.tlv(0x86, Buffer.from(uri, 'ascii'))),
    ...(spec.dnsNames ?? []).map((dns) => der.tlv(0x82, Buffer.from(dns, 'ascii'))),
  ]
  const usages = spec.usage === 'client' ? [der.oid(OID.clientAuth)] : [der.oid(OID.serverAuth), der.oid(OID.clientAuth)]
  return certificate(
    {
      subject: der.seq(),
      issuer: ca.subject,
      subjectSpki: spec.spkiDer ?? spki(spec.publicKeyPem),
      issuerSpki: ca.spki,
      notBefore,
      notAfter: new Date(notBefore.getTime() + spec.ttlMs + 60_000),
      extensions: [
        extension(OID.basicConstraints, true, der.seq()),
        extension(OID.keyUsage, true, der.bitString(Buffer.from([0xa0]), 5)), // digitalSignature, keyEncipherment
        extension(OID.extKeyUsage, false, der.seq(...usages)),
        extension(OID.subjectAltName, true, der.seq(...sans)),
      ],
    },
    spec.ca.keyPem,
  )
}

/** Issues a workload certificate for a verified CSR: URI SAN only, client+server auth, not a CA. */
export function signCsr(options: {
  readonly csrPem: string
  readonly ca: CertifiedKey
  readonly ttlMs: number
  readonly allowedSpiffeIds?: ReadonlySet<string>
  readonly notBefore?: Date
}): string {
  const csr = parseCsr(options.csrPem)
  if (options.allowedSpiffeIds && !options.allowedSpiffeIds.has(csr.spiffeId)) {
    throw new IdentityError('AMBIENT_ERR_IDENTITY_NOT_ALLOWED', `identity ${csr.spiffeId} is not allowed for this caller`)
  }
  return issueLeaf({
    publicKeyPem: csr.publicKeyPem,
    spkiDer: csr.spkiDer,
    uris: [csr.spiffeId],
    ca: options.ca,
    ttlMs: options.ttlMs,
    notBefore: options.notBefore,
  })
}

export interface WorkloadCertificate {
  readonly certPem: string
  readonly keyPem: string
  /** The issuing chain above the leaf (here the root). */
  readonly chainPem: string
}

/** Key, CSR and certificate in one step, in-process (tests, local mode). */
export function issueWorkloadCertificate(options: {
  readonly spiffeId: string
  readonly ca: CertifiedKey
  readonly ttlMs: number
  readonly notBefore?: Date
}): WorkloadCertificate {
  const keys = generateKeyPair()
  const csrPem = createCsr({ spiffeId: options.spiffeId, ...keys })
  const certPem = signCsr({ csrPem, ca: options.ca, ttlMs: options.ttlMs, notBefore: options.notBefore })
  return { certPem, keyPem: keys.privateKeyPem, chainPem: options.ca.certPem }
}
