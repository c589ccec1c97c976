import t from 'tap'
import protobuf from 'protobufjs'
import type { Authorization } from '../model/authorization.js'
import { match } from '../model/authorization.js'
import type { MeshService, Workload } from '../model/workload.js'
import {
  ADDRESS_TYPE_URL,
  AUTHORIZATION_TYPE_URL,
  LOCAL_WORKLOAD_TYPE_URL,
  XdsResourceError,
  decodeAddress,
  decodeAuthorization,
  decodeLocalWorkload,
  encodeAuthorization,
  encodeLocalWorkload,
  encodeServiceAddress,
  encodeWorkloadAddress,
} from './codec.js'
import { decodeRequest, decodeResponse } from './ads.js'
import { bytesToIp, ipToBytes } from './ip.js'
import { encodeMessage, messageType } from './proto.js'

const workload: Workload = {
  uid: 'Kubernetes//Pod/shop/web-1',
  name: 'web-1',
  namespace: 'shop',
  ips: ['10.244.1.5', 'fd00:10:244::5'],
  network: 'net-a',
  tunnelProtocol: 'HBONE',
  trustDomain: 'example.org',
  serviceAccount: 'web',
  waypoint: { destination: { kind: 'address', network: '', address: '10.96.0.99' }, hboneMtlsPort: 15008 },
  node: 'node-a',
  canonicalName: 'web',
  canonicalRevision: 'v2',
  workloadType: 'DEPLOYMENT',
  workloadName: 'web',
  services: {
    'shop/web.shop.svc.cluster.local': [
      { servicePort: 80, targetPort: 8080 },
      { servicePort: 443, targetPort: 8443 },
    ],
    'shop/api.shop.svc.cluster.local': [],
  },
  authorizationPolicies: ['shop/allow-web', 'shop/deny-db'],
  status: 'UNHEALTHY',
  clusterId: 'Kubernetes',
  labels: { app: 'web' },
  netnsPath: '/proc/42/ns/net',
}

const service: MeshService = {
  name: 'web',
  namespace: 'shop',
  hostname: 'web.shop.svc.cluster.local',
  addresses: [
    { network: '', address: '10.96.0.10' },
    { network: 'net-b', address: 'fd00:96::a' },
  ],
  ports: [
    { servicePort: 80, targetPort: 8080 },
    { servicePort: 443, targetPort: 0 },
  ],
  subjectAltNames: ['spiffe://example.org/ns/shop/sa/web'],
  waypoint: { destination: { kind: 'hostname', namespace: 'shop', hostname: 'waypoint.shop.svc.cluster.local' }, hboneMtlsPort: 15008 },
}

const authorization: Authorization = {
  name: 'allow-web',
  namespace: 'shop',
  scope: 'WORKLOAD_SELECTOR',
  action: 'DENY',
  dryRun: true,
  groups: [
    {
      rules: [
        { matches: [match({ namespaces: [{ kind: 'exact', value: 'shop' }, { kind: 'presence' }], notNamespaces: [{ kind: 'prefix', value: 'kube-' }] })] },
        {
          matches: [
            match({ principals: [{ kind: 'suffix', value: '/sa/web' }], notPrincipals: [{ kind: 'exact', value: 'example.org/ns/x/sa/y' }] }),
            match({
              sourceIps: [{ address: '10.0.0.0', length: 8 }],
              notSourceIps: [{ address: '10.1.2.3', length: 32 }],
              destinationIps: [{ address: 'fd00::', length: 64 }],
              notDestinationIps: [{ address: '::1', length: 128 }],
            }),
            match({
              destinationPorts: [80, 8080],
              notDestinationPorts: [22],
              serviceAccounts: [{ namespace: 'shop', serviceAccount: 'web' }],
              notServiceAccounts: [{ namespace: 'shop', serviceAccount: 'db' }],
            }),
          ],
        },
      ],
    },
    { rules: [] },
  ],
}

t.test('a workload round-trips every field; labels and netnsPath stay local, policies are never null', async (t) => {
  const decoded = decodeAddress(encodeWorkloadAddress(workload))
  const { netnsPath: _netns, ...rest } = workload
  t.strictSame(decoded, { kind: 'workload', workload: { ...rest, labels: {} } })
  t.notOk('netnsPath' in (decoded.kind === 'workload' ? decoded.workload : {}))
  const unresolved = decodeAddress(
    encodeWorkloadAddress({ ...workload, authorizationPolicies: null, tunnelProtocol: 'NONE', workloadType: 'JOB', status: 'HEALTHY' }),
  )
  t.match(unresolved, { kind: 'workload', workload: { authorizationPolicies: [], tunnelProtocol: 'NONE', workloadType: 'JOB', status: 'HEALTHY' } })
})

t.test('equal workloads encode to equal bytes whatever the order of their services', async (t) => {
  const reordered = { ...workload, services: Object.fromEntries(Object.entries(workload.services).reverse()) }
  t.same(encodeWorkloadAddress(reordered), encodeWorkloadAddress(workload))
})

t.test('a service and an authorization round-trip every field', async (t) => {
  t.strictSame(decodeAddress(encodeServiceAddress(service)), { kind: 'service', service })
  t.strictSame(decodeAuthorization(encodeAuthorization(authorization)), authorization)
  const plain: Authorization = { name: 'a', namespace: 'b', scope: 'GLOBAL', action: 'ALLOW', dryRun: false, groups: [] }
  t.same(decodeAuthorization(encodeAuthorization(plain)), plain)
  t.same(decodeAuthorization(encodeAuthorization({ ...plain, scope: 'NAMESPACE' })).scope, 'NAMESPACE')
})

t.test('a local workload round-trips, and only a workload with a netns has one', async (t) => {
  t.strictSame(decodeLocalWorkload(encodeLocalWorkload(workload)), {
    uid: workload.uid,
    name: 'web-1',
    namespace: 'shop',
    serviceAccount: 'web',
    netnsPath: '/proc/42/ns/net',
  })
  const { netnsPath: _n, ...remote } = workload
  t.throws(() => encodeLocalWorkload(remote), { code: 'AMBIENT_ERR_XDS_RESOURCE', field: 'netns_path' })
})

t.test('the bytes carry the stated field numbers', async (t) => {
  // LocalWorkload, by hand: uid (1) "u", workload_info (2) {name (1) "n", namespace (2) "s", service_account (3) "a"}, netns_path (3) "/p".
  const hand = Buffer.from('0a0175' + '1209' + '0a016e' + '120173' + '1a0161' + '1a022f70', 'hex')
  const local: Workload = { ...workload, uid: 'u', name: 'n', namespace: 's', serviceAccount: 'a', netnsPath: '/p' }
  t.same(encodeLocalWorkload(local).toString('hex'), hand.toString('hex'))

  const fields = (bytes: Uint8Array): number[] => {
    const r = protobuf.Reader.create(bytes)
    const seen: number[] = []
    while (r.pos < r.len) {
      const tag = r.uint32()
      seen.push(tag >>> 3)
      r.skipType(tag & 7)
    }
    return seen
  }
  const inner = (bytes: Uint8Array): Uint8Array => {
    const r = protobuf.Reader.create(bytes)
    t.equal(r.uint32() >>> 3, bytes === wl ? 1 : 2, 'Address.workload is 1, Address.service is 2')
    return r.bytes()
  }
  const wl = encodeWorkloadAddress(workload)
  t.same(
    [...new Set(fields(inner(wl)))].sort((a, b) => a - b),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 18, 20, 22],
  )
  // The first address is the 4 raw bytes of 10.244.1.5 under field 3.
  const w = protobuf.Reader.create(inner(wl))
  let ip: Uint8Array | null = null
  while (w.pos < w.len && ip === null) {
    const tag = w.uint32()
    if (tag === ((3 << 3) | 2)) ip = w.bytes()
    else w.skipType(tag & 7)
  }
  t.same(Buffer.from(ip!).toString('hex'), '0af40105')
  t.same(
    [...new Set(fields(inner(encodeServiceAddress(service))))].sort((a, b) => a - b),
    [1, 2, 3, 4, 5, 6, 7],
  )
  t.same(
    [...new Set(fields(encodeAuthorization(authorization)))].sort((a, b) => a - b),
    [1, 2, 3, 4, 5, 6],
  )
  // GatewayAddress, by hand: address (2) {network (1) "", address (2) 4 bytes}, hbone_mtls_port (3) 15008.
  t.equal(
    encodeMessage(messageType('istio.workload.GatewayAddress'), { address: { address: Buffer.from([10, 96, 0, 99]) }, hboneMtlsPort: 15008 }).toString('hex'),
    '1206' + '12040a600063' + '18a075',
  )
  // StringMatch presence is field 4 holding an empty message.
  const sm = encodeMessage(messageType('istio.security.StringMatch'), { presence: {} })
  t.equal(sm.toString('hex'), '2200')
})

const bad = (type: string, value: object) => encodeMessage(messageType(type), value)
const wireWorkload = (extra: object) => ({ workload: { uid: 'u1', name: 'n', namespace: 's', ...extra } })

t.test('decoders reject bad resources naming the resource and the field', async (t) => {
  const cases: [string, () => unknown, string, RegExp][] = [
    [
      'a waypoint without a destination',
      () => decodeAddress(bad('istio.workload.Address', wireWorkload({ waypoint: { hboneMtlsPort: 15008 } }))),
      'waypoint.destination',
      /workload u1: waypoint.destination: neither hostname/,
    ],
    [
      'a waypoint without its HBONE port',
      () => decodeAddress(bad('istio.workload.Address', wireWorkload({ waypoint: { address: { address: Buffer.alloc(4) } } }))),
      'waypoint.hbone_mtls_port',
      /is 0/,
    ],
    [
      'a waypoint address of 3 bytes',
      () => decodeAddress(bad('istio.workload.Address', wireWorkload({ waypoint: { address: { address: Buffer.alloc(3) }, hboneMtlsPort: 15008 } }))),
      'waypoint.address.address',
      /got 3/,
    ],
    [
      'a 5-byte workload address',
      () => decodeAddress(bad('istio.workload.Address', wireWorkload({ addresses: [Buffer.alloc(4), Buffer.alloc(5)] }))),
      'addresses[1]',
      /workload u1: addresses\[1\]: .* got 5/,
    ],
    [
      'a tunnel protocol we do not speak',
      () => decodeAddress(bad('istio.workload.Address', wireWorkload({ tunnelProtocol: 2 }))),
      'tunnel_protocol',
      /unsupported enum number 2/,
    ],
    ['an unknown workload type', () => decodeAddress(bad('istio.workload.Address', wireWorkload({ workloadType: 9 }))), 'workload_type', /number 9/],
    ['an unknown status', () => decodeAddress(bad('istio.workload.Address', wireWorkload({ status: 7 }))), 'status', /number 7/],
    [
      'a port above 65535',
      () => decodeAddress(bad('istio.workload.Address', wireWorkload({ services: { 'a/b': { ports: [{ servicePort: 70000, targetPort: 1 }] } } }))),
      'services["a/b"].ports[0].service_port',
      /70000/,
    ],
    [
      'a workload without uid',
      () => decodeAddress(bad('istio.workload.Address', { workload: { name: 'n', namespace: 's' } })),
      'uid',
      /workload s\/n: uid: is empty/,
    ],
    ['an empty Address', () => decodeAddress(Buffer.alloc(0)), 'type', /neither workload/],
    ['garbage', () => decodeAddress(Buffer.from([0xff, 0xff, 0xff])), '(bytes)', /not a valid istio.workload.Address/],
    [
      'a 3-byte service address',
      () => decodeAddress(bad('istio.workload.Address', { service: { namespace: 's', hostname: 'h', addresses: [{ address: Buffer.alloc(3) }] } })),
      'addresses[0].address',
      /service s\/h/,
    ],
    ['a service without hostname', () => decodeAddress(bad('istio.workload.Address', { service: { namespace: 's' } })), 'hostname', /is empty/],
    [
      'a StringMatch with nothing set',
      () => decodeAuthorization(bad('istio.security.Authorization', { name: 'p', namespace: 's', groups: [{ rules: [{ matches: [{ principals: [{}] }] }] }] })),
      'groups[0].rules[0].matches[0].principals[0]',
      /authorization s\/p: .*match_type/,
    ],
    [
      'a prefix longer than the address',
      () =>
        decodeAuthorization(
          bad('istio.security.Authorization', {
            name: 'p',
            namespace: 's',
            groups: [{ rules: [{ matches: [{ sourceIps: [{ address: Buffer.alloc(4), length: 33 }] }] }] }],
          }),
        ),
      'groups[0].rules[0].matches[0].source_ips[0].length',
      /33/,
    ],
    ['an unknown action', () => decodeAuthorization(bad('istio.security.Authorization', { name: 'p', namespace: 's', action: 2 })), 'action', /number 2/],
    ['an unknown scope', () => decodeAuthorization(bad('istio.security.Authorization', { name: 'p', namespace: 's', scope: 5 })), 'scope', /number 5/],
    [
      'a local workload without netns',
      () => decodeLocalWorkload(bad('ambient.zds.v1.LocalWorkload', { uid: 'u', workloadInfo: {} })),
      'netns_path',
      /local workload u/,
    ],
    [
      'a local workload without info',
      () => decodeLocalWorkload(bad('ambient.zds.v1.LocalWorkload', { uid: 'u', netnsPath: '/p' })),
      'workload_info',
      /is not set/,
    ],
  ]
  for (const [what, run, field, message] of cases) {
    const err = t.throws(run, what) as XdsResourceError
    t.equal(err?.code, 'AMBIENT_ERR_XDS_RESOURCE', what)
    t.equal(err?.field, field, what)
    t.match(err?.message, message, what)
  }
})

t.test('the encoder refuses an IP it cannot put on the wire', async (t) => {
  t.throws(() => encodeWorkloadAddress({ ...workload, ips: ['10.0.0.300'] }), { code: 'AMBIENT_ERR_XDS_RESOURCE', field: 'addresses[0]' })
})

t.test('IPs between text and raw bytes', async (t) => {
  const cases: [string, string, string][] = [
    ['10.0.0.1', '0a000001', '10.0.0.1'],
    ['::', '0'.repeat(32), '::'],
    ['::1', '0'.repeat(31) + '1', '::1'],
    ['fd00::1', 'fd00' + '0'.repeat(27) + '1', 'fd00::1'],
    ['2001:DB8:0:0:1:0:0:1', '20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['::ffff:1.2.3.4', '00000000000000000000ffff01020304', '::ffff:1.2.3.4'],
  ]
  for (const [text, hex, canonical] of cases) {
    t.equal(ipToBytes(text)?.toString('hex'), hex, text)
    t.equal(bytesToIp(Buffer.from(hex, 'hex')), canonical, text)
  }
  for (const notIp of ['1.2.3', 'fe80::1%eth0', 'web', '']) t.equal(ipToBytes(notIp), null, notIp)
  t.equal(bytesToIp(Buffer.alloc(5)), null)
})

t.test('type URLs', async (t) => {
  t.same(
    [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, LOCAL_WORKLOAD_TYPE_URL],
    ['type.googleapis.com/istio.workload.Address', 'type.googleapis.com/istio.security.Authorization', 'type.googleapis.com/ambient.zds.v1.LocalWorkload'],
  )
})

t.test('a stream message that does not decode throws the named AMBIENT_ERR_XDS_MESSAGE', async (t) => {
  // Found by test/fuzz/xds.test.ts: protobufjs's own errors (RangeError, Error) reached grpc-js unnamed.
  for (const bytes of [Buffer.from([0xff]), Buffer.from([0x0f]), Buffer.from([0x07])]) {
    t.throws(() => decodeRequest(bytes), {
      code: 'AMBIENT_ERR_XDS_MESSAGE',
      message: /^envoy\.service\.discovery\.v3\.DeltaDiscoveryRequest of \d+ bytes is not valid: /,
    })
    t.throws(() => decodeResponse(bytes), { code: 'AMBIENT_ERR_XDS_MESSAGE', message: /^envoy\.service\.discovery\.v3\.DeltaDiscoveryResponse of \d+ bytes/ })
  }
})
