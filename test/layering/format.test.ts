// Every TypeScript and JavaScript file is formatted as prettier (.prettierrc.json)
// writes it: `npm run format` fixes what this finds.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as prettier from 'prettier'

const ROOT = join(import.meta.dirname, '..', '..')

t.test('every source file is formatted', async (t) => {
  // Tracked and new (not ignored) files, as CI's clean clone has them.
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.ts', '*.js'], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((f) => f !== '' && existsSync(join(ROOT, f))) // a file deleted in the working tree is not checked
  t.ok(files.length > 100, `${files.length} files checked`)
  const unformatted: string[] = []
  for (const file of files) {
    const path = join(ROOT, file)
    const options = await prettier.resolveConfig(path)
    if (options === null) throw new Error(`no prettier configuration applies to ${file}`)
    if (!(await prettier.check(readFileSync(path, 'utf8'), { ...options, filepath: path }))) unformatted.push(file)
  }
  t.same(unformatted, [], 'run `npm run format` to format these')
})

t.test('the check notices an unformatted file', async (t) => {
  const options = await prettier.resolveConfig(join(ROOT, 'common', 'errors.ts'))
  t.notOk(await prettier.check('const a = {b:1};\n', { ...options!, filepath: 'x.ts' }))
  t.ok(await prettier.check('const a = { b: 1 }\n', { ...options!, filepath: 'x.ts' }))
})
