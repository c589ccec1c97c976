// Choosing the backend of a forward decision by weight, running that backend's own
// filters, and sampling mirrors. The random source is a parameter (Math.random in
// the proxy, a seeded generator in tests), so a pick is reproducible.
import type { HeaderModifier } from '../../common/model/http-route.js'
import { type ForwardDecision, type MirrorTarget, applyFilters } from './route.js'
import type { RouteRequest } from './request.js'
import type { BackendTarget } from './table.js'

/** A number in [0, 1), as Math.random returns. */
export type RandomSource = () => number

/**
 * An item with probability weight / (sum of weights); items of weight 0 are never
 * chosen; undefined when every weight is 0. Draws one number.
 */
export function pickWeighted<T extends { readonly weight: number }>(items: readonly T[], random: RandomSource): T | undefined {
  let total = 0
  for (const item of items) total += item.weight
  if (total <= 0) return undefined
  let point = random() * total
  let last: T | undefined
  for (const item of items) {
    if (item.weight <= 0) continue
    if (point < item.weight) return item
    point -= item.weight
    last = item
  }
  return last // only reached through floating-point rounding at the very top of the range
}

export type BackendPick =
  | {
      readonly kind: 'backend'
      readonly backend: BackendTarget
      /** The request to send: the decision's, after the backend's RequestHeaderModifier and URLRewrite. */
      readonly request: RouteRequest
      /** To apply to the response, in order: the rule's, then the backend's. */
      readonly responseHeaders: readonly HeaderModifier[]
      /** The mirrors sampled to receive a copy of this request (the rule's, then the backend's). */
      readonly mirrors: readonly MirrorTarget[]
    }
  /** The spec's 500 for the share of requests that would go to an invalid backend. */
  | { readonly kind: 'error'; readonly status: 500; readonly reason: string }

/**
 * Picks the backend of a forward decision. Draws from `random`: once for the
 * weighted choice when there are several backends, then once per mirror whose
 * fraction is strictly between 0 and 1, in order.
 */
export function pickBackend(decision: ForwardDecision, random: RandomSource): BackendPick {
  const chosen = decision.backends.length === 1 ? decision.backends[0] : pickWeighted(decision.backends, random)
  if (chosen === undefined) return { kind: 'error', status: 500, reason: 'the rule has no backend with weight > 0' }
  if (chosen.kind === 'invalid') return { kind: 'error', status: 500, reason: chosen.reason }
  const own = chosen.filters.length === 0 ? null : applyFilters(chosen.filters, decision.request)
  const responseHeaders: HeaderModifier[] = []
  if (decision.responseHeaders !== null) responseHeaders.push(decision.responseHeaders)
  if (own?.responseHeaders) responseHeaders.push(own.responseHeaders)
  const mirrors = [...decision.mirrors, ...(own?.mirrors ?? [])].filter((m) => sampled(m, random))
  return {
    kind: 'backend',
    backend: { namespace: chosen.namespace, name: chosen.name, port: chosen.port },
    request: own?.request ?? decision.request,
    responseHeaders,
    mirrors,
  }
}

function sampled(mirror: MirrorTarget, random: RandomSource): boolean {
  const { numerator, denominator } = mirror.fraction
  if (numerator <= 0) return false
  if (numerator >= denominator) return true
  return random() * denominator < numerator
}
