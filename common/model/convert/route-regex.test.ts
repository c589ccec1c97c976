import t from 'tap'
import { compileRouteRegex } from './route-regex.js'

function matcher(source: string): (value: string) => boolean {
  const c = compileRouteRegex(source)
  if (!c.ok) throw new Error(c.message)
  return (v) => c.regex.test(v)
}

t.test('full match of the value, with RE2 spellings translated', async (t) => {
  const cases: ReadonlyArray<readonly [string, string, boolean]> = [
    ['/v[0-9]+', '/v12', true],
    ['/v[0-9]+', '/v12/extra', false],
    ['/v[0-9]+', 'x/v12', false],
    ['a|b', 'a', true],
    ['a|b', 'ab', false],
    ['(?i)firefox', 'Mozilla FIREFOX', false],
    ['(?i).*firefox.*', 'Mozilla FIREFOX', true],
    ['.*firefox.*', 'Mozilla FIREFOX', false],
    ['(?P<ver>v[0-9])/.*', 'v1/a', true],
    ['(?<ver>v[0-9])/.*', 'v1/a', true],
    ['\\A/api\\z', '/api', true],
    ['\\x{41}\\x{1F600}', 'A😀', true],
    ['\\pL+', 'héllo', true],
    ['\\pL+', 'h3llo', false],
    ['\\p{Lu}\\PL', 'A1', true],
    ['a\\-b\\_c\\@d', 'a-b_c@d', true],
    ['[\\-a]+', '-a-', true],
    ['[]a]+', ']a]', true],
    ['[^]a]', 'b', true],
    ['[^]a]', ']', false],
    ['\\d{2,3}', '123', true],
    ['\\.', '.', true],
    ['\\.', 'x', false],
    ['a.c', 'a\nc', false],
  ]
  for (const [source, value, expected] of cases) t.equal(matcher(source)(value), expected, `${source} on ${JSON.stringify(value)}`)
})

t.test('what has no equivalent is rejected by name', async (t) => {
  const cases: ReadonlyArray<readonly [string, RegExp]> = [
    ['(a)\\1', /backreferences are not supported/],
    ['(?<n>a)\\k<n>', /backreferences are not supported/],
    ['/(?=api)', /lookahead and lookbehind are not supported/],
    ['(?<!x)y', /lookahead and lookbehind/],
    ['a(?i)b', /inline flags are not supported, except \(\?i\) at the very start/],
    ['(?s:.)', /inline flags/],
    ['\\Q.*\\E', /\\Q...\\E quoting is not supported/],
    ['\\C', /\\C is not supported/],
    ['[[:alpha:]]+', /POSIX character classes/],
    ['\\x{zz}', /hexadecimal/],
    ['a\\', /lone backslash/],
    ['(a', /"\(a" is not a valid regular expression/],
    ['a{,3}', /is not a valid regular expression/],
    ['\\p{Greek}', /is not a valid regular expression/],
  ]
  for (const [source, message] of cases) {
    const c = compileRouteRegex(source)
    t.same(c.ok, false, source)
    if (!c.ok) t.match(c.message, message, `${source}: ${c.message}`)
  }
})
