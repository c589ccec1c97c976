// Preloaded with --import by bench/agent.ts --cpu-prof DIR (Node 20 refuses
// --cpu-prof in NODE_OPTIONS): profiles the whole process with V8's sampling
// profiler and writes DIR/<argv>-<pid>.cpuprofile when it exits (an in-thread
// inspector session answers synchronously, so this works from the 'exit' event).
// SIGUSR2 writes the profile so far (DIR/<argv>-<pid>-<n>.cpuprofile) and goes on:
// for a process that is about to be SIGKILLed.
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
  const name = (process.argv[2] ?? 'node').replace(/[^a-z0-9]+/gi, '_') + (process.argv[3] ? `-${process.argv[3]}` : '')
  const write = (suffix) =>
    session.post('Profiler.stop', (err, result) => {
      if (err) return
      writeFileSync(join(dir, `${name}-${process.pid}${suffix}.cpuprofile`), JSON.stringify(result.profile))
    })
  let snapshots = 0
  process.on('SIGUSR2', () => {
    write(`-${++snapshots}`)
    session.post('Profiler.start')
  })
  process.once('exit', () => write(''))
}
