// The agent's own metrics (Prometheus, prom-client): enrollment, reconcile passes,
// datapath map use, the BPF programs' own counters and the kernel's run-time
// statistics of those programs, the sources' watch restarts, the xDS stream to
// ztunnel, and the policies it could not apply as written.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { MapOccupancy } from '../datapath/datapath.js'
import { COUNTERS, type CounterName } from '../datapath/abi.js'
import { counterProgram, type ProgramStats } from '../datapath/program-stats.js'
import type { ConvertedPolicies } from '../common/model/convert/policies.js'

/** What the agent reads from the kernel for each scrape (the Datapath, and whether run-time stats are on). */
export interface DatapathFigures {
  counters(): Readonly<Record<CounterName, bigint>>
  programStats(): readonly ProgramStats[]
  statsEnabled(): boolean
}

export class AgentMetrics {
  readonly registry = new Registry()
  readonly enrolledPods: Gauge
  readonly pendingPods: Gauge
  readonly reconcileDuration: Histogram
  readonly lastReconcileDuration: Gauge
  readonly reconcileErrors: Counter<'reason'>
  readonly mapEntries: Gauge<'map'>
  readonly mapCapacity: Gauge<'map'>
  readonly watchRestarts: Counter<'kind'>
  readonly rejectedObjects: Gauge
  readonly xdsClients: Gauge
  readonly xdsNacks: Counter
  readonly policyProblems: Gauge<'policy' | 'kind' | 'field' | 'code'>
  readonly waypointProblems: Gauge<'object' | 'waypoint' | 'kind'>
  readonly datapathEvents: Counter<'program' | 'event'>
  readonly programRuns: Counter<'program' | 'id'>
  readonly programRunSeconds: Counter<'program' | 'id'>
  readonly programStatsEnabled: Gauge
  #datapath: DatapathFigures | null = null

  constructor(options: { readonly defaultMetrics?: boolean } = {}) {
    const registers = [this.registry]
    this.enrolledPods = new Gauge({ name: 'ambient_agent_enrolled_pods', help: "This node's pods captured by the datapath", registers })
    this.pendingPods = new Gauge({
      name: 'ambient_agent_pending_pods',
      help: "This node's pods that should be enrolled but are not captured yet (netns not found, or an error)",
      registers,
    })
    this.reconcileDuration = new Histogram({
      name: 'ambient_agent_reconcile_duration_seconds',
      help: 'Time of one reconcile pass (snapshot to datapath and ztunnel)',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    })
    this.lastReconcileDuration = new Gauge({
      name: 'ambient_agent_last_reconcile_duration_seconds',
      help: 'Time of the last reconcile pass (passes run when something changes, so the histogram may not move for long)',
      registers,
    })
    this.reconcileErrors = new Counter({
      name: 'ambient_agent_reconcile_errors_total',
      help: 'Reconcile failures by reason: netns (a pod netns not found), enroll, unenroll, annotate, policy-status, pass',
      labelNames: ['reason'],
      registers,
    })
    this.mapEntries = new Gauge({ name: 'ambient_datapath_map_entries', help: 'Entries in each pinned datapath map', labelNames: ['map'], registers })
    this.mapCapacity = new Gauge({ name: 'ambient_datapath_map_capacity', help: 'max_entries of each pinned datapath map', labelNames: ['map'], registers })
    this.watchRestarts = new Counter({
      name: 'ambient_agent_watch_restarts_total',
      help: 'Kubernetes watches restarted (errors, 410 Gone, dropped streams), by kind',
      labelNames: ['kind'],
      registers,
    })
    this.rejectedObjects = new Gauge({
      name: 'ambient_agent_rejected_objects',
      help: 'Source objects currently rejected as malformed (see the logs for name and field)',
      registers,
    })
    this.xdsClients = new Gauge({ name: 'ambient_agent_xds_clients', help: 'ztunnel processes connected to the agent', registers })
    this.xdsNacks = new Counter({ name: 'ambient_agent_xds_nacks_total', help: 'Updates ztunnel refused (NACK)', registers })
    this.waypointProblems = new Gauge({
      name: 'ambient_agent_waypoint_problems',
      help: 'Waypoints that cannot be used: kind=binding (an istio.io/use-waypoint label naming a waypoint that is missing, for other traffic or not allowed) or invalid (a malformed istio-waypoint Gateway)',
      labelNames: ['object', 'waypoint', 'kind'],
      registers,
    })
    this.policyProblems = new Gauge({
      name: 'ambient_agent_policy_problems',
      help: 'Policies not applied as written: kind=invalid (rejected), ignored (not enforced at L4) or warning (an attribute ignored at L4)',
      labelNames: ['policy', 'kind', 'field', 'code'],
      registers,
    })
    // Read from the kernel at scrape time, so /metrics shows the totals `ambient status` shows.
    const datapath = this
    this.datapathEvents = new Counter({
      name: 'ambient_datapath_events_total',
      help: 'What the BPF programs did, from their per-CPU counters (ambient_counters): event is the counter (e.g. connect_redirected, sk_lookup_no_listener: a SYN dropped, fail closed), program the hook that counts it',
      labelNames: ['program', 'event'],
      registers,
      collect() {
        const figures = datapath.#datapath
        if (!figures) return
        const counters = figures.counters()
        this.reset()
        for (const event of COUNTERS) this.inc({ program: counterProgram(event), event }, Number(counters[event]))
      },
    })
    this.programRuns = new Counter({
      name: 'ambient_datapath_program_runs_total',
      help: "The kernel's run count of each loaded datapath program (bpf_prog_info run_cnt, by program id); counted only while run-time statistics are enabled (see ambient_datapath_program_stats_enabled)",
      labelNames: ['program', 'id'],
      registers,
      collect() {
        const programs = datapath.#programStats()
        if (!programs) return
        this.reset()
        for (const p of programs) this.inc({ program: p.program, id: String(p.id) }, Number(p.runs))
      },
    })
    this.programRunSeconds = new Counter({
      name: 'ambient_datapath_program_run_seconds_total',
      help: "The kernel's total run time of each loaded datapath program (bpf_prog_info run_time_ns, by program id); counted only while run-time statistics are enabled",
      labelNames: ['program', 'id'],
      registers,
      collect() {
        const programs = datapath.#programStats()
        if (!programs) return
        this.reset()
        for (const p of programs) this.inc({ program: p.program, id: String(p.id) }, Number(p.runTimeNs) / 1e9)
      },
    })
    this.programStatsEnabled = new Gauge({
      name: 'ambient_datapath_program_stats_enabled',
      help: 'Whether the kernel counts the run-time statistics of BPF programs now: 1 when this agent holds them enabled (--bpf-stats) or sysctl kernel.bpf_stats_enabled is 1',
      registers,
      collect() {
        const figures = datapath.#datapath
        if (figures) this.set(figures.statsEnabled() ? 1 : 0)
      },
    })
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry })
  }

  #scrapeStats: readonly ProgramStats[] | null = null

  /**
   * The programs' kernel statistics, read once per scrape: the registry collects
   * every metric in one synchronous pass (before any microtask), so both program
   * counters share one read.
   */
  #programStats(): readonly ProgramStats[] | null {
    const figures = this.#datapath
    if (!figures) return null
    if (this.#scrapeStats === null) {
      this.#scrapeStats = figures.programStats()
      queueMicrotask(() => (this.#scrapeStats = null))
    }
    return this.#scrapeStats
  }

  /** Where the datapath figures come from at each scrape; null when the datapath is closed. */
  observeDatapath(figures: DatapathFigures | null): void {
    this.#datapath = figures
  }

  readonly #seen = new Map<string, number>()

  /** Feeds a counter from a running total kept elsewhere (the sources, the xDS server). */
  #advance(counter: Counter<string>, key: string, total: number, labels: Record<string, string> = {}): void {
    const delta = total - (this.#seen.get(key) ?? 0)
    if (delta > 0) counter.inc(labels, delta)
    this.#seen.set(key, total)
  }

  setWatchRestarts(kind: string, total: number): void {
    this.#advance(this.watchRestarts, `watch ${kind}`, total, { kind })
  }

  setXdsNacks(total: number): void {
    this.#advance(this.xdsNacks, 'nacks', total)
  }

  recordPass(pass: { readonly seconds: number; readonly enrolled: number; readonly pending: number; readonly occupancy: readonly MapOccupancy[] }): void {
    this.reconcileDuration.observe(pass.seconds)
    this.lastReconcileDuration.set(pass.seconds)
    this.enrolledPods.set(pass.enrolled)
    this.pendingPods.set(pass.pending)
    for (const m of pass.occupancy) {
      this.mapEntries.set({ map: m.name }, m.entries)
      this.mapCapacity.set({ map: m.name }, m.capacity)
    }
  }

  setWaypointProblems(bindings: readonly { readonly object: string; readonly waypoint: string }[], invalid: readonly { readonly gateway: string }[]): void {
    this.waypointProblems.reset()
    for (const b of bindings) this.waypointProblems.inc({ object: b.object, waypoint: b.waypoint, kind: 'binding' })
    for (const g of invalid) this.waypointProblems.inc({ object: `Gateway ${g.gateway}`, waypoint: g.gateway, kind: 'invalid' })
  }

  setPolicyProblems(policies: Pick<ConvertedPolicies, 'invalid' | 'ignored' | 'warnings'>): void {
    this.policyProblems.reset()
    const all = [
      ...policies.invalid.map((p) => ({ ...p, kind: 'invalid' })),
      ...policies.ignored.map((p) => ({ ...p, kind: 'ignored' })),
      ...policies.warnings.map((p) => ({ ...p, kind: 'warning' })),
    ]
    for (const p of all) this.policyProblems.inc({ policy: p.policy, kind: p.kind, field: p.field, code: p.code })
  }
}
