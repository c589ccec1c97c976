import t from 'tap'
import type { PathModifier } from '../../common/model/http-route.js'
import { type RedirectSpec, type RouteRequest, authorityHost, modifyHeaders, modifyPath, pathHasPrefix, redirectLocation, rewriteRequest } from './request.js'

const req = (path: string, host = 'echo', extra: Partial<RouteRequest> = {}): RouteRequest => ({ method: 'GET', path, host, headers: {}, ...extra })

t.test('PathPrefix matches whole path elements', async (t) => {
  const cases: ReadonlyArray<readonly [string, string, boolean]> = [
    ['/foo', '/foo', true],
    ['/foo', '/foo/', true],
    ['/foo', '/foo/bar', true],
    ['/foo', '/foobar', false],
    ['/foo', '/fo', false],
    ['/foo', '/Foo', false],
    ['/', '/anything', true],
    ['/', '/', true],
    ['/foo/bar', '/foo/bar/baz', true],
    ['/foo/bar', '/foo/barn', false],
  ]
  for (const [prefix, path, expected] of cases) t.equal(pathHasPrefix(path, prefix), expected, `${prefix} on ${path}`)
})

t.test('ReplacePrefixMatch: the table in the spec (HTTPPathModifier.ReplacePrefixMatch)', async (t) => {
  const cases: ReadonlyArray<readonly [string, string, string, string]> = [
    // request path, prefix match, replace prefix, modified path
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'],
    ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/foo/bar', '/foo', '', '/bar'],
    ['/foo/', '/foo', '', '/'],
    ['/foo', '/foo', '', '/'],
    ['/foo/', '/foo', '/', '/'],
    ['/foo', '/foo', '/', '/'],
    // beyond the table
    ['/anything', '/', '/xyz', '/xyz/anything'],
    ['/anything', '/', '', '/anything'],
    ['/foo/bar', '/foo', 'xyz', '/xyz/bar'],
    ['/other', '/foo', '/xyz', '/other'],
  ]
  for (const [path, prefix, replacement, expected] of cases) {
    t.equal(
      modifyPath({ type: 'ReplacePrefixMatch', replacePrefixMatch: replacement }, path, prefix),
      expected,
      `${path} | ${prefix} | ${JSON.stringify(replacement)}`,
    )
  }
  t.equal(modifyPath({ type: 'ReplaceFullPath', replaceFullPath: '/new' }, '/foo/bar', '/foo'), '/new')
  t.equal(modifyPath({ type: 'ReplaceFullPath', replaceFullPath: '' }, '/foo/bar', '/'), '/')
})

t.test('header modifier: set, add, remove', async (t) => {
  const before = { 'my-header': 'foo', keep: ['a', 'b'], gone: 'x', multi: ['1', '2'] }
  const after = modifyHeaders(before, {
    set: [{ name: 'multi', value: 'one' }],
    add: [
      { name: 'my-header', value: 'bar,baz' },
      { name: 'keep', value: 'c' },
      { name: 'new', value: 'n' },
    ],
    remove: ['gone', 'absent'],
  })
  t.same(after, { 'my-header': ['foo', 'bar,baz'], keep: ['a', 'b', 'c'], multi: 'one', new: 'n' })
  t.same(before, { 'my-header': 'foo', keep: ['a', 'b'], gone: 'x', multi: ['1', '2'] }, 'the input is not changed')
})

t.test('URLRewrite keeps the query, replaces the authority', async (t) => {
  const prefix: PathModifier = { type: 'ReplacePrefixMatch', replacePrefixMatch: '/fennel' }
  t.same(
    rewriteRequest(req('/cardamom/smidgen?x=1&y', 'rewrite.example'), 'elsewhere.example', prefix, '/cardamom'),
    req('/fennel/smidgen?x=1&y', 'elsewhere.example'),
  )
  t.same(
    rewriteRequest(req('/cardamom/smidgen', 'rewrite.example:8080'), null, { type: 'ReplaceFullPath', replaceFullPath: '/fennel' }, '/'),
    req('/fennel', 'rewrite.example:8080'),
  )
  t.same(rewriteRequest(req('/a', 'h'), 'h2', null, '/'), req('/a', 'h2'))
})

t.test('authority host', async (t) => {
  t.equal(authorityHost('echo'), 'echo')
  t.equal(authorityHost('echo:8080'), 'echo')
  t.equal(authorityHost('[fd00::1]:8080'), '[fd00::1]')
  t.equal(authorityHost('[fd00::1]'), '[fd00::1]')
})

t.test('redirect Location, by the spec rules and its examples', async (t) => {
  const none: RedirectSpec = { scheme: null, hostname: null, path: null, port: null }
  const full = (p: string): PathModifier => ({ type: 'ReplaceFullPath', replaceFullPath: p })
  const pre = (p: string): PathModifier => ({ type: 'ReplacePrefixMatch', replacePrefixMatch: p })
  const cases: ReadonlyArray<readonly [string, Partial<RedirectSpec>, RouteRequest, number, string, string]> = [
    // name, filter, request, listener (service) port, rule prefix, Location
    ['nothing changed', {}, req('/a'), 80, '/', 'http://echo/a'],
    // "GET http://redirect.example/cinnamon will result in a 301 response with a location: https://redirect.example/cinnamon"
    ['guide: http to https', { scheme: 'https' }, req('/cinnamon', 'redirect.example'), 80, '/', 'https://redirect.example/cinnamon'],
    // "https://redirect.example/cayenne/pinch ... location: https://redirect.example/paprika"
    [
      'guide: full path',
      { path: full('/paprika') },
      req('/cayenne/pinch', 'redirect.example', { scheme: 'https' }),
      443,
      '/cayenne',
      'https://redirect.example/paprika',
    ],
    // "... location: https://redirect.example/paprika/pinch"
    [
      'guide: prefix',
      { path: pre('/paprika') },
      req('/cayenne/pinch', 'redirect.example', { scheme: 'https' }),
      443,
      '/cayenne',
      'https://redirect.example/paprika/pinch',
    ],
    [
      'guide: prefix, other element',
      { path: pre('/paprika') },
      req('/cayenne/teaspoon', 'redirect.example', { scheme: 'https' }),
      443,
      '/cayenne',
      'https://redirect.example/paprika/teaspoon',
    ],
    // the mesh conformance tests (conformance/tests/mesh/httproute-redirect-*.go), Service port 80
    ['mesh: hostname', { hostname: 'example.org' }, req('/hostname-redirect'), 80, '/hostname-redirect', 'http://example.org/hostname-redirect'],
    ['mesh: port', { port: 8083 }, req('/port'), 80, '/port', 'http://echo:8083/port'],
    ['mesh: port and host', { hostname: 'example.org', port: 8083 }, req('/port-and-host'), 80, '/port-and-host', 'http://example.org:8083/port-and-host'],
    ['mesh: scheme', { scheme: 'https' }, req('/scheme'), 80, '/scheme', 'https://echo/scheme'],
    [
      'mesh: scheme and host',
      { scheme: 'https', hostname: 'example.org' },
      req('/scheme-and-host'),
      80,
      '/scheme-and-host',
      'https://example.org/scheme-and-host',
    ],
    ['mesh: prefix', { path: pre('/replacement-prefix') }, req('/original-prefix/lemon'), 80, '/original-prefix', 'http://echo/replacement-prefix/lemon'],
    ['mesh: full path', { path: full('/full-path-replacement') }, req('/full/path/original'), 80, '/full', 'http://echo/full-path-replacement'],
    [
      'mesh: path and host',
      { hostname: 'example.org', path: pre('/replacement-prefix') },
      req('/path-and-host'),
      80,
      '/path-and-host',
      'http://example.org/replacement-prefix',
    ],
    // port derivation and elision
    ['no scheme: the listener port', {}, req('/a', 'echo:8080'), 8080, '/', 'http://echo:8080/a'],
    ['no scheme: the listener port, not the Host port', {}, req('/a', 'echo'), 8080, '/', 'http://echo:8080/a'],
    ['scheme http: port 80, elided', { scheme: 'http' }, req('/a', 'echo:8080'), 8080, '/', 'http://echo/a'],
    ['scheme https: port 443, elided', { scheme: 'https' }, req('/a', 'echo:8080'), 8080, '/', 'https://echo/a'],
    ['scheme https, port 8443', { scheme: 'https', port: 8443 }, req('/a'), 80, '/', 'https://echo:8443/a'],
    ['scheme http, explicit port 80', { scheme: 'http', port: 80 }, req('/a'), 8080, '/', 'http://echo/a'],
    ['scheme https, explicit port 80 kept', { scheme: 'https', port: 80 }, req('/a'), 80, '/', 'https://echo:80/a'],
    ['request https on 443', {}, req('/a', 'echo', { scheme: 'https' }), 443, '/', 'https://echo/a'],
    ['request https on 80 keeps the port', {}, req('/a', 'echo', { scheme: 'https' }), 80, '/', 'https://echo:80/a'],
    ['scheme http from https, port 443 from the listener is not used', { scheme: 'http' }, req('/a', 'echo', { scheme: 'https' }), 443, '/', 'http://echo/a'],
    ['Host port replaced', { port: 9090 }, req('/a', 'echo:8080'), 8080, '/', 'http://echo:9090/a'],
    ['IPv6 authority', {}, req('/a', '[fd00::1]:8080'), 8080, '/', 'http://[fd00::1]:8080/a'],
    ['query kept', {}, req('/a?x=1&y=%20'), 80, '/', 'http://echo/a?x=1&y=%20'],
    ['query kept with a new path', { path: full('/b') }, req('/a?x=1'), 80, '/', 'http://echo/b?x=1'],
  ]
  for (const [name, filter, request, listenerPort, prefix, location] of cases) {
    t.equal(redirectLocation({ ...none, ...filter }, request, listenerPort, prefix), location, name)
  }
})
