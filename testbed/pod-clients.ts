// Drivers for the fixture programs (fixtures/tcp-server.ts, tcp-client.ts) run
// inside testbed pods, with bounded waits.
import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import type { Testbed, TestNode, TestPod } from './testbed.js'

const FIXTURES = join(import.meta.dirname, 'fixtures')

export interface ConnectResult {
  readonly ok: number
  readonly failed: number
  readonly errors: Record<string, number>
  readonly connections: readonly { peer: string; local: string; serverSawRemoteIp: string }[]
}

function firstLine(child: ChildProcess, what: string, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    const timer = setTimeout(() => reject(new Error(`${what}: no output within ${timeoutMs} ms; stderr: ${err}`)), timeoutMs)
    child.stderr?.on('data', (d) => (err += d))
    const onData = (d: Buffer): void => {
      out += d
      const i = out.indexOf('\n')
      if (i >= 0) {
        clearTimeout(timer)
        child.stdout?.off('data', onData)
        resolve(out.slice(0, i))
      }
    }
    child.stdout?.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${what}: exited ${code} before any output; stderr: ${err}`))
    })
  })
}

export async function startServer(tb: Testbed, pod: TestPod, port: number): Promise<ChildProcess> {
  const child = tb.spawnNode(pod, join(FIXTURES, 'tcp-server.ts'), [String(port)])
  await firstLine(child, `server in ${pod.name}`)
  return child
}

export interface ConnectOptions {
  readonly count: number
  readonly concurrency: number
  /** SO_MARK on the client sockets. */
  readonly mark?: number
  /** Run in the pod's cgroup but in this node's network namespace. */
  readonly netnsOf?: TestNode
}

export async function connectMany(tb: Testbed, pod: TestPod, to: string, options: ConnectOptions): Promise<ConnectResult> {
  const args = ['connect', '--to', to, '--count', String(options.count), '--concurrency', String(options.concurrency)]
  if (options.mark !== undefined) args.push('--mark', String(options.mark))
  const script = join(FIXTURES, 'tcp-client.ts')
  const child = options.netnsOf
    ? tb.spawnInCgroupOnly(pod, options.netnsOf, process.execPath, ['--import', 'tsx', script, ...args])
    : tb.spawnNode(pod, script, args)
  const line = await firstLine(child, `client in ${pod.name}`, 60_000)
  return JSON.parse(line) as ConnectResult
}

export interface HeldConnection {
  stop(): Promise<{ sent: number; echoed: number }>
  /** Resolves when the connection ends by itself (reset or closed), with what it saw. */
  ended(timeoutMs: number): Promise<{ sent: number; echoed: number; error?: string }>
}

export async function holdConnection(tb: Testbed, pod: TestPod, to: string): Promise<HeldConnection> {
  const child = tb.spawnNode(pod, join(FIXTURES, 'tcp-client.ts'), ['hold', '--to', to, '--timeout-ms', '120000'])
  await firstLine(child, `holder in ${pod.name}`)
  let out = ''
  child.stdout?.on('data', (d) => (out += d))
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    async ended(timeoutMs) {
      const timer = new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`the held connection from ${pod.name} did not end within ${timeoutMs} ms`)), timeoutMs),
      )
      await Promise.race([exit, timer])
      return JSON.parse(out.trim().split('\n').pop() ?? '{}') as { sent: number; echoed: number; error?: string }
    },
    async stop() {
      const result = new Promise<string>((resolve, reject) => {
        let out = ''
        child.stdout?.on('data', (d) => (out += d))
        child.once('exit', () => resolve(out.trim().split('\n').pop() ?? ''))
        setTimeout(() => reject(new Error('holder did not exit')), 10_000)
      })
      child.kill('SIGTERM')
      return JSON.parse(await result) as { sent: number; echoed: number }
    },
  }
}

/** Polls `check` every 50 ms for up to `timeoutMs`; throws naming `what` otherwise. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
}

export interface HttpServerOptions {
  readonly port: number
  readonly name: string
  readonly h2c?: boolean
  /** Answer 503 to this many first requests. */
  readonly failFirst?: number
  readonly delayMs?: number
}

/** fixtures/http-server.ts in a pod: answers each request with a JSON echo of it. */
export async function startHttpServer(tb: Testbed, pod: TestPod, options: HttpServerOptions): Promise<ChildProcess> {
  const args = ['--port', String(options.port), '--name', options.name]
  if (options.h2c) args.push('--h2c')
  if (options.failFirst) args.push('--fail-first', String(options.failFirst))
  if (options.delayMs) args.push('--delay-ms', String(options.delayMs))
  const child = tb.spawnNode(pod, join(FIXTURES, 'http-server.ts'), args)
  await firstLine(child, `http server in ${pod.name}`)
  return child
}

export interface HttpOutcome {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: string
  readonly error?: string
}

export interface HttpRequestOptions {
  readonly path?: string
  readonly method?: string
  readonly headers?: Readonly<Record<string, string>>
  readonly count?: number
  readonly concurrency?: number
  readonly h2c?: boolean
  readonly timeoutMs?: number
  readonly body?: string
}

/** fixtures/http-client.ts in a pod: `count` requests to `to`, each outcome, and the count by status. */
export async function httpRequests(
  tb: Testbed,
  pod: TestPod,
  to: string,
  options: HttpRequestOptions = {},
): Promise<{ readonly outcomes: HttpOutcome[]; readonly byStatus: Record<string, number> }> {
  const args = ['--to', to, '--path', options.path ?? '/', '--method', options.method ?? 'GET', '--count', String(options.count ?? 1)]
  args.push('--concurrency', String(options.concurrency ?? 1), '--timeout-ms', String(options.timeoutMs ?? 10_000))
  for (const [k, v] of Object.entries(options.headers ?? {})) args.push('--header', `${k}: ${v}`)
  if (options.h2c) args.push('--h2c')
  if (options.body !== undefined) args.push('--body', options.body)
  const result = await tb.exec(pod, process.execPath, ['--import', 'tsx', join(FIXTURES, 'http-client.ts'), ...args], { timeoutMs: 120_000 })
  const lines = result.stdout.trim().split('\n').filter(Boolean)
  const last = lines.pop()
  if (result.code !== 0 || last === undefined) throw new Error(`http client in ${pod.name} exited ${result.code}: ${result.stderr}`)
  return { outcomes: lines.map((l) => JSON.parse(l) as HttpOutcome), byStatus: (JSON.parse(last) as { byStatus: Record<string, number> }).byStatus }
}
