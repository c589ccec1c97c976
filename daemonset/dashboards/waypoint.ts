// The waypoint dashboard: the HTTP half of Istio's workload and service dashboards
// (istio-workload-dashboard.json: request volume, success rate, duration, request
// and response sizes, by source, destination and response code) for what a
// waypoint reports (reporter="waypoint"), plus the HTTPRoute that answered each
// request and the waypoint processes. A waypoint only accepts HBONE, so every
// request is mutual TLS and the panels do not split by security policy.
//
// Target labels it expects: job="ambient-waypoint", namespace and gateway (the
// Gateway's name).
import { DashboardBuilder, DashboardCursorSync } from '@grafana/grafana-foundation-sdk/dashboard'
import { datasourceVariable, labelVariable, layout, stat, timeseries, type Query } from './panels.js'
import { quantile, rate, round, selector, sum } from './promql.js'

const waypoint = { job: 'ambient-waypoint', namespace: '~$namespace', gateway: '~$gateway' } as const
const requests = { ...waypoint, reporter: 'waypoint' } as const
const QUANTILES = [0.5, 0.9, 0.99] as const
const pct = (q: number): string => `P${Math.round(q * 100)}`

/** P50/P90/P99 of a histogram, by `by` (Istio's duration and size panels). */
function percentiles(histogram: string, by: readonly string[], legend: string): Query[] {
  return QUANTILES.map((q) => ({ expr: quantile(q, histogram, requests, by), legend: `${legend}${legend ? ' ' : ''}${pct(q)}` }))
}

/** Istio's success rate: non-5xx over all. */
function successRate(by: readonly string[]): string {
  return `${sum(rate('istio_requests_total', { ...requests, response_code: '!~5.*' }), by)} / ${sum(rate('istio_requests_total', requests), by)}`
}

function overviewRow() {
  return {
    title: 'General',
    panels: [
      {
        panel: stat('Request Volume', 'Requests per second through the waypoint', 'reqps', {
          expr: round(sum(rate('istio_requests_total', requests))),
          legend: '',
        }),
        width: 6,
      },
      {
        panel: stat('Success Rate (non-5xx responses)', 'Share of requests answered with anything but 5xx', 'percentunit', {
          expr: successRate([]),
          legend: '',
        }),
        width: 6,
      },
      {
        panel: stat('4xx Responses', 'Requests per second answered 4xx: 403 is an L7 AuthorizationPolicy denying', 'reqps', {
          expr: round(sum(rate('istio_requests_total', { ...requests, response_code: '~4..' }))),
          legend: '',
        }),
        width: 6,
      },
      {
        panel: timeseries(
          'Request Duration',
          'Request duration percentiles: first request byte to last response byte',
          'ms',
          percentiles('istio_request_duration_milliseconds', [], ''),
        ),
        width: 6,
      },
    ],
  }
}

function requestsRow() {
  return {
    title: 'Requests',
    panels: [
      {
        panel: timeseries('Requests By Destination And Response Code', 'Requests by the service they went to (after routing) and response code', 'reqps', [
          {
            expr: round(sum(rate('istio_requests_total', requests), ['destination_service', 'response_code'])),
            legend: '{{destination_service}} : {{response_code}}',
          },
        ]),
        width: 12,
      },
      {
        panel: timeseries(
          'Requests By Source And Response Code',
          'Requests by source workload and response code (🔐mTLS: every request reaches a waypoint over HBONE)',
          'reqps',
          [
            {
              expr: round(sum(rate('istio_requests_total', requests), ['source_workload', 'source_workload_namespace', 'response_code'])),
              legend: '{{source_workload}}.{{source_workload_namespace}} : {{response_code}} (🔐mTLS)',
            },
          ],
        ),
        width: 12,
      },
      {
        panel: timeseries(
          'Success Rate (non-5xx responses) By Destination',
          'Share of requests to each destination service answered with anything but 5xx',
          'percentunit',
          [{ expr: successRate(['destination_service']), legend: '{{destination_service}}' }],
        ),
        width: 12,
      },
      {
        panel: timeseries(
          'Requests By HTTPRoute',
          'Requests by the HTTPRoute that answered them (empty route: no route bound, the addressed service), backend and response code',
          'reqps',
          [
            {
              expr: round(sum(rate('ambient_waypoint_route_requests_total', waypoint), ['route', 'destination_service', 'response_code'])),
              legend: '{{route}} → {{destination_service}} : {{response_code}}',
            },
          ],
        ),
        width: 12,
      },
    ],
  }
}

function latencyRow() {
  const by = ['destination_service']
  return {
    title: 'Latency and Size',
    panels: [
      timeseries(
        'Request Duration By Destination',
        'Request duration percentiles by destination service',
        'ms',
        percentiles('istio_request_duration_milliseconds', by, '{{destination_service}}'),
      ),
      timeseries(
        'Request Size By Destination',
        'Request size (headers and body) percentiles by destination service',
        'decbytes',
        percentiles('istio_request_bytes', by, '{{destination_service}}'),
      ),
      timeseries(
        'Response Size By Destination',
        'Response size (headers and body) percentiles by destination service',
        'decbytes',
        percentiles('istio_response_bytes', by, '{{destination_service}}'),
      ),
      timeseries('Bytes By Destination', 'Request and response bytes per second by destination service', 'Bps', [
        { expr: round(sum(rate('istio_request_bytes_sum', requests), by)), legend: 'Requests to {{destination_service}}' },
        { expr: round(sum(rate('istio_response_bytes_sum', requests), by)), legend: 'Responses from {{destination_service}}' },
      ]),
    ],
  }
}

function processRow() {
  return {
    title: 'Process',
    panels: [
      timeseries('CPU Usage', 'CPU (cores) of each waypoint', 'short', [
        { expr: sum(rate('process_cpu_seconds_total', waypoint), ['namespace', 'gateway']), legend: '{{namespace}}/{{gateway}}' },
      ]),
      timeseries('Memory Usage', 'Resident memory of each waypoint', 'bytes', [
        { expr: sum(selector('process_resident_memory_bytes', waypoint), ['namespace', 'gateway']), legend: '{{namespace}}/{{gateway}}' },
      ]),
      timeseries('Active Streams', 'HBONE streams open into each waypoint, by the protocol inside', 'short', [
        {
          expr: sum(selector('ambient_waypoint_active_streams', waypoint), ['namespace', 'gateway', 'protocol']),
          legend: '{{namespace}}/{{gateway}} {{protocol}}',
        },
      ]),
    ],
  }
}

export function waypointDashboard(): DashboardBuilder {
  const dashboard = new DashboardBuilder('ambient Waypoint')
    .uid('ambient-waypoint')
    .description("A waypoint's L7 traffic as Istio's workload and service dashboards show it: requests, response codes, latency percentiles, sizes and bytes")
    .tags(['ambient', 'istio', 'waypoint'])
    .tooltip(DashboardCursorSync.Crosshair)
    .time({ from: 'now-15m', to: 'now' })
    .refresh('10s')
    .timezone('utc')
    .withVariable(datasourceVariable())
    .withVariable(labelVariable('namespace', 'Namespace', 'label_values(process_start_time_seconds{job="ambient-waypoint"}, namespace)'))
    .withVariable(labelVariable('gateway', 'Waypoint', 'label_values(process_start_time_seconds{job="ambient-waypoint", namespace=~"$namespace"}, gateway)'))
  return layout(dashboard, [overviewRow(), requestsRow(), latencyRow(), processRow()])
}
