// Well-formed Kubernetes objects of every kind the agent and the waypoint read,
// using most of the fields each converter knows: the starting points the manifest
// fuzzer mutates. Together they form one consistent cluster (namespace shop in the
// mesh with a waypoint, an HTTPRoute and L4 and L7 policies).
export type KubeObject = Record<string, unknown> & { kind: string; metadata: Record<string, unknown> & { name: string; namespace?: string } }

export const SEED_OBJECTS: readonly KubeObject[] = [
  {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' } },
  },
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } },
  {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace: 'shop', uid: 'uid-web', labels: { app: 'web', version: 'v1' }, annotations: { a: 'b' } },
    spec: { nodeName: 'node1', serviceAccountName: 'web', containers: [{ name: 'app', image: 'app', ports: [{ containerPort: 8080, name: 'http' }] }] },
    status: { phase: 'Running', podIP: '198.19.4.2', podIPs: [{ ip: '198.19.4.2' }], conditions: [{ type: 'Ready', status: 'True' }] },
  },
  {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'client', namespace: 'shop', uid: 'uid-client', labels: { app: 'client', 'istio.io/use-waypoint': 'none' } },
    spec: { nodeName: 'node1', serviceAccountName: 'client', hostNetwork: false },
    status: { phase: 'Running', podIP: '198.19.4.3', podIPs: [{ ip: '198.19.4.3' }] },
  },
  {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'waypoint',
      namespace: 'shop',
      uid: 'uid-wp',
      labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'istio.io/dataplane-mode': 'none' },
    },
    spec: { nodeName: 'node2', serviceAccountName: 'waypoint' },
    status: { phase: 'Running', podIP: '198.19.8.2', podIPs: [{ ip: '198.19.8.2' }] },
  },
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'shop', labels: { app: 'web' } },
    spec: {
      clusterIP: '198.18.100.10',
      clusterIPs: ['198.18.100.10'],
      selector: { app: 'web' },
      ports: [
        { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', appProtocol: 'http' },
        { name: 'tcp-raw', port: 9000, targetPort: 'raw', protocol: 'TCP' },
      ],
    },
  },
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'waypoint', namespace: 'shop' },
    spec: {
      clusterIP: '198.18.100.2',
      selector: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' },
      ports: [{ name: 'mesh', port: 15008, targetPort: 15008 }],
    },
  },
  {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'web-abc', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: [
      { addresses: ['198.19.4.2'], conditions: { ready: true, serving: true }, targetRef: { kind: 'Pod', namespace: 'shop', name: 'web', uid: 'uid-web' } },
    ],
    ports: [
      { name: 'http', port: 8080, protocol: 'TCP' },
      { name: 'tcp-raw', port: 9000, protocol: 'TCP' },
    ],
  },
  { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: 'shop' } },
  {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'waypoint', namespace: 'shop', labels: { 'istio.io/waypoint-for': 'service' } },
    spec: {
      gatewayClassName: 'istio-waypoint',
      listeners: [
        { name: 'mesh', port: 15008, protocol: 'HBONE', allowedRoutes: { namespaces: { from: 'Selector', selector: { matchLabels: { team: 'a' } } } } },
      ],
    },
  },
  {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'web-split', namespace: 'shop', creationTimestamp: '2024-05-01T10:00:00Z' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
      hostnames: ['web.shop.svc.cluster.local'],
      rules: [
        {
          matches: [
            {
              path: { type: 'RegularExpression', value: '/api/v[0-9]+/.*' },
              headers: [{ name: 'x-user', value: 'a.*', type: 'RegularExpression' }],
              queryParams: [{ name: 'q', value: '1' }],
              method: 'GET',
            },
          ],
          filters: [
            {
              type: 'RequestHeaderModifier',
              requestHeaderModifier: { set: [{ name: 'x-a', value: '1' }], add: [{ name: 'x-b', value: '2' }], remove: ['x-c'] },
            },
          ],
          backendRefs: [
            { name: 'web', port: 80, weight: 80 },
            { group: '', kind: 'Service', name: 'web', namespace: 'shop', port: 80, weight: 20 },
          ],
          timeouts: { request: '10s', backendRequest: '2s' },
          retry: { codes: [503], attempts: 2, backoff: '100ms' },
        },
        {
          matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
          filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } } }],
          backendRefs: [{ name: 'web', port: 80 }],
        },
        {
          matches: [{ path: { type: 'Exact', value: '/redirect' } }],
          filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', statusCode: 301 } }],
        },
      ],
    },
  },
  {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'web-allow', namespace: 'shop' },
    spec: {
      selector: { matchLabels: { app: 'web' } },
      action: 'ALLOW',
      rules: [
        {
          from: [
            {
              source: {
                principals: ['cluster.local/ns/shop/sa/client', '*/sa/batch'],
                namespaces: ['shop'],
                ipBlocks: ['198.19.0.0/16'],
                notIpBlocks: ['198.19.9.9'],
              },
            },
          ],
          to: [{ operation: { ports: ['8080', '9000'], notPorts: ['22'] } }],
          when: [
            { key: 'source.ip', values: ['198.19.4.3'] },
            { key: 'destination.port', notValues: ['1'] },
          ],
        },
      ],
    },
  },
  {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'no-delete', namespace: 'shop', annotations: { 'istio.io/dry-run': 'false' } },
    spec: {
      targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }],
      action: 'DENY',
      rules: [
        {
          from: [{ source: { notPrincipals: ['cluster.local/ns/shop/sa/admin'], remoteIpBlocks: ['10.0.0.0/8'] } }],
          to: [{ operation: { methods: ['DELETE'], paths: ['/api/{*}/items/{**}'], hosts: ['web.shop.svc.cluster.local'] } }],
          when: [{ key: 'request.headers[x-admin]', notValues: ['yes'] }],
        },
      ],
    },
  },
  {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'mesh-deny', namespace: 'istio-system' },
    spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['legacy'] } }] }] },
  },
  {
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: { name: 'strict', namespace: 'shop' },
    spec: { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { '9000': { mode: 'PERMISSIVE' } } },
  },
]
