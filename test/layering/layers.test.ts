import t from 'tap'
import { join } from 'node:path'
import { importsOf, relativeImports, violations } from './layers.js'

const ROOT = join(import.meta.dirname, '..', '..')

t.test('no process imports another, libraries import only libraries', async (t) => {
  const imports = relativeImports(ROOT)
  // The scanner sees the imports it must judge (it cannot pass by finding none).
  t.ok(
    imports.some((i) => i.from === 'agent/main.ts' && i.to === 'common/log.js'),
    'agent/main.ts -> common/log.js is seen',
  )
  t.ok(
    imports.some((i) => i.from === 'bin/ambient.js' && i.to === 'cli/main.ts'),
    'dynamic import in bin/ambient.js is seen',
  )
  const bad = violations(imports).map((i) => `${i.from} imports ${i.specifier}`)
  t.same(bad, [], 'no forbidden import')
})

t.test('a forbidden import is reported', async (t) => {
  const source = [
    "import { x } from '../agent/model/workload.js'",
    "import type { Y } from '../ztunnel/state/y.js'",
    "export { z } from '../datapath/abi.js'",
    "const m = await import('../cli/main.js')",
    "import { ok } from './local.js'",
    "import '../common/log.js'",
  ].join('\n')
  const found = importsOf('/r', '/r/ca/sub/file.ts', source)
  t.same(
    found.map((i) => i.to),
    ['ca/agent/model/workload.js', 'ca/ztunnel/state/y.js', 'ca/datapath/abi.js', 'ca/cli/main.js', 'ca/sub/local.js', 'ca/common/log.js'],
  )
  const fromCa = importsOf('/r', '/r/ca/file.ts', source)
  t.same(
    violations(fromCa).map((i) => i.to),
    ['agent/model/workload.js', 'ztunnel/state/y.js', 'datapath/abi.js', 'cli/main.js'],
    'ca may import only common',
  )
  t.same(violations(importsOf('/r', '/r/common/a.ts', "import { D } from '../datapath/abi.js'")).length, 1, 'common may not import datapath')
  t.same(violations(importsOf('/r', '/r/test/e2e/a.ts', "import { D } from '../../agent/main.js'")).length, 0, 'tests may import anything')
  t.same(violations(importsOf('/r', '/r/agent/a.ts', "import { D } from '../test/fakes/x.js'")).length, 1, 'processes may not import tests')
  t.same(violations(importsOf('/r', '/r/agent/a.test.ts', "import { D } from '../testbed/x.js'")).length, 0, 'a unit test may import the testbed')
  t.same(violations(importsOf('/r', '/r/agent/a.test.ts', "import { D } from '../ztunnel/x.js'")).length, 1, 'a unit test may not import another process')
})
