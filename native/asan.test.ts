// The native tests again, against the AddressSanitizer build of the addon
// (scripts/build-native.sh --asan) in a node that preloads gcc's libasan: the
// HBONE engine's interop tests and the map and netns tests. A sanitizer report,
// a crash or a failing assertion fails this test.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { join } from 'node:path'
import { REPO } from './testdata/fixtures.js'

const files = ['test/integration/native-hbone.test.ts', 'native/maps.test.ts', 'native/netns.test.ts']

execFileSync('bash', [join(REPO, 'scripts/build-native.sh'), '--asan'], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] })
const libasan = execFileSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim()

function run(file: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--import', './native/testdata/asan-addon.ts', file], {
      cwd: REPO,
      // Node itself is not instrumented: leaks of V8 and OpenSSL would drown the report.
      env: { ...process.env, LD_PRELOAD: libasan, ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1:halt_on_error=1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (d) => (output += d))
    child.stderr.on('data', (d) => (output += d))
    child.on('close', (code) => resolve({ code, output }))
  })
}

for (const file of files) {
  t.test(`${file} under AddressSanitizer`, async (t) => {
    const { code, output } = await run(file)
    t.notMatch(output, /ERROR: AddressSanitizer/, 'no sanitizer report')
    t.match(output, /asan-addon: mapped /, 'the sanitized addon was the one loaded')
    t.notMatch(output, /^not ok /m, 'every assertion passed')
    t.equal(code, 0, `exit code 0 (output tail: ${output.slice(-3000)})`)
  })
}
