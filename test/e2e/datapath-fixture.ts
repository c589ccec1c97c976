// Shared set-up of the datapath end-to-end tests: a testbed, the datapath loaded
// on node1's pods cgroup, and ztunnel's in-pod proxies for enrolled pods.
import { Datapath, netnsCookieOf } from '../../datapath/datapath.js'
import { DEFAULT_DELIVERY_MARK, DEFAULT_HBONE_PORT, DEFAULT_PROXY_MARK } from '../../datapath/abi.js'
import { BPF_OBJECTS_DIR } from '../../common/paths.js'
import { silentLogger } from '../../common/log.js'
import { PodProxy, type CapturedConnection, type ConnectionHandler, deliverToPod, passthroughOutbound, OUTBOUND_PORT } from '../../ztunnel/proxy/pod-proxy.js'
import type { Testbed } from '../../testbed/testbed.js'

export interface Captured {
  readonly direction: 'outbound' | 'inbound'
  readonly pod: string
  readonly source: string
  readonly destination: string
}

export function datapathSettings(tb: Testbed) {
  return { pinRoot: tb.pinRoot, objectsDir: BPF_OBJECTS_DIR, proxyMark: DEFAULT_PROXY_MARK, deliveryMark: DEFAULT_DELIVERY_MARK, hbonePort: DEFAULT_HBONE_PORT }
}

/** Records every connection the proxies capture, then hands it to the real handler. */
export class CaptureLog {
  readonly entries: Captured[] = []
  wrap(direction: Captured['direction'], handler: ConnectionHandler): ConnectionHandler {
    return (conn: CapturedConnection) => {
      this.entries.push({
        direction,
        pod: conn.pod.ip,
        source: `${conn.source.ip}:${conn.source.port}`,
        destination: `${conn.destination.ip}:${conn.destination.port}`,
      })
      return handler(conn)
    }
  }
  count(direction: Captured['direction'], pod?: string): number {
    return this.entries.filter((e) => e.direction === direction && (pod === undefined || e.pod === pod)).length
  }
}

export async function enrollWithProxy(datapath: Datapath, pod: { netnsPath: string; ip: string }, log: CaptureLog): Promise<PodProxy> {
  await datapath.enrollPod({ netnsPath: pod.netnsPath, ip: pod.ip, outboundPort: OUTBOUND_PORT })
  return startProxy(datapath, pod, log)
}

export async function startProxy(datapath: Datapath, pod: { netnsPath: string; ip: string }, log: CaptureLog): Promise<PodProxy> {
  const netnsCookie = await netnsCookieOf(pod.netnsPath)
  const { proxyMark, deliveryMark } = datapath.settings
  const proxy = new PodProxy({
    pod: { netnsPath: pod.netnsPath, ip: pod.ip, netnsCookie },
    proxyMark,
    deliveryMark,
    origins: {
      originalDestination: (p, source, redirectedTo) =>
        datapath.originalDestination({
          netnsCookie: p.netnsCookie,
          srcIp: source.ip,
          srcPort: source.port,
          dstIp: redirectedTo.ip,
          dstPort: redirectedTo.port,
        }),
    },
    listeners: datapath,
    log: silentLogger(),
    outbound: log.wrap('outbound', passthroughOutbound(proxyMark)),
    inbound: log.wrap('inbound', deliverToPod(deliveryMark)),
  })
  await proxy.start()
  return proxy
}
