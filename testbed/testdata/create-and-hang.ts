// Builds a testbed, prints its prefix and waits to be killed (testbed.test.ts).
import { Testbed } from '../testbed.js'

const tb = await Testbed.create({ name: 'orphan', nodes: [{ name: 'n1', pods: ['a'] }] })
tb.spawnInPod(tb.pod('a'), 'sleep', ['60'])
console.log(tb.prefix)
setInterval(() => {}, 1000)
