// Where the repository's build output lives, wherever the CLI is started from.
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const BPF_OBJECTS_DIR = join(REPO_ROOT, 'build', 'bpf')
export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/ambient'
