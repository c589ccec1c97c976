// Shared by the waypoint/route tests: HTTPRoute manifests through the real
// conversion into a table, and a small fixed set of Services.
import type { HttpRoute } from '../../common/model/http-route.js'
import { convertHttpRoute } from '../../common/model/convert/http-route.js'
import type { RouteRequest } from './request.js'
import { type BackendTarget, type LookupService, type RouteTable, type RouteTableOptions, buildRouteTable } from './table.js'

export type Obj = Record<string, unknown>

/** namespace/name -> ports. */
export const SERVICES: Readonly<Record<string, readonly { readonly name: string; readonly port: number }[]>> = {
  'shop/reviews': [
    { name: 'http', port: 9080 },
    { name: 'grpc', port: 9090 },
  ],
  'shop/v1': [{ name: 'http', port: 9080 }],
  'shop/v2': [{ name: 'http', port: 9080 }],
  'shop/v3': [{ name: 'http', port: 9080 }],
  'shop/shadow': [{ name: '', port: 80 }],
  'other/ext': [{ name: 'http', port: 80 }],
}

export const lookupService: LookupService = (namespace, name) => {
  const ports = SERVICES[`${namespace}/${name}`]
  return ports === undefined ? undefined : { ports }
}

export const REVIEWS: BackendTarget = { namespace: 'shop', name: 'reviews', port: 9080 }
export const PARENT = { group: '', kind: 'Service', name: 'reviews' } as const

/** An HTTPRoute manifest in namespace shop (unless metadata says otherwise) on the reviews Service. */
export function httpRoute(name: string, rules: unknown[], metadata: Obj = {}, parentRefs: unknown[] = [PARENT]): Obj {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name, namespace: 'shop', ...metadata },
    spec: { parentRefs, rules },
  }
}

/** A rule with the given matches that forwards to Service v1. */
export function ruleTo(matches: unknown[], backend = 'v1', extra: Obj = {}): Obj {
  return { matches, backendRefs: [{ name: backend, port: 9080 }], ...extra }
}

export function convert(object: Obj): HttpRoute {
  const r = convertHttpRoute(object)
  if (r.kind !== 'converted') throw new Error(`route did not convert: ${r.kind === 'invalid' ? r.error.message : r.reason}`)
  return r.route
}

export function table(objects: readonly Obj[], options: Partial<RouteTableOptions> = {}): RouteTable {
  return buildRouteTable(objects.map(convert), { lookupService, ...options })
}

export function get(path: string, extra: Partial<RouteRequest> = {}): RouteRequest {
  return { method: 'GET', path, host: 'reviews:9080', headers: {}, ...extra }
}
