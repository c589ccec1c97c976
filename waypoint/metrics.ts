// The waypoint's metrics with Istio's names and labels (reporter="waypoint"), so
// Istio's waypoint dashboards work unchanged: requests, their duration and sizes
// by source, destination and response code; TCP connections relayed without
// HTTP; plus the route that answered, for the demo and for debugging routes.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { TCP_LABELS, UNKNOWN, type TcpLabel, type TcpLabels } from '../common/telemetry.js'

/** Istio's request labels (istio_requests_total and the histograms), the subset a waypoint fills truthfully. */
export const REQUEST_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const
export type RequestLabel = (typeof REQUEST_LABELS)[number]
export type RequestLabels = Readonly<Record<RequestLabel, string>>

/** Istio's default buckets for istio_request_duration_milliseconds. */
const DURATION_BUCKETS_MS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000]
/** Istio's default buckets for istio_request_bytes and istio_response_bytes. */
const SIZE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000]

export function requestLabels(partial: Partial<RequestLabels>): RequestLabels {
  const out = {} as Record<RequestLabel, string>
  for (const label of REQUEST_LABELS) out[label] = partial[label] ?? UNKNOWN
  out.reporter = 'waypoint'
  if (!partial.response_flags) out.response_flags = '-'
  if (!partial.grpc_response_status) out.grpc_response_status = ''
  return out
}

export interface RequestRecord {
  readonly labels: RequestLabels
  readonly durationMs: number
  readonly requestBytes: number
  readonly responseBytes: number
  /** `namespace/name` of the HTTPRoute that answered, or '' when none did (the addressed service). */
  readonly route: string
}

export class WaypointMetrics {
  readonly registry = new Registry()
  readonly requests: Counter<RequestLabel>
  readonly duration: Histogram<RequestLabel>
  readonly requestBytes: Histogram<RequestLabel>
  readonly responseBytes: Histogram<RequestLabel>
  readonly routeRequests: Counter<'route' | 'destination_service' | 'response_code'>
  readonly tcpOpened: Counter<TcpLabel>
  readonly tcpClosed: Counter<TcpLabel>
  readonly tcpSent: Counter<TcpLabel>
  readonly tcpReceived: Counter<TcpLabel>
  readonly activeStreams: Gauge<'protocol'>
  readonly configProblems: Gauge<'object' | 'kind' | 'field' | 'code'>

  constructor(options: { readonly defaultMetrics?: boolean } = {}) {
    const registers = [this.registry]
    const labelNames = [...REQUEST_LABELS]
    this.requests = new Counter({ name: 'istio_requests_total', help: 'Requests handled by the waypoint', labelNames, registers })
    this.duration = new Histogram({
      name: 'istio_request_duration_milliseconds',
      help: 'Request duration, from the first request byte to the last response byte',
      labelNames,
      buckets: DURATION_BUCKETS_MS,
      registers,
    })
    this.requestBytes = new Histogram({ name: 'istio_request_bytes', help: 'Request sizes (headers and body)', labelNames, buckets: SIZE_BUCKETS, registers })
    this.responseBytes = new Histogram({
      name: 'istio_response_bytes',
      help: 'Response sizes (headers and body)',
      labelNames,
      buckets: SIZE_BUCKETS,
      registers,
    })
    this.routeRequests = new Counter({
      name: 'ambient_waypoint_route_requests_total',
      help: 'Requests by the HTTPRoute that answered them (route="" when no route is bound: the addressed service)',
      labelNames: ['route', 'destination_service', 'response_code'],
      registers,
    })
    const tcp = [...TCP_LABELS]
    this.tcpOpened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'TCP connections relayed without HTTP', labelNames: tcp, registers })
    this.tcpClosed = new Counter({
      name: 'istio_tcp_connections_closed_total',
      help: 'TCP connections relayed without HTTP, closed',
      labelNames: tcp,
      registers,
    })
    this.tcpSent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes destination to source', labelNames: tcp, registers })
    this.tcpReceived = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes source to destination', labelNames: tcp, registers })
    this.activeStreams = new Gauge({
      name: 'ambient_waypoint_active_streams',
      help: 'HBONE streams open into the waypoint, by protocol inside',
      labelNames: ['protocol'],
      registers,
    })
    this.configProblems = new Gauge({
      name: 'ambient_waypoint_config_problems',
      help: 'Routes, policies or the Gateway the waypoint cannot apply as written: kind=invalid (left out), ignored or warning',
      labelNames: ['object', 'kind', 'field', 'code'],
      registers,
    })
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry })
  }

  request(record: RequestRecord): void {
    this.requests.inc(record.labels)
    this.duration.observe(record.labels, record.durationMs)
    this.requestBytes.observe(record.labels, record.requestBytes)
    this.responseBytes.observe(record.labels, record.responseBytes)
    this.routeRequests.inc({ route: record.route, destination_service: record.labels.destination_service, response_code: record.labels.response_code })
  }

  tcpConnectionClosed(labels: TcpLabels, bytes: { readonly received: number; readonly sent: number }): void {
    this.tcpClosed.inc(labels)
    if (bytes.received > 0) this.tcpReceived.inc(labels, bytes.received)
    if (bytes.sent > 0) this.tcpSent.inc(labels, bytes.sent)
  }

  setConfigProblems(problems: readonly { readonly object: string; readonly kind: string; readonly field: string; readonly code: string }[]): void {
    this.configProblems.reset()
    for (const p of problems) this.configProblems.inc({ object: p.object, kind: p.kind, field: p.field, code: p.code })
  }
}
