// Workload selectors (spec.selector.matchLabels of Istio security policies): reading
// them from an object and matching them against a pod's labels. Pure.
import type { Labels } from '../workload.js'

/**
 * Kubernetes/Istio selector semantics: every key of `selector` is present in
 * `labels` with the same value. An empty selector matches every label set.
 */
export function selectorMatches(selector: Labels, labels: Labels): boolean {
  for (const key in selector) {
    if (labels[key] !== selector[key]) return false
  }
  return true
}

/** A stable text key of a label set (sorted `k=v` joined by `,`), for indexes and caches. */
export function labelsKey(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',')
}

export type LabelsParse = { readonly ok: true; readonly labels: Labels } | { readonly ok: false; readonly message: string }

/** A `{string: string}` map as found in YAML (matchLabels, metadata.labels); null/undefined is empty. */
export function parseLabelMap(value: unknown): LabelsParse {
  if (value === undefined || value === null) return { ok: true, labels: {} }
  if (typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, message: `expected a map of label to value, got ${JSON.stringify(value)}` }
  }
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v === 'string') out[k] = v
    else if (typeof v === 'number' || typeof v === 'boolean') out[k] = String(v)
    else return { ok: false, message: `label ${JSON.stringify(k)} has value ${JSON.stringify(v)}; quote it as a string` }
  }
  return { ok: true, labels: Object.freeze(out) }
}

/** `k=v,k2=v2` (the --dest-labels form); throws on a pair without `=`. */
export function parseLabelList(text: string): Labels {
  const out: Record<string, string> = {}
  for (const pair of text.split(',')) {
    const trimmed = pair.trim()
    if (trimmed === '') continue
    const eq = trimmed.indexOf('=')
    if (eq <= 0) throw new Error(`label ${JSON.stringify(trimmed)} is not key=value`)
    out[trimmed.slice(0, eq)] = trimmed.slice(eq + 1)
  }
  return Object.freeze(out)
}
