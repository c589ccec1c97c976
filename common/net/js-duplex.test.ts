import t from 'tap'
import http from 'node:http'
import { HboneServer } from '../hbone/server.js'
import { HbonePool } from '../hbone/pool.js'
import { CLIENT_ID, createMesh, SERVER_ID, TRUST_DOMAIN } from '../hbone/test-fixtures.js'
import { jsDuplex } from './js-duplex.js'

t.test('an HTTP/1.1 server inside an HBONE stream sends intact responses through the adapter', async (t) => {
  const mesh = createMesh()
  const server = new HboneServer<unknown>({
    credentials: mesh.credentials(SERVER_ID),
    trustDomain: TRUST_DOMAIN,
    resolveTarget: (d) => d,
    handleStream: async (stream) => {
      const h1 = http.createServer((_req, res) => {
        res.writeHead(504, { 'content-type': 'text/plain', 'content-length': '25' })
        res.end('upstream request timeout\n')
      })
      h1.emit('connection', jsDuplex(stream))
      await new Promise((resolve) => stream.once('close', resolve))
      return { received: 0, sent: 0, error: null }
    },
  })
  const address = await server.start({ kind: 'address', host: '127.0.0.1', port: 0 })
  const pool = new HbonePool({ contextFor: (id) => mesh.context(id) })
  t.teardown(async () => {
    await pool.stop()
    await server.stop()
  })
  const corrupted: string[] = []
  for (let i = 0; i < 30; i++) {
    const tunnel = await pool.connect({ sourceIdentity: CLIENT_ID, destinationIdentity: SERVER_ID, nextHop: address, authority: '10.0.0.1:80' })
    const text = await new Promise<string>((resolve) => {
      let out = ''
      tunnel.on('data', (d: Buffer) => {
        out += d.toString('latin1')
        if (out.endsWith('timeout\n')) resolve(out)
      })
      tunnel.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    })
    if (!text.startsWith('HTTP/1.1 504 Gateway Timeout\r\n')) corrupted.push(JSON.stringify(text.slice(0, 32)))
    tunnel.destroy()
  }
  t.same(corrupted, [], '30 of 30 responses intact')
})
