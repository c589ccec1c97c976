// Reading the committed dashboards back: every query (panel targets and variable
// queries), Grafana's variables substituted, and the metric names each one reads.
// Used by the dashboards' tests and the end-to-end test against a real Prometheus.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DASHBOARDS, DASHBOARDS_DIR } from './generate.js'

export interface DashboardQuery {
  readonly dashboard: string
  readonly panel: string
  /** refId, or `variable <name>` for a variable's label_values query. */
  readonly ref: string
  readonly expr: string
}

interface PanelJson {
  readonly id: number
  readonly type: string
  readonly title?: string
  readonly targets?: readonly { readonly expr?: string; readonly refId?: string }[]
}

interface DashboardJson {
  readonly uid: string
  readonly title: string
  readonly panels: readonly PanelJson[]
  readonly templating: { readonly list: readonly { readonly name: string; readonly type: string; readonly query?: unknown }[] }
}

/** The committed dashboards, parsed, by file name. */
export function committedDashboards(): Map<string, DashboardJson> {
  return new Map(Object.keys(DASHBOARDS).map((file) => [file, JSON.parse(readFileSync(join(DASHBOARDS_DIR, file), 'utf8')) as DashboardJson]))
}

/** Every panel target and every query variable of a dashboard. */
export function queriesOf(file: string, dashboard: DashboardJson): DashboardQuery[] {
  const out: DashboardQuery[] = []
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) {
      out.push({ dashboard: file, panel: `${panel.id} ${panel.title ?? ''}`, ref: target.refId ?? '', expr: target.expr ?? '' })
    }
  }
  for (const variable of dashboard.templating.list) {
    if (variable.type === 'query') out.push({ dashboard: file, panel: '(variables)', ref: `variable ${variable.name}`, expr: String(variable.query) })
  }
  return out
}

/** Grafana's variables replaced as Grafana would for the given values (a multi-value variable becomes a regex alternation). */
export function substitute(expr: string, values: Readonly<Record<string, string | readonly string[]>>): string {
  return expr.replace(/\$(__rate_interval|[a-z]+)\b/g, (whole, name: string) => {
    const value = values[name]
    if (value === undefined) throw new Error(`no value given for $${name} in ${expr}`)
    return typeof value === 'string' ? value : value.length === 1 ? value[0]! : `(${value.join('|')})`
  })
}

/** A label_values(selector, label) variable query as its selector and label; null for any other query. */
export function labelValues(query: string): { readonly selector: string; readonly label: string } | null {
  const m = /^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(query.trim())
  return m ? { selector: m[1]!, label: m[2]! } : null
}

const PROMQL_WORDS = new Set(['sum', 'max', 'min', 'avg', 'rate', 'irate', 'increase', 'round', 'histogram_quantile', 'by', 'without', 'or', 'and', 'unless'])

/**
 * The metric names an expression reads: every selector is written `name{...}` (the
 * generator's promql.ts never writes a bare name). Throws when something that could
 * be a metric name is left over once selectors, strings, grouping clauses and
 * functions are taken out, so no name escapes the check.
 */
export function metricNames(expr: string): string[] {
  const lv = labelValues(expr)
  const promql = lv ? lv.selector : expr
  const noStrings = promql.replace(/"(?:[^"\\]|\\.)*"/g, '""')
  const names = [...noStrings.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)].map((m) => m[1]!)
  const rest = noStrings
    .replace(/[a-zA-Z_:][a-zA-Z0-9_:]*\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without)\s*\([^)]*\)/g, ' ')
  const leftover = [...rest.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)].map((m) => m[0]).filter((w) => !PROMQL_WORDS.has(w))
  if (leftover.length > 0) throw new Error(`${expr}: ${leftover.join(', ')} is not read through a name{...} selector`)
  return [...new Set(names)]
}
