// Finds a pod's cgroup and network namespace on this node from its UID, for both
// kubelet cgroup drivers (cgroup v2):
//   cgroupfs: <root>/kubepods[/burstable|/besteffort]/pod<uid>/<container>
//   systemd:  <root>/kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid with _>.slice/<container>.scope
// The pod's network namespace is that of its longest-running process (the sandbox
// "pause" container, which lives as long as the pod), as /proc/<pid>/ns/net.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { AmbientError } from '../../common/errors.js'

export class PodNetnsError extends AmbientError<
  'AMBIENT_ERR_ENROLL_NO_CGROUP' | 'AMBIENT_ERR_ENROLL_NO_PROCESS' | 'AMBIENT_ERR_ENROLL_HOST_NETWORK' | 'AMBIENT_ERR_ENROLL_BAD_UID'
> {}

export interface PodNetns {
  readonly cgroup: string
  readonly pid: number
  readonly netnsPath: string
  /** Inode of the namespace: stable identity while the pod lives. */
  readonly netnsInode: bigint
}

const UID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function candidates(root: string, uid: string): string[] {
  const systemdUid = uid.replaceAll('-', '_')
  return [
    join(root, 'kubepods', `pod${uid}`),
    join(root, 'kubepods', 'burstable', `pod${uid}`),
    join(root, 'kubepods', 'besteffort', `pod${uid}`),
    join(root, 'kubepods.slice', `kubepods-pod${systemdUid}.slice`),
    join(root, 'kubepods.slice', 'kubepods-burstable.slice', `kubepods-burstable-pod${systemdUid}.slice`),
    join(root, 'kubepods.slice', 'kubepods-besteffort.slice', `kubepods-besteffort-pod${systemdUid}.slice`),
  ]
}

/** The pod's cgroup folder under `root` (the cgroup v2 mount), or null when it has none here. */
export function findPodCgroup(root: string, uid: string): string | null {
  if (!UID_RE.test(uid)) throw new PodNetnsError('AMBIENT_ERR_ENROLL_BAD_UID', `pod uid ${JSON.stringify(uid)} is not a Kubernetes UID`)
  return candidates(root, uid).find((dir) => existsSync(dir)) ?? null
}

/** Every pid in a cgroup subtree. */
function pidsUnder(dir: string): number[] {
  const pids: number[] = []
  const visit = (d: string, depth: number): void => {
    try {
      for (const line of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (line) pids.push(Number(line))
    } catch {
      // a container cgroup that just went away
    }
    if (depth > 4) return
    for (const entry of readdirSync(d, { withFileTypes: true })) if (entry.isDirectory()) visit(join(d, entry.name), depth + 1)
  }
  visit(dir, 0)
  return pids
}

function startTime(pid: number): number {
  // Field 22 of /proc/<pid>/stat, after the parenthesised command name.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19])
}

/** The inode of this process's network namespace (the node's), read once: the agent's main thread never changes namespace. */
let ownNetnsInode: bigint | undefined
function nodeNetnsInode(): bigint {
  ownNetnsInode ??= statSync('/proc/self/ns/net', { bigint: true }).ino
  return ownNetnsInode
}

export function podNetns(root: string, uid: string): PodNetns {
  const cgroup = findPodCgroup(root, uid)
  if (cgroup === null)
    throw new PodNetnsError(
      'AMBIENT_ERR_ENROLL_NO_CGROUP',
      `no cgroup for pod ${uid} under ${root} (looked for the cgroupfs and systemd kubelet layouts): is it scheduled on this node, and is --cgroup-root the cgroup v2 mount?`,
    )
  let oldest: { pid: number; start: number } | null = null
  for (const pid of pidsUnder(cgroup)) {
    try {
      const start = startTime(pid)
      if (oldest === null || start < oldest.start) oldest = { pid, start }
    } catch {
      // exited meanwhile
    }
  }
  if (oldest === null) throw new PodNetnsError('AMBIENT_ERR_ENROLL_NO_PROCESS', `pod ${uid} has no running process in ${cgroup} yet: its sandbox is not up`)
  const netnsPath = `/proc/${oldest.pid}/ns/net`
  const netnsInode = statSync(netnsPath, { bigint: true }).ino
  // The agent runs with hostNetwork: its own namespace is the node's.
  if (netnsInode === nodeNetnsInode()) {
    throw new PodNetnsError('AMBIENT_ERR_ENROLL_HOST_NETWORK', `pod ${uid} runs in the node's network namespace (hostNetwork): it is never enrolled`)
  }
  return { cgroup, pid: oldest.pid, netnsPath, netnsInode }
}
