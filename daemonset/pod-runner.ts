// Runs a container of a manifest on the testbed the way a kubelet would, so that
// the manifest's own command, args, env, volume mounts and securityContext are what
// is tested: a private mount namespace with a root made of the machine's
// directories (read-only with readOnlyRootFilesystem) and a fresh /run; each
// volumeMount bind-mounted at its mountPath from a folder the test materialized for
// the volume (hostPath: a testbed equivalent; emptyDir: a temp folder; projected
// tokens and ConfigMaps: files from the fake API server); $(VAR) expanded from the
// container's env as the kubelet does; the user, group and capabilities of the
// securityContext applied with setpriv (capabilities as the bounding set: drop ALL,
// add only the listed ones); in a testbed cgroup. Not emulated: the pod's network
// and PID namespaces (the processes use the machine's; the node DaemonSet asks for
// hostNetwork and hostPID anyway), seccomp and image contents (the repository's
// CLI stands in for the image's `ambient`).
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { REPO_ROOT } from '../common/paths.js'
import type { Testbed } from '../testbed/testbed.js'

export interface ContainerSpec {
  readonly name: string
  readonly command?: readonly string[]
  readonly args?: readonly string[]
  readonly env?: readonly { readonly name: string; readonly value?: string; readonly valueFrom?: { readonly fieldRef?: { readonly fieldPath: string } } }[]
  readonly volumeMounts?: readonly { readonly name: string; readonly mountPath: string; readonly readOnly?: boolean }[]
  readonly securityContext?: {
    readonly readOnlyRootFilesystem?: boolean
    readonly allowPrivilegeEscalation?: boolean
    readonly runAsUser?: number
    readonly runAsGroup?: number
    readonly capabilities?: { readonly add?: readonly string[]; readonly drop?: readonly string[] }
  }
}

export interface PodSpec {
  readonly containers: readonly ContainerSpec[]
  readonly securityContext?: { readonly runAsUser?: number; readonly runAsGroup?: number; readonly fsGroup?: number }
}

export interface RunOptions {
  readonly tb: Testbed
  readonly cgroup: string
  readonly pod: PodSpec
  readonly container: string
  /** Volume name -> the host folder (or file) standing for it. */
  readonly volumes: Readonly<Record<string, string>>
  /** Values of the downward API fields the env refers to (`spec.nodeName`, `status.hostIP`...). */
  readonly fields: Readonly<Record<string, string>>
  /** What the kubelet adds: KUBERNETES_SERVICE_HOST/PORT. */
  readonly extraEnv: Readonly<Record<string, string>>
  /** A hosts file for /etc/hosts (the kubelet writes one; stands in for cluster DNS names). */
  readonly hostsFile?: string
}

/** The container's env: literal values and downward API fields; a field the test did not provide is an error. */
export function containerEnv(c: ContainerSpec, fields: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = {}
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = expand(e.value, env)
    else if (e.valueFrom?.fieldRef) {
      const value = fields[e.valueFrom.fieldRef.fieldPath]
      if (value === undefined) throw new Error(`container ${c.name}: env ${e.name} needs ${e.valueFrom.fieldRef.fieldPath}, which the test does not provide`)
      env[e.name] = value
    } else throw new Error(`container ${c.name}: env ${e.name} has a source the runner does not know`)
  }
  return env
}

/** The kubelet's $(VAR) expansion: defined variables are replaced, $$ escapes, others stay as written. */
export function expand(text: string, env: Readonly<Record<string, string>>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string | undefined) => (m === '$$' ? '$' : (env[name!] ?? m)))
}

const SCRIPT = `
set -eu
R="$1"; shift
mount -t tmpfs -o mode=755 ctr-root "$R"
for d in /*; do
  n=\${d#/}
  case "$n" in proc|sys|dev|run|tmp|lost+found) continue ;; esac
  if [ -L "$d" ]; then cp -P "$d" "$R/$n"
  elif [ -d "$d" ]; then
    mkdir "$R/$n"; mount --rbind "$d" "$R/$n"
    if [ "$RO" = 1 ]; then mount -o remount,bind,ro "$R/$n"; fi
  fi
done
for n in proc sys dev; do mkdir "$R/$n"; mount --rbind "/$n" "$R/$n"; done
mkdir "$R/run" "$R/tmp"
mount -t tmpfs -o mode=755 ctr-run "$R/run"
mount -t tmpfs -o mode=1777 ctr-tmp "$R/tmp"
# shadow DIR: DIR (a read-only bind of the machine's DIR) becomes a tmpfs holding binds
# of DIR's entries, so a mount point can be made in it, as a runtime makes one in the image.
shadow() {
  mount -t tmpfs -o mode=755 ctr-shadow "$R$1"
  for e in "$1"/* "$1"/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    b=\${e##*/}
    if [ -L "$e" ]; then cp -P "$e" "$R$1/$b"
    elif [ -d "$e" ]; then mkdir "$R$1/$b"; mount --rbind "$e" "$R$1/$b"
    else : > "$R$1/$b"; mount --bind "$e" "$R$1/$b"
    fi
  done
}
# ensure PATH KIND: makes the mount point (a dir, or a file with KIND=file).
ensure() {
  [ -e "$R$1" ] && return 0
  parent=\${1%/*}; [ -n "$parent" ] || parent=/
  ensure "$parent" dir
  if [ "$2" = dir ]; then mkdir "$R$1" 2>/dev/null || { shadow "$parent"; mkdir "$R$1"; }
  else : > "$R$1" 2>/dev/null || { shadow "$parent"; : > "$R$1"; }
  fi
}
while [ "$1" != "--" ]; do
  src="$1"; path="$2"; ro="$3"; shift 3
  target=$(chroot "$R" realpath -m "$path")
  if [ -d "$src" ]; then ensure "$target" dir; else ensure "$target" file; fi
  mount --bind "$src" "$R$target"
  if [ "$ro" = 1 ]; then mount -o remount,bind,ro "$R$target"; fi
done
shift
if [ "$RO" = 1 ]; then mount -o remount,ro "$R/run"; mount -o remount,ro "$R"; fi
exec chroot "$R" "$@"
`

/** Where the image installs the project (daemonset/Containerfile). */
const IMAGE_APP_DIR = '/opt/ambient'

/** Starts the container; its stdout/stderr are the child's. `root` is the (empty, once it exits) folder its root was mounted on. */
export function runContainer(o: RunOptions): { readonly child: ChildProcess; readonly root: string } {
  const c = o.pod.containers.find((x) => x.name === o.container)
  if (c === undefined) throw new Error(`no container ${o.container}`)
  const env = { ...containerEnv(c, o.fields), ...o.extraEnv }
  const command = [...(c.command ?? []), ...(c.args ?? [])].map((a) => expand(a, env))
  if (command[0] !== 'ambient') throw new Error(`container ${c.name} runs ${command[0]}, not the ambient CLI`)
  const mounts: string[] = []
  for (const m of c.volumeMounts ?? []) {
    const src = o.volumes[m.name]
    if (src === undefined) throw new Error(`container ${c.name} mounts volume ${m.name}, which the test did not materialize`)
    mounts.push(src, m.mountPath, m.readOnly ? '1' : '0')
  }
  if (o.hostsFile !== undefined) mounts.push(o.hostsFile, '/etc/hosts', '1')
  // The checkout stands in for the image's /opt/ambient (daemonset/Containerfile), read-only: the container sees
  // it where the image has it, wherever (and however privately) the repository was cloned.
  mounts.push(REPO_ROOT, IMAGE_APP_DIR, '1')
  const sc = c.securityContext ?? {}
  const user = sc.runAsUser ?? o.pod.securityContext?.runAsUser
  const group = sc.runAsGroup ?? o.pod.securityContext?.runAsGroup ?? user
  const fsGroup = o.pod.securityContext?.fsGroup
  const drop = sc.capabilities?.drop ?? []
  if (!drop.includes('ALL')) throw new Error(`container ${c.name}: the runner expects capabilities.drop [ALL]`)
  const caps = ['-all', ...(sc.capabilities?.add ?? []).map((cap) => `+${cap.toLowerCase()}`)].join(',')
  const setpriv = [
    'setpriv',
    ...(user !== undefined
      ? ['--reuid', String(user), '--regid', String(group ?? user), fsGroup !== undefined ? `--groups=${fsGroup}` : '--clear-groups']
      : []),
    ...(sc.allowPrivilegeEscalation === false ? ['--no-new-privs'] : []),
    '--bounding-set',
    caps,
    '--inh-caps',
    '-all',
    '--',
  ]
  const envv = Object.entries({ PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/', ...env }).map(([k, v]) => `${k}=${v}`)
  const argv = [...setpriv, 'env', '-i', ...envv, process.execPath, join(IMAGE_APP_DIR, 'bin', 'ambient.js'), ...command.slice(1)]
  const root = mkdtempSync(join(tmpdir(), 'ambient-ctr-'))
  const child = o.tb.spawnInCgroup(
    o.cgroup,
    'unshare',
    ['--mount', '--propagation', 'private', '--', 'sh', '-c', SCRIPT, 'sh', root, ...mounts, '--', ...argv],
    {
      env: { ...process.env, RO: sc.readOnlyRootFilesystem ? '1' : '0' },
    },
  )
  return { child, root }
}
