// What an API request asks for in RBAC's words (the API server's RequestInfo):
// verb, API group, resource (with subresource), namespace and name. A 403 is
// reported with these so that the missing ClusterRole rule can be read off the
// log line.

export interface RequestInfo {
  /** get, list, watch, create, update, patch, delete, deletecollection. */
  readonly verb: string
  /** API group, '' for the core group. */
  readonly group: string
  /** Resource as RBAC names it: `pods`, `pods/status`. */
  readonly resource: string
  /** Namespace, or undefined at the cluster scope. */
  readonly namespace?: string
  readonly name?: string
}

/** The RequestInfo of `method path` (path may carry a query); undefined for a non-resource path. */
export function requestInfo(method: string, path: string): RequestInfo | undefined {
  const url = new URL(path, 'http://api')
  const seg = url.pathname.split('/').filter((s) => s !== '')
  let group: string
  let rest: string[]
  if (seg[0] === 'api' && seg.length >= 3) [group, rest] = ['', seg.slice(2)]
  else if (seg[0] === 'apis' && seg.length >= 4) [group, rest] = [seg[1]!, seg.slice(3)]
  else return undefined
  let namespace: string | undefined
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = decodeURIComponent(rest[1]!)
    rest = rest.slice(2)
  }
  const [resource, name, subresource] = rest as [string, string | undefined, string | undefined]
  const watch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1'
  const verbs: Record<string, string> = { GET: name ? 'get' : watch ? 'watch' : 'list', POST: 'create', PUT: 'update', PATCH: 'patch' }
  const verb = method === 'DELETE' ? (name ? 'delete' : 'deletecollection') : (verbs[method.toUpperCase()] ?? method.toLowerCase())
  // As the API server does: a list or watch selecting one name by field is authorized for that name (RBAC resourceNames).
  const byName = (url.searchParams.get('fieldSelector') ?? '')
    .split(',')
    .map((term) => /^metadata\.name==?(.+)$/.exec(term.trim())?.[1])
    .find((n) => n !== undefined)
  if (name === undefined && byName !== undefined && (verb === 'list' || verb === 'watch'))
    return { verb, group, resource, ...(namespace !== undefined && { namespace }), name: byName }
  return {
    verb,
    group,
    resource: subresource ? `${resource}/${subresource}` : resource,
    ...(namespace !== undefined && { namespace }),
    ...(name !== undefined && { name: decodeURIComponent(name) }),
  }
}

/** `list pods (group "") at the cluster scope`, `patch authorizationpolicies/status (group "security.istio.io") in namespace shop`. */
export function describeRequestInfo(info: RequestInfo): string {
  return `${info.verb} ${info.resource} (group ${JSON.stringify(info.group)}) ${info.namespace === undefined ? 'at the cluster scope' : `in namespace ${info.namespace}`}`
}
