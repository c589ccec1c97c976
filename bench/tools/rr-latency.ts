// Runs inside a testbed pod: one connection to --to IP:PORT (a fixtures/tcp-server
// that greets with one line, then echoes), then --count 64-byte request/response
// round trips after --warmup unmeasured ones; prints p50/p99 in microseconds.
// Bounded by count and --timeout-ms.
import net from 'node:net'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    to: { type: 'string' },
    count: { type: 'string', default: '2000' },
    warmup: { type: 'string', default: '0' },
    'timeout-ms': { type: 'string', default: '60000' },
  },
})
const [host, port] = (values.to ?? '').split(':')
const count = Number(values.count)
let warmup = Number(values.warmup)
const payload = Buffer.alloc(64, 'x')
const socket = net.connect({ host: host!, port: Number(port) })
socket.setNoDelay(true)
setTimeout(() => {
  console.error('rr-latency: timed out')
  process.exit(1)
}, Number(values['timeout-ms'])).unref()
let greeted = false
let pending = 0
let start = 0n
const samples: number[] = []
socket.on('data', (chunk: Buffer) => {
  if (!greeted) {
    const nl = chunk.indexOf(10)
    if (nl < 0) return
    greeted = true
    chunk = chunk.subarray(nl + 1)
    next()
  }
  pending -= chunk.length
  if (pending <= 0 && samples.length < count) {
    if (warmup > 0) warmup--
    else samples.push(Number(process.hrtime.bigint() - start) / 1000)
    next()
  }
})
function next(): void {
  if (samples.length >= count) {
    samples.sort((a, b) => a - b)
    console.log(JSON.stringify({ count: samples.length, p50Us: samples[Math.floor(samples.length / 2)], p99Us: samples[Math.floor(samples.length * 0.99)] }))
    socket.destroy()
    return
  }
  pending = payload.length
  start = process.hrtime.bigint()
  socket.write(payload)
}
socket.on('error', (err) => {
  console.error(`rr-latency: ${err.message}`)
  process.exit(1)
})
