// Where a process reaches the Kubernetes API and as whom, as a
// @kubernetes/client-node KubeConfig: a kubeconfig file (tokens, token files,
// client certificates, exec credential plugins as EKS, GKE and AKS use, OIDC),
// an explicit server, or the pod's service account (its projected token is
// re-read as the kubelet rotates it). client-node applies the credentials; this
// module first checks the file so that a kubeconfig that cannot work is refused
// at start with the field that is wrong and why, instead of failing on the first
// request. (client-node is pinned to 1.4: 2.x needs Node >= 22.)
import { accessSync, constants, readFileSync, statSync } from 'node:fs'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path'
import type { Cluster, KubeConfig, User } from '@kubernetes/client-node'
import { parse as parseYaml } from 'yaml'
import { ConfigError, fromEnv } from '../config.js'
import { SourceError } from './errors.js'

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'

export type KubeConnection =
  | { readonly kind: 'kubeconfig'; readonly path: string; readonly context?: string }
  | {
      readonly kind: 'server'
      readonly server: string
      readonly token?: string
      /** Skip TLS verification; required for a plain http:// server such as the test fake. */
      readonly insecure?: boolean
      readonly caFile?: string
    }
  | {
      /** The pod's service account; server is https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT (the config reads the env). */
      readonly kind: 'in-cluster'
      readonly server: string
      readonly serviceAccountDir?: string
    }

/** A connection ready for requests: client-node's KubeConfig with one context. */
export interface ResolvedConnection {
  readonly kubeConfig: KubeConfig
  readonly server: string
  /** Where the credentials come from, for messages ("kubeconfig /x context c, user u"). */
  readonly origin: string
  /** The field holding the credentials, for messages about failing ones (`users[name=u].user.exec`). */
  readonly credentialsField: string
}

/**
 * A token file re-read as soon as it changes (client-node's own reads one every
 * 60 s): the kubelet swaps a projected service-account token in place long before
 * it expires, and a test can rotate one and see the next request carry it.
 */
class RotatingTokenFile {
  static readonly PROVIDER = 'ambient-token-file'
  #seen = ''
  #token = ''

  isAuthProvider(user: User): boolean {
    return (user.authProvider as { name?: unknown } | undefined)?.name === RotatingTokenFile.PROVIDER
  }

  async applyAuthentication(user: User, opts: { headers?: Record<string, unknown> }): Promise<void> {
    const path = (user.authProvider as { config: { path: string } }).config.path
    const st = statSync(path)
    const seen = `${st.ino}:${st.size}:${st.mtimeMs}`
    if (seen !== this.#seen) {
      this.#token = readFileSync(path, 'utf8').trim()
      this.#seen = seen
    }
    if (this.#token === '') throw new Error(`token file ${path} is empty`)
    opts.headers = { ...(opts.headers ?? {}), Authorization: `Bearer ${this.#token}` }
  }
}

function tokenFileProvider(path: string): { name: string; config: { path: string } } {
  return { name: RotatingTokenFile.PROVIDER, config: { path } }
}

type ClientNode = typeof import('@kubernetes/client-node')
let clientNode: ClientNode | null = null

/**
 * Loads @kubernetes/client-node: importing it costs seconds of CPU at start, so it
 * is loaded once, and only by a process that talks to an API server (a source
 * reading a manifests folder never does). Call before KubeClient.for.
 */
export async function loadClientNode(): Promise<void> {
  clientNode ??= await import('@kubernetes/client-node')
}

function newKubeConfig(): KubeConfig {
  if (clientNode === null) throw new Error('@kubernetes/client-node is not loaded: await loadClientNode() before resolving a connection')
  const kubeConfig = new clientNode.KubeConfig()
  kubeConfig.addAuthenticator(new RotatingTokenFile())
  return kubeConfig
}

function configError(message: string, cause?: unknown): SourceError {
  return new SourceError('AMBIENT_ERR_SOURCE_CONFIG', message, cause === undefined ? undefined : { cause })
}

type Entry = Record<string, unknown>
const isMap = (v: unknown): v is Entry => v !== null && typeof v === 'object' && !Array.isArray(v)

/** Reads a file the configuration names; the error says which field named it. */
function readNamed(file: string, field: string, where: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    throw configError(`${where}: ${field} ${file} cannot be read: ${(err as Error).message}`, err)
  }
}

function decodeBase64(value: unknown, field: string, where: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/=\s]+$/.test(value)) throw configError(`${where}: ${field} is not base64 data`)
  return Buffer.from(value, 'base64')
}

function checkCertificate(pem: Buffer, field: string, where: string): void {
  try {
    new X509Certificate(pem)
  } catch (err) {
    throw configError(`${where}: ${field} does not hold a PEM certificate: ${(err as Error).message}`, err)
  }
}

/** The entry named `name` in a kubeconfig list (`clusters`, `contexts`, `users`), naming what exists when it is missing. */
function named(doc: Entry, list: 'clusters' | 'contexts' | 'users', name: string, where: string, why: string): Entry {
  const entries = doc[list]
  if (entries !== undefined && !Array.isArray(entries)) throw configError(`${where}: ${list} is not a list`)
  const all = (entries ?? []) as unknown[]
  const found = all.find((e) => isMap(e) && e['name'] === name) as Entry | undefined
  const body = found?.[list.slice(0, -1)]
  if (found === undefined) {
    const known = all.map((e) => (isMap(e) ? JSON.stringify(e['name']) : '?')).join(', ') || 'none'
    throw configError(`${where}: ${why} names ${list.slice(0, -1)} ${JSON.stringify(name)}, which ${list} does not have (it has ${known})`)
  }
  if (!isMap(body)) throw configError(`${where}: ${list}[name=${name}].${list.slice(0, -1)} is missing or not a map`)
  return body
}

function checkServer(server: unknown, field: string, insecure: boolean, where: string): string {
  if (typeof server !== 'string' || server === '') throw configError(`${where}: ${field} is missing: the API server's https:// URL`)
  let url: URL
  try {
    url = new URL(server)
  } catch (err) {
    throw configError(`${where}: ${field} ${JSON.stringify(server)} is not a URL`, err)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw configError(`${where}: ${field} ${server} must be an http(s):// URL`)
  if (url.protocol === 'http:' && !insecure)
    throw configError(
      `${where}: ${field} ${server} is plain http: the credentials would travel in clear; use https (or insecure-skip-tls-verify for a test server)`,
    )
  return server.replace(/\/+$/, '')
}

/** An exec plugin's command must exist and be executable now, not at the first request. */
function checkExecutable(command: string, base: string, field: string, where: string, hint: string): void {
  const candidates = command.includes('/')
    ? [isAbsolute(command) ? command : resolve(base, command)]
    : (process.env['PATH'] ?? '')
        .split(delimiter)
        .filter((d) => d !== '')
        .map((d) => join(d, command))
  for (const file of candidates) {
    try {
      accessSync(file, constants.X_OK)
      return
    } catch {
      // try the next
    }
  }
  throw configError(
    `${where}: ${field} ${JSON.stringify(command)} is not an executable ${command.includes('/') ? 'file' : 'on PATH'}${hint ? ` (${hint})` : ''}: install it in the image or give its path`,
  )
}

const EXEC_API_VERSIONS = ['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1']

function checkExec(exec: unknown, field: string, base: string, where: string): Entry {
  if (!isMap(exec)) throw configError(`${where}: ${field} is not a map`)
  if (typeof exec['command'] !== 'string' || exec['command'] === '') throw configError(`${where}: ${field}.command is missing`)
  if (!EXEC_API_VERSIONS.includes(exec['apiVersion'] as string))
    throw configError(`${where}: ${field}.apiVersion ${JSON.stringify(exec['apiVersion'])} is not one of ${EXEC_API_VERSIONS.join(', ')}`)
  const args = exec['args']
  if (args !== undefined && args !== null && !(Array.isArray(args) && args.every((a) => typeof a === 'string')))
    throw configError(`${where}: ${field}.args is not a list of strings`)
  const env = exec['env']
  if (env !== undefined && env !== null) {
    if (!Array.isArray(env)) throw configError(`${where}: ${field}.env is not a list`)
    env.forEach((e, i) => {
      if (!isMap(e) || typeof e['name'] !== 'string' || typeof e['value'] !== 'string')
        throw configError(`${where}: ${field}.env[${i}] must have a string name and value`)
    })
  }
  if (exec['interactiveMode'] === 'Always')
    throw configError(`${where}: ${field}.interactiveMode is Always: the plugin wants a terminal, and this process runs without one`)
  checkExecutable(exec['command'], base, `${field}.command`, where, typeof exec['installHint'] === 'string' ? exec['installHint'].trim() : '')
  // client-node's ExecAuth reads `env` as an array and `args` as an array: normalize missing ones.
  return { ...exec, args: args ?? [], env: env ?? [] }
}

function checkAuthProvider(provider: unknown, field: string, where: string): Entry {
  if (!isMap(provider)) throw configError(`${where}: ${field} is not a map`)
  const name = provider['name']
  if (name === 'gcp' || name === 'azure')
    throw configError(
      `${where}: ${field}.name ${name} was removed from Kubernetes clients (1.26); use its exec plugin (${name === 'gcp' ? 'gke-gcloud-auth-plugin' : 'kubelogin'}) instead`,
    )
  if (name !== 'oidc') throw configError(`${where}: ${field}.name ${JSON.stringify(name)} is not supported (oidc is; other providers: use an exec plugin)`)
  const config = provider['config']
  if (!isMap(config)) throw configError(`${where}: ${field}.config is missing`)
  if (typeof config['client-id'] !== 'string') throw configError(`${where}: ${field}.config.client-id is missing`)
  // client-node sends no credentials at all without an id-token; it refreshes an expired one with refresh-token and idp-issuer-url.
  if (typeof config['id-token'] !== 'string' || config['id-token'] === '')
    throw configError(`${where}: ${field}.config.id-token is missing: log in once (kubectl oidc-login) so the kubeconfig holds one`)
  return provider
}

/** Checks one kubeconfig user and turns it into client-node's User. */
function userOf(name: string, user: Entry, base: string, where: string): { user: User; field: string } {
  const field = `users[name=${name}].user`
  const kinds = [
    (user['token'] !== undefined || user['tokenFile'] !== undefined) && 'token',
    (user['client-certificate'] !== undefined || user['client-certificate-data'] !== undefined) && 'client certificate',
    user['exec'] !== undefined && user['exec'] !== null && 'exec',
    user['auth-provider'] !== undefined && user['auth-provider'] !== null && 'auth-provider',
  ].filter(Boolean)
  if (user['username'] !== undefined || user['password'] !== undefined)
    throw configError(`${where}: ${field}.username/password: basic authentication was removed from the API server (1.19); use a token or client certificate`)
  if (kinds.includes('exec') && kinds.includes('auth-provider')) throw configError(`${where}: ${field} has both exec and auth-provider; keep one`)
  const out: { -readonly [K in keyof User]: User[K] } = { name }
  if (typeof user['as'] === 'string') out.impersonateUser = user['as']
  if (user['token'] !== undefined) {
    if (typeof user['token'] !== 'string' || user['token'] === '') throw configError(`${where}: ${field}.token is empty or not a string`)
    out.token = user['token']
  } else if (user['tokenFile'] !== undefined) {
    if (typeof user['tokenFile'] !== 'string') throw configError(`${where}: ${field}.tokenFile is not a path`)
    const tokenFile = resolve(base, user['tokenFile'])
    if (readNamed(tokenFile, `${field}.tokenFile`, where).toString('utf8').trim() === '')
      throw configError(`${where}: ${field}.tokenFile ${tokenFile} is empty`)
    // Re-read when it changes: a projected token rotates under us.
    out.authProvider = tokenFileProvider(tokenFile)
  }
  const certGiven = user['client-certificate'] !== undefined || user['client-certificate-data'] !== undefined
  const keyGiven = user['client-key'] !== undefined || user['client-key-data'] !== undefined
  if (certGiven !== keyGiven)
    throw configError(`${where}: ${field} has a client ${certGiven ? 'certificate without client-key(-data)' : 'key without client-certificate(-data)'}`)
  if (certGiven) {
    const certField = user['client-certificate-data'] !== undefined ? `${field}.client-certificate-data` : `${field}.client-certificate`
    const keyField = user['client-key-data'] !== undefined ? `${field}.client-key-data` : `${field}.client-key`
    const certPem =
      user['client-certificate-data'] !== undefined
        ? decodeBase64(user['client-certificate-data'], certField, where)
        : readNamed(resolve(base, String(user['client-certificate'])), certField, where)
    const keyPem =
      user['client-key-data'] !== undefined
        ? decodeBase64(user['client-key-data'], keyField, where)
        : readNamed(resolve(base, String(user['client-key'])), keyField, where)
    let cert: X509Certificate
    try {
      cert = new X509Certificate(certPem)
    } catch (err) {
      throw configError(`${where}: ${certField} does not hold a PEM certificate: ${(err as Error).message}`, err)
    }
    let key
    try {
      key = createPrivateKey(keyPem)
    } catch (err) {
      throw configError(`${where}: ${keyField} does not hold a PEM private key: ${(err as Error).message}`, err)
    }
    if (!cert.checkPrivateKey(key)) throw configError(`${where}: ${keyField} is not the key of ${certField}`)
    if (Date.now() > Date.parse(cert.validTo)) throw configError(`${where}: ${certField} expired at ${new Date(cert.validTo).toISOString()}`)
    out.certData = certPem.toString('base64')
    out.keyData = keyPem.toString('base64')
  }
  if (kinds.includes('exec')) (out as { exec?: unknown }).exec = checkExec(user['exec'], `${field}.exec`, base, where)
  if (kinds.includes('auth-provider')) out.authProvider = checkAuthProvider(user['auth-provider'], `${field}.auth-provider`, where)
  const credentials = kinds.includes('exec') ? `${field}.exec` : kinds.includes('auth-provider') ? `${field}.auth-provider` : field
  return { user: out, field: credentials }
}

function fromKubeconfig(path: string, contextFlag: string | undefined): ResolvedConnection {
  const where = `kubeconfig ${path}`
  let doc: unknown
  try {
    doc = parseYaml(readNamed(path, 'file', where).toString('utf8'))
  } catch (err) {
    if (err instanceof SourceError) throw err
    throw configError(`${where} is not valid yaml: ${(err as Error).message}`, err)
  }
  if (!isMap(doc)) throw configError(`${where} is not a kubeconfig (a yaml map with clusters, contexts and users)`)
  const contextName = contextFlag ?? doc['current-context']
  if (typeof contextName !== 'string' || contextName === '') throw configError(`${where}: current-context is not set; set it or pass --context`)
  const context = named(doc, 'contexts', contextName, where, contextFlag !== undefined ? '--context' : 'current-context')
  if (typeof context['cluster'] !== 'string') throw configError(`${where}: contexts[name=${contextName}].context.cluster is missing`)
  const clusterName = context['cluster']
  const cluster = named(doc, 'clusters', clusterName, where, `contexts[name=${contextName}].context.cluster`)
  const clusterField = `clusters[name=${clusterName}].cluster`
  const insecure = cluster['insecure-skip-tls-verify'] === true
  const server = checkServer(cluster['server'], `${clusterField}.server`, insecure, where)
  if (cluster['proxy-url'] !== undefined)
    throw configError(`${where}: ${clusterField}.proxy-url is not supported: the agent connects to the API server directly`)
  const base = dirname(path)
  const out: { -readonly [K in keyof Cluster]: Cluster[K] } = { name: clusterName, server, skipTLSVerify: insecure }
  const caGiven = cluster['certificate-authority'] !== undefined || cluster['certificate-authority-data'] !== undefined
  if (caGiven && insecure)
    throw configError(
      `${where}: ${clusterField} has both insecure-skip-tls-verify and a certificate authority; keep one (the API server's CA is the safe choice)`,
    )
  if (cluster['certificate-authority-data'] !== undefined) {
    const ca = decodeBase64(cluster['certificate-authority-data'], `${clusterField}.certificate-authority-data`, where)
    checkCertificate(ca, `${clusterField}.certificate-authority-data`, where)
    out.caData = ca.toString('base64')
  } else if (cluster['certificate-authority'] !== undefined) {
    const field = `${clusterField}.certificate-authority`
    const ca = readNamed(resolve(base, String(cluster['certificate-authority'])), field, where)
    checkCertificate(ca, field, where)
    out.caData = ca.toString('base64')
  }
  if (typeof cluster['tls-server-name'] === 'string') out.tlsServerName = cluster['tls-server-name']
  const userName = context['user']
  let user: User = { name: '' }
  let credentialsField = `contexts[name=${contextName}].context.user`
  if (userName !== undefined && userName !== '') {
    if (typeof userName !== 'string') throw configError(`${where}: contexts[name=${contextName}].context.user is not a string`)
    const checked = userOf(userName, named(doc, 'users', userName, where, `contexts[name=${contextName}].context.user`), base, where)
    user = checked.user
    credentialsField = checked.field
  }
  const kubeConfig = newKubeConfig()
  kubeConfig.loadFromOptions({
    clusters: [out],
    users: [user],
    contexts: [{ name: contextName, cluster: clusterName, user: user.name }],
    currentContext: contextName,
  })
  return { kubeConfig, server, origin: `${where} context ${contextName}${user.name ? `, user ${user.name}` : ''}`, credentialsField }
}

/** Checks a connection and builds its KubeConfig; throws SourceError (AMBIENT_ERR_SOURCE_CONFIG) naming the bad field. */
export function resolveConnection(connection: KubeConnection): ResolvedConnection {
  const kubeConfig = newKubeConfig()
  switch (connection.kind) {
    case 'kubeconfig':
      return fromKubeconfig(connection.path, connection.context)
    case 'in-cluster': {
      const dir = connection.serviceAccountDir ?? SERVICE_ACCOUNT_DIR
      const where = `in-cluster config (service account ${dir})`
      const server = checkServer(connection.server, 'KUBERNETES_SERVICE_HOST/PORT', false, where)
      const ca = readNamed(join(dir, 'ca.crt'), 'ca.crt', where)
      checkCertificate(ca, join(dir, 'ca.crt'), where)
      const tokenFile = join(dir, 'token')
      if (readNamed(tokenFile, 'token', where).toString('utf8').trim() === '') throw configError(`${where}: token ${tokenFile} is empty`)
      kubeConfig.loadFromClusterAndUser(
        { name: 'in-cluster', server, caData: ca.toString('base64'), skipTLSVerify: false },
        // The projected token rotates (the kubelet swaps the file): re-read when it changes.
        { name: 'service-account', authProvider: tokenFileProvider(tokenFile) },
      )
      return { kubeConfig, server, origin: where, credentialsField: tokenFile }
    }
    case 'server': {
      const where = `--kube-server ${connection.server}`
      const server = checkServer(connection.server, 'url', connection.insecure === true, where)
      let caData: string | undefined
      if (connection.caFile !== undefined) {
        const ca = readNamed(connection.caFile, 'certificate authority', where)
        checkCertificate(ca, connection.caFile, where)
        caData = ca.toString('base64')
      }
      kubeConfig.loadFromClusterAndUser(
        { name: 'server', server, skipTLSVerify: connection.insecure === true, ...(caData !== undefined && { caData }) },
        { name: 'user', ...(connection.token !== undefined && { token: connection.token }) },
      )
      return { kubeConfig, server, origin: where, credentialsField: 'token' }
    }
  }
}

export interface KubeFlags {
  readonly kubeconfig?: string
  readonly context?: string
  readonly kubeServer?: string
  readonly kubeInsecure?: boolean
}

/**
 * The API connection a process's flags ask for: --kubeconfig FILE [--context C],
 * --kube-server URL [--kube-insecure], or, with neither, the pod's service account
 * when KUBERNETES_SERVICE_HOST is set; null when none applies. Throws ConfigError.
 */
export function kubeConnectionFromFlags(flags: KubeFlags, env: NodeJS.ProcessEnv): KubeConnection | null {
  if (flags.kubeconfig && flags.kubeServer) throw new ConfigError('--kube-server', 'give --kubeconfig or --kube-server, not both')
  if (flags.context && !flags.kubeconfig) throw new ConfigError('--context', 'needs --kubeconfig')
  if (flags.kubeconfig) return { kind: 'kubeconfig', path: flags.kubeconfig, ...(flags.context ? { context: flags.context } : {}) }
  if (flags.kubeServer) {
    if (!/^https?:\/\//.test(flags.kubeServer)) throw new ConfigError('--kube-server', `${JSON.stringify(flags.kubeServer)} is not an http(s):// URL`)
    if (flags.kubeServer.startsWith('http://') && !flags.kubeInsecure)
      throw new ConfigError('--kube-server', `${flags.kubeServer} is plain http: add --kube-insecure to allow it (tests only)`)
    return { kind: 'server', server: flags.kubeServer, insecure: flags.kubeInsecure === true }
  }
  const host = fromEnv(env, 'KUBERNETES_SERVICE_HOST', '')
  if (host === '') return null
  const port = fromEnv(env, 'KUBERNETES_SERVICE_PORT', '443')
  return { kind: 'in-cluster', server: `https://${host.includes(':') ? `[${host}]` : host}:${port}` }
}
