// How a node proves which node it is to `ambient ca`: mutual TLS with a node
// certificate issued by the CA, whose only URI SAN is
// `spiffe://<trust-domain>/node/<node-name>`. That path is not a workload id
// (ns/<ns>/sa/<sa>), so a node certificate never passes as a pod's identity.
// The CA's own serving certificate carries spiffe://<td>/ns/ambient-system/sa/ambient-ca.
import { generateKeyPair, issueLeaf } from './pki.js'
import type { CaBundle } from './cacerts.js'

const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/
const NODE_ID = /^spiffe:\/\/([a-z0-9._-]+)\/node\/([^/]+)$/

export function caSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/ambient-system/sa/ambient-ca`
}

/** Throws on a name that is not a Kubernetes node name (DNS subdomain). */
export function nodeSpiffeId(trustDomain: string, node: string): string {
  if (!NODE_NAME.test(node)) throw new TypeError(`node name ${JSON.stringify(node)} is not a DNS subdomain (lowercase letters, digits, '-' and '.')`)
  return `spiffe://${trustDomain}/node/${node}`
}

/** The trust domain and node of a node SPIFFE id, or null when it is not one. */
export function parseNodeSpiffeId(uri: string): { readonly trustDomain: string; readonly node: string } | null {
  const m = NODE_ID.exec(uri)
  return m && NODE_NAME.test(m[2]!) ? { trustDomain: m[1]!, node: m[2]! } : null
}

export interface IssuedKey {
  readonly certPem: string
  readonly keyPem: string
  /** Intermediates above the leaf, up to but excluding the root ('' under a root CA). */
  readonly chainPem: string
}

function chainOf(bundle: CaBundle): string {
  const signingIsRoot = bundle.signing.certPem.trim() === bundle.rootCertPem.trim()
  return [...(signingIsRoot ? [] : [bundle.signing.certPem]), ...bundle.intermediatesPem].join('')
}

/** A node's client certificate for talking to the CA (TLS client auth only). */
export function issueNodeCertificate(options: {
  readonly bundle: CaBundle
  readonly trustDomain: string
  readonly node: string
  readonly ttlMs: number
}): IssuedKey {
  const keys = generateKeyPair()
  const certPem = issueLeaf({
    publicKeyPem: keys.publicKeyPem,
    uris: [nodeSpiffeId(options.trustDomain, options.node)],
    ca: options.bundle.signing,
    ttlMs: options.ttlMs,
    usage: 'client',
  })
  return { certPem, keyPem: keys.privateKeyPem, chainPem: chainOf(options.bundle) }
}

/** The CA's TLS server certificate. */
export function issueServingCertificate(options: {
  readonly bundle: CaBundle
  readonly trustDomain: string
  readonly dnsNames: readonly string[]
  readonly ttlMs: number
}): IssuedKey {
  const keys = generateKeyPair()
  const certPem = issueLeaf({
    publicKeyPem: keys.publicKeyPem,
    uris: [caSpiffeId(options.trustDomain)],
    dnsNames: options.dnsNames,
    ca: options.bundle.signing,
    ttlMs: options.ttlMs,
  })
  return { certPem, keyPem: keys.privateKeyPem, chainPem: chainOf(options.bundle) }
}
