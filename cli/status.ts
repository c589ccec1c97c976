// `ambient status`: what the node's agent knows, from its localhost /status
// endpoint: enrolled pods (netns, identity, captured or pending and why), datapath
// map occupancy, and whether ztunnel is connected. A table, or --json as served.
import type { Command } from 'commander'
import { ConfigError, parseAddress } from '../common/config.js'
import { AGENT_DEFAULTS } from '../agent/config.js'
import { AmbientError } from '../common/errors.js'

interface PodRow {
  readonly namespace: string
  readonly name: string
  readonly ip: string
  readonly identity: string
  readonly netnsPath: string | null
  readonly netnsCookie: string | null
  readonly state: string
  readonly error: string | null
}

export interface AgentStatus {
  readonly node: string
  readonly ready: boolean
  readonly source: { readonly kind: string; readonly dir?: string }
  readonly pods: readonly PodRow[]
  readonly datapath: {
    readonly dir: string
    readonly podsCgroup: string
    readonly maps: readonly { readonly name: string; readonly entries: number; readonly capacity: number }[]
  } | null
  readonly ztunnel: {
    readonly socket: string
    readonly clients: readonly { readonly nodeId: string; readonly connectedSince: string; readonly nacks: number; readonly lastError: string | null }[]
  } | null
  readonly rejectedObjects: readonly string[]
}

export class StatusError extends AmbientError<'AMBIENT_ERR_STATUS'> {
  constructor(message: string, options?: { readonly cause?: unknown }) {
    super('AMBIENT_ERR_STATUS', message, options)
  }
}

export async function fetchStatus(address: string): Promise<AgentStatus> {
  const { host, port } = parseAddress('--agent', address)
  let res: Response
  try {
    res = await fetch(`http://${host}:${port}/status`, { signal: AbortSignal.timeout(5000) })
  } catch (err) {
    throw new StatusError(
      `cannot reach the agent at ${address}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}; is \`ambient agent\` running on this node (its --status-addr)?`,
    )
  }
  if (res.status !== 200) throw new StatusError(`the agent at ${address} answered ${res.status} to /status`)
  return (await res.json()) as AgentStatus
}

function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}

export function formatStatus(s: AgentStatus): string {
  const out: string[] = []
  const source = s.source.kind === 'manifests' ? `manifests ${s.source.dir}` : s.source.kind
  out.push(`node ${s.node}: agent ${s.ready ? 'ready' : 'NOT READY'}, source ${source}`)
  const clients = s.ztunnel?.clients ?? []
  out.push(
    clients.length > 0
      ? `ztunnel: connected (${clients.map((c) => `${c.nodeId} since ${c.connectedSince}, ${c.nacks} NACKs${c.lastError ? `, last error: ${c.lastError}` : ''}`).join('; ')})`
      : `ztunnel: NOT CONNECTED to ${s.ztunnel?.socket ?? 'the agent'}: enrolled pods' connections fail (closed) until it connects`,
  )
  out.push('')
  const captured = s.pods.filter((p) => p.state === 'captured').length
  out.push(`enrolled pods: ${captured} captured, ${s.pods.length - captured} pending`)
  if (s.pods.length > 0) {
    out.push(
      table(
        ['NAMESPACE', 'POD', 'IP', 'IDENTITY', 'NETNS', 'COOKIE', 'STATE'],
        s.pods.map((p) => [p.namespace, p.name, p.ip, p.identity, p.netnsPath ?? '-', p.netnsCookie ?? '-', p.error ? `${p.state}: ${p.error}` : p.state]),
      ),
    )
  }
  if (s.datapath !== null) {
    out.push('', `datapath ${s.datapath.dir} (attached to ${s.datapath.podsCgroup})`)
    out.push(
      table(
        ['MAP', 'ENTRIES', 'CAPACITY', 'USE'],
        s.datapath.maps.map((m) => [m.name, String(m.entries), String(m.capacity), `${((100 * m.entries) / m.capacity).toFixed(1)}%`]),
      ),
    )
  }
  if (s.rejectedObjects.length > 0) {
    out.push('', `rejected objects (${s.rejectedObjects.length}):`, ...s.rejectedObjects.map((m) => `  ${m}`))
  }
  return out.join('\n')
}

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description("what this node's agent knows: enrolled pods with netns and identity, datapath map occupancy, ztunnel connection")
    .option('--agent <127.0.0.1:port>', "the agent's status endpoint (its --status-addr)", AGENT_DEFAULTS.statusAddr)
    .option('--json', 'print the agent status as JSON')
    .action(async (flags: { agent: string; json?: boolean }) => {
      if (!flags.agent) throw new ConfigError('--agent', 'is required')
      const status = await fetchStatus(flags.agent)
      process.stdout.write(flags.json ? JSON.stringify(status, null, 2) + '\n' : formatStatus(status) + '\n')
      if (!status.ready) process.exitCode = 1
    })
}
