// The datapath's figures on /metrics: the BPF programs' own counters and the
// kernel's run-time statistics, read at scrape time, as counters that equal the
// kernel's totals (a reloaded datapath starts again from 0: a counter reset).
import t from 'tap'
import { COUNTERS, type CounterName } from '../datapath/abi.js'
import type { ProgramStats } from '../datapath/program-stats.js'
import { AgentMetrics, type DatapathFigures } from './metrics.js'

/** The value of one series in an exposition, or undefined. */
const value = (text: string, series: string): string | undefined =>
  text
    .split('\n')
    .find((l) => l.startsWith(series + ' '))
    ?.split(' ')[1]

t.test('a reconcile pass: its time in the histogram and as the last pass', async (t) => {
  const metrics = new AgentMetrics({ defaultMetrics: false })
  metrics.recordPass({ seconds: 0.25, enrolled: 3, pending: 1, occupancy: [{ name: 'ambient_pods', entries: 3, capacity: 4096 }] })
  metrics.recordPass({ seconds: 0.003, enrolled: 3, pending: 0, occupancy: [{ name: 'ambient_pods', entries: 3, capacity: 4096 }] })
  const text = await metrics.registry.metrics()
  t.equal(value(text, 'ambient_agent_reconcile_duration_seconds_count'), '2')
  t.equal(value(text, 'ambient_agent_last_reconcile_duration_seconds'), '0.003')
  t.equal(value(text, 'ambient_agent_pending_pods'), '0')
  t.equal(value(text, 'ambient_datapath_map_capacity{map="ambient_pods"}'), '4096')
})

t.test('datapath counters and program statistics are scraped from the kernel', async (t) => {
  const metrics = new AgentMetrics({ defaultMetrics: false })
  const before = await metrics.registry.metrics()
  t.notMatch(before, /^ambient_datapath_events_total\{/m, 'no series before there is a datapath')

  const counters = Object.fromEntries(COUNTERS.map((c) => [c, 0n])) as Record<CounterName, bigint>
  let programs: ProgramStats[] = [{ program: 'ambient_connect4', id: 71, runs: 10n, runTimeNs: 2_500_000_000n }]
  let enabled = true
  let reads = 0
  const figures: DatapathFigures = {
    counters: () => {
      reads++
      return counters
    },
    programStats: () => programs,
    statsEnabled: () => enabled,
  }
  metrics.observeDatapath(figures)
  counters.connect_redirected = 5n
  counters.sk_lookup_no_listener = 2n
  let text = await metrics.registry.metrics()
  t.match(text, /# TYPE ambient_datapath_events_total counter/)
  t.equal(value(text, 'ambient_datapath_events_total{program="ambient_connect4",event="connect_redirected"}'), '5')
  t.equal(value(text, 'ambient_datapath_events_total{program="ambient_sk_lookup",event="sk_lookup_no_listener"}'), '2')
  t.equal(value(text, 'ambient_datapath_events_total{program="ambient_sockops",event="sockops_tuple_failed"}'), '0', 'every counter, also at 0')
  t.equal(text.split('\n').filter((l) => l.startsWith('ambient_datapath_events_total{')).length, COUNTERS.length)
  t.equal(reads, 1, 'the counters map is read once per scrape')
  t.equal(value(text, 'ambient_datapath_program_runs_total{program="ambient_connect4",id="71"}'), '10')
  t.equal(value(text, 'ambient_datapath_program_run_seconds_total{program="ambient_connect4",id="71"}'), '2.5')
  t.equal(value(text, 'ambient_datapath_program_stats_enabled'), '1')

  counters.connect_redirected = 9n
  programs = [{ program: 'ambient_sk_lookup', id: 80, runs: 3n, runTimeNs: 1000n }]
  enabled = false
  text = await metrics.registry.metrics()
  t.equal(value(text, 'ambient_datapath_events_total{program="ambient_connect4",event="connect_redirected"}'), '9', 'the kernel total, not a sum of scrapes')
  t.notOk(value(text, 'ambient_datapath_program_runs_total{program="ambient_connect4",id="71"}'), 'an unloaded program leaves')
  t.equal(value(text, 'ambient_datapath_program_runs_total{program="ambient_sk_lookup",id="80"}'), '3')
  t.equal(value(text, 'ambient_datapath_program_stats_enabled'), '0')

  metrics.observeDatapath(null)
  t.ok(await metrics.registry.metrics(), 'a closed datapath is not read')
  t.equal(reads, 2)
})
