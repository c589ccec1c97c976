import t from 'tap'
import { Duplex } from 'node:stream'
import { classify, declaredProtocol, detectProtocol, H2_PREFACE } from './protocol.js'

t.test('classify: the preface, a request line, or anything else', async (t) => {
  const cases: [string | Buffer, string | undefined][] = [
    [H2_PREFACE, 'h2c'],
    [Buffer.concat([H2_PREFACE, Buffer.from([0, 0, 0, 4])]), 'h2c'],
    ['PRI * HTTP/2', undefined],
    ['GET / HTTP/1.1\r\n', 'http1'],
    ['DELETE /a/b?c=d HTTP/1.0\r\nHost: x\r\n', 'http1'],
    ['GET /', undefined],
    ['GET / HTTP/1.', undefined],
    ['get / HTTP/1.1\r\n', 'tcp'],
    ['GET / HTTP/2.0\r\n', 'tcp'],
    ['SSH-2.0-OpenSSH_9.2\r\n', 'tcp'],
    [Buffer.from([0x16, 0x03, 0x01, 0x00]), 'tcp'],
    ['EHLO example.org\r\n', 'tcp'],
    ['GET ' + 'a'.repeat(9000), 'tcp'],
  ]
  for (const [input, want] of cases) t.equal(classify(Buffer.from(input)), want, JSON.stringify(String(input).slice(0, 30)))
})

t.test("declared: appProtocol, then Istio's port naming", async (t) => {
  const cases: [string, string, string | null][] = [
    ['', 'http', 'http'],
    ['', 'http-web', 'http'],
    ['', 'grpc-api', 'http2'],
    ['', 'tcp-db', 'tcp'],
    ['kubernetes.io/h2c', 'web', 'http2'],
    ['http', 'tcp-x', 'http'],
    ['', 'web', null],
    ['', '', null],
    ['mysql', '', 'tcp'],
  ]
  for (const [appProtocol, name, want] of cases) t.equal(declaredProtocol({ name, appProtocol }), want, `${appProtocol}/${name}`)
  t.equal(declaredProtocol(null), null)
})

/** A stream fed by hand: what the client sends. */
function client(): Duplex & { send(b: string | Buffer | null): void; read(): Buffer | null } {
  const d = new Duplex({
    read() {},
    write(_c, _e, cb) {
      cb()
    },
  }) as Duplex & { send(b: string | Buffer | null): void }
  d.send = (b) => void d.push(b === null ? null : Buffer.from(b))
  return d as never
}

async function readAll(d: Duplex): Promise<string> {
  d.resume()
  let out = ''
  for await (const chunk of d) out += chunk.toString()
  return out
}

t.test('detect: the bytes read are put back for the parser', async (t) => {
  const c = client()
  const detecting = detectProtocol(c, null)
  c.send('GET /x HT')
  c.send('TP/1.1\r\nHost: a\r\n\r\n')
  t.same(await detecting, { protocol: 'http1', leftover: null })
  c.send(null)
  t.equal(await readAll(c), 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n')
})

t.test('detect: silence on an undeclared port is TCP; on a declared HTTP port it waits', async (t) => {
  const silent = client()
  t.same(await detectProtocol(silent, null, 20), { protocol: 'tcp', leftover: null })
  const declared = client()
  const detecting = detectProtocol(declared, 'http', 20)
  await new Promise((r) => setTimeout(r, 60))
  declared.send(H2_PREFACE)
  t.same(await detecting, { protocol: 'h2c', leftover: null }, 'still waiting after the sniff window, then h2c')
  t.same(await detectProtocol(client(), 'tcp'), { protocol: 'tcp', leftover: null }, 'declared TCP is not sniffed')
})

t.test('detect: a client that finishes before deciding is TCP and keeps its bytes', async (t) => {
  const c = client()
  const detecting = detectProtocol(c, null)
  c.send('GET /')
  c.send(null)
  const d = await detecting
  t.equal(d.protocol, 'tcp')
  t.equal(d.leftover?.toString(), 'GET /')
})
