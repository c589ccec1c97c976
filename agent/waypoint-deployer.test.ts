import t from 'tap'
import { silentLogger } from '../common/log.js'
import { KubeClient } from '../common/kube/kube-client.js'
import { loadClientNode } from '../common/kube/kube-config.js'
import { applyBatch, emptySnapshot, type Change } from '../common/model/snapshot.js'
import { FakeKubeApiServer } from '../testbed/kube-api-server.js'
import { RENDERED_ANNOTATION, WaypointDeployer } from './waypoint-deployer.js'

await loadClientNode()

const values = {
  IMAGE: 'ambient:test',
  CA_ADDRESS: 'ambient-ca.ambient-system.svc:15012',
  TRUST_DOMAIN: 'cluster.local',
  ROOT_NAMESPACE: 'ambient-system',
  CLUSTER_DOMAIN: 'cluster.local',
}
const gateway = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  metadata: { name: 'waypoint', namespace: 'shop', labels: { 'istio.io/waypoint-for': 'service' } },
  spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
}

async function setup(t: { teardown(fn: () => unknown): void }, writing = (): boolean => true, image = values.IMAGE) {
  const fake = await FakeKubeApiServer.start()
  t.teardown(() => fake.stop())
  const created = fake.create('Gateway', gateway)
  const client = KubeClient.for({ kind: 'server', server: fake.url, insecure: true })
  t.teardown(() => client.close())
  const deployer = new WaypointDeployer({ api: client, writing, values: { ...values, IMAGE: image }, log: silentLogger() })
  const upsert = (kind: 'Gateway', object: Record<string, unknown>): Change => ({
    type: 'upsert',
    resource: { kind, namespace: 'shop', name: 'waypoint', object },
  })
  const snapshot = applyBatch(emptySnapshot(), [upsert('Gateway', created)])
  return { fake, deployer, snapshot, created }
}

t.test('a waypoint Gateway gets its ServiceAccount, ClusterRoleBinding, Deployment and Service, owned by it', async (t) => {
  const { fake, deployer, snapshot, created } = await setup(t)
  await deployer.schedule(snapshot)
  const uid = (created.metadata as { uid: string }).uid
  const deployment = fake.get('Deployment', 'shop', 'waypoint') as any
  t.ok(deployment, 'the Deployment exists')
  t.same(
    deployment.metadata.ownerReferences.map((o: any) => [o.kind, o.name, o.uid]),
    [['Gateway', 'waypoint', uid]],
  )
  const container = deployment.spec.template.spec.containers[0]
  t.equal(container.image, 'ambient:test')
  t.match(container.args.join(' '), /waypoint --gateway shop\/waypoint/)
  t.equal(deployment.spec.template.metadata.labels['istio.io/dataplane-mode'], 'none', 'the waypoint itself is not captured')
  t.ok(fake.get('ServiceAccount', 'shop', 'waypoint'))
  t.ok(fake.get('ClusterRoleBinding', '', 'ambient-waypoint-shop-waypoint'))
  const service = fake.get('Service', 'shop', 'waypoint') as any
  t.match(service.spec.clusterIP, /^198\.18\.101\.\d+$/, 'the API server gave the Service a cluster IP')
  const gw = fake.get('Gateway', 'shop', 'waypoint') as any
  t.match(gw.status.conditions, [
    { type: 'Accepted', status: 'True' },
    { type: 'Programmed', status: 'False', reason: 'AddressNotAssigned' },
  ])

  // The next pass sees the Service (as the watch would deliver it): Programmed, with the address.
  const next = applyBatch(snapshot, [
    {
      type: 'upsert',
      resource: { kind: 'Service', value: { namespace: 'shop', name: 'waypoint', clusterIPs: [service.spec.clusterIP], ports: [], labels: {} } },
    },
    { type: 'upsert', resource: { kind: 'Gateway', namespace: 'shop', name: 'waypoint', object: gw } },
  ])
  const before = { ...fake.counts('deployments') }
  await deployer.schedule(next)
  const after = fake.get('Gateway', 'shop', 'waypoint') as any
  t.same(after.status.addresses, [{ type: 'IPAddress', value: service.spec.clusterIP }])
  t.match(after.status.conditions, [
    { type: 'Accepted', status: 'True' },
    { type: 'Programmed', status: 'True' },
  ])
  t.equal(fake.counts('deployments').patch, before.patch, 'an unchanged rendering is not written again')
  t.equal(fake.counts('deployments').create, before.create)
})

t.test('a changed rendering is patched, keeping what the server filled in; a removed Gateway loses its binding', async (t) => {
  const { fake, snapshot } = await setup(t)
  const first = new WaypointDeployer({
    api: KubeClient.for({ kind: 'server', server: fake.url, insecure: true }),
    writing: () => true,
    values,
    log: silentLogger(),
  })
  await first.schedule(snapshot)
  const ip = (fake.get('Service', 'shop', 'waypoint') as any).spec.clusterIP
  const hash = (fake.get('Deployment', 'shop', 'waypoint') as any).metadata.annotations[RENDERED_ANNOTATION]
  const upgraded = new WaypointDeployer({
    api: KubeClient.for({ kind: 'server', server: fake.url, insecure: true }),
    writing: () => true,
    values: { ...values, IMAGE: 'ambient:next' },
    log: silentLogger(),
  })
  await upgraded.schedule(snapshot)
  const deployment = fake.get('Deployment', 'shop', 'waypoint') as any
  t.equal(deployment.spec.template.spec.containers[0].image, 'ambient:next')
  t.not(deployment.metadata.annotations[RENDERED_ANNOTATION], hash)
  t.equal((fake.get('Service', 'shop', 'waypoint') as any).spec.clusterIP, ip, 'the cluster IP stays')
  await upgraded.schedule(applyBatch(snapshot, [{ type: 'delete', ref: { kind: 'Gateway', namespace: 'shop', name: 'waypoint' } }]))
  t.equal(fake.get('ClusterRoleBinding', '', 'ambient-waypoint-shop-waypoint'), undefined, 'the cluster-scoped binding is removed with its Gateway')
})

t.test('only the Lease holder writes; without an image nothing is deployed', async (t) => {
  const idle = await setup(t, () => false)
  await idle.deployer.schedule(idle.snapshot)
  t.equal(idle.fake.get('Deployment', 'shop', 'waypoint'), undefined)
  const noImage = await setup(t, () => true, '')
  await noImage.deployer.schedule(noImage.snapshot)
  t.equal(noImage.fake.get('Deployment', 'shop', 'waypoint'), undefined)
})
