import t from 'tap'
import { labelsKey, parseLabelList, parseLabelMap, selectorMatches } from './labels.js'

t.test('selector matching', async (t) => {
  const cases: ReadonlyArray<readonly [Record<string, string>, Record<string, string>, boolean]> = [
    [{}, {}, true],
    [{}, { app: 'web' }, true],
    [{ app: 'web' }, { app: 'web', v: '1' }, true],
    [{ app: 'web' }, { app: 'db' }, false],
    [{ app: 'web', v: '2' }, { app: 'web', v: '1' }, false],
    [{ app: 'web' }, {}, false],
    [{ app: '' }, {}, false],
  ]
  for (const [selector, labels, want] of cases) t.equal(selectorMatches(selector, labels), want, `${JSON.stringify(selector)} ~ ${JSON.stringify(labels)}`)
})

t.test('parsing', async (t) => {
  t.same(parseLabelList('app=web, version=v1,'), { app: 'web', version: 'v1' })
  t.same(parseLabelList('empty='), { empty: '' })
  t.throws(() => parseLabelList('novalue'), /not key=value/)
  t.same(parseLabelMap({ a: 'b', n: 1, t: true }), { ok: true, labels: { a: 'b', n: '1', t: 'true' } })
  t.same(parseLabelMap(null), { ok: true, labels: {} })
  t.equal(parseLabelMap(['a']).ok, false)
  t.equal(parseLabelMap({ a: { b: 1 } }).ok, false)
  t.equal(labelsKey({ b: '2', a: '1' }), 'a=1,b=2')
})
