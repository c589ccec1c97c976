// Pod cgroup and netns discovery against real cgroups laid out like the kubelet's
// two drivers, with real processes inside testbed network namespaces.
import t from 'tap'
import { mkdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Testbed } from '../../testbed/testbed.js'
import { findPodCgroup, podNetns } from './pod-netns.js'

const tb = await Testbed.create({ name: 'podnetns', nodes: [{ name: 'n1', pods: ['a', 'b'] }] })
t.teardown(() => tb.destroy())
const root = join(tb.node('n1').cgroup, 'kubelet')

function sandbox(cgroup: string, netnsPath: string): void {
  mkdirSync(cgroup, { recursive: true })
  tb.spawnInCgroup(cgroup, 'nsenter', [`--net=${netnsPath}`, '--', 'sleep', '60'])
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 20))
}

t.test('cgroupfs and systemd layouts, every QoS class', async (t) => {
  const cases = [
    { uid: '11111111-2222-3333-4444-555555555555', dir: 'kubepods/burstable/pod11111111-2222-3333-4444-555555555555/abc123', pod: 'a' },
    {
      uid: '66666666-7777-8888-9999-000000000000',
      dir: 'kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod66666666_7777_8888_9999_000000000000.slice/cri-containerd-def.scope',
      pod: 'b',
    },
    {
      uid: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
      dir: 'kubepods.slice/kubepods-podaaaaaaaa_bbbb_cccc_dddd_eeeeeeeeeeee.slice/cri-containerd-fed.scope',
      pod: 'a',
    },
  ]
  for (const c of cases) {
    sandbox(join(root, c.dir), tb.pod(c.pod).netnsPath)
    await until(() => {
      try {
        podNetns(root, c.uid)
        return true
      } catch {
        return false
      }
    })
    const found = podNetns(root, c.uid)
    t.equal(found.cgroup, join(root, c.dir, '..'), `${c.uid}: the pod cgroup`)
    t.equal(found.netnsInode, statSync(tb.pod(c.pod).netnsPath, { bigint: true }).ino, `${c.uid}: the pod's own network namespace`)
  }
})

t.test('clear errors: unknown pod, no process yet, host network, bad uid', async (t) => {
  t.equal(findPodCgroup(root, '12345678-1234-1234-1234-123456789012'), null)
  t.throws(() => podNetns(root, '12345678-1234-1234-1234-123456789012'), {
    code: 'AMBIENT_ERR_ENROLL_NO_CGROUP',
    message: /no cgroup for pod 12345678-1234-1234-1234-123456789012/,
  })
  mkdirSync(join(root, 'kubepods', 'pod99999999-9999-9999-9999-999999999999'), { recursive: true })
  t.throws(() => podNetns(root, '99999999-9999-9999-9999-999999999999'), { code: 'AMBIENT_ERR_ENROLL_NO_PROCESS' })
  const hostUid = '88888888-8888-8888-8888-888888888888'
  const hostDir = join(root, 'kubepods', `pod${hostUid}`, 'c1')
  mkdirSync(hostDir, { recursive: true })
  tb.spawnInCgroup(hostDir, 'sleep', ['60'])
  await until(() => {
    try {
      podNetns(root, hostUid)
      return false
    } catch (e) {
      return (e as { code: string }).code === 'AMBIENT_ERR_ENROLL_HOST_NETWORK'
    }
  })
  t.throws(() => podNetns(root, hostUid), { code: 'AMBIENT_ERR_ENROLL_HOST_NETWORK', message: /hostNetwork/ })
  t.throws(() => findPodCgroup(root, '../etc'), { code: 'AMBIENT_ERR_ENROLL_BAD_UID' })
})
