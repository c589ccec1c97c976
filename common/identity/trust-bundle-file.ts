// The trust bundle as a file that changes under ztunnel: Istio mounts the mesh's
// roots (the istio-ca-root-cert ConfigMap) and rotates a root by first publishing
// old + new, then new alone. ztunnel re-reads the file when it changes and hands
// a bundle that parses to the IdentityManager; a bad file is logged and the
// roots in force stay.
import type { Logger } from '../log.js'
import { parseBundle } from './chain.js'
import { WatchedFiles } from './watched-files.js'

export class TrustBundleFile extends WatchedFiles<{ pem: string; roots: number }> {
  constructor(path: string, initialPem: string, apply: (pem: string) => void, log: Logger, intervalMs = 1000) {
    super(
      {
        what: 'trust bundle',
        kept: 'roots',
        paths: [path],
        parse: ([pem]) => ({ pem: pem!, roots: parseBundle(pem!, `trust bundle ${path}`).length }),
        apply: ({ pem }) => apply(pem),
        describe: ({ roots }) => ({ roots }),
      },
      [initialPem],
      log,
      intervalMs,
    )
  }
}
