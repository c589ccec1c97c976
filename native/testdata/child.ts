// Runs one native call in a separate process (unprivileged, or in a mount namespace
// without bpffs) for native/errors.test.ts, and prints its outcome as one JSON line:
// {"ok":true} or {"code","errno","syscall","message","name"}.
import { BpfMap, BpfObject, netnsCookie } from '../index.js'

async function main(action: string, args: string[]): Promise<void> {
  switch (action) {
    case 'load': {
      const obj = BpfObject.open(args[0]!, { pinRoot: args[1]! })
      try {
        obj.load()
      } finally {
        obj.close()
      }
      return
    }
    case 'open-pinned':
      BpfMap.openPinned(args[0]!).close()
      return
    case 'cookie':
      await netnsCookie(args[0]!)
      return
    default:
      throw new Error(`unknown action ${action}`)
  }
}

const [action = '', ...args] = process.argv.slice(2)
try {
  await main(action, args)
  console.log(JSON.stringify({ ok: true }))
} catch (err) {
  const e = err as Error & { code?: string; errno?: number; syscall?: string }
  console.log(JSON.stringify({ name: e.name, code: e.code, errno: e.errno, syscall: e.syscall, message: e.message }))
}
