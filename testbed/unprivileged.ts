// Runs a command from this checkout as an unprivileged user (nobody, no
// capabilities), wherever the checkout is. A clone in a private folder (mode 0700,
// as `mktemp -d` makes) cannot be read by nobody, so the command runs in a private
// mount namespace where a world-readable tmpfs at a fresh /tmp folder holds a bind
// mount of each top-level entry of the checkout: the same files, reachable. Nothing
// of it is visible outside that namespace; the folder is removed by remove().
import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'

/** Drops to nobody with no capabilities, inherited or bounding. */
export const SETPRIV_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all'] as const

const SCRIPT = `set -e
view=$1; repo=$2; shift 2
mount -t tmpfs -o mode=0755,size=1m ambient-view "$view"
for entry in "$repo"/* "$repo"/.[!.]*; do
  [ -e "$entry" ] || continue
  name=\${entry##*/}
  if [ -d "$entry" ]; then mkdir "$view/$name"; else : > "$view/$name"; fi
  mount --bind "$entry" "$view/$name"
done
cd "$view"
exec "$@"`

export interface UnprivilegedView {
  /** Where the checkout appears to the unprivileged command: build its paths from here. */
  readonly root: string
  /** The argv that runs `argv` as nobody, in the view (cwd = root). Spawn it as root. */
  command(argv: readonly string[]): string[]
  remove(): void
}

export function unprivilegedView(repoRoot: string): UnprivilegedView {
  // /tmp itself, not $TMPDIR: it must be traversable by nobody.
  const root = mkdtempSync(join('/tmp', 'ambient-view-'))
  return {
    root,
    command: (argv) => ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', SCRIPT, 'sh', root, repoRoot, ...SETPRIV_NOBODY, ...argv],
    remove: () => rmSync(root, { recursive: true, force: true }),
  }
}
