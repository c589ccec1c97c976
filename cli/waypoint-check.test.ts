import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { checkRequest, parseCheckFlags } from './waypoint-check.js'

const objects = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' } } },
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'bank' } },
  ...['web', 'web-v1', 'web-v2'].map((name, i) => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'shop' },
    spec: { clusterIP: `198.18.100.${10 + i}`, selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  })),
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'vault', namespace: 'bank' },
    spec: { clusterIP: '198.18.100.30', ports: [{ port: 80, targetPort: 8080 }] },
  },
  {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'waypoint', namespace: 'shop' },
    spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  },
  {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'web', namespace: 'shop' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
      rules: [
        {
          matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x-canary', value: 'yes' }] }],
          filters: [
            { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-route', value: 'canary' }], remove: ['x-canary'] } },
            { type: 'URLRewrite', urlRewrite: { hostname: 'api.internal', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2' } } },
          ],
          backendRefs: [{ name: 'web-v2', port: 80 }],
        },
        {
          matches: [{ path: { type: 'Exact', value: '/old' } }],
          filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplaceFullPath', replaceFullPath: '/new' }, statusCode: 301 } }],
        },
        { matches: [{ path: { type: 'PathPrefix', value: '/gone' } }], backendRefs: [{ name: 'missing', port: 80 }] },
        {
          matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
          backendRefs: [
            { name: 'web-v1', port: 80, weight: 90 },
            { name: 'web-v2', port: 80, weight: 10 },
            { name: 'web-v2', port: 80, weight: 0 },
          ],
        },
      ],
    },
  },
  {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'readers', namespace: 'shop' },
    spec: {
      targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }],
      action: 'ALLOW',
      rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/client'] } }], to: [{ operation: { methods: ['GET', 'HEAD'] } }] }],
    },
  },
  {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'no-admin', namespace: 'shop' },
    spec: { targetRefs: [{ group: '', kind: 'Service', name: 'web' }], action: 'DENY', rules: [{ to: [{ operation: { paths: ['/api/admin*'] } }] }] },
  },
  {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'broken', namespace: 'shop' },
    spec: { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }], action: 'SOMETIMES' },
  },
]

const dir = mkdtempSync(join(tmpdir(), 'ambient-waypoint-check-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
writeFileSync(join(dir, 'all.yaml'), objects.map((o) => stringify(o)).join('---\n'))

const base = {
  manifests: dir,
  waypoint: 'shop/waypoint',
  method: 'GET',
  header: [] as string[],
  sourcePrincipal: 'cluster.local/ns/shop/sa/client',
  sourceIp: '198.19.4.2',
  trustDomain: 'cluster.local',
  rootNamespace: 'istio-system',
  clusterDomain: 'cluster.local',
}
const check = async (flags: Partial<typeof base> & { to: string; path: string }) => (await checkRequest(parseCheckFlags({ ...base, ...flags }))).result

t.test('a forwarded request: the rule, raw weights (weight 0 left out), the request after filters', async (t) => {
  t.same(await check({ to: 'web.shop.svc.cluster.local:80', path: '/api/items/../list?page=2' }), {
    decision: 'allow',
    policy: 'shop/readers',
    status: null,
    route: 'shop/web',
    rule: 3,
    backends: [
      { service: 'shop/web-v1', port: 80, weight: 90 },
      { service: 'shop/web-v2', port: 80, weight: 10 },
    ],
    request: { path: '/api/list?page=2', headers: { host: 'web.shop.svc.cluster.local:80' } },
    redirect: null,
  })
  const canary = await check({ to: 'web:80', path: '/api/x', header: ['X-Canary: yes', 'Host: web.shop'] })
  t.match(canary, { route: 'shop/web', rule: 0, backends: [{ service: 'shop/web-v2', port: 80, weight: 1 }] })
  t.same(canary.request, { path: '/v2/x', headers: { 'x-route': 'canary', host: 'api.internal' } }, 'header set and removed, path and host rewritten')
})

t.test('what the waypoint answers itself: 403, a redirect, 500, 404', async (t) => {
  t.match(await check({ to: '198.18.100.10:80', path: '/api/x', method: 'POST' }), {
    decision: 'deny',
    policy: null,
    status: 403,
    backends: [],
    route: null,
    redirect: null,
  })
  t.match(await check({ to: 'web:80', path: '/api/admin/users' }), { decision: 'deny', policy: 'shop/no-admin', status: 403 }, 'DENY before ALLOW')
  t.match(await check({ to: 'web:80', path: '/x', sourcePrincipal: undefined }), { decision: 'deny', status: 403 }, 'no identity: the ALLOW does not match')
  t.match(await check({ to: 'web:80', path: '/old' }), { decision: 'allow', status: 301, route: 'shop/web', rule: 1, redirect: 'http://web/new', backends: [] })
  t.match(await check({ to: 'web:80', path: '/gone' }), { decision: 'allow', status: 500, route: 'shop/web', rule: 2, backends: [] })
  t.match(await check({ to: 'web:80', path: '/nothing' }), { decision: 'allow', status: 404, route: null, rule: null })
})

t.test('bad input is named', async (t) => {
  await t.rejects(check({ to: 'vault.bank:80', path: '/' }), {
    code: 'AMBIENT_ERR_WAYPOINT_CHECK_INPUT',
    message: /Service bank\/vault does not go through waypoint shop\/waypoint: it uses no waypoint/,
  })
  await t.rejects(check({ to: 'nope:80', path: '/' }), { message: /no Service shop\/nope in the manifests/ })
  await t.rejects(check({ to: 'web:81', path: '/' }), { message: /Service shop\/web has no port 81/ })
  await t.rejects(check({ to: 'web:80', path: '/', waypoint: 'shop/other' }), {
    message: /--waypoint shop\/other: no Gateway shop\/other of class istio-waypoint/,
  })
  t.throws(() => parseCheckFlags({ ...base, to: 'web', path: '/' }), { code: 'AMBIENT_ERR_CONFIG', message: /--to: "web" is not HOST:PORT/ })
  t.throws(() => parseCheckFlags({ ...base, to: 'web:80', path: '/', header: ['nocolon'] }), { message: /--header: "nocolon" is not 'Name: value'/ })
  t.throws(() => parseCheckFlags({ ...base, to: 'web:80', path: '/', sourcePrincipal: 'spiffe://cluster.local/ns/a/sa/b' }), { message: /--source-principal/ })
  const { problems } = await checkRequest(parseCheckFlags({ ...base, to: 'web:80', path: '/' }))
  t.match(problems.join('\n'), /AuthorizationPolicy shop\/broken: spec.action: .*SOMETIMES/, 'the malformed policy is named by field; the others apply')
  t.match(problems.join('\n'), /HTTPRoute shop\/web: spec.rules\[2\].backendRefs\[0\]: Service shop\/missing not found/)
})
