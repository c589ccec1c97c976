// Preloaded (node --import) by native/asan.test.ts: every use of the addon in this
// process loads the AddressSanitizer build instead of the release one, and the
// process says at exit whether that build was really mapped.
import { readFileSync } from 'node:fs'
import { ASAN_ADDON_PATH, useAddonPath } from '../index.js'

useAddonPath(ASAN_ADDON_PATH)
process.on('exit', () => {
  const mapped = readFileSync('/proc/self/maps', 'utf8').includes(ASAN_ADDON_PATH)
  process.stderr.write(`asan-addon: ${mapped ? 'mapped' : 'not mapped'} ${ASAN_ADDON_PATH}\n`)
})
