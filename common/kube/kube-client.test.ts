// Every kind of credentials a kubeconfig or a pod can hold, against a real TLS
// server: a token with the API server's CA, a client certificate (mutual TLS), an
// exec credential plugin (a real executable), OIDC, the in-cluster service account
// with a rotating token file; and kubeconfigs that cannot work, refused naming the field.
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { TLSSocket } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { KubeClient, KubeRequestError, type KubeConnection } from './kube-client.js'
import { loadClientNode } from './kube-config.js'

await loadClientNode()
import { FakeKubeApiServer } from '../../testbed/kube-api-server.js'
import { KubeSource } from './kube-source.js'
import { pino } from 'pino'

const dir = mkdtempSync(join(tmpdir(), 'ambient-kubeclient-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const file = (name: string): string => join(dir, name)
const openssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' })

// A CA, the API server's certificate for 127.0.0.1, and a client certificate, all from openssl.
function makeCert(name: string, subject: string, ca: string | null, ext: string): void {
  openssl(
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    file(`${name}.key`),
    '-subj',
    subject,
    '-out',
    file(`${name}.csr`),
  )
  writeFileSync(file(`${name}.ext`), ext)
  if (ca === null)
    openssl(
      'x509',
      '-req',
      '-in',
      file(`${name}.csr`),
      '-signkey',
      file(`${name}.key`),
      '-days',
      '2',
      '-extfile',
      file(`${name}.ext`),
      '-out',
      file(`${name}.crt`),
    )
  else
    openssl(
      'x509',
      '-req',
      '-in',
      file(`${name}.csr`),
      '-CA',
      file(`${ca}.crt`),
      '-CAkey',
      file(`${ca}.key`),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      file(`${name}.ext`),
      '-out',
      file(`${name}.crt`),
    )
}
makeCert('ca', '/CN=test-apiserver-ca', null, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n')
makeCert('server', '/CN=apiserver', 'ca', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
makeCert('client', '/CN=ambient-agent/O=ambient', 'ca', 'extendedKeyUsage=clientAuth\n')
makeCert('other', '/CN=other-ca', null, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n')

interface Seen {
  authorization: string | undefined
  clientCn: string | undefined
}

/** An HTTPS "API server" that answers every GET with an empty list and records who called. */
async function apiServer(t: Test): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = []
  const server: Server = createServer(
    {
      cert: readFileSync(file('server.crt')),
      key: readFileSync(file('server.key')),
      ca: readFileSync(file('ca.crt')),
      requestCert: true,
      rejectUnauthorized: false,
    },
    (req, res) => {
      const socket = req.socket as TLSSocket
      const peer = socket.authorized ? socket.getPeerCertificate() : undefined
      seen.push({ authorization: req.headers.authorization, clientCn: peer?.subject?.CN as string | undefined })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ kind: 'NamespaceList', apiVersion: 'v1', metadata: { resourceVersion: '1' }, items: [] }))
    },
  )
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((r) => server.close(() => r()))
  })
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

function kubeconfig(
  name: string,
  server: string,
  user: Record<string, unknown>,
  cluster: Record<string, unknown> = { 'certificate-authority': 'ca.crt' },
): string {
  const path = file(name)
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'c',
      contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }],
      clusters: [{ name: 'k', cluster: { server, ...cluster } }],
      users: [{ name: 'u', user }],
    }),
  )
  return path
}

const get = (connection: KubeConnection): Promise<unknown> => {
  const client = KubeClient.for(connection)
  return client.getJson('/api/v1/namespaces').finally(() => client.close())
}

t.test('a token, with the API server CA from a file beside the kubeconfig', async (t) => {
  const api = await apiServer(t)
  await get({ kind: 'kubeconfig', path: kubeconfig('token.yaml', api.url, { token: 'abc' }) })
  t.equal(api.seen[0]?.authorization, 'Bearer abc')
  // The same server with another CA: TLS verification fails (no reply: status 0).
  const wrongCa = kubeconfig('wrong-ca.yaml', api.url, { token: 'abc' }, { 'certificate-authority': 'other.crt' })
  await t.rejects(get({ kind: 'kubeconfig', path: wrongCa }), { code: 'AMBIENT_ERR_SOURCE_REQUEST', statusCode: 0 })
})

t.test('a client certificate (mutual TLS), from files and from -data', async (t) => {
  const api = await apiServer(t)
  await get({ kind: 'kubeconfig', path: kubeconfig('cert.yaml', api.url, { 'client-certificate': 'client.crt', 'client-key': 'client.key' }) })
  const data = {
    'client-certificate-data': readFileSync(file('client.crt')).toString('base64'),
    'client-key-data': readFileSync(file('client.key')).toString('base64'),
  }
  await get({
    kind: 'kubeconfig',
    path: kubeconfig('cert-data.yaml', api.url, data, { 'certificate-authority-data': readFileSync(file('ca.crt')).toString('base64') }),
  })
  t.same(
    api.seen.map((s) => [s.clientCn, s.authorization]),
    [
      ['ambient-agent', undefined],
      ['ambient-agent', undefined],
    ],
    'the server saw the client certificate both times',
  )
})

t.test('an exec credential plugin (EKS, GKE, AKS): run, its token used and cached until it expires', async (t) => {
  const api = await apiServer(t)
  const plugin = file('credential-plugin')
  writeFileSync(
    plugin,
    `#!/bin/sh
echo run >> "${file('plugin-runs')}"
cat <<EOF
{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"$PLUGIN_TOKEN","expirationTimestamp":"2999-01-01T00:00:00Z"}}
EOF
`,
  )
  chmodSync(plugin, 0o755)
  const exec = {
    apiVersion: 'client.authentication.k8s.io/v1',
    command: plugin,
    args: ['token'],
    env: [{ name: 'PLUGIN_TOKEN', value: 'from-plugin' }],
    interactiveMode: 'Never',
  }
  const client = KubeClient.for({ kind: 'kubeconfig', path: kubeconfig('exec.yaml', api.url, { exec }) })
  t.teardown(() => client.close())
  await client.getJson('/api/v1/namespaces')
  await client.getJson('/api/v1/namespaces')
  t.same(
    api.seen.map((s) => s.authorization),
    ['Bearer from-plugin', 'Bearer from-plugin'],
  )
  t.equal(readFileSync(file('plugin-runs'), 'utf8'), 'run\n', 'the credential was cached until its expirationTimestamp')

  const failing = file('failing-plugin')
  writeFileSync(failing, '#!/bin/sh\necho "error: you must be logged in to the server (sso session expired)" >&2\nexit 1\n')
  chmodSync(failing, 0o755)
  const bad = KubeClient.for({ kind: 'kubeconfig', path: kubeconfig('exec-fail.yaml', api.url, { exec: { ...exec, command: failing } }) })
  t.teardown(() => bad.close())
  await t.rejects(bad.getJson('/api/v1/namespaces'), {
    code: 'AMBIENT_ERR_SOURCE_REQUEST',
    message: /users\[name=u\]\.user\.exec\) failed: error: you must be logged in to the server \(sso session expired\)/,
  })
})

t.test('oidc: the id-token is sent', async (t) => {
  const api = await apiServer(t)
  const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url')
  const idToken = `${b64({ alg: 'RS256' })}.${b64({ iss: 'https://idp.test', exp: Math.floor(Date.now() / 1000) + 3600 })}.sig`
  const provider = { name: 'oidc', config: { 'client-id': 'kubernetes', 'id-token': idToken, 'idp-issuer-url': 'https://idp.test' } }
  await get({ kind: 'kubeconfig', path: kubeconfig('oidc.yaml', api.url, { 'auth-provider': provider }) })
  t.equal(api.seen[0]?.authorization, `Bearer ${idToken}`)
})

t.test('in-cluster: the service account token is re-read when the kubelet rotates it', async (t) => {
  const api = await apiServer(t)
  const sa = mkdtempSync(join(dir, 'sa-'))
  writeFileSync(join(sa, 'ca.crt'), readFileSync(file('ca.crt')))
  writeFileSync(join(sa, 'token'), 'token-1\n')
  const client = KubeClient.for({ kind: 'in-cluster', server: api.url, serviceAccountDir: sa })
  t.teardown(() => client.close())
  await client.getJson('/api/v1/namespaces')
  // The kubelet writes the new token beside the old one and swaps it in.
  writeFileSync(join(sa, 'token.new'), 'token-2\n')
  renameSync(join(sa, 'token.new'), join(sa, 'token'))
  await client.getJson('/api/v1/namespaces')
  t.same(
    api.seen.map((s) => s.authorization),
    ['Bearer token-1', 'Bearer token-2'],
  )
  t.throws(() => KubeClient.for({ kind: 'in-cluster', server: api.url, serviceAccountDir: join(dir, 'no-such-sa') }), {
    code: 'AMBIENT_ERR_SOURCE_CONFIG',
    message: /in-cluster config \(service account .*no-such-sa\): ca.crt .* cannot be read/,
  })
})

t.test('kubeconfigs that cannot work are refused at start, naming the field and why', async (t) => {
  const server = 'https://127.0.0.1:6443'
  const refused = (name: string, user: Record<string, unknown>, cluster?: Record<string, unknown>): unknown => {
    try {
      KubeClient.for({ kind: 'kubeconfig', path: kubeconfig(name, server, user, cluster) })
    } catch (err) {
      return err
    }
    return new Error('accepted')
  }
  const cases: [string, Record<string, unknown>, Record<string, unknown> | undefined, RegExp][] = [
    [
      'missing-plugin',
      { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'aws-iam-authenticator-missing', installHint: 'install aws-iam-authenticator' } },
      undefined,
      /users\[name=u\]\.user\.exec\.command "aws-iam-authenticator-missing" is not an executable on PATH \(install aws-iam-authenticator\)/,
    ],
    [
      'exec-version',
      { exec: { apiVersion: 'client.authentication.k8s.io/v1alpha1', command: 'sh' } },
      undefined,
      /users\[name=u\]\.user\.exec\.apiVersion "client.authentication.k8s.io\/v1alpha1" is not one of/,
    ],
    [
      'exec-tty',
      { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'sh', interactiveMode: 'Always' } },
      undefined,
      /exec\.interactiveMode is Always/,
    ],
    ['gcp', { 'auth-provider': { name: 'gcp' } }, undefined, /users\[name=u\]\.user\.auth-provider\.name gcp was removed .*gke-gcloud-auth-plugin/],
    ['oidc-no-token', { 'auth-provider': { name: 'oidc', config: { 'client-id': 'k' } } }, undefined, /auth-provider\.config\.id-token is missing/],
    ['half-cert', { 'client-certificate': 'client.crt' }, undefined, /users\[name=u\]\.user has a client certificate without client-key/],
    [
      'wrong-key',
      { 'client-certificate': 'client.crt', 'client-key': 'server.key' },
      undefined,
      /users\[name=u\]\.user\.client-key is not the key of users\[name=u\]\.user\.client-certificate/,
    ],
    ['basic', { username: 'admin', password: 'x' }, undefined, /username\/password: basic authentication was removed/],
    ['bad-ca', { token: 'x' }, { 'certificate-authority': 'client.key' }, /clusters\[name=k\]\.cluster\.certificate-authority does not hold a PEM certificate/],
    ['no-ca-file', { token: 'x' }, { 'certificate-authority': 'nope.crt' }, /clusters\[name=k\]\.cluster\.certificate-authority .*nope.crt cannot be read/],
    ['token-file', { tokenFile: 'nope-token' }, undefined, /users\[name=u\]\.user\.tokenFile .*nope-token cannot be read/],
  ]
  for (const [name, user, cluster, message] of cases) t.match(refused(name, user, cluster), { code: 'AMBIENT_ERR_SOURCE_CONFIG', message }, name)
  const http = kubeconfig('http.yaml', 'http://127.0.0.1:8080', { token: 'x' }, {})
  t.throws(() => KubeClient.for({ kind: 'kubeconfig', path: http }), { message: /clusters\[name=k\]\.cluster\.server http:\/\/127.0.0.1:8080 is plain http/ })
  t.throws(() => KubeClient.for({ kind: 'kubeconfig', path: http, context: 'other' }), {
    message: /--context names context "other", which contexts does not have \(it has "c"\)/,
  })
  writeFileSync(file('not-yaml'), 'clusters: [')
  t.throws(() => KubeClient.for({ kind: 'kubeconfig', path: file('not-yaml') }), { message: /is not valid yaml/ })
  t.throws(() => KubeClient.for({ kind: 'kubeconfig', path: file('absent') }), { message: /kubeconfig .*absent: file .* cannot be read/ })
})

t.test('a 403 names the verb, resource and namespace in the error and the log', async (t) => {
  const fake = await FakeKubeApiServer.start({ bookmarkIntervalMs: 100 })
  t.teardown(() => fake.stop())
  const client = KubeClient.for({ kind: 'server', server: fake.url, insecure: true })
  t.teardown(() => client.close())
  fake.failNext('/api/v1/namespaces/shop/pods/web', 403)
  const err = await client
    .expectOk('PATCH', '/api/v1/namespaces/shop/pods/web', { body: {}, contentType: 'application/merge-patch+json' })
    .catch((e: unknown) => e)
  t.type(err, KubeRequestError)
  t.match(err, {
    code: 'AMBIENT_ERR_SOURCE_FORBIDDEN',
    request: { verb: 'patch', group: '', resource: 'pods', namespace: 'shop', name: 'web' },
    message: /forbidden: patch pods \(group ""\) in namespace shop: the service account needs an RBAC rule with verb "patch" on resource "pods" in apiGroup ""/,
  })

  // A watch refused by RBAC: the reflector's log line carries the same fields, and it recovers once allowed.
  const lines: Record<string, unknown>[] = []
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
  fake.failNext('/apis/gateway.networking.k8s.io/v1/httproutes', 403, 1)
  const source = new KubeSource({
    connection: { kind: 'server', server: fake.url, insecure: true },
    nodeName: 'n1',
    logger,
    backoff: { initialMs: 20, maxMs: 50 },
  })
  t.teardown(() => source.stop())
  await source.start()
  await source.ready()
  const forbidden = lines.find((l) => l['msg'] === 'forbidden: an RBAC rule is missing; retrying')
  t.match(forbidden, { level: 50, verb: 'list', group: 'gateway.networking.k8s.io', resource: 'httproutes', namespace: null, status: 403 })
  t.match(forbidden?.['err'], /list httproutes \(group "gateway.networking.k8s.io"\) at the cluster scope/)
})
