// The node dashboard: a node's agent and ztunnel. Its Process and Network rows are
// Istio's ztunnel dashboard (ztunnel.libsonnet) per node instead of per pod; the
// Workloads row is the TCP half of Istio's workload dashboard (connections and bytes
// by workload, mTLS apart from plaintext) as this node's ztunnel reports it; the
// Datapath row is the agent's: enrollment, BPF maps and programs, reconcile passes,
// the xDS stream to ztunnel, and objects it could not apply.
//
// Target labels it expects (daemonset/dashboards/README.md has a scrape config):
// job="ambient-agent" or "ambient-ztunnel", and node.
import { DashboardBuilder, DashboardCursorSync } from '@grafana/grafana-foundation-sdk/dashboard'
import { datasourceVariable, labelVariable, layout, timeseries } from './panels.js'
import { max, rate, round, selector, sum } from './promql.js'

const NODE = '~$node'
const agent = { job: 'ambient-agent', node: NODE } as const
const ztunnel = { job: 'ambient-ztunnel', node: NODE } as const
const both = { job: '~ambient-agent|ambient-ztunnel', node: NODE } as const
const MTLS = 'mutual_tls'
/** Events after which the connection is dropped or refused: the capture failed closed. */
const DROPS = '~sk_lookup_no_listener|sk_lookup_assign_failed|connect_map_full|sockops_tuple_failed'

function processRow() {
  return {
    title: 'Process',
    panels: [
      timeseries('CPU Usage', 'CPU (cores) of the agent and ztunnel of each node', 'short', [
        { expr: sum(rate('process_cpu_seconds_total', both), ['node', 'job']), legend: '{{job}} ({{node}})' },
      ]),
      timeseries('Memory Usage', 'Resident memory of the agent and ztunnel of each node', 'bytes', [
        { expr: sum(selector('process_resident_memory_bytes', both), ['node', 'job']), legend: '{{job}} ({{node}})' },
      ]),
      timeseries('Event Loop Lag', "p99 delay of each process's Node.js event loop: what every connection waits on", 's', [
        { expr: max(selector('nodejs_eventloop_lag_p99_seconds', both), ['node', 'job']), legend: '{{job}} ({{node}})' },
      ]),
    ],
  }
}

function networkRow() {
  return {
    title: 'Network',
    panels: [
      timeseries('Connections', 'Connections opened (up) and closed (down) by ztunnel, per node', 'cps', [
        { expr: sum(rate('istio_tcp_connections_opened_total', ztunnel), ['node']), legend: 'Opened ({{node}})' },
        { expr: '-' + sum(rate('istio_tcp_connections_closed_total', ztunnel), ['node']), legend: 'Closed ({{node}})' },
      ]),
      timeseries('Bytes Transmitted', 'Bytes sent and received by ztunnel, per node (counted when a connection closes)', 'Bps', [
        { expr: sum(rate('istio_tcp_sent_bytes_total', ztunnel), ['node']), legend: 'Sent ({{node}})' },
        { expr: sum(rate('istio_tcp_received_bytes_total', ztunnel), ['node']), legend: 'Received ({{node}})' },
      ]),
      timeseries('Open Connections', 'Connections open through ztunnel by direction, and pooled outbound HBONE sessions', 'short', [
        { expr: sum(selector('ambient_ztunnel_active_connections', ztunnel), ['node', 'direction']), legend: '{{direction}} ({{node}})' },
        { expr: sum(selector('ambient_ztunnel_hbone_pool_sessions', ztunnel), ['node']), legend: 'HBONE sessions ({{node}})' },
      ]),
    ],
  }
}

/** Istio's inbound TCP panels: by source workload, mTLS (🔐) and plaintext as separate queries. */
function inbound(title: string, description: string, unit: string, metric: string) {
  const by = ['source_workload', 'source_workload_namespace', 'destination_workload']
  const legend = '{{source_workload}}.{{source_workload_namespace}} → {{destination_workload}}'
  return timeseries(title, description, unit, [
    { expr: round(sum(rate(metric, { ...ztunnel, reporter: 'destination', connection_security_policy: MTLS }), by)), legend: `${legend} (🔐mTLS)` },
    { expr: round(sum(rate(metric, { ...ztunnel, reporter: 'destination', connection_security_policy: `!${MTLS}` }), by)), legend },
  ])
}

function workloadsRow() {
  const outbound = { ...ztunnel, reporter: 'source' }
  return {
    title: 'Workloads',
    panels: [
      inbound(
        'Incoming Connections By Source',
        "Connections into this node's enrolled pods by source workload, over mutual TLS (🔐mTLS, HBONE) or plaintext (from outside the mesh)",
        'cps',
        'istio_tcp_connections_opened_total',
      ),
      inbound(
        'Bytes Received from Incoming TCP Connection',
        'Bytes from the source, by source workload and security policy',
        'Bps',
        'istio_tcp_received_bytes_total',
      ),
      inbound('Bytes Sent to Incoming TCP Connection', 'Bytes to the source, by source workload and security policy', 'Bps', 'istio_tcp_sent_bytes_total'),
      {
        panel: timeseries(
          'Outgoing Connections By Destination',
          "Connections from this node's enrolled pods by destination and security policy: mutual_tls to a mesh workload or waypoint (HBONE), unknown (plaintext) to anything outside the mesh",
          'cps',
          [
            {
              expr: round(
                sum(rate('istio_tcp_connections_opened_total', outbound), [
                  'source_workload',
                  'destination_workload',
                  'destination_service',
                  'connection_security_policy',
                ]),
              ),
              legend: '{{source_workload}} → {{destination_workload}} ({{destination_service}}, {{connection_security_policy}})',
            },
          ],
        ),
        width: 12,
      },
      {
        panel: timeseries('Bytes on Outgoing TCP Connection', 'Bytes sent to and received from each destination workload', 'Bps', [
          {
            expr: round(sum(rate('istio_tcp_received_bytes_total', outbound), ['destination_workload', 'connection_security_policy'])),
            legend: 'to {{destination_workload}} ({{connection_security_policy}})',
          },
          {
            expr: round(sum(rate('istio_tcp_sent_bytes_total', outbound), ['destination_workload', 'connection_security_policy'])),
            legend: 'from {{destination_workload}} ({{connection_security_policy}})',
          },
        ]),
        width: 12,
      },
    ],
  }
}

function datapathRow() {
  return {
    title: 'Datapath',
    panels: [
      timeseries(
        'Enrolled Pods',
        "This node's pods captured by the datapath, and those that should be but are not yet (netns not found, or an error): pending is expected to return to zero",
        'short',
        [
          { expr: sum(selector('ambient_agent_enrolled_pods', agent), ['node']), legend: 'Enrolled ({{node}})' },
          { expr: sum(selector('ambient_agent_pending_pods', agent), ['node']), legend: 'Pending ({{node}})' },
        ],
      ),
      timeseries('Map Occupancy', 'Entries of each pinned BPF map over its capacity (max_entries)', 'percentunit', [
        {
          expr: `${max(selector('ambient_datapath_map_entries', agent), ['node', 'map'])} / ${max(selector('ambient_datapath_map_capacity', agent), ['node', 'map'])}`,
          legend: '{{map}} ({{node}})',
        },
      ]),
      timeseries('Map Entries', 'Entries and capacity of each pinned BPF map', 'short', [
        { expr: max(selector('ambient_datapath_map_entries', agent), ['node', 'map']), legend: '{{map}} ({{node}})' },
        { expr: max(selector('ambient_datapath_map_capacity', agent), ['node', 'map']), legend: '{{map}} capacity ({{node}})' },
      ]),
      timeseries('BPF Program Events', 'What the datapath programs did, from their own per-CPU counters (ambient status shows the totals)', 'ops', [
        { expr: sum(rate('ambient_datapath_events_total', agent), ['node', 'event']), legend: '{{event}} ({{node}})' },
      ]),
      timeseries(
        'Capture Drops',
        'Connections the datapath dropped or could not account for, so they fail closed: sk_lookup_no_listener (a SYN to an enrolled pod while ztunnel has no listener in it), sk_lookup_assign_failed, connect_map_full and sockops_tuple_failed (a map full: ztunnel refuses the connection for lack of its original destination)',
        'ops',
        [{ expr: sum(rate('ambient_datapath_events_total', { ...agent, event: DROPS }), ['node', 'event']), legend: '{{event}} ({{node}})' }],
      ),
      timeseries(
        'BPF Program Runs',
        "The kernel's run count of each datapath program (bpf_prog_info run_cnt); counted only while run-time statistics are on (ambient agent --bpf-stats, or sysctl kernel.bpf_stats_enabled=1: see ambient_datapath_program_stats_enabled)",
        'ops',
        [{ expr: sum(rate('ambient_datapath_program_runs_total', agent), ['node', 'program']), legend: '{{program}} ({{node}})' }],
      ),
      timeseries(
        'BPF Program Time per Run',
        "The kernel's average run time of each datapath program per run (run_time_ns over run_cnt); needs run-time statistics on, as above",
        's',
        [
          {
            expr: `${sum(rate('ambient_datapath_program_run_seconds_total', agent), ['node', 'program'])} / ${sum(rate('ambient_datapath_program_runs_total', agent), ['node', 'program'])}`,
            legend: '{{program}} ({{node}})',
          },
        ],
      ),
      timeseries(
        'Reconcile Latency',
        'Time of the last reconcile pass (snapshot to datapath and ztunnel), and percentiles over every pass since the agent started: passes run when something changes, so a quiet node has none in a rate window for long stretches (Reconcile Passes shows when they ran)',
        's',
        [
          { expr: max(selector('ambient_agent_last_reconcile_duration_seconds', agent), ['node']), legend: 'Last pass ({{node}})' },
          ...[0.5, 0.99].map((q) => ({
            expr: `histogram_quantile(${q.toFixed(2)}, ${sum(selector('ambient_agent_reconcile_duration_seconds_bucket', agent), ['node', 'le'])})`,
            legend: `P${Math.round(q * 100)} since start ({{node}})`,
          })),
        ],
      ),
      timeseries('Reconcile Passes', 'Reconcile passes per second', 'ops', [
        { expr: sum(rate('ambient_agent_reconcile_duration_seconds_count', agent), ['node']), legend: 'Passes ({{node}})' },
      ]),
      timeseries('XDS', "ztunnels connected to the node's agent (expected: 1) and the updates they refused (NACK)", 'short', [
        { expr: sum(selector('ambient_agent_xds_clients', agent), ['node']), legend: 'Connected ztunnels ({{node}})' },
        { expr: sum(rate('ambient_agent_xds_nacks_total', agent), ['node']), legend: 'NACKs/s ({{node}})' },
      ]),
      {
        panel: timeseries(
          'Objects Not Applied as Written',
          'Source objects rejected as malformed (the logs name the field), policies not enforced as written by kind (invalid, ignored: e.g. targetRefs, which belong to waypoints; warning), and waypoint bindings or Gateways that cannot be used',
          'short',
          [
            { expr: sum(selector('ambient_agent_rejected_objects', agent), ['node']), legend: 'Rejected objects ({{node}})' },
            { expr: sum(selector('ambient_agent_policy_problems', agent), ['node', 'kind']), legend: 'Policies: {{kind}} ({{node}})' },
            { expr: sum(selector('ambient_agent_waypoint_problems', agent), ['node', 'kind']), legend: 'Waypoints: {{kind}} ({{node}})' },
          ],
        ),
        width: 16,
      },
    ],
  }
}

export function nodeDashboard(): DashboardBuilder {
  const dashboard = new DashboardBuilder('ambient Node')
    .uid('ambient-node')
    .description("A node's ambient agent and ztunnel: Istio's ztunnel dashboard per node, connections by workload and security policy, and the BPF datapath")
    .tags(['ambient', 'istio', 'ztunnel'])
    .tooltip(DashboardCursorSync.Crosshair)
    .time({ from: 'now-15m', to: 'now' })
    .refresh('10s')
    .timezone('utc')
    .withVariable(datasourceVariable())
    .withVariable(labelVariable('node', 'Node', 'label_values(ambient_agent_enrolled_pods{job="ambient-agent"}, node)'))
  return layout(dashboard, [processRow(), networkRow(), workloadsRow(), datapathRow()])
}
