// ztunnel's metrics with Istio's names and labels, so existing Istio dashboards
// and alerts work unchanged. One registry per ztunnel process.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { TCP_LABELS, type TcpLabel, type TcpLabels } from '../common/telemetry.js'

export { tcpLabels, workloadLabels, type TcpLabel, type TcpLabels } from '../common/telemetry.js'

export class ZtunnelMetrics {
  readonly registry = new Registry()
  readonly opened: Counter<TcpLabel>
  readonly closed: Counter<TcpLabel>
  readonly sent: Counter<TcpLabel>
  readonly received: Counter<TcpLabel>
  readonly activeConnections: Gauge<'direction'>
  readonly hboneSessions: Gauge
  readonly hboneRefused: Counter<'reason'>
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
    this.hboneRefused = new Counter({
      name: 'ambient_ztunnel_hbone_refused_total',
      help: 'Inbound HBONE input refused: connections (reason tls, alpn, identity, trust_domain) and CONNECT streams (bad_request, not_local, unknown_destination, denied, upstream_failure, internal)',
      labelNames: ['reason'],
      registers,
    })
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
