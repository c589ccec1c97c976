// In a cluster, the agent that holds the policy-status Lease does for waypoint
// Gateways what istiod does: for each Gateway of class istio-waypoint it renders
// daemonset/waypoint-template.yaml (ServiceAccount, ClusterRoleBinding, Deployment
// running `ambient waypoint`, Service) and makes the API hold exactly that, owned
// by the Gateway so that deleting it deletes them (the ClusterRoleBinding, which
// cannot be owned by a namespaced object, is deleted by the agent). It also writes
// the Gateway's status: Accepted and Programmed, and its address (the Service's
// cluster IP), as Istio does. Each pass compares with what the API holds, so a
// pass can run twice, after a restart or on another agent taking the Lease.
import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import type { KubeApi } from '../common/kube/kube-client.js'
import { isRecord } from '../common/model/convert/object-fields.js'
import type { Snapshot } from '../common/model/snapshot.js'
import { GATEWAY_NAME_LABEL, waypointIndex } from '../common/model/waypoint.js'
import { renderWaypointObjects, type RenderedObject, type WaypointValues } from './waypoint-template.js'

/** The hash of the rendered object, kept on it: an object is patched only when its rendering changed. */
export const RENDERED_ANNOTATION = 'ambient.istio.io/rendered'
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
export const MANAGED_BY = 'ambient-agent'
const GATEWAY_NAMESPACE_LABEL = 'gateway.networking.k8s.io/gateway-namespace'

export interface WaypointDeployerOptions {
  readonly api: KubeApi
  /** True while this agent holds the Lease (one writer). */
  readonly writing: () => boolean
  readonly values: Omit<WaypointValues, 'NAME' | 'NAMESPACE' | 'GATEWAY_UID'>
  readonly log: Logger
}

interface Paths {
  readonly item: string
  readonly collection: string
}

/** The API paths of a rendered object (the kinds the template has). */
function pathsOf(o: RenderedObject): Paths {
  const ns = o.metadata.namespace
  const base: Record<string, [string, string]> = {
    ServiceAccount: ['/api/v1', 'serviceaccounts'],
    Service: ['/api/v1', 'services'],
    Deployment: ['/apis/apps/v1', 'deployments'],
    ClusterRoleBinding: ['/apis/rbac.authorization.k8s.io/v1', 'clusterrolebindings'],
  }
  const found = base[o.kind]
  if (found === undefined) throw new Error(`waypoint template: no API path known for kind ${o.kind}`)
  const [prefix, plural] = found
  const collection = ns === undefined ? `${prefix}/${plural}` : `${prefix}/namespaces/${encodeURIComponent(ns)}/${plural}`
  return { collection, item: `${collection}/${encodeURIComponent(o.metadata.name)}` }
}

function hashOf(o: RenderedObject): string {
  return createHash('sha256').update(JSON.stringify(o)).digest('hex').slice(0, 16)
}

/** The rendered object marked as ours, with the hash of its rendering. */
function marked(o: RenderedObject, gateway: { namespace: string; name: string }): RenderedObject {
  const labels = { ...(o.metadata.labels ?? {}), [MANAGED_BY_LABEL]: MANAGED_BY, [GATEWAY_NAMESPACE_LABEL]: gateway.namespace }
  const base = { ...o, metadata: { ...o.metadata, labels } }
  return { ...base, metadata: { ...base.metadata, annotations: { ...(o.metadata.annotations ?? {}), [RENDERED_ANNOTATION]: hashOf(base) } } }
}

export class WaypointDeployer {
  private running: Promise<void> = Promise.resolve()
  private pending: Snapshot | null = null
  /** What the last pass reported, so a repeated pass logs nothing new. */
  private reported = ''

  constructor(private readonly options: WaypointDeployerOptions) {}

  /** Brings the API in line with the snapshot's waypoint Gateways; passes are serialized and coalesced. */
  schedule(snapshot: Snapshot): Promise<void> {
    const first = this.pending === null
    this.pending = snapshot
    if (first) {
      this.running = this.running.then(async () => {
        const next = this.pending!
        this.pending = null
        try {
          await this.pass(next)
        } catch (err) {
          this.options.log.error({ err: (err as Error).message }, 'waypoint deployment pass failed; retried on the next change')
        }
      })
    }
    return this.running
  }

  private async pass(snapshot: Snapshot): Promise<void> {
    if (!this.options.writing()) return
    const index = waypointIndex(snapshot)
    const problems: string[] = []
    const wanted = new Set<string>()
    for (const gateway of index.gateways.values()) {
      const key = `${gateway.namespace}/${gateway.name}`
      if (this.options.values.IMAGE === '') {
        problems.push(`Gateway ${key}: no waypoint image to deploy: start the agent with --waypoint-image (or AMBIENT_IMAGE)`)
        continue
      }
      const object = snapshot.opaque.Gateway.get(key)?.object
      const uid = isRecord(object) && isRecord(object['metadata']) ? object['metadata']['uid'] : undefined
      if (typeof uid !== 'string' || uid === '') {
        problems.push(`Gateway ${key} has no metadata.uid (not from an API server): nothing deployed for it`)
        continue
      }
      wanted.add(`ambient-waypoint-${gateway.namespace}-${gateway.name}`)
      const objects = renderWaypointObjects({ ...this.options.values, NAME: gateway.name, NAMESPACE: gateway.namespace, GATEWAY_UID: uid }).map((o) =>
        marked(o, gateway),
      )
      for (const o of objects) {
        if (!this.options.writing()) return // the Lease moved on mid-pass
        await this.ensure(o, problems)
      }
      await this.writeGatewayStatus(snapshot, key, object as Record<string, unknown>, problems)
    }
    await this.removeOrphans(wanted, problems)
    const digest = JSON.stringify(problems)
    if (digest !== this.reported) {
      this.reported = digest
      for (const p of problems) this.options.log.error(p)
    }
  }

  /** Creates the object, or patches it when its rendering changed (a merge patch keeps what the server filled in, such as a cluster IP). */
  private async ensure(o: RenderedObject, problems: string[]): Promise<void> {
    const paths = pathsOf(o)
    const what = `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`
    const current = await this.options.api.request('GET', paths.item)
    if (current.status === 404) {
      const created = await this.options.api.request('POST', paths.collection, { body: o })
      if (created.status >= 300) problems.push(`cannot create ${what}: ${describe(created)}`)
      else this.options.log.info({ object: what }, 'waypoint object created')
      return
    }
    if (current.status !== 200) return void problems.push(`cannot read ${what}: ${describe(current)}`)
    const annotations = isRecord(current.body) && isRecord(current.body['metadata']) ? current.body['metadata']['annotations'] : undefined
    if (isRecord(annotations) && annotations[RENDERED_ANNOTATION] === o.metadata.annotations?.[RENDERED_ANNOTATION]) return
    const patched = await this.options.api.request('PATCH', paths.item, { body: o, contentType: 'application/merge-patch+json' })
    if (patched.status >= 300) problems.push(`cannot update ${what}: ${describe(patched)}`)
    else this.options.log.info({ object: what }, 'waypoint object updated')
  }

  /** Accepted, Programmed once its Service has a cluster IP, and that address, as Istio reports a waypoint. */
  private async writeGatewayStatus(snapshot: Snapshot, key: string, gateway: Record<string, unknown>, problems: string[]): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string]
    const address = snapshot.services.get(key)?.clusterIPs[0]
    const generation = isRecord(gateway['metadata']) && typeof gateway['metadata']['generation'] === 'number' ? gateway['metadata']['generation'] : undefined
    const condition = (type: string, ok: boolean, reason: string, message: string): Record<string, unknown> => ({
      type,
      status: ok ? 'True' : 'False',
      reason,
      message,
      ...(generation !== undefined && { observedGeneration: generation }),
    })
    const status = {
      addresses: address === undefined ? [] : [{ type: 'IPAddress', value: address }],
      conditions: [
        condition('Accepted', true, 'Accepted', 'resource accepted'),
        address === undefined
          ? condition('Programmed', false, 'AddressNotAssigned', `waiting for Service ${key} to get a cluster IP`)
          : condition('Programmed', true, 'Programmed', `deployed as Deployment ${key}, reached at ${address}`),
      ],
    }
    const current = isRecord(gateway['status']) ? gateway['status'] : {}
    const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)
    const currentConditions = Array.isArray(current['conditions']) ? current['conditions'] : []
    const known = (c: unknown): boolean => isRecord(c) && (c['type'] === 'Accepted' || c['type'] === 'Programmed')
    const stripped = (list: unknown[]): unknown[] => list.filter(known).map((c) => ({ ...(c as object), lastTransitionTime: undefined }))
    if (same(current['addresses'] ?? [], status.addresses) && same(stripped(currentConditions), stripped(status.conditions))) return
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
    const conditions = [...currentConditions.filter((c) => !known(c)), ...status.conditions.map((c) => ({ ...c, lastTransitionTime: now }))]
    const reply = await this.options.api.request('PATCH', `/apis/gateway.networking.k8s.io/v1/namespaces/${namespace}/gateways/${name}/status`, {
      body: { status: { addresses: status.addresses, conditions } },
      contentType: 'application/merge-patch+json',
    })
    if (reply.status >= 300) problems.push(`cannot write the status of Gateway ${key}: ${describe(reply)}`)
  }

  /** ClusterRoleBindings of waypoints whose Gateway is gone (namespaced objects go with their owner). */
  private async removeOrphans(wanted: ReadonlySet<string>, problems: string[]): Promise<void> {
    const list = await this.options.api.request(
      'GET',
      `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?labelSelector=${encodeURIComponent(`${MANAGED_BY_LABEL}=${MANAGED_BY}`)}`,
    )
    if (list.status !== 200) return void problems.push(`cannot list the waypoints' ClusterRoleBindings: ${describe(list)}`)
    const items = isRecord(list.body) && Array.isArray(list.body['items']) ? list.body['items'] : []
    for (const item of items) {
      const meta = isRecord(item) && isRecord(item['metadata']) ? item['metadata'] : {}
      const name = typeof meta['name'] === 'string' ? meta['name'] : ''
      const labels = isRecord(meta['labels']) ? meta['labels'] : {}
      if (name === '' || wanted.has(name) || labels[GATEWAY_NAME_LABEL] === undefined) continue
      if (!this.options.writing()) return
      const reply = await this.options.api.request('DELETE', `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${encodeURIComponent(name)}`)
      if (reply.status >= 300 && reply.status !== 404) problems.push(`cannot delete ClusterRoleBinding ${name}: ${describe(reply)}`)
      else this.options.log.info({ object: `ClusterRoleBinding ${name}` }, 'waypoint object removed: its Gateway is gone')
    }
  }
}

function describe(reply: { status: number; body: unknown }): string {
  const message = isRecord(reply.body) && typeof reply.body['message'] === 'string' ? reply.body['message'] : ''
  return `status ${reply.status}${message ? `: ${message}` : ''}`
}
