// One root logger per process; components take child loggers with their name.
import { pino, type Logger, type Level } from 'pino'

export type { Logger }

export function createLogger(options: { readonly name: string; readonly level?: Level | 'silent' }): Logger {
  return pino({ name: options.name, level: options.level ?? 'info' }, pino.destination({ dest: 2, sync: true }))
}

/** A logger that drops everything: for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
