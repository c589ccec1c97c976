// Reading fields of a parsed Kubernetes object (YAML/JSON, type unknown) with the
// field path kept for errors. Shared by the policy converters; throws PolicyError.
import { isIP } from 'node:net'
import { PolicyError, type PolicyRef } from '../authorization.js'
import { parseLabelMap } from './labels.js'
import type { Labels } from '../workload.js'

export type Fields = Readonly<Record<string, unknown>>

export function isRecord(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export function badField(ref: PolicyRef, field: string, message: string): PolicyError {
  return new PolicyError('AMBIENT_ERR_POLICY_BAD_FIELD', ref, field, message)
}

export function badValue(ref: PolicyRef, field: string, message: string): PolicyError {
  return new PolicyError('AMBIENT_ERR_POLICY_BAD_VALUE', ref, field, message)
}

/** An object field; undefined/null when absent. */
export function optionalRecord(ref: PolicyRef, value: unknown, field: string): Fields | undefined {
  if (value === undefined || value === null) return undefined
  if (!isRecord(value)) throw badField(ref, field, `expected an object, got ${JSON.stringify(value)}`)
  return value
}

/** A list field; absent is []. */
export function optionalList(ref: PolicyRef, value: unknown, field: string): readonly unknown[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) throw badField(ref, field, `expected a list, got ${JSON.stringify(value)}`)
  return value
}

/**
 * A list of non-empty strings (numbers are accepted and written as text, so
 * `ports: [8080]` reads like `ports: ["8080"]`). Absent is [].
 */
export function stringList(ref: PolicyRef, value: unknown, field: string): readonly string[] {
  return optionalList(ref, value, field).map((item, i) => {
    const text = typeof item === 'number' && Number.isInteger(item) ? String(item) : item
    if (typeof text !== 'string') throw badField(ref, `${field}[${i}]`, `expected a string, got ${JSON.stringify(item)}`)
    if (text === '') throw badValue(ref, `${field}[${i}]`, 'empty value not allowed; remove it')
    return text
  })
}

export function optionalString(ref: PolicyRef, value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') throw badField(ref, field, `expected a string, got ${JSON.stringify(value)}`)
  return value
}

/** Rejects keys the schema does not know (a typo must not silently widen a policy). */
export function checkKeys(ref: PolicyRef, obj: Fields, known: readonly string[], field: string): void {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) {
      throw badField(ref, field === '' ? key : `${field}.${key}`, `unknown field; expected one of ${known.join(', ')}`)
    }
  }
}

export function labelMap(ref: PolicyRef, value: unknown, field: string): Labels {
  const parsed = parseLabelMap(value)
  if (!parsed.ok) throw badField(ref, field, parsed.message)
  return parsed.labels
}

/** Istio's stringToPort after ValidatePorts: a decimal integer 0-65535. */
export function parsePolicyPort(ref: PolicyRef, text: string, field: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 65535) {
    throw badValue(ref, field, `${JSON.stringify(text)} is not a port number (0-65535)`)
  }
  return Number(text)
}

/** `ip` or `ip/len` (Istio's stringToIP after ValidateIPs): returns address text and prefix length. */
export function parseCidr(ref: PolicyRef, text: string, field: string): { readonly address: string; readonly length: number } {
  const slash = text.indexOf('/')
  const address = slash < 0 ? text : text.slice(0, slash)
  const family = isIP(address)
  const max = family === 4 ? 32 : 128
  const lengthText = slash < 0 ? String(max) : text.slice(slash + 1)
  if (family === 0 || address.includes('%') || !/^\d{1,3}$/.test(lengthText) || Number(lengthText) > max) {
    throw badValue(ref, field, `${JSON.stringify(text)} is not an IP address or CIDR range (e.g. 10.0.0.1 or 10.0.0.0/16)`)
  }
  return { address, length: Number(lengthText) }
}

/** Go's strconv.ParseBool, which Istio uses for `istio.io/dry-run`. */
export function parseGoBool(text: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text)) return true
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(text)) return false
  return undefined
}

export interface ObjectMeta {
  readonly namespace: string
  readonly name: string
  readonly annotations: Labels
  readonly creationTimestamp: string
}

/**
 * metadata of a namespaced object. `namespace` overrides metadata.namespace (a
 * source may know it better); a manifest without one is in `default`, as kubectl
 * would place it.
 */
export function readMeta(
  kind: PolicyRef['kind'],
  object: unknown,
  namespace?: string,
): { readonly ref: PolicyRef; readonly meta: ObjectMeta; readonly root: Fields } {
  const root = isRecord(object) ? object : undefined
  const metadata = root !== undefined && isRecord(root['metadata']) ? root['metadata'] : {}
  const name = typeof metadata['name'] === 'string' ? metadata['name'] : '(unnamed)'
  const ns = namespace ?? (typeof metadata['namespace'] === 'string' && metadata['namespace'] !== '' ? metadata['namespace'] : 'default')
  const ref: PolicyRef = { kind, namespace: ns, name }
  if (root === undefined) {
    // The whole object is the bad field, named as the sources name it; the value is cut (it may be a huge string).
    const got = JSON.stringify(object) ?? String(object)
    throw new PolicyError(
      'AMBIENT_ERR_POLICY_NOT_AN_OBJECT',
      ref,
      '(object)',
      `expected a ${kind} object, got ${got.length > 80 ? `${got.slice(0, 80)}...` : got}`,
    )
  }
  if (name === '(unnamed)') throw badField(ref, 'metadata.name', 'is required')
  const annotations = labelMap(ref, metadata['annotations'], 'metadata.annotations')
  const created = metadata['creationTimestamp']
  const creationTimestamp = typeof created === 'string' ? created : created instanceof Date ? created.toISOString() : ''
  return { ref, meta: { namespace: ns, name, annotations, creationTimestamp }, root }
}
