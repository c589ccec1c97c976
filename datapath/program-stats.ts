// Per-program figures of the datapath, for metrics: which program each counter of
// ambient_counters belongs to, and the kernel's own run count and run time of the
// programs behind the pinned links (bpf_prog_info run_cnt / run_time_ns, counted
// only while run-time statistics are enabled: BPF_ENABLE_STATS, which the agent
// holds with --bpf-stats, or sysctl kernel.bpf_stats_enabled).
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { BpfLink, loadedProgram, RunTimeStats, type NativeError } from '../native/index.js'
import type { CounterName } from './abi.js'
import { DatapathError } from './errors.js'

/** The datapath's programs by their names in bpf/ (the kernel keeps only 15 characters of a name). */
export const PROGRAMS = ['ambient_connect4', 'ambient_getpeername4', 'ambient_sockops', 'ambient_sk_lookup'] as const
export type ProgramName = (typeof PROGRAMS)[number]

const COUNTER_PREFIXES: readonly (readonly [string, ProgramName])[] = [
  ['connect_', 'ambient_connect4'],
  ['getpeername_', 'ambient_getpeername4'],
  ['sockops_', 'ambient_sockops'],
  ['sk_lookup_', 'ambient_sk_lookup'],
]

/** The program that counts `counter` (its name starts with the hook's). */
export function counterProgram(counter: CounterName): ProgramName {
  const found = COUNTER_PREFIXES.find(([prefix]) => counter.startsWith(prefix))
  if (!found) throw new Error(`counter ${counter} names no datapath program: add its prefix to COUNTER_PREFIXES`)
  return found[1]
}

/** One loaded program behind pinned links (a program loaded again, after an upgrade, is another id). */
export interface ProgramStats {
  readonly program: ProgramName
  /** The kernel's program id. */
  readonly id: number
  readonly runs: bigint
  readonly runTimeNs: bigint
}

/** Has the kernel count every BPF program's runs and run time until the handle is closed (BPF_ENABLE_STATS). */
export function enableRunTimeStats(): RunTimeStats {
  try {
    return RunTimeStats.enable()
  } catch (err) {
    throw new DatapathError('AMBIENT_ERR_DATAPATH_STATS', `cannot enable the kernel's run-time statistics of BPF programs: ${(err as Error).message}`, {
      cause: err,
    })
  }
}

/** Whether the kernel counts run time now through the sysctl (BPF_ENABLE_STATS holders are not visible). */
export function sysctlStatsEnabled(): boolean {
  try {
    return readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() === '1'
  } catch {
    return false // no such sysctl: a kernel without program stats
  }
}

/**
 * Reads the programs behind the pins of a links folder (`cg<id>-<program>`,
 * `netns<cookie>` for sk_lookup): a link's program never changes, so each pin's
 * program id is read once. One entry per loaded program, so that each one's
 * figures only grow (a sum over programs would fall when an old one is unloaded).
 */
export class ProgramStatsReader {
  readonly #programOfPin = new Map<string, number>()

  constructor(private readonly linksDir: string) {}

  read(): ProgramStats[] {
    let pins: string[]
    try {
      pins = readdirSync(this.linksDir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [] // nothing attached yet
      throw err
    }
    for (const pin of this.#programOfPin.keys()) if (!pins.includes(pin)) this.#programOfPin.delete(pin)
    const ids = new Map<ProgramName, Set<number>>(PROGRAMS.map((p) => [p, new Set<number>()]))
    for (const pin of pins) {
      const program = pin.startsWith('netns') ? 'ambient_sk_lookup' : PROGRAMS.find((p) => pin.endsWith(`-${p}`))
      if (program === undefined) continue
      let id = this.#programOfPin.get(pin)
      if (id === undefined) {
        try {
          id = BpfLink.pinnedInfo(join(this.linksDir, pin)).programId
        } catch (err) {
          if ((err as NativeError).code === 'ENOENT') continue // unpinned meanwhile (a pod left)
          throw err
        }
        this.#programOfPin.set(pin, id)
      }
      ids.get(program)!.add(id)
    }
    const out: ProgramStats[] = []
    for (const [program, set] of ids) {
      for (const id of set) {
        const info = loadedProgram(id)
        if (info !== null) out.push({ program, id, runs: info.runCount, runTimeNs: info.runTimeNs })
      }
    }
    return out
  }
}
