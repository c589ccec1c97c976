// How @kubernetes/client-node 1.4's informer copes with the fake API server's faults
// (README "Why not client-node's informers"): an abrupt watch drop, a clean watch end,
// 410 Gone on the open watch, a delete, failing lists. The informer stops on every
// error; like any caller, this one restarts it (500 ms later) from its 'error' handler.
//   node --import tsx bench/kube-informers.ts
import { CoreV1Api, KubeConfig, makeInformer, type V1Pod } from '@kubernetes/client-node'
import { FakeKubeApiServer } from '../testbed/kube-api-server.js'

const fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 200 })
const kc = new KubeConfig()
kc.loadFromClusterAndUser({ name: 'fake', server: fake.url, skipTLSVerify: true }, { name: 'u' })
const core = kc.makeApiClient(CoreV1Api)
const informer = makeInformer<V1Pod>(kc, '/api/v1/pods', () => core.listPodForAllNamespaces())
const errors: string[] = []
informer.on('error', (err: unknown) => {
  errors.push(String((err as Error)?.message ?? err))
  setTimeout(() => informer.start().catch((e) => errors.push('restart: ' + e)), 500)
})
let n = 0
const pod = (): void => void fake.create('Pod', { metadata: { name: `p${n++}`, namespace: 'default' }, spec: { nodeName: 'n1' } })
pod()
await informer.start()
const seen = (): number => informer.list().length
const waitFor = async (what: string, want: number, ms = 10000): Promise<void> => {
  const t0 = Date.now()
  while (Date.now() - t0 < ms) {
    if (seen() === want)
      return void console.log(`${what}: ok after ${Date.now() - t0} ms (lists=${fake.counts('pods').list}, watches=${fake.counts('pods').watch})`)
    await new Promise((r) => setTimeout(r, 20))
  }
  console.log(`${what}: NOT RECOVERED in ${ms} ms: cache ${seen()} want ${want}; errors ${JSON.stringify(errors)}`)
}
await waitFor('initial list', 1)
pod()
await waitFor('watch event', 2)
fake.dropWatches()
pod()
await waitFor('after abrupt watch drop', 3)
fake.dropWatches({ graceful: true })
pod()
await waitFor('after graceful watch end', 4)
fake.compactHistory()
pod()
await waitFor('after 410 on the open watch', 5)
fake.delete('Pod', { metadata: { name: 'p0', namespace: 'default' } })
await waitFor('delete seen', 4)
fake.failNext('/api/v1/pods', 500, 3)
fake.dropWatches()
pod()
await waitFor('after drop + 3 failed lists', 5, 20000)
console.log('errors', JSON.stringify(errors))
await informer.stop()
await fake.stop()
process.exit(0)
