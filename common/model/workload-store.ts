// ztunnel's view of the mesh's workloads (Istio's istio.workload.Workload, the
// fields L4 needs: workload.ts), indexed by IP. Updates are converted first and applied as
// one batch; a bad entry rejects only itself. Proxies read it, never write it.
import { isIPv4 } from 'node:net'
import type { GatewayAddress, MeshService, PortMapping, Workload } from './workload.js'
import { AmbientError } from '../errors.js'

export type { Workload, TunnelProtocol } from './workload.js'

export class WorkloadError extends AmbientError<'AMBIENT_ERR_WORKLOAD'> {
  constructor(message: string) {
    super('AMBIENT_ERR_WORKLOAD', message)
  }
}

export function identityOf(w: Pick<Workload, 'trustDomain' | 'namespace' | 'serviceAccount'>): string {
  return `spiffe://${w.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`
}

const NAME_RE = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/

/** Validates one workload; throws WorkloadError naming it and the bad field. */
export function validateWorkload(w: Workload): Workload {
  const who = `workload ${w.namespace}/${w.name} (uid ${w.uid})`
  if (!w.uid) throw new WorkloadError(`${who}: uid is empty`)
  if (!NAME_RE.test(w.name)) throw new WorkloadError(`${who}: name ${JSON.stringify(w.name)} is not a DNS-1123 name`)
  if (!NAME_RE.test(w.namespace)) throw new WorkloadError(`${who}: namespace ${JSON.stringify(w.namespace)} is not a DNS-1123 name`)
  if (!NAME_RE.test(w.serviceAccount)) throw new WorkloadError(`${who}: serviceAccount ${JSON.stringify(w.serviceAccount)} is not a DNS-1123 name`)
  if (!w.trustDomain) throw new WorkloadError(`${who}: trustDomain is empty`)
  if (w.ips.length === 0) throw new WorkloadError(`${who}: workloadIps is empty`)
  for (const ip of w.ips) if (!isIPv4(ip)) throw new WorkloadError(`${who}: workloadIps entry ${JSON.stringify(ip)} is not an IPv4 address`)
  if (w.tunnelProtocol !== 'HBONE' && w.tunnelProtocol !== 'NONE')
    throw new WorkloadError(`${who}: protocol ${JSON.stringify(w.tunnelProtocol)} must be HBONE or NONE`)
  return w
}

export interface ApplyResult {
  readonly applied: number
  readonly rejected: readonly { readonly uid: string; readonly error: string }[]
}

export class WorkloadStore {
  private byUid = new Map<string, Workload>()
  private byIp = new Map<string, Workload>()
  /** Workloads by the services (`<namespace>/<hostname>`) that select them. */
  private byService = new Map<string, Workload[]>()
  private readonly listeners = new Set<() => void>()

  /** Replaces the whole set (a snapshot): bad entries are rejected alone. */
  replaceAll(workloads: readonly Workload[]): ApplyResult {
    const next = new Map<string, Workload>()
    const rejected: { uid: string; error: string }[] = []
    for (const w of workloads) {
      try {
        next.set(w.uid, validateWorkload(w))
      } catch (err) {
        rejected.push({ uid: w.uid, error: (err as Error).message })
      }
    }
    this.byUid = next
    this.reindex()
    return { applied: next.size, rejected }
  }

  upsert(workload: Workload): void {
    this.byUid.set(workload.uid, validateWorkload(workload))
    this.reindex()
  }

  remove(uid: string): boolean {
    const removed = this.byUid.delete(uid)
    if (removed) this.reindex()
    return removed
  }

  findByIp(ip: string): Workload | undefined {
    return this.byIp.get(ip)
  }

  private servicesByVip = new Map<string, MeshService>()
  /** By `<namespace>/<hostname>`, Istio's service resource name. */
  private servicesByName = new Map<string, MeshService>()

  /** Replaces every service (from the agent); a service is reached through one of its workloads. */
  replaceServices(services: readonly MeshService[]): void {
    const byVip = new Map<string, MeshService>()
    const byName = new Map<string, MeshService>()
    for (const s of services) {
      for (const a of s.addresses) byVip.set(a.address, s)
      byName.set(`${s.namespace}/${s.hostname}`, s)
    }
    this.servicesByVip = byVip
    this.servicesByName = byName
  }

  isServiceVip(ip: string): boolean {
    return this.servicesByVip.has(ip)
  }

  serviceByVip(ip: string): MeshService | undefined {
    return this.servicesByVip.get(ip)
  }

  services(): MeshService[] {
    return [...new Set(this.servicesByVip.values())]
  }

  /**
   * A healthy workload behind a service VIP and the port it serves `port` on, as
   * Istio's ztunnel picks one (random among healthy endpoints); null when the IP is
   * no service VIP, or no healthy endpoint serves that port.
   */
  pickServiceEndpoint(
    vip: string,
    port: number,
    random: () => number = Math.random,
  ): { readonly service: MeshService; readonly workload: Workload; readonly port: number } | null {
    const service = this.servicesByVip.get(vip)
    return service === undefined ? null : this.pickEndpoint(service, port, random)
  }

  /**
   * Where a waypoint is reached: one of its healthy workloads on the HBONE port,
   * through its service (by cluster IP or hostname) or, for an address that is a
   * workload's, that workload. Null when nothing healthy serves it.
   */
  pickWaypoint(waypoint: GatewayAddress, random: () => number = Math.random): { readonly workload: Workload; readonly port: number } | null {
    const d = waypoint.destination
    const service = d.kind === 'address' ? this.servicesByVip.get(d.address) : this.servicesByName.get(`${d.namespace}/${d.hostname}`)
    if (service !== undefined) return this.pickEndpoint(service, waypoint.hboneMtlsPort, random)
    const workload = d.kind === 'address' ? this.byIp.get(d.address) : undefined
    return workload !== undefined && workload.status === 'HEALTHY' ? { workload, port: waypoint.hboneMtlsPort } : null
  }

  private pickEndpoint(
    service: MeshService,
    port: number,
    random: () => number,
  ): { readonly service: MeshService; readonly workload: Workload; readonly port: number } | null {
    const key = `${service.namespace}/${service.hostname}`
    const candidates: { workload: Workload; port: number }[] = []
    for (const w of this.byService.get(key) ?? []) {
      if (w.status !== 'HEALTHY') continue
      const ports: readonly PortMapping[] | undefined = w.services[key]
      const mapping = ports?.find((p) => p.servicePort === port)
      if (mapping !== undefined && mapping.targetPort > 0) candidates.push({ workload: w, port: mapping.targetPort })
    }
    if (candidates.length === 0) return null
    const chosen = candidates[Math.floor(random() * candidates.length)]!
    return { service, ...chosen }
  }

  local(node: string): Workload[] {
    return [...this.byUid.values()].filter((w) => w.node === node && w.netnsPath !== undefined)
  }

  all(): Workload[] {
    return [...this.byUid.values()]
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private reindex(): void {
    const byIp = new Map<string, Workload>()
    const byService = new Map<string, Workload[]>()
    for (const w of this.byUid.values()) {
      for (const ip of w.ips) byIp.set(ip, w)
      for (const key of Object.keys(w.services)) byService.set(key, [...(byService.get(key) ?? []), w])
    }
    this.byIp = byIp
    this.byService = byService
    for (const listener of this.listeners) listener()
  }
}
