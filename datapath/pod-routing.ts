// In-pod routing that lets ztunnel deliver inbound connections to the application
// with the client's own source address (IP_TRANSPARENT delivery sockets): the
// application's replies carry ztunnel's mark (tcp_fwmark_accept) and a policy rule
// sends marked packets to a local route, so they come back to ztunnel's socket
// instead of leaving through eth0. Configured inside the pod's network namespace
// only; nothing on the node or its veths changes. Done over rtnetlink by the
// native addon from a thread that enters the namespace (a process per `ip`
// command paced the enrollment of many pods, and their release one by one).
import { podRouting, type NativeError } from '../native/index.js'
import { DatapathError } from './errors.js'

export const POD_ROUTE_TABLE = 133
const POD_RULE_PRIORITY = 100

function failure(netnsPath: string, action: string, err: NativeError): DatapathError {
  return new DatapathError('AMBIENT_ERR_DATAPATH_POD_ROUTING', `${action} pod routing in ${netnsPath} failed: ${err.message}`, { cause: err })
}

/** Idempotent: running it twice leaves one rule and one route. */
export async function configurePodRouting(netnsPath: string, mark: number): Promise<void> {
  const [err] = await podRouting([netnsPath], { mark, table: POD_ROUTE_TABLE, priority: POD_RULE_PRIORITY }, true)
  if (err) throw failure(netnsPath, 'configuring', err)
}

/** configurePodRouting for many pods in one trip through their namespaces: per path, null or the error. */
export async function configurePodsRouting(netnsPaths: readonly string[], mark: number): Promise<(DatapathError | null)[]> {
  const errors = await podRouting(netnsPaths, { mark, table: POD_ROUTE_TABLE, priority: POD_RULE_PRIORITY }, true)
  return errors.map((err, i) => (err ? failure(netnsPaths[i]!, 'configuring', err) : null))
}

/** Removes what configurePodRouting added; absent pieces (or a gone netns) are success. */
export async function removePodRouting(netnsPath: string, mark: number): Promise<void> {
  const [err] = await podRouting([netnsPath], { mark, table: POD_ROUTE_TABLE, priority: POD_RULE_PRIORITY }, false)
  if (err && err.code !== 'ENOENT' && !(err.code === 'EINVAL' && err.syscall === 'setns')) throw failure(netnsPath, 'removing', err)
}
