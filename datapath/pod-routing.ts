// In-pod routing that lets ztunnel deliver inbound connections to the application
// with the client's own source address (IP_TRANSPARENT delivery sockets): the
// application's replies carry ztunnel's mark (tcp_fwmark_accept) and a policy rule
// sends marked packets to a local route, so they come back to ztunnel's socket
// instead of leaving through eth0. Configured inside the pod's network namespace
// only; nothing on the node or its veths changes.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { DatapathError } from './errors.js'

const run = promisify(execFile)
export const POD_ROUTE_TABLE = 133

async function inNetns(netnsPath: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run('nsenter', [`--net=${netnsPath}`, '--', ...args], { timeout: 10_000 })
    return stdout
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim() ?? ''
    throw new DatapathError(
      'AMBIENT_ERR_DATAPATH_POD_ROUTING',
      `configuring pod routing in ${netnsPath} failed running ${args.join(' ')}: ${stderr || String(err)}`,
      { cause: err },
    )
  }
}

/** Idempotent: running it twice leaves one rule and one route. One process per pod: enrollment of many pods is bounded by it. */
export async function configurePodRouting(netnsPath: string, mark: number): Promise<void> {
  const markHex = `0x${mark.toString(16)}`
  const table = String(POD_ROUTE_TABLE)
  const script = [
    'echo 1 > /proc/sys/net/ipv4/tcp_fwmark_accept',
    `{ ip -4 rule show | grep -q "fwmark ${markHex} lookup ${table}" || ip -4 rule add fwmark ${markHex} lookup ${table} priority 100; }`,
    `ip -4 route replace local 0.0.0.0/0 dev lo table ${table}`,
  ].join(' && ')
  await inNetns(netnsPath, ['sh', '-c', script])
}

/** Removes what configurePodRouting added; absent pieces (or a gone netns) are success. */
export async function removePodRouting(netnsPath: string, mark: number): Promise<void> {
  const markHex = `0x${mark.toString(16)}`
  try {
    const rules = await inNetns(netnsPath, ['ip', '-4', 'rule', 'show'])
    if (rules.includes(`fwmark ${markHex} lookup ${POD_ROUTE_TABLE}`)) {
      await inNetns(netnsPath, ['ip', '-4', 'rule', 'del', 'fwmark', markHex, 'lookup', String(POD_ROUTE_TABLE)])
    }
    await inNetns(netnsPath, ['ip', '-4', 'route', 'flush', 'table', String(POD_ROUTE_TABLE)])
  } catch (err) {
    if (/No such file|Invalid argument|cannot open|reassociate/i.test(String((err as Error).message))) return
    throw err
  }
}
