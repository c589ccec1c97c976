// Which top-level folder may import which. Processes (agent, ztunnel, waypoint, ca)
// never import each other; libraries import only libraries below them; the CLI
// wires processes together; tests, benchmarks and scripts may import anything.
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'

export const PROCESSES = ['agent', 'ztunnel', 'waypoint', 'ca'] as const
export const LIBRARIES = ['native', 'common', 'datapath', 'testbed'] as const

/** Top-level folder -> the folders its files may import (itself always). */
export const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  native: [],
  common: [],
  datapath: ['common', 'native'],
  testbed: ['common', 'native', 'datapath'],
  agent: ['common', 'native', 'datapath'],
  ztunnel: ['common', 'native', 'datapath'],
  waypoint: ['common', 'native', 'datapath'],
  ca: ['common'],
  cli: ['common', 'native', 'datapath', 'testbed', ...PROCESSES],
  bin: ['cli'],
}

/** Folders whose files may import anything in the repository (daemonset/: manifests and the tests that run them). */
export const UNRESTRICTED = ['test', 'bench', 'scripts', 'daemonset'] as const

/** What a unit test (`*.test.ts`) beside the code may import besides what its folder may: fakes and the testbed. */
export const TEST_EXTRAS = ['testbed', 'test'] as const

export interface Import {
  readonly from: string
  readonly to: string
  readonly specifier: string
}

const SKIP = new Set(['node_modules', 'build', 'third_party', '.git', '.tap'])
const IMPORT_RE = /(?:^|[^.\w])(?:import|export)\s*(?:[^'"`;]*?\sfrom\s*)?\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g

/** Every relative import of every .ts/.js file under `root`, as repository paths. */
export function relativeImports(root: string): Import[] {
  const found: Import[] = []
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (SKIP.has(entry.name)) continue
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (/\.(ts|js|mjs)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) found.push(...importsOf(root, path, readFileSync(path, 'utf8')))
    }
  }
  walk(root)
  return found
}

export function importsOf(root: string, file: string, source: string): Import[] {
  const from = relative(root, file)
  return [...source.matchAll(IMPORT_RE)].map((m) => ({ from, to: normalize(join(dirname(from), m[1]!)), specifier: m[1]! }))
}

const top = (path: string): string => path.split('/')[0]!

/** The imports that cross a boundary the table above does not allow. */
export function violations(imports: readonly Import[]): Import[] {
  return imports.filter(({ from, to }) => {
    const a = top(from)
    const b = top(to)
    if (a === b || (UNRESTRICTED as readonly string[]).includes(a)) return false
    if (to.startsWith('..')) return true
    const allowed = ALLOWED[a]
    if (allowed === undefined) return true
    return !allowed.includes(b) && !(from.endsWith('.test.ts') && (TEST_EXTRAS as readonly string[]).includes(b))
  })
}
