// Istio's standard metric labels, filled the same way by every reporter (ztunnel
// as source or destination, the waypoint), so Istio's dashboards and alerts work
// unchanged. Unknown values are Istio's "unknown".
import { identityOf, type Workload } from './model/workload-store.js'

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
