// The waypoint end to end on the testbed: client pod -> its ztunnel (node1) -> the
// waypoint (its own process in its own pod) -> the destination's ztunnel (node2) ->
// web. Routing by path and header, weights, a header added, a redirect, a retry
// after a failing backend, a timeout, a 403 for a denied method, metrics, the trace
// header, a bypass attempt straight to a pod, a malformed route, and garbage inside
// a tunnel.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { formatAuthority } from '../../common/hbone/headers.js'
import { HbonePool } from '../../common/hbone/pool.js'
import { createIdentityContext } from '../../common/hbone/tls.js'
import { generateKeyPair, issueLeaf } from '../../common/identity/pki.js'
import { forwardToPod } from '../../testbed/forward.js'
import { connectMany, httpRequests } from '../../testbed/pod-clients.js'
import { startWaypointCluster, stopWaypointCluster, WEB_VIP } from './waypoint-fixture.js'

const route = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name: 'web-routes', namespace: 'shop' },
  spec: {
    parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
    rules: [
      {
        matches: [{ path: { type: 'PathPrefix', value: '/v2' } }],
        filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'x-route', value: 'v2-by-path' }] } }],
        backendRefs: [{ name: 'web-v2', port: 80 }],
      },
      { matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }], backendRefs: [{ name: 'web-v2', port: 80 }] },
      {
        matches: [{ path: { type: 'Exact', value: '/old' } }],
        filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplaceFullPath', replaceFullPath: '/new' }, statusCode: 301 } }],
      },
      {
        matches: [{ path: { type: 'PathPrefix', value: '/flaky' } }],
        backendRefs: [{ name: 'flaky', port: 80 }],
        retry: { attempts: 3, codes: [503], backoff: '10ms' },
      },
      { matches: [{ path: { type: 'PathPrefix', value: '/slow' } }], backendRefs: [{ name: 'slow', port: 80 }], timeouts: { request: '500ms' } },
      {
        matches: [{ path: { type: 'PathPrefix', value: '/' } }],
        backendRefs: [
          { name: 'web-v1', port: 80, weight: 80 },
          { name: 'web-v2', port: 80, weight: 20 },
        ],
      },
    ],
  },
}
const brokenRoute = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name: 'broken', namespace: 'shop' },
  spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ matches: [{ path: { type: 'Glob', value: '/x*' } }] }] },
}
const denyDelete = {
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'no-delete', namespace: 'shop' },
  spec: {
    targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }],
    action: 'DENY',
    rules: [{ to: [{ operation: { methods: ['DELETE'] } }] }],
  },
}
// Istio's recommended lock-down: web takes connections only from its waypoint, so going around it fails at L4.
const onlyFromWaypoint = {
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'web-via-waypoint', namespace: 'shop' },
  spec: { selector: { matchLabels: { app: 'web' } }, action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/waypoint'] } }] }] },
}

/** The fixture server's JSON echo of the request it got; a response that is not one fails naming what came instead. */
function body(o: { status: number; body: string; error?: string }): { name: string; path: string; headers: Record<string, string> } {
  try {
    return JSON.parse(o.body)
  } catch {
    throw new Error(`not the server's echo: status ${o.status}, body ${JSON.stringify(o.body)}${o.error ? `, error ${o.error}` : ''}`)
  }
}

t.test('a request to a service with a waypoint goes through it, HTTP/1.1 and h2c', async (t) => {
  const c = await startWaypointCluster('wp-basic')
  t.teardown(() => stopWaypointCluster(c))
  const client = c.cluster.pod('client')
  const h1 = await httpRequests(c.cluster.tb, client, `${WEB_VIP}:80`, { path: '/hello?x=1', count: 6 })
  t.same(h1.byStatus, { '200': 6 }, JSON.stringify(h1.outcomes[0]))
  const seen = body(h1.outcomes[0]!)
  t.equal(seen.path, '/hello?x=1')
  t.match(seen.name, /^web-v[12]$/, 'no route bound: the addressed service')
  t.match(seen.headers.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, 'a traceparent is started and arrives at the server')
  const h2 = await httpRequests(c.cluster.tb, client, `${WEB_VIP}:81`, { path: '/grpc-ish', count: 3, h2c: true })
  t.same(h2.byStatus, { '200': 3 }, JSON.stringify(h2.outcomes[0]))
  t.match(body(h2.outcomes[0]!), { name: /^web-v[12]-h2c$/, path: '/grpc-ish' })
  const metrics = await (await fetch(`http://127.0.0.1:${c.cluster.waypoints.get('shop/waypoint')!.metrics.port}/metrics`)).text()
  t.match(
    metrics,
    /istio_requests_total\{reporter="waypoint",source_workload="client",source_workload_namespace="shop",source_principal="spiffe:\/\/cluster.local\/ns\/shop\/sa\/client"/,
  )
  t.match(metrics, /ambient_waypoint_active_streams\{protocol="h2c"\}/)
})

t.test('HTTP through the waypoint: routes, filters, retries, timeouts, policy, telemetry', async (t) => {
  const c = await startWaypointCluster('wp-routes', [route, brokenRoute, denyDelete, onlyFromWaypoint])
  t.teardown(() => stopWaypointCluster(c))
  const { tb } = c.cluster
  const client = c.cluster.pod('client')
  const web = `${WEB_VIP}:80`

  const byPath = await httpRequests(tb, client, web, { path: '/v2/items', count: 4 })
  t.same(byPath.byStatus, { '200': 4 }, JSON.stringify(byPath.outcomes[0]))
  t.ok(
    byPath.outcomes.every((o) => body(o).name === 'web-v2'),
    'a path match picks web-v2',
  )
  t.equal(body(byPath.outcomes[0]!).headers['x-route'], 'v2-by-path', 'RequestHeaderModifier added its header')

  const byHeader = await httpRequests(tb, client, web, { path: '/anything', headers: { 'x-canary': 'yes' }, count: 4 })
  t.ok(
    byHeader.outcomes.every((o) => o.status === 200 && body(o).name === 'web-v2'),
    'a header match picks web-v2',
  )

  const weighted = await httpRequests(tb, client, web, { path: '/shop', count: 200, concurrency: 4 })
  t.same(weighted.byStatus, { '200': 200 })
  const v2 = weighted.outcomes.filter((o) => body(o).name === 'web-v2').length
  t.ok(v2 >= 20 && v2 <= 60, `weights 80/20: ${v2} of 200 went to web-v2 (expected about 40)`)

  const redirect = await httpRequests(tb, client, web, { path: '/old' })
  t.equal(redirect.outcomes[0]!.status, 301)
  t.equal(redirect.outcomes[0]!.headers.location, 'http://198.18.100.10/new', 'Location as the spec builds it')

  const retried = await httpRequests(tb, client, web, { path: '/flaky/1' })
  t.equal(retried.outcomes[0]!.status, 200, 'two 503s retried, the third try answered')
  t.equal(body(retried.outcomes[0]!).name, 'flaky')

  const slow = await httpRequests(tb, client, web, { path: '/slow/1' })
  t.equal(slow.outcomes[0]!.status, 504, 'the request timeout cut a backend that answers after 3 s')
  t.equal(slow.outcomes[0]!.body, 'upstream request timeout\n')

  const deleted = await httpRequests(tb, client, web, { path: '/items/1', method: 'DELETE' })
  t.equal(deleted.outcomes[0]!.status, 403)
  t.equal(deleted.outcomes[0]!.body, 'RBAC: access denied')

  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
  const traced = await httpRequests(tb, client, web, { path: '/t', headers: { traceparent } })
  t.match(
    body(traced.outcomes[0]!).headers.traceparent,
    /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/,
    'the trace id arrives, with the waypoint as parent span',
  )
  t.not(body(traced.outcomes[0]!).headers.traceparent, traceparent)

  // Straight to a web pod, around the waypoint: L4 policy at the destination refuses it.
  const bypass = await connectMany(tb, client, `${c.cluster.pod('webv1').ip}:8080`, { count: 3, concurrency: 1 })
  t.equal(bypass.ok, 0, `no connection around the waypoint (${JSON.stringify(bypass.errors)})`)

  const waypoint = c.cluster.waypoints.get('shop/waypoint')!
  const metrics = await (await fetch(`http://127.0.0.1:${waypoint.metrics.port}/metrics`)).text()
  const denied = metrics.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('response_code="403"'))
  t.match(
    denied,
    /reporter="waypoint",source_workload="client",source_workload_namespace="shop",source_principal="spiffe:\/\/cluster.local\/ns\/shop\/sa\/client"/,
  )
  t.match(
    denied,
    /destination_service="web.shop.svc.cluster.local",destination_service_name="web",destination_service_namespace="shop",request_protocol="http",response_code="403"/,
  )
  t.match(metrics, /istio_request_duration_milliseconds_bucket\{le="[^"]+",[^}]*response_code="200"/)
  t.match(metrics, /ambient_waypoint_route_requests_total\{route="shop\/web-routes",destination_service="slow.shop.svc.cluster.local",response_code="504"\} 1/)
  t.match(metrics, /ambient_waypoint_route_requests_total\{route="shop\/web-routes",destination_service="web.shop.svc.cluster.local",response_code="301"\} 1/)
  t.match(
    metrics,
    /ambient_waypoint_config_problems\{object="HTTPRoute shop\/broken",kind="invalid",field="spec.rules\[0\].matches\[0\].path.type"/,
    'the malformed route is named',
  )
  t.match(waypoint.logs(), /"object":"HTTPRoute shop\/broken".*"field":"spec.rules\[0\].matches\[0\].path.type"/)
})

t.test('garbage inside a tunnel closes that stream only', async (t) => {
  const c = await startWaypointCluster('wp-garbage')
  t.teardown(() => stopWaypointCluster(c))
  const cacerts = join(c.cluster.workDir, 'ca')
  const ca = { certPem: readFileSync(join(cacerts, 'ca-cert.pem'), 'utf8'), keyPem: readFileSync(join(cacerts, 'ca-key.pem'), 'utf8') }
  const keys = generateKeyPair()
  const identity = 'spiffe://cluster.local/ns/shop/sa/client'
  const certPem = issueLeaf({ publicKeyPem: keys.publicKeyPem, uris: [identity], ca, ttlMs: 3_600_000 })
  const context = createIdentityContext({ certPem, keyPem: keys.privateKeyPem, trustBundlePem: ca.certPem })
  const forward = await forwardToPod(c.cluster.pod('waypoint').netnsPath, { ip: c.cluster.pod('waypoint').ip, port: 15008 })
  t.teardown(() => forward.close())
  const pool = new HbonePool({ contextFor: () => context })
  t.teardown(() => pool.stop())
  const open = () =>
    pool.connect({
      sourceIdentity: identity,
      destinationIdentity: 'spiffe://cluster.local/ns/shop/sa/waypoint',
      nextHop: { ip: '127.0.0.1', port: forward.address.port },
      authority: formatAuthority({ ip: WEB_VIP, port: 80 }),
    })
  const good = await open()
  const exchange = (stream: typeof good, text: string): Promise<string> =>
    new Promise((resolve) => {
      let out = ''
      stream.on('data', (d: Buffer) => {
        out += d
        if (out.includes('\r\n\r\n') && /"name"/.test(out)) resolve(out)
      })
      stream.write(text)
    })
  t.match(await exchange(good, 'GET /before HTTP/1.1\r\nHost: web\r\n\r\n'), /^HTTP\/1.1 200/)
  const bad = await open()
  // The waypoint answers 400 and finishes its side of that stream (END_STREAM).
  const closed = new Promise<string>((resolve) => {
    let out = ''
    bad.on('data', (d: Buffer) => (out += d))
    bad.on('end', () => resolve(out))
    bad.on('error', () => resolve(out))
  })
  bad.write('GET / HTTP/1.1\r\nHost: web\r\nBad Header Line\r\n\r\n')
  t.match(await closed, /^HTTP\/1.1 400/, 'malformed HTTP: a 400 and that stream closed')
  t.match(await exchange(good, 'GET /after HTTP/1.1\r\nHost: web\r\n\r\n'), /HTTP\/1.1 200/, 'the other stream on the same session still works')
  const again = await open()
  t.match(await exchange(again, 'GET /new HTTP/1.1\r\nHost: web\r\n\r\n'), /^HTTP\/1.1 200/, 'new streams are served')
})
