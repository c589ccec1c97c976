import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { silentLogger } from '../log.js'
import { createRootCa } from './pki.js'
import { TrustBundleFile } from './trust-bundle-file.js'

t.test('a changed bundle file is applied once; a bad one is refused and the roots stay', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bundle-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const oldRoot = createRootCa({ commonName: 'old' }).certPem
  const newRoot = createRootCa({ commonName: 'new' }).certPem
  const path = join(dir, 'root-cert.pem')
  writeFileSync(path, oldRoot)
  const applied: string[] = []
  const file = new TrustBundleFile(path, oldRoot, (pem) => applied.push(pem), silentLogger(), 20)
  t.equal(file.reload(), false, 'unchanged: nothing applied')
  writeFileSync(path, oldRoot + newRoot)
  t.equal(file.reload(), true)
  t.same(applied, [oldRoot + newRoot], 'old + new roots, as a rotation publishes them')
  writeFileSync(path, 'not a certificate')
  t.equal(file.reload(), false, 'garbage is refused')
  rmSync(path)
  t.equal(file.reload(), false, 'a missing file is refused')
  writeFileSync(path, oldRoot + newRoot)
  file.start()
  await new Promise((r) => setTimeout(r, 100))
  writeFileSync(path, newRoot)
  const deadline = Date.now() + 5000
  while (applied.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  file.stop()
  t.same(applied, [oldRoot + newRoot, newRoot], 'the watcher applies the new root alone')
})
