// Fuzz (bounded, seeded): garbage and mutated HBONE traffic into a running
// ztunnel's HBONE listener (pod b's 198.19.x.x:15008 on node n2), on both engines
// (native, then Node's), while pod a keeps a long-lived connection to b through
// both ztunnels whose every echoed byte is checked (fixtures/echo-check.ts).
// Inputs: random bytes and mutated TLS ClientHellos before any handshake; wrong
// credentials (no certificate, another CA, another trust domain, ALPN http/1.1);
// after a valid mutual-TLS handshake, mutated HTTP/2 (preface, SETTINGS,
// CONNECT, DATA) and hand-made frames (no :authority, huge headers, RST and
// GOAWAY storms); well-formed CONNECTs with bad authorities and bad baggage,
// forwarded and traceparent headers. Afterwards: ztunnel is still up, bad
// authorities were answered 400, the refusals are counted in
// ambient_ztunnel_hbone_refused_total{reason}, the long-lived connection lost no
// byte and new connections work. Replay a failure with AMBIENT_FUZZ_SEED=<seed>.
import t from 'tap'
import http2 from 'node:http2'
import net from 'node:net'
import tls from 'node:tls'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { issueWorkloadCertificate, createRootCa } from '../../common/identity/pki.js'
import { contextOptions, type IdentityCredentials } from '../../common/hbone/tls.js'
import { socketInNetns } from '../../native/index.js'
import { MeshCluster } from '../../testbed/cluster.js'
import { connectMany, startServer } from '../../testbed/pod-clients.js'
import { Rng, fuzzSeed, mutateBytesN } from './mutator.js'
import { FLAG, FRAME, PREFACE, frame, goaway, headers, ping, rst, settings, settingsAck, windowUpdate } from './h2-frames.js'
import type { EchoStatus } from './fixtures/echo-check.js'

const SEED = fuzzSeed()
/** Random inputs per engine after the directed ones, bounded by count and time. */
const RANDOM_CASES = 400
const RANDOM_SECONDS = 15
const CASE_TIMEOUT_MS = 3000
t.comment(`fuzz seed ${SEED} (replay: AMBIENT_FUZZ_SEED=${SEED})`)

const cluster = await MeshCluster.start({
  name: 'fuzzhb',
  hboneEngine: 'native',
  nodes: [
    {
      name: 'n1',
      pods: [
        { name: 'a', namespace: 'shop', serviceAccount: 'client', enrolled: true },
        { name: 'x', namespace: 'legacy', serviceAccount: 'default', enrolled: false },
      ],
    },
    { name: 'n2', pods: [{ name: 'b', namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' }, enrolled: true }] },
  ],
})
t.teardown(() => cluster.stop())
await startServer(cluster.tb, cluster.pod('b'), 8080)
const a = cluster.pod('a')
const b = cluster.pod('b')
/** The fuzzer's sockets are made in pod x's network namespace (not captured: outside the mesh, like any attacker). */
const attacker = cluster.pod('x')
const HBONE = { ip: b.ip, port: 15008 }

// Credentials: the mesh's own CA (a client identity ztunnel accepts), another CA, another trust domain.
const meshCa = { certPem: readFileSync(join(cluster.workDir, 'ca-cert.pem'), 'utf8'), keyPem: readFileSync(join(cluster.workDir, 'ca-key.pem'), 'utf8') }
function credentials(spiffeId: string, ca = meshCa): IdentityCredentials {
  const issued = issueWorkloadCertificate({ spiffeId, ca, ttlMs: 3600_000 })
  return { keyPem: issued.keyPem, certPem: issued.certPem, chainPem: issued.chainPem, trustBundlePem: meshCa.certPem }
}
const GOOD = credentials('spiffe://cluster.local/ns/shop/sa/client')
const OTHER_CA = credentials('spiffe://cluster.local/ns/shop/sa/client', createRootCa({ commonName: 'not the mesh' }))
const OTHER_TD = credentials('spiffe://evil.example/ns/shop/sa/client')

async function dial(): Promise<net.Socket> {
  const fd = await socketInNetns(attacker.netnsPath, { family: 4 })
  const socket = new net.Socket({ fd, readable: true, writable: true })
  return new Promise((resolve, reject) => {
    socket.once('error', reject)
    socket.connect(HBONE.port, HBONE.ip, () => {
      socket.off('error', reject)
      socket.on('error', () => undefined)
      resolve(socket)
    })
  })
}

function handshake(socket: net.Socket, creds: IdentityCredentials | null, alpn = ['h2']): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const options = creds ? contextOptions(creds) : { ca: meshCa.certPem }
    const s = tls.connect({ socket, ...options, ALPNProtocols: alpn, rejectUnauthorized: false, servername: undefined })
    s.once('secureConnect', () => resolve(s))
    s.once('error', reject)
  })
}

/** Resolves when the socket is closed by the other side, or after `ms`; then destroys it. */
function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy()
      resolve(false)
    }, ms)
    socket.on('data', () => undefined)
    socket.once('close', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

/** A real TLS ClientHello with our certificate's settings, as the first bytes a client sends. */
async function clientHello(): Promise<Buffer> {
  const server = net.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const hello = new Promise<Buffer>((resolve) => server.once('connection', (s) => s.once('data', (d: Buffer) => (resolve(d), s.destroy()))))
  const c = tls.connect({
    port: (server.address() as net.AddressInfo).port,
    host: '127.0.0.1',
    ...contextOptions(GOOD),
    ALPNProtocols: ['h2'],
    rejectUnauthorized: false,
  })
  c.on('error', () => undefined)
  const bytes = await hello
  c.destroy()
  server.close()
  return bytes
}
const HELLO = await clientHello()
const VALID_H2 = Buffer.concat([
  PREFACE,
  settings(),
  settingsAck(),
  headers(1, [
    [':method', 'CONNECT'],
    [':authority', `${b.ip}:8080`],
    ['forwarded', `for=${a.ip}`],
  ]),
  frame(FRAME.DATA, 0, 1, Buffer.from('hello')),
  windowUpdate(0, 65535),
  frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.alloc(0)),
])

/** One HTTP/2 session over a fresh mutual-TLS connection, through Node's client. */
async function session(): Promise<http2.ClientHttp2Session> {
  const tlsSocket = await handshake(await dial(), GOOD)
  const s = http2.connect(`https://${b.ip}:15008`, { createConnection: () => tlsSocket })
  s.on('error', () => undefined)
  return s
}

/** A CONNECT and its answer: the :status, or how the stream ended without one. */
function connect(s: http2.ClientHttp2Session, authority: string, extra: http2.OutgoingHttpHeaders = {}): Promise<string> {
  return new Promise((resolve) => {
    let req: http2.ClientHttp2Stream
    try {
      req = s.request({ ':method': 'CONNECT', ':authority': authority, ...extra })
    } catch (err) {
      return resolve(`refused by the client library: ${(err as NodeJS.ErrnoException).code}`)
    }
    const timer = setTimeout(() => (req.close(http2.constants.NGHTTP2_CANCEL), resolve('no answer')), CASE_TIMEOUT_MS)
    req.on('response', (h) => {
      clearTimeout(timer)
      req.close(http2.constants.NGHTTP2_CANCEL)
      resolve(String(h[':status']))
    })
    req.on('error', (err: NodeJS.ErrnoException) => (clearTimeout(timer), resolve(`error ${err.code}`)))
    req.on('close', () => (clearTimeout(timer), resolve(`reset ${req.rstCode}`)))
  })
}

async function metric(node: string, name: string): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${cluster.ztunnels.get(node)!.metrics.port}/metrics`)).text()
  const out: Record<string, number> = {}
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}\\{reason="([a-z_]+)"\\} (\\d+)`).exec(line)
    if (m) out[m[1]!] = Number(m[2])
  }
  return out
}

async function startEcho(seconds: number): Promise<{ child: ChildProcess; result: Promise<EchoStatus> }> {
  const child = cluster.tb.spawnNode(a, join(import.meta.dirname, 'fixtures', 'echo-check.ts'), [
    '--to',
    `${b.ip}:8080`,
    '--connections',
    '2',
    '--chunk',
    '512',
    '--interval-ms',
    '20',
    '--seconds',
    String(seconds),
  ])
  let out = ''
  let ready: () => void
  const isReady = new Promise<void>((r) => (ready = r))
  child.stdout?.on('data', (d) => {
    out += d
    if (out.includes('"ready":true')) ready()
  })
  const result = new Promise<EchoStatus>((resolve, reject) => {
    child.once('exit', () => {
      const last = out.trim().split('\n').pop() ?? ''
      try {
        resolve(JSON.parse(last) as EchoStatus)
      } catch {
        reject(new Error(`echo-check printed no result: ${out.slice(-500)}`))
      }
    })
  })
  await Promise.race([isReady, new Promise((_, reject) => setTimeout(() => reject(new Error(`echo-check not ready: ${out}`)), 15_000))])
  return { child, result }
}

// ---- the inputs ----

type Case = { readonly name: string; readonly run: () => Promise<string> }
const BAD_AUTHORITIES = [
  b.ip,
  `${b.ip}:`,
  `${b.ip}:0`,
  `${b.ip}:65536`,
  `${b.ip}:99999999999`,
  `${b.ip}:http`,
  `${b.ip}:-1`,
  `${b.ip}:08080`,
  `web.shop.svc.cluster.local:8080`,
  `[${b.ip}]:8080`,
  '[::1]:8080',
  '[fe80::1%eth0]:8080',
  `${b.ip}:8080:1`,
  `${b.ip} :8080`,
  'x'.repeat(300),
  `${b.ip}:8080/path`,
]
/** Well-formed addresses this listener does not serve: 400 (not local). */
const NOT_LOCAL = [`${a.ip}:8080`, '198.19.200.200:8080', '127.0.0.1:8080', '0.0.0.0:8080']

function directedCases(): Case[] {
  const cases: Case[] = []
  for (const authority of [...BAD_AUTHORITIES, ...NOT_LOCAL])
    cases.push({
      name: `authority ${authority.slice(0, 40)}`,
      run: async () => {
        const s = await session()
        try {
          return await connect(s, authority)
        } finally {
          s.destroy()
        }
      },
    })
  const goodHeaders: [string, http2.OutgoingHttpHeaders][] = [
    ['forwarded garbage', { forwarded: 'for=;;;"[[[,,,' }],
    ['forwarded for another ip', { forwarded: 'for=10.1.2.3' }],
    ['forwarded v6 garbage', { forwarded: 'for="[zz::1]:80"' }],
    ['baggage 16 KiB', { baggage: 'k=' + 'v'.repeat(16 * 1024) }],
    ['baggage garbage', { baggage: '=,=;;\u00ff' }],
    ['traceparent garbage', { traceparent: 'ff-00-00-00' }],
    ['100 extra headers', Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`x-h${i}`, 'v'.repeat(100)]))],
  ]
  for (const [name, extra] of goodHeaders)
    cases.push({
      name,
      run: async () => {
        const s = await session()
        try {
          return await connect(s, `${b.ip}:8080`, extra)
        } finally {
          s.destroy()
        }
      },
    })
  cases.push({
    name: 'header of 200 KiB',
    run: async () => {
      const s = await session()
      try {
        return await connect(s, `${b.ip}:8080`, { baggage: 'v'.repeat(200 * 1024) })
      } finally {
        s.destroy()
      }
    },
  })
  cases.push({
    name: 'RST storm: 300 CONNECTs cancelled at once',
    run: async () => {
      const s = await session()
      for (let i = 0; i < 300; i++) {
        try {
          s.request({ ':method': 'CONNECT', ':authority': `${b.ip}:8080` }).close(http2.constants.NGHTTP2_CANCEL)
        } catch {
          break // the session was torn down (a server may refuse a storm)
        }
      }
      await new Promise((r) => setTimeout(r, 300))
      s.destroy()
      return 'sent'
    },
  })
  cases.push({
    name: 'GOAWAY storm: 40 sessions, each a CONNECT then GOAWAY',
    run: async () => {
      await Promise.all(
        Array.from({ length: 40 }, async () => {
          const s = await session()
          s.request({ ':method': 'CONNECT', ':authority': `${b.ip}:8080` }).on('error', () => undefined)
          s.goaway(http2.constants.NGHTTP2_NO_ERROR)
          await new Promise((r) => setTimeout(r, 50))
          s.destroy()
        }),
      )
      return 'sent'
    },
  })
  const raw = (name: string, bytes: () => Buffer): Case => ({
    name,
    run: async () => {
      const s = await handshake(await dial(), GOOD)
      s.write(bytes())
      return (await closedWithin(s, 1000)) ? 'closed' : 'open'
    },
  })
  cases.push(raw('CONNECT without :authority', () => Buffer.concat([PREFACE, settings(), headers(1, [[':method', 'CONNECT']])])))
  cases.push(
    raw('CONNECT with :path and :scheme', () =>
      Buffer.concat([
        PREFACE,
        settings(),
        headers(1, [
          [':method', 'CONNECT'],
          [':authority', `${b.ip}:8080`],
          [':path', '/'],
          [':scheme', 'https'],
        ]),
      ]),
    ),
  )
  cases.push(
    raw('GET instead of CONNECT', () =>
      Buffer.concat([
        PREFACE,
        settings(),
        headers(1, [
          [':method', 'GET'],
          [':authority', `${b.ip}:8080`],
          [':path', '/'],
          [':scheme', 'https'],
        ]),
      ]),
    ),
  )
  cases.push(
    raw('two :authority', () =>
      Buffer.concat([
        PREFACE,
        settings(),
        headers(1, [
          [':method', 'CONNECT'],
          [':authority', `${b.ip}:8080`],
          [':authority', `${a.ip}:8080`],
        ]),
      ]),
    ),
  )
  cases.push(
    raw('header name with uppercase and NUL', () =>
      Buffer.concat([
        PREFACE,
        settings(),
        headers(1, [
          [':method', 'CONNECT'],
          [':authority', `${b.ip}:8080`],
          ['X-Bad\u0000', 'v'],
        ]),
      ]),
    ),
  )
  cases.push(
    raw('HEADERS without END_HEADERS, then DATA', () =>
      Buffer.concat([PREFACE, settings(), headers(1, [[':method', 'CONNECT']], 0), frame(FRAME.DATA, 0, 1, Buffer.from('x'))]),
    ),
  )
  cases.push(
    raw('1 MiB of CONTINUATION', () =>
      Buffer.concat([
        PREFACE,
        settings(),
        headers(1, [[':method', 'CONNECT']], 0),
        ...Array.from({ length: 64 }, () => frame(FRAME.CONTINUATION, 0, 1, Buffer.alloc(16_000, 0x41))),
      ]),
    ),
  )
  cases.push(
    raw('even stream id, stream 0 HEADERS', () =>
      Buffer.concat([PREFACE, settings(), headers(2, [[':method', 'CONNECT']]), headers(0, [[':method', 'CONNECT']])]),
    ),
  )
  cases.push(
    raw('RST and GOAWAY flood', () => Buffer.concat([PREFACE, settings(), ...Array.from({ length: 500 }, (_, i) => (i % 2 ? rst(2 * i + 1) : goaway(i, 2)))])),
  )
  cases.push(raw('PING flood', () => Buffer.concat([PREFACE, settings(), ...Array.from({ length: 2000 }, () => ping())])))
  cases.push(raw('window overflow', () => Buffer.concat([PREFACE, settings(), windowUpdate(0, 0x7fffffff), windowUpdate(0, 0x7fffffff)])))
  cases.push(raw('DATA on a stream never opened', () => Buffer.concat([PREFACE, settings(), frame(FRAME.DATA, 0, 7, Buffer.alloc(1000))])))
  cases.push(
    raw('no preface', () =>
      Buffer.concat([
        settings(),
        headers(1, [
          [':method', 'CONNECT'],
          [':authority', `${b.ip}:8080`],
        ]),
      ]),
    ),
  )
  cases.push(raw('HTTP/1.1 inside TLS', () => Buffer.from(`CONNECT ${b.ip}:8080 HTTP/1.1\r\nHost: ${b.ip}:8080\r\n\r\n`)))
  const creds = (name: string, c: IdentityCredentials | null, alpn?: string[]): Case => ({
    name,
    run: async () => {
      try {
        const s = await handshake(await dial(), c, alpn)
        s.write(VALID_H2)
        return (await closedWithin(s, 1000)) ? 'closed after handshake' : 'open'
      } catch (err) {
        return `handshake failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`
      }
    },
  })
  cases.push(creds('no client certificate', null))
  cases.push(creds('certificate of another CA', OTHER_CA))
  cases.push(creds('another trust domain', OTHER_TD))
  cases.push(creds('ALPN http/1.1', GOOD, ['http/1.1']))
  return cases
}

function randomCase(rng: Rng, i: number): Case {
  switch (rng.int(4)) {
    case 0: {
      const bytes = rng.bytes(1 + rng.int(2000))
      return {
        name: `#${i} random bytes before TLS`,
        run: async () => {
          const s = await dial()
          s.write(bytes)
          return (await closedWithin(s, 500)) ? 'closed' : 'open'
        },
      }
    }
    case 1: {
      const bytes = mutateBytesN(rng, HELLO, [], 6)
      return {
        name: `#${i} mutated ClientHello`,
        run: async () => {
          const s = await dial()
          s.write(bytes)
          return (await closedWithin(s, 500)) ? 'closed' : 'open'
        },
      }
    }
    default: {
      const bytes = rng.chance(0.15) ? rng.bytes(1 + rng.int(4000)) : mutateBytesN(rng, VALID_H2, [], 8)
      return {
        name: `#${i} mutated HTTP/2 after mutual TLS`,
        run: async () => {
          const s = await handshake(await dial(), GOOD)
          s.write(bytes)
          return (await closedWithin(s, 500)) ? 'closed' : 'open'
        },
      }
    }
  }
}

/** Runs cases `parallel` at a time; a case that throws or outlasts its timeout is recorded, never fatal. */
async function runCases(cases: readonly Case[], parallel: number, deadline: number): Promise<Map<string, string>> {
  const outcomes = new Map<string, string>()
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < cases.length && Date.now() < deadline) {
      const c = cases[next++]!
      const timeout = new Promise<string>((r) => setTimeout(() => r('case timed out'), CASE_TIMEOUT_MS * 2).unref())
      outcomes.set(c.name, await Promise.race([c.run().catch((err: Error) => `threw ${(err as NodeJS.ErrnoException).code ?? err.message}`), timeout]))
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  return outcomes
}

for (const engine of ['native', 'node'] as const) {
  t.test(`${engine} engine: bad HBONE input is refused and counted; a live connection keeps every byte (seed ${SEED})`, async (t) => {
    if (engine !== 'native') await cluster.restartZtunnels(engine)
    const z2 = cluster.ztunnels.get('n2')!
    const echo = await startEcho(120)
    const before = await metric('n2', 'ambient_ztunnel_hbone_refused_total')
    const started = Date.now()

    const directed = await runCases(directedCases(), 3, Date.now() + 60_000)
    const rng = new Rng(SEED ^ (engine === 'native' ? 0 : 0x55aa55aa))
    const random = await runCases(
      Array.from({ length: RANDOM_CASES }, (_, i) => randomCase(rng, i)),
      4,
      Date.now() + RANDOM_SECONDS * 1000,
    )
    t.comment(`${directed.size} directed and ${random.size} random inputs in ${Date.now() - started} ms`)

    // A malformed authority is answered 400 by ztunnel, or, for characters HTTP/2 itself forbids (a space, a
    // path), the stream is reset by the HTTP/2 layer before ztunnel sees it; never served.
    let answered400 = 0
    for (const authority of BAD_AUTHORITIES) {
      const outcome = directed.get(`authority ${authority.slice(0, 40)}`)
      if (outcome === '400') answered400++
      t.match(outcome, /^(400|error ERR_HTTP2_STREAM_ERROR|reset [1-9])/, `CONNECT ${authority.slice(0, 40)}: refused (${outcome})`)
    }
    t.ok(answered400 >= BAD_AUTHORITIES.length - 3, `most bad authorities reach ztunnel's parser and get 400 (${answered400})`)
    for (const authority of NOT_LOCAL) t.equal(directed.get(`authority ${authority}`), '400', `CONNECT ${authority}: 400 (not a local workload)`)
    for (const name of ['forwarded garbage', 'forwarded for another ip', 'forwarded v6 garbage', 'baggage garbage', 'traceparent garbage'])
      t.equal(directed.get(name), '200', `${name}: tolerated, the CONNECT is served`)
    for (const name of ['no client certificate', 'certificate of another CA', 'another trust domain', 'ALPN http/1.1'])
      t.match(directed.get(name), /^(handshake failed|closed after handshake)/, `${name}: refused (${directed.get(name)})`)
    const timedOut = [...directed, ...random].filter(([, o]) => o === 'case timed out').map(([n]) => n)
    t.same(timedOut, [], 'no input left a connection hanging past its timeout')
    t.comment(`outcomes: ${JSON.stringify(Object.fromEntries([...directed].map(([n, o]) => [n.slice(0, 30), o])))}`)

    t.equal(z2.child.exitCode, null, 'ztunnel on n2 is still running')
    t.equal(z2.child.signalCode, null)
    t.notMatch(z2.logs(), /uncaught|unhandled|FATAL|Segmentation|Abort/i, 'no crash in its logs')
    const after = await metric('n2', 'ambient_ztunnel_hbone_refused_total')
    const delta = (reason: string): number => (after[reason] ?? 0) - (before[reason] ?? 0)
    t.ok(delta('bad_request') >= answered400, `bad authorities counted (bad_request +${delta('bad_request')})`)
    t.ok(delta('not_local') >= NOT_LOCAL.length, `not-local authorities counted (not_local +${delta('not_local')})`)
    t.ok(delta('tls') + delta('alpn') + delta('identity') + delta('trust_domain') >= 3, `refused handshakes counted (${JSON.stringify(after)})`)

    echo.child.kill('SIGTERM')
    const result = await echo.result
    t.comment(`long-lived connections: ${JSON.stringify(result)}`)
    t.equal(result.closedEarly, 0, 'the long-lived connections stayed open throughout')
    t.equal(result.mismatches, 0, 'no echoed byte differed')
    t.ok(result.sent > 10_000, `bytes flowed meanwhile (${result.sent})`)
    t.equal(result.lost, 0, 'every byte sent came back')
    const fresh = await connectMany(cluster.tb, a, `${b.ip}:8080`, { count: 10, concurrency: 2 })
    t.equal(fresh.ok, 10, `new connections through the mesh work afterwards (errors ${JSON.stringify(fresh.errors)})`)
  })
}
