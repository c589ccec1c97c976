// An immutable, indexed set of L4 policies, built once per configuration change and
// read on every connection. Selection follows Istio ambient: GLOBAL policies apply
// everywhere, NAMESPACE policies to their namespace, WORKLOAD_SELECTOR policies to
// workloads of their own namespace or (root namespace) of any namespace whose
// labels they select; an empty selector selects nothing (Istio attaches only
// policies with a non-nil label selector). When the control plane resolved the
// selectors (the workload API's Workload.authorization_policies), WORKLOAD_SELECTOR
// policies are attached by name instead, and the PeerAuthentication arrives in its
// converted form (a DENY Authorization named by Istio's convention).
import type { WorkloadAuthorization } from '../model/authorization.js'
import { labelsKey, selectorMatches } from '../model/convert/labels.js'
import { isConvertedPeerAuthentication, mtlsAuthorization } from '../model/convert/peer-authentication.js'
import {
  type EffectiveMtls,
  type PeerAuthentication,
  type SelectedPeerAuthentications,
  effectiveMtls,
  selectPeerAuthentications,
} from '../model/peer-authentication.js'
import type { Labels } from '../model/workload.js'
import { type L4Facts, prepareL4 } from './fields.js'
import type { Authorization } from '../model/authorization.js'
import { type CompiledPolicy, compileL4, policyMatches } from './matcher.js'

export interface PolicySetInput {
  readonly authorizations: readonly WorkloadAuthorization[]
  readonly peerAuthentications: readonly PeerAuthentication[]
  /** Istio's root namespace (istio-system unless configured). */
  readonly rootNamespace: string
}

/**
 * Enforced policies of one action, indexed by the source namespaces they can
 * match: a policy every group of which has a rule whose matches all demand an
 * exact source namespace (`namespaces` values or `serviceAccounts`) can only match
 * a peer from one of those namespaces; the rest are `unbounded`. Both lists keep
 * the (namespace, name) order, so the first match is the same one a linear scan
 * finds.
 */
export interface NamespaceIndex {
  readonly byNamespace: ReadonlyMap<string, readonly CompiledPolicy<L4Facts>[]>
  readonly unbounded: readonly CompiledPolicy<L4Facts>[]
  /** Each policy's position in the full list, to merge the two in evaluation order. */
  readonly order: ReadonlyMap<CompiledPolicy<L4Facts>, number>
}

/** The policies that bear on one destination workload, split as ztunnel evaluates them. */
export interface DestinationPolicies {
  readonly allow: readonly CompiledPolicy<L4Facts>[]
  readonly deny: readonly CompiledPolicy<L4Facts>[]
  readonly allowDryRun: readonly CompiledPolicy<L4Facts>[]
  readonly denyDryRun: readonly CompiledPolicy<L4Facts>[]
  readonly allowIndex: NamespaceIndex
  readonly denyIndex: NamespaceIndex
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

/**
 * Destination policies per (namespace, object): a fast path for the same object
 * seen again (workloads share their frozen labels and attached lists, so no key
 * is built per connection), in front of a bounded cache by the object's content.
 */
class DestinationCache<K extends object> {
  private readonly byObject = new WeakMap<K, Map<string, DestinationPolicies>>()
  private readonly byKey = new Map<string, DestinationPolicies>()

  constructor(
    private readonly keyOf: (namespace: string, object: K) => string,
    private readonly select: (namespace: string, object: K) => DestinationPolicies,
  ) {}

  get(namespace: string, object: K): DestinationPolicies {
    let perObject = this.byObject.get(object)
    const hit = perObject?.get(namespace)
    if (hit !== undefined) return hit
    const key = this.keyOf(namespace, object)
    let found = this.byKey.get(key)
    if (found === undefined) {
      found = this.select(namespace, object)
      if (this.byKey.size >= CACHE_LIMIT) this.byKey.clear()
      this.byKey.set(key, found)
    }
    if (perObject === undefined) this.byObject.set(object, (perObject = new Map()))
    perObject.set(namespace, found)
    return found
  }
}
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
  /** WORKLOAD_SELECTOR policies by `ns/name`, for workloads that name theirs. */
  private readonly byName = new Map<string, CompiledPolicy<L4Facts>>()
  private readonly byLabels = new DestinationCache<Labels>(
    (namespace, labels) => `${namespace}\u0000${labelsKey(labels)}`,
    (namespace, labels) => this.select(namespace, labels),
  )
  private readonly byAttached = new DestinationCache<readonly string[]>(
    (namespace, attached) => `${namespace}\u0000${attached.join(',')}`,
    (namespace, attached) => this.selectAttached(namespace, attached),
  )
  /** The source namespaces each policy can match (null: any). */
  private readonly sourceNamespaces = new Map<CompiledPolicy<L4Facts>, ReadonlySet<string> | null>()

  private constructor(input: PolicySetInput) {
    this.rootNamespace = input.rootNamespace
    this.size = input.authorizations.length
    const global: CompiledPolicy<L4Facts>[] = []
    const byNamespace = new Map<string, CompiledPolicy<L4Facts>[]>()
    const bySelectorPair = new Map<string, Map<string, SelectorEntry[]>>()
    for (const wa of input.authorizations) {
      const compiled = compileL4(wa.authorization, wa.source)
      const a = wa.authorization
      this.sourceNamespaces.set(compiled, sourceNamespaceBound(a))
      if (a.scope === 'GLOBAL') global.push(compiled)
      else if (a.scope === 'NAMESPACE') pushTo(byNamespace, a.namespace, compiled)
      else this.byName.set(`${a.namespace}/${a.name}`, compiled)
      if (a.scope !== 'WORKLOAD_SELECTOR') continue
      if (wa.selector !== null && Object.keys(wa.selector).length > 0) {
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
    return this.byLabels.get(namespace, labels)
  }

  /**
   * The policies of a workload whose WORKLOAD_SELECTOR policies the control plane
   * named (`ns/name`); names not (yet) known are skipped, as Istio's ztunnel does.
   * A converted PeerAuthentication among them is the workload's mTLS requirement.
   */
  forAttached(namespace: string, attached: readonly string[]): DestinationPolicies {
    return this.byAttached.get(namespace, attached)
  }

  private selectAttached(namespace: string, attached: readonly string[]): DestinationPolicies {
    const named = attached.map((name) => this.byName.get(name)).filter((p): p is CompiledPolicy<L4Facts> => p !== undefined)
    const mtls = named.find((p) => isConvertedPeerAuthentication(p.name)) ?? null
    const all = [...(this.byNamespace.get(namespace) ?? []), ...this.global, ...named.filter((p) => p !== mtls).sort(byKey)]
    const plaintextRefused = (port: number): boolean =>
      mtls !== null &&
      policyMatches(mtls, prepareL4({ sourceIdentity: undefined, sourceIp: '0.0.0.0', destination: { ip: '0.0.0.0', port, namespace, labels: {} } }))
    return this.assemble(all, { mesh: null, namespace: null, workload: null }, mtls, (port) =>
      plaintextRefused(port)
        ? { mode: 'STRICT', policy: { namespace: mtls!.namespace, name: mtls!.name }, level: 'converted' }
        : { mode: 'PERMISSIVE', policy: null, level: 'default' },
    )
  }

  private select(namespace: string, labels: Labels): DestinationPolicies {
    const all = [
      ...(this.byNamespace.get(namespace) ?? []),
      ...this.global,
      ...this.selected(namespace, labels),
      ...(namespace === this.rootNamespace ? [] : this.selected(this.rootNamespace, labels)),
    ]
    const candidates = [
      ...(this.peerAuthentications.get(namespace) ?? []),
      ...(namespace === this.rootNamespace ? [] : (this.peerAuthentications.get(this.rootNamespace) ?? [])),
    ]
    const selected = selectPeerAuthentications(candidates, this.rootNamespace, namespace, labels)
    const mtls = mtlsAuthorization(selected, this.rootNamespace)
    const mtlsSource = selected.workload ?? selected.namespace ?? selected.mesh
    const compiledMtls =
      mtls === null
        ? null
        : compileL4(mtls, { kind: 'PeerAuthentication', namespace: mtlsSource?.namespace ?? mtls.namespace, name: mtlsSource?.name ?? mtls.name })
    return this.assemble(all, selected, compiledMtls, (port: number) => effectiveMtls(selected, port))
  }

  private assemble(
    all: readonly CompiledPolicy<L4Facts>[],
    selected: SelectedPeerAuthentications,
    mtls: CompiledPolicy<L4Facts> | null,
    mtlsFor: (port: number) => EffectiveMtls,
  ): DestinationPolicies {
    const allow = all.filter((p) => p.action === 'ALLOW' && !p.dryRun)
    const deny = all.filter((p) => p.action === 'DENY' && !p.dryRun)
    return {
      allow,
      deny,
      allowIndex: this.index(allow),
      denyIndex: this.index(deny),
      allowDryRun: all.filter((p) => p.action === 'ALLOW' && p.dryRun),
      denyDryRun: all.filter((p) => p.action === 'DENY' && p.dryRun),
      peerAuthentications: selected,
      mtls,
      mtlsFor,
    }
  }

  private index(policies: readonly CompiledPolicy<L4Facts>[]): NamespaceIndex {
    const byNamespace = new Map<string, CompiledPolicy<L4Facts>[]>()
    const unbounded: CompiledPolicy<L4Facts>[] = []
    const order = new Map<CompiledPolicy<L4Facts>, number>()
    policies.forEach((p, i) => order.set(p, i))
    for (const p of policies) {
      const bound = this.sourceNamespaces.get(p)
      if (bound === undefined || bound === null) unbounded.push(p)
      else for (const ns of bound) pushTo(byNamespace, ns, p)
    }
    return { byNamespace, unbounded, order }
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

/**
 * The source namespaces a policy can match, or null when any. A Match bounds the
 * namespace when its `namespaces` are all exact values or it lists
 * `serviceAccounts` (an identity's namespace must then be one of theirs); a Rules
 * bounds it when all its matches do (the union); a group when one of its Rules does
 * (every Rules must match); the policy when all its groups do (the union). No
 * groups: it matches nothing (the empty set).
 */
export function sourceNamespaceBound(a: Authorization): ReadonlySet<string> | null {
  const out = new Set<string>()
  for (const group of a.groups) {
    let groupBound: Set<string> | null = null
    for (const rules of group.rules) {
      if (rules.matches.length === 0) continue
      const union = new Set<string>()
      let bounded = true
      for (const m of rules.matches) {
        if (m.namespaces.length > 0 && m.namespaces.every((v) => v.kind === 'exact')) {
          for (const v of m.namespaces) union.add((v as { value: string }).value)
        } else if (m.serviceAccounts.length > 0) {
          for (const sa of m.serviceAccounts) union.add(sa.namespace)
        } else {
          bounded = false
          break
        }
      }
      if (bounded) {
        groupBound = union
        break
      }
    }
    if (groupBound === null) return null
    for (const ns of groupBound) out.add(ns)
  }
  return out
}
