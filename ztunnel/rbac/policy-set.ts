// An immutable, indexed set of L4 policies, built once per configuration change and
// read on every connection. Selection follows Istio ambient: GLOBAL policies apply
// everywhere, NAMESPACE policies to their namespace, WORKLOAD_SELECTOR policies to
// workloads of their own namespace or (root namespace) of any namespace whose
// labels they select; an empty selector selects nothing (Istio attaches only
// policies with a non-nil label selector).
import type { WorkloadAuthorization } from '../../agent/model/authorization.js'
import { labelsKey, selectorMatches } from '../../agent/model/convert/labels.js'
import { mtlsAuthorization } from '../../agent/model/convert/peer-authentication.js'
import {
  type EffectiveMtls,
  type PeerAuthentication,
  type SelectedPeerAuthentications,
  effectiveMtls,
  selectPeerAuthentications,
} from '../../agent/model/peer-authentication.js'
import type { Labels } from '../../agent/model/workload.js'
import type { L4Facts } from './fields.js'
import { type CompiledPolicy, compileL4 } from './matcher.js'

export interface PolicySetInput {
  readonly authorizations: readonly WorkloadAuthorization[]
  readonly peerAuthentications: readonly PeerAuthentication[]
  /** Istio's root namespace (istio-system unless configured). */
  readonly rootNamespace: string
}

/** The policies that bear on one destination workload, split as ztunnel evaluates them. */
export interface DestinationPolicies {
  readonly allow: readonly CompiledPolicy<L4Facts>[]
  readonly deny: readonly CompiledPolicy<L4Facts>[]
  readonly allowDryRun: readonly CompiledPolicy<L4Facts>[]
  readonly denyDryRun: readonly CompiledPolicy<L4Facts>[]
  /** The workload's PeerAuthentications. */
  readonly peerAuthentications: SelectedPeerAuthentications
  /** The DENY Authorization that enforces them (Istio's converted form); null when plaintext is accepted everywhere. */
  readonly mtls: CompiledPolicy<L4Facts> | null
  mtlsFor(port: number): EffectiveMtls
}

interface SelectorEntry {
  readonly selector: Labels
  readonly policy: CompiledPolicy<L4Facts>
}

const CACHE_LIMIT = 4096
const byKey = (a: CompiledPolicy<L4Facts>, b: CompiledPolicy<L4Facts>): number =>
  a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0

export class PolicySet {
  readonly rootNamespace: string
  readonly size: number
  private readonly global: readonly CompiledPolicy<L4Facts>[]
  private readonly byNamespace: ReadonlyMap<string, readonly CompiledPolicy<L4Facts>[]>
  /** namespace -> one `k=v` pair of each selector -> policies whose selector has it. */
  private readonly bySelectorPair: ReadonlyMap<string, ReadonlyMap<string, readonly SelectorEntry[]>>
  private readonly peerAuthentications: ReadonlyMap<string, readonly PeerAuthentication[]>
  private readonly cache = new Map<string, DestinationPolicies>()
  /** Fast path: the same (usually frozen, shared) labels object seen again. */
  private readonly byLabelsObject = new WeakMap<Labels, Map<string, DestinationPolicies>>()

  private constructor(input: PolicySetInput) {
    this.rootNamespace = input.rootNamespace
    this.size = input.authorizations.length
    const global: CompiledPolicy<L4Facts>[] = []
    const byNamespace = new Map<string, CompiledPolicy<L4Facts>[]>()
    const bySelectorPair = new Map<string, Map<string, SelectorEntry[]>>()
    for (const wa of input.authorizations) {
      const compiled = compileL4(wa.authorization, wa.source)
      const a = wa.authorization
      if (a.scope === 'GLOBAL') global.push(compiled)
      else if (a.scope === 'NAMESPACE') pushTo(byNamespace, a.namespace, compiled)
      else if (wa.selector !== null && Object.keys(wa.selector).length > 0) {
        const pair = labelsKey(wa.selector).split(',')[0]!
        let pairs = bySelectorPair.get(a.namespace)
        if (pairs === undefined) bySelectorPair.set(a.namespace, (pairs = new Map()))
        pushTo(pairs, pair, { selector: wa.selector, policy: compiled })
      }
    }
    this.global = global.sort(byKey)
    for (const list of byNamespace.values()) list.sort(byKey)
    this.byNamespace = byNamespace
    this.bySelectorPair = bySelectorPair
    const pas = new Map<string, PeerAuthentication[]>()
    for (const pa of input.peerAuthentications) pushTo(pas, pa.namespace, pa)
    this.peerAuthentications = pas
  }

  static build(input: PolicySetInput): PolicySet {
    return new PolicySet(input)
  }

  static empty(rootNamespace: string): PolicySet {
    return new PolicySet({ authorizations: [], peerAuthentications: [], rootNamespace })
  }

  /** The policies selecting a workload with these namespace and labels (cached per label set). */
  forDestination(namespace: string, labels: Labels): DestinationPolicies {
    let perObject = this.byLabelsObject.get(labels)
    const hit = perObject?.get(namespace)
    if (hit !== undefined) return hit
    const found = this.forLabelSet(namespace, labels)
    if (perObject === undefined) this.byLabelsObject.set(labels, (perObject = new Map()))
    perObject.set(namespace, found)
    return found
  }

  private forLabelSet(namespace: string, labels: Labels): DestinationPolicies {
    const key = `${namespace}\u0000${labelsKey(labels)}`
    let found = this.cache.get(key)
    if (found === undefined) {
      found = this.select(namespace, labels)
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear()
      this.cache.set(key, found)
    }
    return found
  }

  private select(namespace: string, labels: Labels): DestinationPolicies {
    const all = [
      ...(this.byNamespace.get(namespace) ?? []),
      ...this.global,
      ...this.selected(namespace, labels),
      ...(namespace === this.rootNamespace ? [] : this.selected(this.rootNamespace, labels)),
    ]
    const candidates = [...(this.peerAuthentications.get(namespace) ?? []), ...(namespace === this.rootNamespace ? [] : this.peerAuthentications.get(this.rootNamespace) ?? [])]
    const selected = selectPeerAuthentications(candidates, this.rootNamespace, namespace, labels)
    const mtls = mtlsAuthorization(selected, this.rootNamespace)
    const mtlsSource = selected.workload ?? selected.namespace ?? selected.mesh
    return {
      allow: all.filter((p) => p.action === 'ALLOW' && !p.dryRun),
      deny: all.filter((p) => p.action === 'DENY' && !p.dryRun),
      allowDryRun: all.filter((p) => p.action === 'ALLOW' && p.dryRun),
      denyDryRun: all.filter((p) => p.action === 'DENY' && p.dryRun),
      peerAuthentications: selected,
      mtls: mtls === null ? null : compileL4(mtls, { kind: 'PeerAuthentication', namespace: mtlsSource?.namespace ?? mtls.namespace, name: mtlsSource?.name ?? mtls.name }),
      mtlsFor: (port: number) => effectiveMtls(selected, port),
    }
  }

  private selected(namespace: string, labels: Labels): CompiledPolicy<L4Facts>[] {
    const pairs = this.bySelectorPair.get(namespace)
    if (pairs === undefined) return []
    const out: CompiledPolicy<L4Facts>[] = []
    for (const k in labels) {
      for (const entry of pairs.get(`${k}=${labels[k]}`) ?? []) {
        if (selectorMatches(entry.selector, labels)) out.push(entry.policy)
      }
    }
    return out.sort(byKey)
  }
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}
