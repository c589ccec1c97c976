// Authentication and authorization of the fake Kubernetes API server, as the real
// one does them for service accounts: tokens it issues (bound to a pod, and since
// Kubernetes 1.30 naming the pod's node; with audiences and an expiry) checked by
// TokenReview and on every request, and RBAC from ClusterRole/Role and their
// bindings (verbs, API groups, resources with subresources, resource names).
import { randomBytes } from 'node:crypto'

/** The API server's own audience: tokens without another audience are for it. */
export const API_AUDIENCE = 'https://kubernetes.default.svc.cluster.local'

export interface TokenSpec {
  readonly namespace: string
  readonly serviceAccount: string
  /** The pod the token is bound to (a projected token); it must still exist with this uid. */
  readonly pod?: { readonly name: string; readonly uid: string }
  /** The bound pod's node, in the user extra (`authentication.kubernetes.io/node-name`, Kubernetes >= 1.30); omit to act as an older server. */
  readonly node?: string
  /** Default: the API server's audience. */
  readonly audiences?: readonly string[]
  /** Default 3600. Negative: already expired. */
  readonly expiresInSeconds?: number
}

interface IssuedToken extends TokenSpec {
  readonly expiresAt: number
}

export interface UserInfo {
  readonly username: string
  readonly uid: string
  readonly groups: readonly string[]
  readonly extra: Readonly<Record<string, readonly string[]>>
}

export type TokenReviewResult =
  { readonly authenticated: true; readonly user: UserInfo; readonly audiences: readonly string[] } | { readonly authenticated: false; readonly error: string }

export class FakeTokens {
  readonly #tokens = new Map<string, IssuedToken>()

  issue(spec: TokenSpec): string {
    const token = `fake.${randomBytes(24).toString('base64url')}`
    this.#tokens.set(token, { ...spec, expiresAt: Date.now() + (spec.expiresInSeconds ?? 3600) * 1000 })
    return token
  }

  /** What TokenReview answers; `podUid` looks the bound pod up (undefined: it no longer exists). */
  review(token: string, audiences: readonly string[], podUid: (namespace: string, name: string) => string | undefined): TokenReviewResult {
    const issued = this.#tokens.get(token)
    if (issued === undefined) return { authenticated: false, error: 'invalid bearer token, token lookup failed' }
    if (Date.now() >= issued.expiresAt) return { authenticated: false, error: 'invalid bearer token, service account token has expired' }
    const wanted = audiences.length === 0 ? [API_AUDIENCE] : audiences
    const has = issued.audiences ?? [API_AUDIENCE]
    const both = wanted.filter((a) => has.includes(a))
    if (both.length === 0)
      return {
        authenticated: false,
        error: `invalid bearer token, token audiences ${JSON.stringify(has)} is invalid for the target audiences ${JSON.stringify(wanted)}`,
      }
    if (issued.pod !== undefined && podUid(issued.namespace, issued.pod.name) !== issued.pod.uid)
      return { authenticated: false, error: `invalid bearer token, pod "${issued.pod.name}" (${issued.pod.uid}) does not exist any more` }
    const extra: Record<string, string[]> = {}
    if (issued.pod !== undefined) {
      extra['authentication.kubernetes.io/pod-name'] = [issued.pod.name]
      extra['authentication.kubernetes.io/pod-uid'] = [issued.pod.uid]
    }
    if (issued.node !== undefined) extra['authentication.kubernetes.io/node-name'] = [issued.node]
    return {
      authenticated: true,
      audiences: both,
      user: {
        username: `system:serviceaccount:${issued.namespace}:${issued.serviceAccount}`,
        uid: `sa-uid-${issued.namespace}-${issued.serviceAccount}`,
        groups: ['system:serviceaccounts', `system:serviceaccounts:${issued.namespace}`, 'system:authenticated'],
        extra,
      },
    }
  }
}

export interface PolicyRule {
  readonly apiGroups?: readonly string[]
  readonly resources?: readonly string[]
  readonly verbs: readonly string[]
  readonly resourceNames?: readonly string[]
}

interface Subject {
  readonly kind: string
  readonly name: string
  readonly namespace?: string
}

type RbacObject = { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown }; rules?: unknown; roleRef?: unknown; subjects?: unknown }

export interface Attributes {
  readonly user: UserInfo
  readonly verb: string
  readonly group: string
  /** With subresource: `pods/status`. */
  readonly resource: string
  readonly namespace?: string
  readonly name?: string
}

/** RBAC as the API server evaluates it: a request is allowed when a rule of a role bound to the user covers it. */
export class FakeRbac {
  readonly #roles = new Map<string, readonly PolicyRule[]>()
  readonly #bindings: { readonly namespace?: string; readonly roleKey: string; readonly subjects: readonly Subject[] }[] = []

  /** Loads ClusterRole, Role, ClusterRoleBinding and RoleBinding objects (other kinds are ignored). */
  load(objects: readonly RbacObject[]): void {
    for (const o of objects) {
      const name = String(o.metadata?.name)
      const ns = typeof o.metadata?.namespace === 'string' ? o.metadata.namespace : undefined
      if (o.kind === 'ClusterRole') this.#roles.set(`ClusterRole/${name}`, (o.rules ?? []) as PolicyRule[])
      else if (o.kind === 'Role') this.#roles.set(`Role/${ns ?? 'default'}/${name}`, (o.rules ?? []) as PolicyRule[])
      else if (o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding') {
        const ref = o.roleRef as { kind: string; name: string }
        const bindingNs = o.kind === 'RoleBinding' ? (ns ?? 'default') : undefined
        const roleKey = ref.kind === 'ClusterRole' ? `ClusterRole/${ref.name}` : `Role/${bindingNs}/${ref.name}`
        this.#bindings.push({ ...(bindingNs !== undefined && { namespace: bindingNs }), roleKey, subjects: (o.subjects ?? []) as Subject[] })
      }
    }
  }

  allowed(a: Attributes): boolean {
    for (const binding of this.#bindings) {
      if (binding.namespace !== undefined && binding.namespace !== a.namespace) continue
      if (!binding.subjects.some((s) => subjectMatches(s, a.user))) continue
      const rules = this.#roles.get(binding.roleKey) ?? []
      if (rules.some((r) => ruleCovers(r, a))) return true
    }
    return false
  }
}

function subjectMatches(s: Subject, user: UserInfo): boolean {
  if (s.kind === 'ServiceAccount') return user.username === `system:serviceaccount:${s.namespace}:${s.name}`
  if (s.kind === 'User') return user.username === s.name
  if (s.kind === 'Group') return user.groups.includes(s.name)
  return false
}

function ruleCovers(r: PolicyRule, a: Attributes): boolean {
  const has = (list: readonly string[] | undefined, value: string): boolean => (list ?? []).includes('*') || (list ?? []).includes(value)
  if (!has(r.verbs, a.verb) || !has(r.apiGroups, a.group) || !has(r.resources, a.resource)) return false
  if (r.resourceNames !== undefined && r.resourceNames.length > 0) return a.name !== undefined && r.resourceNames.includes(a.name)
  return true
}

/** The real server's 403 message. */
export function forbiddenMessage(a: Attributes): string {
  const [resource, subresource] = a.resource.split('/')
  const what = `${resource}${a.name ? ` "${a.name}"` : ''}`
  return `${what} is forbidden: User "${a.user.username}" cannot ${a.verb} resource "${resource}"${subresource ? `/${subresource}` : ''} in API group "${a.group}" ${
    a.namespace === undefined ? 'at the cluster scope' : `in the namespace "${a.namespace}"`
  }`
}
