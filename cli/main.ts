// The `ambient` CLI: wiring only. Each command lives with its area.
import { Command, CommanderError } from 'commander'
import { registerDatapathCommand } from './datapath.js'
import { registerZtunnelCommand } from '../ztunnel/main.js'
import { registerDemoCommand } from './demo.js'
import { registerAuthzCommand } from './authz-check.js'
import { registerCaCommand } from '../ca/main.js'
import { registerAgentCommand } from '../agent/main.js'
import { registerStatusCommand } from './status.js'
import { registerWaypointCommand } from '../waypoint/main.js'
import { registerWaypointCheck } from './waypoint-check.js'

export function buildProgram(): Command {
  // Positional options: what follows a subcommand is its own (`ambient waypoint check --manifests` is check's).
  const program = new Command('ambient')
    .description('eBPF-accelerated, sidecarless service mesh for Kubernetes')
    .version('0.1.0')
    .showHelpAfterError()
    .enablePositionalOptions()
  registerAgentCommand(program)
  registerStatusCommand(program)
  registerDatapathCommand(program)
  registerZtunnelCommand(program)
  registerDemoCommand(program)
  registerAuthzCommand(program)
  registerCaCommand(program)
  registerWaypointCommand(program)
  registerWaypointCheck(program.commands.find((c) => c.name() === 'waypoint')!)
  return program
}

export async function main(argv: readonly string[]): Promise<void> {
  const program = buildProgram().exitOverride()
  try {
    await program.parseAsync([...argv])
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode
      return
    }
    const e = err as Error & { code?: string }
    console.error(`ambient: ${e.message}${e.code ? ` (${e.code})` : ''}`)
    process.exitCode = 1
  }
}
