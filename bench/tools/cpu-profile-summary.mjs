// Summarizes a V8 .cpuprofile (from bench/agent.ts --cpu-prof DIR): the functions
// with the most self time, and the most total (inclusive) time, in ms.
//   node bench/tools/cpu-profile-summary.mjs FILE.cpuprofile [--top 30] [--match TEXT]
// --match keeps only functions whose name or url contains TEXT (e.g. a file name).
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '30' }, match: { type: 'string' } },
})
if (positionals.length !== 1) throw new Error('usage: cpu-profile-summary.mjs FILE.cpuprofile [--top N] [--match TEXT]')
const top = Number(values.top)
const profile = JSON.parse(readFileSync(positionals[0], 'utf8'))

const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
const parent = new Map()
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
// Sample i lasted timeDeltas[i + 1] µs (the last one: the mean).
const selfUs = new Map()
const deltas = profile.timeDeltas
let totalUs = 0
for (let i = 0; i < profile.samples.length; i++) {
  const us = i + 1 < deltas.length ? deltas[i + 1] : 0
  totalUs += us
  selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + us)
}

const label = (n) => {
  const f = n.callFrame
  const url = f.url
    ? f.url
        .replace(/^file:\/\//, '')
        .replace(/.*\/(node_modules\/)/, '$1')
        .replace(/.*\/wt\/[^/]+\//, '')
    : ''
  return `${f.functionName || '(anonymous)'} ${url}${url ? `:${f.lineNumber + 1}` : ''}`
}

const self = new Map()
const inclusive = new Map()
for (const [id, us] of selfUs) {
  const n = nodes.get(id)
  self.set(label(n), (self.get(label(n)) ?? 0) + us)
  // Each function once per stack (recursion counted once).
  const seen = new Set()
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const l = label(nodes.get(cur))
    if (seen.has(l)) continue
    seen.add(l)
    inclusive.set(l, (inclusive.get(l) ?? 0) + us)
  }
}

const show = (title, m) => {
  console.log(`\n${title}`)
  const rows = [...m].filter(([l]) => !values.match || l.includes(values.match)).sort((a, b) => b[1] - a[1])
  for (const [l, us] of rows.slice(0, top)) console.log(`${(us / 1000).toFixed(1).padStart(10)} ms  ${l}`)
}
console.log(`${positionals[0]}: ${(totalUs / 1000).toFixed(0)} ms sampled`)
show('self time', self)
show('total time (inclusive)', inclusive)
