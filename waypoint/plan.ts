// What the waypoint does with one HTTP request, decided before any byte goes
// upstream (decide.ts) and carried out by the proxy (proxy/http-handler.ts); the
// dry run `ambient waypoint check` prints the same decision. Pure data.
import type { HeaderModifier } from '../common/model/http-route.js'
import type { Workload } from '../common/model/workload.js'
import type { ForwardDecision } from './route/route.js'
import type { RouteRequest } from './route/request.js'

export interface Decided {
  /** `namespace/name` of the HTTPRoute that matched, or null (no route bound, or none matched). */
  readonly route: string | null
  /** The 0-based index of the rule that matched, or null. */
  readonly rule: number | null
  /** `namespace/name` of the AuthorizationPolicy that decided (the DENY that denied, or the ALLOW that allowed), or null. */
  readonly policy: string | null
  readonly decision: 'allow' | 'deny'
}

export type RequestPlan =
  | (Decided & {
      readonly kind: 'respond'
      /** What the waypoint answers itself: 400, 403, 404, 500, or a redirect's 3xx. */
      readonly status: number
      readonly body: string
      readonly location: string | null
      /** Envoy's response flag for metrics ('-' when none applies). */
      readonly flags: string
      /** The request after normalization and, when routing got that far, the matched rule's filters; null when its path was refused. */
      readonly request: RouteRequest | null
      /** A redirect rule's ResponseHeaderModifier. */
      readonly responseHeaders?: HeaderModifier | null
    })
  | (Decided & {
      readonly kind: 'forward'
      /** The routing decision: backends with their weights, the request after the rule's filters, mirrors, timeouts, retry. */
      readonly forward: ForwardDecision
      /** Addressed to a workload (not routed): that workload on the port asked for; null for a service. */
      readonly workload: { readonly workload: Workload; readonly port: number } | null
    })
