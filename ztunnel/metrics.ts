// ztunnel's metrics with Istio's names and labels, so existing Istio dashboards
// and alerts work unchanged. One registry per ztunnel process.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { identityOf, type Workload } from '../common/model/workload-store.js'

/** The labels Istio's ztunnel puts on its TCP metrics (a subset that we can fill truthfully). */
export const TCP_LABELS = [
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
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const
export type TcpLabel = (typeof TCP_LABELS)[number]
export type TcpLabels = Readonly<Record<TcpLabel, string>>

export const UNKNOWN = 'unknown'

/** Labels for a connection, with Istio's "unknown" for what is not known. */
export function tcpLabels(partial: Partial<TcpLabels> & Pick<TcpLabels, 'reporter'>): TcpLabels {
  const out = {} as Record<TcpLabel, string>
  for (const label of TCP_LABELS) out[label] = partial[label] ?? UNKNOWN
  if (!partial.request_protocol) out.request_protocol = 'tcp'
  if (!partial.response_flags) out.response_flags = '-'
  return out
}

/** The source_* or destination_* labels of a known workload (none for an unknown one). */
export function workloadLabels(prefix: 'source' | 'destination', w: Workload | undefined): Partial<TcpLabels> {
  if (!w) return {}
  return {
    [`${prefix}_workload`]: w.name,
    [`${prefix}_workload_namespace`]: w.namespace,
    [`${prefix}_principal`]: identityOf(w),
    [`${prefix}_app`]: w.canonicalName || 'unknown',
  }
}

export class ZtunnelMetrics {
  readonly registry = new Registry()
  readonly opened: Counter<TcpLabel>
  readonly closed: Counter<TcpLabel>
  readonly sent: Counter<TcpLabel>
  readonly received: Counter<TcpLabel>
  readonly activeConnections: Gauge<'direction'>
  readonly hboneSessions: Gauge
  readonly certificateExpiry: Gauge<'identity'>
  readonly policyProblems: Gauge<'policy' | 'kind' | 'field' | 'code'>

  constructor(options: { readonly defaultMetrics?: boolean } = {}) {
    const registers = [this.registry]
    const labelNames = [...TCP_LABELS]
    this.opened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'Total TCP connections opened', labelNames, registers })
    this.closed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'Total TCP connections closed', labelNames, registers })
    this.sent = new Counter({
      name: 'istio_tcp_sent_bytes_total',
      help: 'Total bytes sent in response to a connection (destination to source)',
      labelNames,
      registers,
    })
    this.received = new Counter({
      name: 'istio_tcp_received_bytes_total',
      help: 'Total bytes received for a connection (source to destination)',
      labelNames,
      registers,
    })
    this.activeConnections = new Gauge({
      name: 'ambient_ztunnel_active_connections',
      help: 'Connections open through this ztunnel',
      labelNames: ['direction'],
      registers,
    })
    this.hboneSessions = new Gauge({ name: 'ambient_ztunnel_hbone_pool_sessions', help: 'Pooled outbound HBONE HTTP/2 sessions', registers })
    this.certificateExpiry = new Gauge({
      name: 'ambient_ztunnel_certificate_expiry_seconds',
      help: 'Unix time at which a workload certificate expires',
      labelNames: ['identity'],
      registers,
    })
    this.policyProblems = new Gauge({
      name: 'ambient_ztunnel_policy_problems',
      help: 'Policies ztunnel could not apply as written: kind=invalid (rejected), ignored (not enforced at L4) or warning (an attribute ignored at L4)',
      labelNames: ['policy', 'kind', 'field', 'code'],
      registers,
    })
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry })
  }

  /** Replaces the policy problems of the last update. */
  setPolicyProblems(
    problems: readonly { readonly kind: 'invalid' | 'ignored' | 'warning'; readonly policy: string; readonly field: string; readonly code: string }[],
  ): void {
    this.policyProblems.reset()
    for (const p of problems) this.policyProblems.inc({ policy: p.policy, kind: p.kind, field: p.field, code: p.code })
  }

  connectionOpened(labels: TcpLabels, direction: 'inbound' | 'outbound'): void {
    this.opened.inc(labels)
    this.activeConnections.inc({ direction })
  }

  /** Bytes: `received` flows source→destination, `sent` destination→source (Istio's meaning). */
  connectionClosed(labels: TcpLabels, direction: 'inbound' | 'outbound', bytes: { readonly received: number; readonly sent: number }): void {
    this.closed.inc(labels)
    if (bytes.received > 0) this.received.inc(labels, bytes.received)
    if (bytes.sent > 0) this.sent.inc(labels, bytes.sent)
    this.activeConnections.dec({ direction })
  }
}
