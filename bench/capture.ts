// The cost of capture alone (issue: datapath). Two pods on one testbed node; the
// same client program measures connect and first-byte latency and the connection
// rate to a server pod, once direct (client pod not enrolled) and once captured
// (enrolled: connect4 redirect -> ztunnel's in-pod outbound listener -> passthrough,
// and the server pod enrolled too: sk_lookup -> inbound listener -> delivery).
// Prints the ratios from one run. Bounded: --count connections per mode.
//   node --import tsx bench/capture.ts [--count 2000] [--concurrency 1]
import { parseArgs } from 'node:util'
import { join } from 'node:path'
import { Datapath } from '../datapath/datapath.js'
import { Testbed } from '../testbed/testbed.js'
import { CaptureLog, datapathSettings, enrollWithProxy } from '../test/e2e/datapath-fixture.js'
import { startServer } from '../testbed/pod-clients.js'

const { values } = parseArgs({ options: { count: { type: 'string', default: '2000' }, concurrency: { type: 'string', default: '1' } } })

interface Measure {
  ok: number
  failed: number
  rate: number
  connectP50Us: number
  connectP99Us: number
  firstByteP50Us: number
  firstByteP99Us: number
}

const tb = await Testbed.create({ name: 'bench-capture', nodes: [{ name: 'n1', pods: ['client', 'server', 'client2', 'server2'] }] })
const settings = datapathSettings(tb)
try {
  const datapath = Datapath.load(settings, tb.node('n1').podsCgroup)
  const log = new CaptureLog()
  await startServer(tb, tb.pod('server'), 8080)
  await startServer(tb, tb.pod('server2'), 8080)

  async function measure(client: string, server: string): Promise<Measure> {
    const result = await tb.exec(
      tb.pod(client),
      process.execPath,
      [
        '--import',
        'tsx',
        join(import.meta.dirname, 'tools', 'connect-latency.ts'),
        '--to',
        `${tb.pod(server).ip}:8080`,
        '--count',
        values.count!,
        '--concurrency',
        values.concurrency!,
        '--timeout-ms',
        '120000',
      ],
      { timeoutMs: 180_000 },
    )
    if (result.code !== 0) throw new Error(`client failed: ${result.stderr}`)
    return JSON.parse(result.stdout.trim().split('\n').pop()!) as Measure
  }

  const direct = await measure('client', 'server')
  const proxies = [await enrollWithProxy(datapath, tb.pod('client2'), log), await enrollWithProxy(datapath, tb.pod('server2'), log)]
  const captured = await measure('client2', 'server2')
  for (const p of proxies) await p.stop()
  datapath.close()

  const ratio = (x: number, y: number): string => (x / y).toFixed(2)
  console.log(JSON.stringify({ direct, captured, capturedConnections: log.entries.length }, null, 2))
  console.log(`connections: ${values.count} per mode, concurrency ${values.concurrency}`)
  console.log(
    `connect p50: direct ${direct.connectP50Us.toFixed(0)} us, captured ${captured.connectP50Us.toFixed(0)} us, ratio ${ratio(captured.connectP50Us, direct.connectP50Us)}x`,
  )
  console.log(
    `connect p99: direct ${direct.connectP99Us.toFixed(0)} us, captured ${captured.connectP99Us.toFixed(0)} us, ratio ${ratio(captured.connectP99Us, direct.connectP99Us)}x`,
  )
  console.log(
    `first byte p50: direct ${direct.firstByteP50Us.toFixed(0)} us, captured ${captured.firstByteP50Us.toFixed(0)} us, ratio ${ratio(captured.firstByteP50Us, direct.firstByteP50Us)}x`,
  )
  console.log(`rate: direct ${direct.rate.toFixed(0)}/s, captured ${captured.rate.toFixed(0)}/s, ratio ${ratio(captured.rate, direct.rate)}x`)
} finally {
  Datapath.unload(settings.pinRoot)
  await tb.destroy()
}
