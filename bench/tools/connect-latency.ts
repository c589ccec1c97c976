// Runs inside a testbed pod: opens `--warmup` unmeasured connections, then `--count`
// connections to --to IP:PORT, `--concurrency` at a time, and prints one JSON line with connect and first-byte latency
// percentiles (microseconds) and the achieved connection rate. Bounded by count
// and by --timeout-ms overall.
import net from 'node:net'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    to: { type: 'string' },
    count: { type: 'string', default: '2000' },
    warmup: { type: 'string', default: '0' },
    concurrency: { type: 'string', default: '1' },
    'timeout-ms': { type: 'string', default: '60000' },
  },
})
const [host, portText] = (values.to ?? '').split(':')
const port = Number(portText)
if (!host || !Number.isInteger(port)) {
  console.error(`--to must be IP:PORT, got ${JSON.stringify(values.to)}`)
  process.exit(2)
}
const count = Number(values.count)
const concurrency = Number(values.concurrency)
// Each phase (warm-up, measured) is bounded by --timeout-ms on its own.
let deadline = Date.now() + Number(values['timeout-ms'])

function once(): Promise<{ connectUs: number; firstByteUs: number }> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint()
    let connectUs = 0
    const socket = net.connect({ host, port })
    socket.setTimeout(5000, () => socket.destroy(new Error('timeout')))
    socket.once('connect', () => {
      connectUs = Number(process.hrtime.bigint() - start) / 1000
    })
    socket.once('data', () => {
      const firstByteUs = Number(process.hrtime.bigint() - start) / 1000
      socket.end()
      resolve({ connectUs, firstByteUs })
    })
    socket.once('error', reject)
  })
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

const connect: number[] = []
const firstByte: number[] = []
let failed = 0
let warmupFailed = 0
let next = 0
// Unmeasured: the same path until every process on it has compiled its hot code.
async function warmupWorker(total: number): Promise<void> {
  while (next < total && Date.now() < deadline) {
    next++
    await once().catch(() => warmupFailed++)
  }
}
await Promise.all(Array.from({ length: concurrency }, () => warmupWorker(Number(values.warmup))))
next = 0
deadline = Date.now() + Number(values['timeout-ms'])
const started = process.hrtime.bigint()
async function worker(): Promise<void> {
  while (next < count && Date.now() < deadline) {
    next++
    try {
      const r = await once()
      connect.push(r.connectUs)
      firstByte.push(r.firstByteUs)
    } catch {
      failed++
    }
  }
}
await Promise.all(Array.from({ length: concurrency }, worker))
const seconds = Number(process.hrtime.bigint() - started) / 1e9
connect.sort((a, b) => a - b)
firstByte.sort((a, b) => a - b)
console.log(
  JSON.stringify({
    ok: connect.length,
    failed,
    warmupFailed,
    seconds,
    rate: connect.length / seconds,
    connectP50Us: percentile(connect, 50),
    connectP99Us: percentile(connect, 99),
    firstByteP50Us: percentile(firstByte, 50),
    firstByteP99Us: percentile(firstByte, 99),
  }),
)
