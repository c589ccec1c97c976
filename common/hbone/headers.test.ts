import t from 'tap'
import { HboneBadAuthorityError } from './errors.js'
import {
  formatAuthority,
  formatForwarded,
  generateTraceparent,
  isTraceparent,
  parseAuthority,
  parseForwardedFor,
  requestHeaders,
  childTraceparent,
} from './headers.js'

t.test('parseAuthority accepts literal addresses with a port', async (t) => {
  const cases: ReadonlyArray<readonly [string, string, number]> = [
    ['10.0.0.1:80', '10.0.0.1', 80],
    ['0.0.0.0:1', '0.0.0.0', 1],
    ['255.255.255.255:65535', '255.255.255.255', 65535],
    ['[::1]:8080', '::1', 8080],
    ['[fd00::a:b]:443', 'fd00::a:b', 443],
    ['[::ffff:10.0.0.1]:9', '::ffff:10.0.0.1', 9],
  ]
  for (const [text, ip, port] of cases) t.same(parseAuthority(text), { ip, port }, text)
})

t.test('parseAuthority rejects everything else', async (t) => {
  const bad = [
    undefined,
    '',
    'example.com:80',
    '10.0.0.1',
    '10.0.0.1:',
    '10.0.0.1:0',
    '10.0.0.1:65536',
    '10.0.0.1:080',
    '10.0.0.1:+80',
    '10.0.0.1:8a',
    '10.0.0.256:80',
    '010.0.0.1:80',
    '10.0.0:80',
    '::1:80',
    '[::1]',
    '[::1]80',
    '[::1]:',
    '[fe80::1%eth0]:80',
    '[10.0.0.1]:80',
    ' 10.0.0.1:80',
    '10.0.0.1:80 ',
    '10.0.0.1:80/x',
    `${'1'.repeat(70)}:80`,
  ]
  for (const text of bad) t.throws(() => parseAuthority(text), { code: 'AMBIENT_ERR_HBONE_BAD_AUTHORITY' }, String(text))
  try {
    parseAuthority('example.com:80')
  } catch (err) {
    t.equal((err as HboneBadAuthorityError).code, 'AMBIENT_ERR_HBONE_BAD_AUTHORITY')
    t.match((err as Error).message, /example\.com:80/, 'message names the bad value')
  }
})

t.test('formatAuthority brackets IPv6', async (t) => {
  t.equal(formatAuthority({ ip: '10.1.2.3', port: 15008 }), '10.1.2.3:15008')
  t.equal(formatAuthority({ ip: 'fd00::1', port: 80 }), '[fd00::1]:80')
})

t.test('forwarded', async (t) => {
  t.equal(formatForwarded('10.0.0.1'), 'for=10.0.0.1')
  t.equal(formatForwarded('fd00::1'), 'for="[fd00::1]"')
  const cases: ReadonlyArray<readonly [string | undefined, string | null]> = [
    ['for=10.0.0.1', '10.0.0.1'],
    ['for="[fd00::1]"', 'fd00::1'],
    ['for="[fd00::1]:4711"', 'fd00::1'],
    ['For=10.0.0.2:1234;proto=http', '10.0.0.2'],
    ['proto=https;for=10.0.0.3, for=10.0.0.4', '10.0.0.3'],
    ['for=unknown', null],
    ['for=_hidden', null],
    ['by=10.0.0.1', null],
    ['', null],
    [undefined, null],
  ]
  for (const [value, ip] of cases) t.equal(parseForwardedFor(value), ip, String(value))
})

t.test('traceparent', async (t) => {
  const generated = generateTraceparent()
  t.ok(isTraceparent(generated), generated)
  // Past two refills of the random pool: every id valid and none repeated.
  const many = Array.from({ length: 400 }, () => generateTraceparent())
  t.ok(
    many.every((v) => isTraceparent(v)),
    'all well-formed',
  )
  t.equal(new Set(many.map((v) => v.slice(3, 35))).size, 400, 'trace ids unique')
  t.equal(new Set(many.map((v) => v.slice(36, 52))).size, 400, 'span ids unique')
  t.notOk(isTraceparent('00-00000000000000000000000000000000-0000000000000001-01'))
  t.notOk(isTraceparent('garbage'))
  const given = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
  t.same(requestHeaders({ traceparent: given, baggage: 'k=v', forwarded: 'for=10.0.0.1' }), { traceparent: given, baggage: 'k=v', forwarded: 'for=10.0.0.1' })
  t.ok(isTraceparent(requestHeaders(undefined).traceparent), 'generated when absent')
  t.not(requestHeaders({ traceparent: 'bad' }).traceparent, 'bad', 'replaced when invalid')
})

t.test('childTraceparent keeps the trace and flags, takes a new span; starts a trace otherwise', async (t) => {
  const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
  const child = childTraceparent(parent)
  t.match(child, /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/)
  t.not(child.slice(36, 52), 'b7ad6b7169203331', 'a span id of its own')
  t.ok(isTraceparent(child))
  for (const bad of [undefined, '', 'garbage', '00-00000000000000000000000000000000-b7ad6b7169203331-01']) {
    const fresh = childTraceparent(bad)
    t.ok(isTraceparent(fresh), `${bad}: a valid new traceparent`)
    t.notMatch(fresh, /0af7651916cd43dd8448eb211c80319c/)
  }
})
