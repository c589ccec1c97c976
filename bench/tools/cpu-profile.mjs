// Preloaded with --import by bench/agent.ts --cpu-prof DIR (Node 20 refuses
// --cpu-prof in NODE_OPTIONS): profiles the whole process with V8's sampling
// profiler and writes DIR/<argv>-<pid>.cpuprofile when it exits (an in-thread
// inspector session answers synchronously, so this works from the 'exit' event).
import { Session } from 'node:inspector'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.env.AMBIENT_BENCH_CPU_PROF_DIR
if (dir) {
  const session = new Session()
  session.connect()
  session.post('Profiler.setSamplingInterval', { interval: 500 })
  session.post('Profiler.enable')
  session.post('Profiler.start')
  process.once('exit', () => {
    session.post('Profiler.stop', (err, result) => {
      if (err) return
      const name = (process.argv[2] ?? 'node').replace(/[^a-z0-9]+/gi, '_') + (process.argv[3] ? `-${process.argv[3]}` : '')
      writeFileSync(join(dir, `${name}-${process.pid}.cpuprofile`), JSON.stringify(result.profile))
    })
  })
}
