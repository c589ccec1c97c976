// Where a process reads the cluster's configuration from, declared and parsed
// once for every process that reads it (the agent, the waypoint): a manifests
// folder (watched), a kubeconfig, an explicit API server URL, or, in a pod, the
// in-cluster service account. Both kinds give the same Snapshot.
import type { Command } from 'commander'
import { ConfigError } from './config.js'
import { kubeConnectionFromFlags } from './kube/kube-config.js'
import type { KubeConnection } from './kube/kube-client.js'
import { KubeSource } from './kube/kube-source.js'
import { ManifestsSource } from './local/manifests-source.js'
import type { Logger } from './log.js'

export type SourceConfig = { readonly kind: 'manifests'; readonly dir: string } | { readonly kind: 'kube'; readonly connection: KubeConnection }

export interface SourceFlags {
  readonly manifests?: string
  readonly kubeconfig?: string
  readonly context?: string
  readonly kubeServer?: string
  readonly kubeInsecure?: boolean
}

/** Adds the source flags to a command; `what` says which kinds the process reads. */
export function addSourceOptions(command: Command, what: string): Command {
  return command
    .option('--manifests <dir>', `read ${what} from YAML files in DIR (watched) instead of a cluster`)
    .option('--kubeconfig <file>', 'watch the Kubernetes API described by this kubeconfig')
    .option('--context <name>', 'kubeconfig context (default: its current-context)')
    .option('--kube-server <url>', 'watch the Kubernetes API at this URL (without a kubeconfig); in a pod the service account is used by default')
    .option('--kube-insecure', 'allow a plain http:// --kube-server or skip TLS verification (tests only)')
}

export function parseSourceConfig(flags: SourceFlags, env: NodeJS.ProcessEnv): SourceConfig {
  const given = [flags.manifests && '--manifests', flags.kubeconfig && '--kubeconfig', flags.kubeServer && '--kube-server'].filter(Boolean)
  if (given.length > 1) throw new ConfigError(given[1] as string, `give one source, not ${given.join(' and ')}`)
  if (flags.manifests) return { kind: 'manifests', dir: flags.manifests }
  const connection = kubeConnectionFromFlags(flags, env)
  if (connection !== null) return { kind: 'kube', connection }
  throw new ConfigError(
    '--manifests',
    'no configuration source: give --manifests DIR, --kubeconfig FILE or --kube-server URL, or run in a pod (KUBERNETES_SERVICE_HOST)',
  )
}

/** The source a config names; `nodeName` is this process's node (logs, pod annotations). */
export function createSource(config: SourceConfig, options: { readonly nodeName: string; readonly log: Logger }): KubeSource | ManifestsSource {
  if (config.kind === 'manifests') return new ManifestsSource({ dir: config.dir, logger: options.log.child({ component: 'manifests' }) })
  return new KubeSource({ connection: config.connection, nodeName: options.nodeName, logger: options.log.child({ component: 'kube' }) })
}
