// The waypoint's end-to-end cluster: two nodes; namespace shop is in the mesh and
// uses waypoint `shop/waypoint` (a Gateway of class istio-waypoint whose pod runs
// `ambient waypoint` on node1); a client on node1; two versions of web on node2 (pods webv1, webv2)
// behind services web (both), web-v1 and web-v2, each serving HTTP/1.1 on 8080
// and h2c on 8081; on webv1 also flaky (its first two requests fail) and slow
// (answers after 3 s). Extra objects (routes, policies) are given by the test.
import type { ChildProcess } from 'node:child_process'
import { AgentCluster, type ServiceSpec } from '../../testbed/agent-cluster.js'
import { startHttpServer } from '../../testbed/pod-clients.js'

export const WEB_VIP = '198.18.100.10'
export const WEB_V1_VIP = '198.18.100.11'
export const WEB_V2_VIP = '198.18.100.12'
export const WAYPOINT_VIP = '198.18.100.2'
export const FLAKY_VIP = '198.18.100.13'
export const SLOW_VIP = '198.18.100.14'

type Obj = Record<string, unknown> & { metadata: { name: string; namespace?: string; labels?: Record<string, string> } }

export const waypointGateway: Obj = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  metadata: { name: 'waypoint', namespace: 'shop', labels: { 'istio.io/waypoint-for': 'service' } },
  spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
}

const webPorts = [
  { name: 'http', port: 80, targetPort: 8080 },
  { name: 'http2', port: 81, targetPort: 8081, appProtocol: 'kubernetes.io/h2c' },
]

export const SERVICES: readonly ServiceSpec[] = [
  { name: 'web', namespace: 'shop', vip: WEB_VIP, ports: webPorts, selector: { app: 'web' } },
  { name: 'web-v1', namespace: 'shop', vip: WEB_V1_VIP, ports: webPorts, selector: { app: 'web', version: 'v1' } },
  { name: 'web-v2', namespace: 'shop', vip: WEB_V2_VIP, ports: webPorts, selector: { app: 'web', version: 'v2' } },
  // On webv1: a server that fails its first two requests (8082), and a slow one (8083).
  { name: 'flaky', namespace: 'shop', vip: FLAKY_VIP, ports: [{ name: 'http', port: 80, targetPort: 8082 }], selector: { app: 'web', version: 'v1' } },
  { name: 'slow', namespace: 'shop', vip: SLOW_VIP, ports: [{ name: 'http', port: 80, targetPort: 8083 }], selector: { app: 'web', version: 'v1' } },
  {
    name: 'waypoint',
    namespace: 'shop',
    vip: WAYPOINT_VIP,
    ports: [{ name: 'mesh', port: 15008, targetPort: 15008 }],
    selector: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' },
  },
]

export interface WaypointCluster {
  readonly cluster: AgentCluster
  readonly servers: ChildProcess[]
}

export async function startWaypointCluster(
  name: string,
  objects: readonly Obj[] = [],
  options: { readonly kube?: boolean; readonly logLevel?: string } = {},
): Promise<WaypointCluster> {
  const cluster = await AgentCluster.start({
    name,
    nodes: ['n1', 'n2'],
    kube: options.kube,
    logLevel: options.logLevel,
    namespaces: { shop: { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' } },
    pods: [
      { name: 'client', namespace: 'shop', node: 'n1', serviceAccount: 'client', labels: { app: 'client' } },
      { name: 'webv1', namespace: 'shop', node: 'n2', serviceAccount: 'web', labels: { app: 'web', version: 'v1' } },
      { name: 'webv2', namespace: 'shop', node: 'n2', serviceAccount: 'web', labels: { app: 'web', version: 'v2' } },
      {
        name: 'waypoint',
        namespace: 'shop',
        node: 'n1',
        serviceAccount: 'waypoint',
        labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'istio.io/dataplane-mode': 'none' },
      },
    ],
    services: SERVICES,
    policies: [waypointGateway, ...objects],
  })
  const servers: ChildProcess[] = []
  try {
    for (const version of ['v1', 'v2']) {
      const pod = cluster.pod(`web${version}`)
      servers.push(await startHttpServer(cluster.tb, pod, { port: 8080, name: `web-${version}` }))
      servers.push(await startHttpServer(cluster.tb, pod, { port: 8081, name: `web-${version}-h2c`, h2c: true }))
    }
    servers.push(await startHttpServer(cluster.tb, cluster.pod('webv1'), { port: 8082, name: 'flaky', failFirst: 2 }))
    servers.push(await startHttpServer(cluster.tb, cluster.pod('webv1'), { port: 8083, name: 'slow', delayMs: 3000 }))
    await cluster.startWaypoint('waypoint', 'shop/waypoint')
  } catch (err) {
    for (const s of servers) s.kill()
    await cluster.stop()
    throw err
  }
  return { cluster, servers }
}

export async function stopWaypointCluster(c: WaypointCluster): Promise<void> {
  for (const s of c.servers) s.kill()
  await c.cluster.stop()
}
