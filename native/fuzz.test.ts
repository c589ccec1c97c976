// A bounded libFuzzer run (about 15 s per target) of the HBONE engine's parser
// entry points (native/fuzz/*.cc, built by scripts/build-fuzz.sh with
// AddressSanitizer): HTTP/2 from a client and from a server, TLS from a client,
// SPIFFE ids from certificates. Each starts from seeds a real exchange would
// send; a crash, a sanitizer report or a leak fails the test and leaves the input
// in build/fuzz/artifacts.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO } from './testdata/fixtures.js'

const SECONDS_PER_TARGET = 15

execFileSync('bash', [join(REPO, 'scripts/build-fuzz.sh')], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] })

// ---- seeds: well-formed HTTP/2 a peer would send (HPACK literals, no indexing) ----
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream, 5)
  return Buffer.concat([head, payload])
}
function literal(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)])
}
const DATA = 0
const HEADERS = 1
const RST_STREAM = 3
const SETTINGS = 4
const GOAWAY = 7
const WINDOW_UPDATE = 8
const END_STREAM = 1
const END_HEADERS = 4
const settings = frame(SETTINGS, 0, 0, Buffer.from([0, 4, 0, 0x10, 0, 0, 0, 3, 0, 0, 0, 100]))
const ack = frame(SETTINGS, 1, 0, Buffer.alloc(0))
const request = (stream: number): Buffer =>
  frame(
    HEADERS,
    END_HEADERS,
    stream,
    Buffer.concat([literal(':method', 'CONNECT'), literal(':authority', '10.0.0.2:8080'), literal('forwarded', 'for=10.0.0.1')]),
  )
const windowUpdate = (stream: number): Buffer => frame(WINDOW_UPDATE, 0, stream, Buffer.from([0, 1, 0, 0]))

const seeds: Record<string, Buffer[]> = {
  h2_server: [
    Buffer.concat([
      Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
      settings,
      ack,
      request(1),
      frame(DATA, 0, 1, Buffer.from('hello')),
      frame(DATA, END_STREAM, 1, Buffer.alloc(0)),
    ]),
    Buffer.concat([
      Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
      settings,
      request(1),
      request(3),
      frame(RST_STREAM, 0, 1, Buffer.from([0, 0, 0, 8])),
      windowUpdate(0),
    ]),
    Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), settings, request(1), frame(GOAWAY, 0, 0, Buffer.from([0, 0, 0, 1, 0, 0, 0, 0]))]),
  ],
  h2_client: [
    Buffer.concat([
      settings,
      ack,
      frame(HEADERS, END_HEADERS, 1, literal(':status', '200')),
      frame(DATA, 0, 1, Buffer.from('world')),
      frame(DATA, END_STREAM, 1, Buffer.alloc(0)),
    ]),
    Buffer.concat([settings, ack, frame(HEADERS, END_HEADERS | END_STREAM, 1, literal(':status', '401')), windowUpdate(1)]),
    Buffer.concat([
      settings,
      frame(HEADERS, END_HEADERS, 1, literal(':status', '200')),
      frame(RST_STREAM, 0, 1, Buffer.from([0, 0, 0, 2])),
      frame(GOAWAY, 0, 0, Buffer.from([0, 0, 0, 1, 0, 0, 0, 0])),
    ]),
  ],
  // A TLS 1.3 ClientHello's record header and handshake header; libFuzzer grows the rest.
  tls_server: [
    Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03, ...Buffer.alloc(32, 1), 0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]),
  ],
  spiffe_san: [],
}

const artifacts = join(REPO, 'build', 'fuzz', 'artifacts')
mkdirSync(artifacts, { recursive: true })

function fuzz(target: string, corpus: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      join(REPO, 'build', 'fuzz', target),
      [
        `-max_total_time=${SECONDS_PER_TARGET}`,
        '-rss_limit_mb=2048',
        '-timeout=10',
        `-artifact_prefix=${artifacts}/${target}-`,
        '-print_final_stats=1',
        corpus,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let output = ''
    child.stdout.on('data', (d) => (output = (output + d).slice(-20000)))
    child.stderr.on('data', (d) => (output = (output + d).slice(-20000)))
    child.on('close', (code) => resolve({ code, output }))
  })
}

for (const [target, inputs] of Object.entries(seeds)) {
  t.test(`fuzz ${target} for ${SECONDS_PER_TARGET} s`, async (t) => {
    const corpus = mkdtempSync(join(tmpdir(), `ambient-fuzz-${target}-`))
    t.teardown(() => rmSync(corpus, { recursive: true, force: true }))
    inputs.forEach((seed, i) => writeFileSync(join(corpus, `seed-${i}`), seed))
    const { code, output } = await fuzz(target, corpus)
    const runs = Number(/stat::number_of_executed_units:\s*(\d+)/.exec(output)?.[1] ?? 0)
    t.notMatch(output, /ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|deadly signal/, 'no crash, sanitizer report or leak')
    t.ok(runs > 1000, `it really ran (${runs} inputs)`)
    t.equal(code, 0, `libFuzzer exited cleanly (output tail: ${output.slice(-3000)})`)
  })
}
