// HBONE on loopback against plain TCP, in one bounded run:
//   - single-stream bulk throughput (direct TCP vs client pool -> HBONE server -> upstream), per window size
//   - 64-byte request/response latency over one connection (p50/p99)
//   - new CONNECT streams on a warm pool (p50/p99, rate)
// The server side (HBONE server + upstreams) runs in a child process, as it would
// on another node; the client side runs here.
//   npx tsx bench/hbone-throughput.ts [--mib 256] [--windows 65535,1048576,4194304,16777216]
import { fork, type ChildProcess } from 'node:child_process'
import type { Duplex } from 'node:stream'
import { formatAuthority, type SocketAddress } from '../common/hbone/headers.js'
import { HbonePool } from '../common/hbone/pool.js'
import { CLIENT_ID, createMesh, dialTcp, SERVER_ID, startServer, tcpServer, type Mesh } from '../common/hbone/test-fixtures.js'
import { createIdentityContext, type IdentityCredentials } from '../common/hbone/tls.js'

interface ServeRequest {
  readonly server: IdentityCredentials
  readonly windows: readonly number[]
}
interface ServeReply {
  readonly sink: SocketAddress
  readonly echo: SocketAddress
  readonly hbone: Readonly<Record<string, SocketAddress>>
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback
}

// ---- server side (child) ----

async function serve(request: ServeRequest): Promise<ServeReply> {
  // Sink: counts bytes, answers with the count when the client ends.
  const sink = await tcpServer((socket) => {
    let bytes = 0
    socket.on('data', (chunk: Buffer) => (bytes += chunk.length))
    socket.on('end', () => socket.end(String(bytes)))
  })
  const echo = await tcpServer((socket) => socket.pipe(socket))
  const mesh: Mesh = {
    ca: { certPem: '', keyPem: '' },
    trustBundlePem: request.server.trustBundlePem,
    credentials: () => request.server,
    context: () => createIdentityContext(request.server),
  }
  const hbone: Record<string, SocketAddress> = {}
  for (const windowSize of request.windows) {
    const { address } = await startServer(mesh, { windowSize, connectUpstream: (target) => dialTcp(target) })
    hbone[windowSize] = address
  }
  return { sink: sink.address, echo: echo.address, hbone }
}

// ---- client side ----

function startChild(request: ServeRequest): Promise<{ child: ChildProcess; reply: ServeReply }> {
  const child = fork(process.argv[1]!, ['--serve'], { execArgv: process.execArgv, stdio: 'inherit' })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('message', (reply) => resolve({ child, reply: reply as ServeReply }))
    child.send(request)
  })
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

function fmtUs(ns: number): string {
  return `${(ns / 1000).toFixed(1)} us`
}

/** Writes `total` bytes in 64 KiB chunks with backpressure, ends, and waits for the sink's count. */
async function bulk(stream: Duplex, total: number): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 0x5a)
  const started = process.hrtime.bigint()
  const reply = new Promise<string>((resolve, reject) => {
    let text = ''
    stream.on('data', (d: Buffer) => (text += d.toString()))
    stream.once('end', () => resolve(text))
    stream.once('error', reject)
  })
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!stream.write(chunk)) await new Promise((resolve) => stream.once('drain', resolve))
  }
  stream.end()
  const counted = Number(await reply)
  if (counted !== total) throw new Error(`sink counted ${counted} bytes, sent ${total}`)
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  return total / seconds / (1024 * 1024)
}

/** `count` 64-byte ping-pongs on one connection; returns sorted round-trip times (ns). */
async function pingPong(stream: Duplex, count: number): Promise<number[]> {
  const message = Buffer.alloc(64, 0x61)
  const times: number[] = []
  let pending = 0
  let resolveOne: (() => void) | null = null
  stream.on('data', (d: Buffer) => {
    pending -= d.length
    if (pending <= 0 && resolveOne) resolveOne()
  })
  for (let i = 0; i < count; i++) {
    const started = process.hrtime.bigint()
    pending = message.length
    await new Promise<void>((resolve) => {
      resolveOne = resolve
      stream.write(message)
    })
    times.push(Number(process.hrtime.bigint() - started))
  }
  stream.end()
  return times.sort((a, b) => a - b)
}

function tcp(address: SocketAddress): Promise<Duplex> {
  return dialTcp(address)
}

async function main(): Promise<void> {
  const mib = Number(arg('mib', '256'))
  const windows = arg('windows', '65535,1048576,4194304,16777216').split(',').map(Number)
  const mesh = createMesh('bench root')
  const { child, reply } = await startChild({ server: mesh.credentials(SERVER_ID), windows })
  const total = mib * 1024 * 1024
  const pools: HbonePool[] = []
  const poolFor = (windowSize: number): HbonePool => {
    const pool = new HbonePool({ contextFor: (id) => mesh.context(id), windowSize })
    pools.push(pool)
    return pool
  }
  const via = (pool: HbonePool, windowSize: number, upstream: SocketAddress): Promise<Duplex> =>
    pool.connect({ sourceIdentity: CLIENT_ID, destinationIdentity: SERVER_ID, nextHop: reply.hbone[windowSize]!, authority: formatAuthority(upstream) })
  try {
    console.log(`# single-stream throughput, ${mib} MiB`)
    const direct = await bulk(await tcp(reply.sink), total)
    console.log(`direct tcp                  ${direct.toFixed(0)} MiB/s`)
    let bestWindow = windows[0]!
    let best = 0
    for (const windowSize of windows) {
      const pool = poolFor(windowSize)
      await via(pool, windowSize, reply.sink).then((s) => bulk(s, 1024 * 1024)) // warm the session
      const rate = await bulk(await via(pool, windowSize, reply.sink), total)
      if (rate > best) [best, bestWindow] = [rate, windowSize]
      console.log(`hbone window ${String(windowSize).padStart(9)}    ${rate.toFixed(0)} MiB/s  (${((rate / direct) * 100).toFixed(0)}% of direct)`)
    }

    const rounds = 5000
    console.log(`\n# 64-byte request/response, ${rounds} round trips on one connection`)
    const directRtt = await pingPong(await tcp(reply.echo), rounds)
    console.log(`direct tcp   p50 ${fmtUs(percentile(directRtt, 50))}  p99 ${fmtUs(percentile(directRtt, 99))}`)
    const pool = poolFor(bestWindow)
    const hboneRtt = await pingPong(await via(pool, bestWindow, reply.echo), rounds)
    console.log(`hbone        p50 ${fmtUs(percentile(hboneRtt, 50))}  p99 ${fmtUs(percentile(hboneRtt, 99))}`)

    const streams = 3000
    console.log(
      `\n# new connection setup, ${streams} sequential open+close cycles: time to open (p50/p99) and cycle rate; warm pool (hbone) vs TCP connect (direct)`,
    )
    for (const [name, open] of [
      ['direct tcp', () => tcp(reply.echo)],
      ['hbone stream', () => via(pool, bestWindow, reply.echo)],
    ] as const) {
      const times: number[] = []
      const started = process.hrtime.bigint()
      for (let i = 0; i < streams; i++) {
        const t0 = process.hrtime.bigint()
        const stream = await open()
        times.push(Number(process.hrtime.bigint() - t0))
        // Graceful close (FIN / END_STREAM both ways), as a finished TCP connection would.
        const done = new Promise((resolve) => stream.once('close', resolve))
        stream.resume()
        stream.end()
        await done
      }
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      times.sort((a, b) => a - b)
      console.log(`${name.padEnd(13)} p50 ${fmtUs(percentile(times, 50))}  p99 ${fmtUs(percentile(times, 99))}  ${(streams / seconds).toFixed(0)}/s`)
    }
    console.log(`\nhbone sessions in pool: ${pool.sessionCount} (best window ${bestWindow})`)
  } finally {
    for (const pool of pools) await pool.stop()
    child.kill()
  }
}

if (process.argv.includes('--serve')) {
  process.once('message', (request) => {
    void serve(request as ServeRequest).then((reply) => process.send!(reply))
  })
  process.once('disconnect', () => process.exit(0))
} else {
  void main().catch((err: unknown) => {
    console.error(err)
    process.exitCode = 1
  })
}
