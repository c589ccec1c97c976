import t from 'tap'
import { normalizePath } from './path-normalize.js'

const ok = (raw: string, mergeSlashes = false): string => {
  const r = normalizePath(raw, { mergeSlashes })
  if (!r.ok) throw new Error(`${JSON.stringify(raw)} was rejected: ${r.reason}`)
  return r.path
}

t.test("Envoy's own cases (test/common/http/path_utility_test.cc)", async (t) => {
  // AlreadyNormalPaths
  for (const p of ['/xyz', '/x/y/z']) t.equal(ok(p), p, p)
  // NormalizeValidPaths (the relative "a/b/../c" case is left out: Envoy's connection
  // manager answers 404 before normalizing, see "rejections" below)
  const valid: ReadonlyArray<readonly [string, string]> = [
    ['/a/b/../c', '/a/c'],
    ['/a/b/./c', '/a/b/c'],
    ['/a/b/../../../../c', '/c'],
    ['/a/..\\c', '/c'],
    ['/%c0%af', '/%c0%af'],
    ['/%5c%25', '/%5c%25'],
    ['/a/b/%2E%2E/c', '/a/c'],
    ['/xyz/..;foo=bar/abc', '/abc'],
    ['/..;foo=bar/abc', '/abc'],
    ['/xyz/..;foo=bar', '/'],
    ['/xyz/.;foo=bar/abc', '/xyz/abc'],
    ['/.;foo=bar/abc', '/abc'],
    ['/xyz/.;foo=bar', '/xyz/'],
    ['/xyz/..;foo=bar/.;v1=2,v2=3/abc', '/abc'],
    ['/..;foo=bar/abc/.;mmm', '/abc/'],
    ['/.;aaa/..;foo=bar/abc/.;mmm', '/abc/'],
    ['/xyz/..;foo=bar/.;fff=zzz', '/'],
    ['/xyz/..;foo=bar/.;fff=zzz?blah=woops', '/?blah=woops'],
    ['/xyz/..;foo=bar/.;fff=zzz/remain;blah-bluh?query', '/remain;blah-bluh?query'],
    // NormalizeCasePath
    ['/A/B/C', '/A/B/C'],
    ['/a/b/%2e%2e/c', '/a/c'],
    ['/a/%2F%2f/c', '/a/%2F%2f/c'],
    // StripDotSegmentWithParameters, through the whole normalization
    ['/xyz/..foo', '/xyz/..foo'],
    ['/xyz/...;foo', '/xyz/...;foo'],
    ['/xyz/remove/..;foo?param=/.;foo', '/xyz/?param=/.;foo'],
    ['/xyz?param=/..;foo', '/xyz?param=/..;foo'],
    ['/a/..;param1;param2/b', '/b'],
  ]
  for (const [raw, want] of valid) t.equal(ok(raw), want, raw)
  // InvalidPaths: Envoy answers 400
  for (const raw of ['/xyz/.%00../abc', '/xyz/%00.%00./abc', '/xyz/AAAAA%%0000/abc']) {
    const r = normalizePath(raw)
    t.same(r.ok ? 'accepted' : r.status, 400, raw)
  }
  // MergeSlashes (opt-in), the absolute-path cases
  const merged: ReadonlyArray<readonly [string, string]> = [
    ['/a//b/c/', '/a/b/c/'],
    ['/a', '/a'],
    ['//a/b/c', '/a/b/c'],
    ['/a//b/c', '/a/b/c'],
    ['/a/b/c//', '/a/b/c/'],
    ['/a///b/c', '/a/b/c'],
    ['/a////b/c', '/a/b/c'],
    ['/a//b?a=///c', '/a/b?a=///c'],
    ['/a//b?', '/a/b?'],
    ['//a/?b', '/a/?b'],
  ]
  for (const [raw, want] of merged) t.equal(ok(raw, true), want, `merge ${raw}`)
  t.equal(ok('/a//b'), '/a//b', 'BASE does not merge slashes')
})

t.test('RFC 3986 dot-segment removal (section 5.2.4 and the examples of 5.4), on merged paths', async (t) => {
  // 5.2.4's two worked examples, and 5.4.1/5.4.2 references resolved against the base
  // path /b/c/d;p (each raw path is the base directory "/b/c/" plus the reference).
  const cases: ReadonlyArray<readonly [string, string]> = [
    ['/a/b/c/./../../g', '/a/g'],
    ['/mid/content=5/../6', '/mid/6'],
    ['/b/c/./g', '/b/c/g'],
    ['/b/c/g/', '/b/c/g/'],
    ['/b/c/.', '/b/c/'],
    ['/b/c/./', '/b/c/'],
    ['/b/c/..', '/b/'],
    ['/b/c/../', '/b/'],
    ['/b/c/../g', '/b/g'],
    ['/b/c/../..', '/'],
    ['/b/c/../../g', '/g'],
    ['/b/c/../../../g', '/g'],
    ['/b/c/../../../../g', '/g'],
    ['/./g', '/g'],
    ['/../g', '/g'],
    ['/b/c/g.', '/b/c/g.'],
    ['/b/c/.g', '/b/c/.g'],
    ['/b/c/g..', '/b/c/g..'],
    ['/b/c/..g', '/b/c/..g'],
    ['/b/c/./../g', '/b/g'],
    ['/b/c/./g/.', '/b/c/g/'],
    ['/b/c/g/./h', '/b/c/g/h'],
    ['/b/c/g/../h', '/b/c/h'],
    ['/b/c/g;x=1/./y', '/b/c/g;x=1/y'],
    ['/b/c/g;x=1/../y', '/b/c/y'],
    ['/b/c/g?y/./x', '/b/c/g?y/./x'],
    ['/b/c/g?y/../x', '/b/c/g?y/../x'],
    ['/b/c/g#s/./x', '/b/c/g'],
  ]
  for (const [raw, want] of cases) t.equal(ok(raw), want, raw)
})

t.test("Istio's normalization page (BASE)", async (t) => {
  // istio.io docs/reference/config/security/normalization: unreserved escapes are
  // decoded, %2f and %5c are not (only DECODE_AND_MERGE_SLASHES decodes them).
  t.equal(ok('/some%2fdata/%61%62%63'), '/some%2fdata/abc')
  t.equal(ok('/%2d%2D%2e%30%39%41%5a%5f%61%7a%7e%7E'), '/--.09AZ_az~~')
  t.equal(ok('/some\\data'), '/some/data', 'backslash')
  t.equal(ok('/public/./data/abc/../xyz'), '/public/data/xyz', 'dot segments')
  t.equal(ok('/some//data///abc', true), '/some/data/abc', 'MERGE_SLASHES')
  t.same(normalizePath('/foo?v=1'), { ok: true, path: '/foo?v=1', pathOnly: '/foo' }, 'query kept, not matched')
})

t.test('escapes and characters (Chromium url_canon_path.cc table)', async (t) => {
  const cases: ReadonlyArray<readonly [string, string, string]> = [
    ['/a%2eb', '/a.b', '%2e inside a name is decoded'],
    ['/a/%2e%2E/b', '/b', 'escaped double dot'],
    ['/a/%2e./b', '/b', 'mixed escaped dot'],
    ['/...', '/...', 'three dots are a name'],
    ['/a/.../b', '/a/.../b', 'three dots in the middle'],
    ['/%', '/%', 'lone percent kept'],
    ['/%2', '/%2', 'truncated escape kept'],
    ['/%zz', '/%zz', 'non-hex escape kept'],
    ['/%%41', '/%A', 'percent then a valid escape'],
    ['/%3a%3A%40', '/%3a%3A%40', 'reserved escapes kept with their case'],
    ['/%ff', '/%ff', 'high byte escape kept'],
    ['/a b', '/a%20b', 'space escaped'],
    ['/"<>^`{|}', '/%22%3C%3E%5E%60%7B%7C%7D', 'escaped printable characters'],
    ["/!$&'()*+,;=:@[]~_-", "/!$&'()*+,;=:@[]~_-", 'passed printable characters'],
    ['/\t\x7f', '/%09%7F', 'control characters'],
    ['/\u00e9', '/%E9', 'a byte above 0x7F (latin1 code unit)'],
    ['/\u20ac', '/%E2%82%AC', 'a code point above 0xFF is UTF-8 encoded'],
    ['/\u{1f600}', '/%F0%9F%98%80', 'astral code point'],
    ['/a\\..\\b', '/b', 'backslash separators around dots'],
    ['/a/b#frag', '/a/b', 'fragment stripped'],
    ['/a/b?q#frag', '/a/b?q', 'fragment stripped after the query'],
    ['/a#?q', '/a', 'fragment before a question mark'],
    ['/a?x=%2e%2e/../%00', '/a?x=%2e%2e/../%00', 'the query is never touched'],
    ['/', '/', 'root'],
    ['/..', '/', 'dot-dot at the root'],
    ['/.', '/', 'dot at the root'],
    ['/a/./', '/a/', 'trailing dot segment'],
  ]
  for (const [raw, want, name] of cases) t.equal(ok(raw), want, name)
  t.equal(ok('/a/%2F/../b'), '/a/b', '%2F is one opaque segment name')
})

t.test('rejections', async (t) => {
  const cases: ReadonlyArray<readonly [string, 400 | 404]> = [
    ['', 404],
    ['a/b/../c', 404],
    ['*', 404],
    ['http://example.com/a', 404],
    ['\\a', 404],
    ['/a\u0000b', 400],
    ['/a%00', 400],
    ['/\ud800x', 400],
  ]
  for (const [raw, status] of cases) {
    const r = normalizePath(raw)
    t.same(r.ok ? 'accepted' : r.status, status, JSON.stringify(raw))
    if (!r.ok) t.match(r.reason, JSON.stringify(raw).slice(1, -1) === '' ? /no path/ : /path/, 'reason names the path')
  }
  t.equal(normalizePath('/a%00?ok').ok, false, 'a bad path with a query')
  t.equal(normalizePath('/a?%00').ok, true, 'a NUL escape in the query is not checked')
})

t.test('normalizing twice changes nothing for ordinary paths', async (t) => {
  for (const raw of ['/a/./b/../c/%41%2f?x=1', '/x\\y/..;p/z', '/%7e%zz/']) {
    const once = ok(raw)
    t.equal(ok(once), once, raw)
  }
})
