// Parsing of configuration values (flags and named environment variables) into
// frozen typed objects. A bad value throws ConfigError naming the setting and the
// value; nothing outside a command's config reads process.env.
import { isIPv4 } from 'node:net'
import { AmbientError } from './errors.js'

export class ConfigError extends AmbientError<'AMBIENT_ERR_CONFIG'> {
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super('AMBIENT_ERR_CONFIG', `${setting}: ${message}`)
  }
}

export function parsePort(setting: string, value: string | number): number {
  const n = typeof value === 'number' ? value : Number(value)
  if (!Number.isInteger(n) || n < 1 || n > 65535 || (typeof value === 'string' && !/^\d+$/.test(value))) {
    throw new ConfigError(setting, `${JSON.stringify(value)} is not a port (1-65535)`)
  }
  return n
}

export function parseInteger(setting: string, value: string | number, min: number, max: number): number {
  const n = typeof value === 'number' ? value : /^(0x[0-9a-f]+|\d+)$/i.test(value) ? Number(value) : NaN
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(setting, `${JSON.stringify(value)} is not an integer between ${min} and ${max}`)
  }
  return n
}

export function parseIPv4(setting: string, value: string): string {
  if (!isIPv4(value)) throw new ConfigError(setting, `${JSON.stringify(value)} is not an IPv4 address`)
  return value
}

export function requireString(setting: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new ConfigError(setting, 'is required')
  return value
}

/** Environment variable or default, recorded by name so errors can point at it. */
export function fromEnv(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const value = env[name]
  return value === undefined || value === '' ? fallback : value
}

export interface Address {
  readonly host: string
  readonly port: number
}

export function parseAddress(setting: string, value: string): Address {
  const i = value.lastIndexOf(':')
  const host = value.slice(0, i)
  if (i < 0 || !isIPv4(host)) throw new ConfigError(setting, `${JSON.stringify(value)} is not an IPv4 ip:port`)
  return { host, port: value.slice(i + 1) === '0' ? 0 : parsePort(setting, value.slice(i + 1)) }
}

export function parseDuration(setting: string, value: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(value)
  if (!m) throw new ConfigError(setting, `${JSON.stringify(value)} is not a duration like 30s, 10m or 24h`)
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h']
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
const LOG_LEVELS: readonly string[] = ['debug', 'info', 'warn', 'error']

export function parseLogLevel(value: string): LogLevel {
  if (!LOG_LEVELS.includes(value)) throw new ConfigError('--log-level', `${JSON.stringify(value)} must be debug, info, warn or error`)
  return value as LogLevel
}
