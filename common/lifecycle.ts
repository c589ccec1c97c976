// Start/stop discipline shared by every process's main (style.md habit 1): each
// started component pushes how to stop it; stopping runs them in reverse, also
// after a partial start, and a failing step is logged without stopping the rest.
import type { Logger } from './log.js'

export class StopStack {
  readonly #steps: (() => Promise<void> | void)[] = []

  push(step: () => Promise<void> | void): void {
    this.#steps.push(step)
  }

  async run(log: Logger): Promise<void> {
    while (this.#steps.length > 0) {
      const step = this.#steps.pop()!
      try {
        await step()
      } catch (err) {
        log.error({ err: (err as Error).message }, 'stop step failed')
      }
    }
  }
}

/** A process's main loop: start, run until SIGTERM or SIGINT, then stop (it stops itself after a failed start). */
export async function runUntilSignal(component: { start(): Promise<void>; stop(): Promise<void> }, log: Logger, stopping = 'shutting down'): Promise<void> {
  await component.start()
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve())
    process.once('SIGINT', () => resolve())
  })
  log.info(stopping)
  await component.stop()
}
