// Panels as Istio's dashboards draw them (lib/panels.libsonnet): time series with a
// table legend of last and max, stats for single figures, every query on the
// `datasource` variable; and the grid: rows of panels, three to a row by default.
import type * as cog from '@grafana/grafana-foundation-sdk/cog'
import {
  VizLegendOptionsBuilder,
  LegendDisplayMode,
  LegendPlacement,
  ReduceDataOptionsBuilder,
  BigValueGraphMode,
  VisibilityMode,
} from '@grafana/grafana-foundation-sdk/common'
import {
  DashboardBuilder,
  DatasourceVariableBuilder,
  RowBuilder,
  type DataSourceRef,
  type Panel,
  VariableRefresh,
  QueryVariableBuilder,
  VariableSort,
} from '@grafana/grafana-foundation-sdk/dashboard'
import { DataqueryBuilder } from '@grafana/grafana-foundation-sdk/prometheus'
import { PanelBuilder as StatBuilder } from '@grafana/grafana-foundation-sdk/stat'
import { PanelBuilder as TimeseriesBuilder } from '@grafana/grafana-foundation-sdk/timeseries'

export const DATASOURCE: DataSourceRef = { type: 'prometheus', uid: '${datasource}' }

export interface Query {
  readonly expr: string
  readonly legend: string
}

const REF_IDS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'

function targets<T extends { withTarget(target: DataqueryBuilder): T }>(panel: T, queries: readonly Query[]): T {
  if (queries.length === 0 || queries.length > REF_IDS.length) throw new Error(`a panel takes 1 to ${REF_IDS.length} queries, got ${queries.length}`)
  queries.forEach((q, i) => panel.withTarget(new DataqueryBuilder().datasource(DATASOURCE).expr(q.expr).legendFormat(q.legend).refId(REF_IDS[i]!)))
  return panel
}

/** A time series: Istio's look (10% fill, no points, a table legend with last and max). */
export function timeseries(title: string, description: string, unit: string, queries: readonly Query[]): TimeseriesBuilder {
  const panel = new TimeseriesBuilder()
    .title(title)
    .description(description)
    .datasource(DATASOURCE)
    .unit(unit)
    .fillOpacity(10)
    .showPoints(VisibilityMode.Never)
    .legend(new VizLegendOptionsBuilder().displayMode(LegendDisplayMode.Table).placement(LegendPlacement.Bottom).showLegend(true).calcs(['last', 'max']))
  return targets(panel, queries)
}

/** One figure, with its recent course behind it. */
export function stat(title: string, description: string, unit: string, query: Query): StatBuilder {
  const panel = new StatBuilder()
    .title(title)
    .description(description)
    .datasource(DATASOURCE)
    .unit(unit)
    .graphMode(BigValueGraphMode.Area)
    .reduceOptions(new ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false))
  return targets(panel, [query])
}

export interface Row {
  readonly title: string
  /** Panels left to right, wrapping at 24 columns; width defaults to 8 (three to a row). */
  readonly panels: readonly (cog.Builder<Panel> | { readonly panel: cog.Builder<Panel>; readonly width: number })[]
}

const PANEL_HEIGHT = 8

/** Lays the rows out on Grafana's 24-column grid, with stable ids (rows and panels numbered in order). */
export function layout(dashboard: DashboardBuilder, rows: readonly Row[]): DashboardBuilder {
  let id = 1
  let y = 0
  for (const row of rows) {
    dashboard.withRow(new RowBuilder(row.title).id(id++).gridPos({ x: 0, y, w: 24, h: 1 }))
    y += 1
    let x = 0
    for (const entry of row.panels) {
      const { panel, width } = 'panel' in entry ? entry : { panel: entry, width: 8 }
      if (x + width > 24) {
        x = 0
        y += PANEL_HEIGHT
      }
      const built = panel as cog.Builder<Panel> & { id(id: number): unknown; gridPos(pos: { x: number; y: number; w: number; h: number }): unknown }
      built.id(id++)
      built.gridPos({ x, y, w: width, h: PANEL_HEIGHT })
      dashboard.withPanel(panel)
      x += width
    }
    y += PANEL_HEIGHT
  }
  return dashboard
}

/** The Prometheus data source variable every query uses. */
export function datasourceVariable(): DatasourceVariableBuilder {
  return new DatasourceVariableBuilder('datasource').label('Data source').type('prometheus')
}

/** A variable of a label's values (Grafana's label_values), All selected, several allowed. */
export function labelVariable(name: string, label: string, query: string): QueryVariableBuilder {
  return new QueryVariableBuilder(name)
    .label(label)
    .datasource(DATASOURCE)
    .query(query)
    .refresh(VariableRefresh.OnTimeRangeChanged)
    .sort(VariableSort.AlphabeticalAsc)
    .multi(true)
    .includeAll(true)
    .current({ selected: true, text: ['All'], value: ['$__all'] })
}
