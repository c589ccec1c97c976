// PromQL in the shapes of Istio's dashboards (manifests/addons/dashboards/lib):
// `sum by (...) (rate(metric{...}[$__rate_interval]))`, `round(..., 0.001)`,
// `histogram_quantile(q, sum by (le, ...) (rate(metric_bucket{...}[...])))`.
// Every selector has braces, which is how the tests find every metric a
// dashboard names.

/** Grafana's rate window: at least four scrape intervals. */
export const RATE_INTERVAL = '$__rate_interval'

/**
 * Label matchers, by label: 'v' is =, '~v' is =~, '!v' is !=, '!~v' is !~ (Istio's
 * lib-query convention, plus !~).
 */
export type Matchers = Readonly<Record<string, string>>

export function selector(metric: string, matchers: Matchers): string {
  const entries = Object.entries(matchers)
  if (entries.length === 0) throw new Error(`selector ${metric}: give at least one matcher (the dashboards filter every series)`)
  const parts = entries.map(([label, v]) => {
    if (v.startsWith('!~')) return `${label}!~"${v.slice(2)}"`
    if (v.startsWith('~')) return `${label}=~"${v.slice(1)}"`
    if (v.startsWith('!')) return `${label}!="${v.slice(1)}"`
    return `${label}="${v}"`
  })
  return `${metric}{${parts.join(', ')}}`
}

export function rate(metric: string, matchers: Matchers, window = RATE_INTERVAL): string {
  return `rate(${selector(metric, matchers)}[${window}])`
}

export function sum(expr: string, by: readonly string[] = []): string {
  return by.length === 0 ? `sum(${expr})` : `sum by (${by.join(', ')}) (${expr})`
}

export function max(expr: string, by: readonly string[]): string {
  return `max by (${by.join(', ')}) (${expr})`
}

/** Istio rounds rates to 0.001. */
export function round(expr: string): string {
  return `round(${expr}, 0.001)`
}

/** histogram_quantile over the rate of a histogram's buckets, summed by `by` and le. */
export function quantile(q: number, histogram: string, matchers: Matchers, by: readonly string[] = [], window = RATE_INTERVAL): string {
  return `histogram_quantile(${q.toFixed(2)}, ${sum(rate(`${histogram}_bucket`, matchers, window), [...by, 'le'])})`
}
