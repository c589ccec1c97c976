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

/**
 * A process's main loop: start, run until SIGTERM or SIGINT (or until the
 * component says it is `finished`), then drain when it can (a second signal cuts
 * the drain short) and stop (it stops itself after a failed start).
 */
export async function runUntilSignal(
  component: { start(): Promise<void>; stop(): Promise<void>; drain?(): Promise<void>; readonly finished?: Promise<void> },
  log: Logger,
  stopping = 'shutting down',
): Promise<void> {
  await component.start()
  const signal = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const on = (): void => {
        process.off('SIGTERM', on)
        process.off('SIGINT', on)
        resolve()
      }
      process.once('SIGTERM', on)
      process.once('SIGINT', on)
    })
  await Promise.race([signal(), ...(component.finished ? [component.finished] : [])])
  log.info(stopping)
  if (component.drain) await Promise.race([component.drain(), signal()])
  await component.stop()
}
