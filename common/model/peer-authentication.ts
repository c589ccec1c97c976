// PeerAuthentication in the model, and which mTLS mode applies to a connection into
// a workload, as Istio ambient decides it (istio/istio
// pilot/pkg/serviceregistry/ambient: fetchPeerAuthentications,
// convertedSelectorPeerAuthentications, convertPeerAuthentication). Pure.
//
// - Candidates for a workload: policies of its namespace without selector or whose
//   matchLabels select it, and root-namespace policies without selector.
// - mesh = root namespace, no (or empty) selector; namespace = other namespace, no
//   (or empty) selector; workload = other namespace with a non-empty selector
//   (a selector in the root namespace is ignored, as in Istio). Several at one level:
//   the oldest (creationTimestamp) wins; ties, and manifests without timestamps, by name.
// - Effective mode: mesh, then namespace, then workload, each UNSET inheriting;
//   portLevelMtls of the workload policy overrides it for that port.
// - STRICT refuses connections without a peer identity; PERMISSIVE accepts both;
//   DISABLE behaves as PERMISSIVE (ztunnel never turns mTLS off). No policy: PERMISSIVE.
//   Istio's conversion has one inconsistency we do not copy: a workload policy with
//   mode UNSET under a STRICT namespace whose only port exceptions are DISABLE keeps
//   those ports STRICT there (only PERMISSIVE ports are looked for). Here DISABLE is
//   always PERMISSIVE.
import { selectorMatches } from './convert/labels.js'
import type { Labels } from './workload.js'

export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT'

export interface PortMtls {
  readonly port: number
  readonly mode: MtlsMode
}

export interface PeerAuthentication {
  readonly namespace: string
  readonly name: string
  /** spec.selector.matchLabels; null without spec.selector. */
  readonly selector: Labels | null
  /** spec.mtls.mode; UNSET when absent. */
  readonly mode: MtlsMode
  readonly portLevelMtls: readonly PortMtls[]
  /** metadata.creationTimestamp (RFC 3339), '' when unknown. */
  readonly creationTimestamp: string
}

export type PeerAuthenticationLevel = 'mesh' | 'namespace' | 'workload'

/** The policies that bear on one workload, at most one per level. */
export interface SelectedPeerAuthentications {
  readonly mesh: PeerAuthentication | null
  readonly namespace: PeerAuthentication | null
  readonly workload: PeerAuthentication | null
}

/** What decides mTLS for one port: the resulting mode and the policy (and level) that set it. */
export interface EffectiveMtls {
  readonly mode: 'STRICT' | 'PERMISSIVE'
  readonly policy: { readonly namespace: string; readonly name: string } | null
  /**
   * `port` when a portLevelMtls entry decided; `default` when no policy did;
   * `converted` when the control plane sent the requirement in Istio's converted
   * form (a DENY Authorization), which no longer names the PeerAuthentication.
   */
  readonly level: PeerAuthenticationLevel | 'port' | 'default' | 'converted'
}

function hasSelector(pa: PeerAuthentication): boolean {
  return pa.selector !== null && Object.keys(pa.selector).length > 0
}

function older(a: PeerAuthentication | null, b: PeerAuthentication): PeerAuthentication {
  if (a === null) return b
  if (a.creationTimestamp !== b.creationTimestamp && a.creationTimestamp !== '' && b.creationTimestamp !== '') {
    return Date.parse(b.creationTimestamp) < Date.parse(a.creationTimestamp) ? b : a
  }
  return `${b.namespace}/${b.name}` < `${a.namespace}/${a.name}` ? b : a
}

/** Istio's fetchPeerAuthentications + the level split of convertedSelectorPeerAuthentications. */
export function selectPeerAuthentications(
  candidates: readonly PeerAuthentication[],
  rootNamespace: string,
  namespace: string,
  labels: Labels,
): SelectedPeerAuthentications {
  let mesh: PeerAuthentication | null = null
  let ns: PeerAuthentication | null = null
  let workload: PeerAuthentication | null = null
  for (const pa of candidates) {
    const applies =
      (pa.namespace === namespace && (pa.selector === null || selectorMatches(pa.selector, labels))) || (pa.namespace === rootNamespace && pa.selector === null)
    if (!applies) continue
    if (!hasSelector(pa)) {
      if (pa.namespace === rootNamespace) mesh = older(mesh, pa)
      else ns = older(ns, pa)
    } else if (pa.namespace !== rootNamespace) {
      workload = older(workload, pa)
    }
  }
  return { mesh, namespace: ns, workload }
}

function decided(pa: PeerAuthentication, mode: MtlsMode, level: EffectiveMtls['level']): EffectiveMtls {
  return { mode: mode === 'STRICT' ? 'STRICT' : 'PERMISSIVE', policy: { namespace: pa.namespace, name: pa.name }, level }
}

/** The workload-wide mode, before port-level exceptions. */
export function workloadMtls(selected: SelectedPeerAuthentications): EffectiveMtls {
  let effective: EffectiveMtls = { mode: 'PERMISSIVE', policy: null, level: 'default' }
  // Istio: a mesh policy sets STRICT or not-STRICT even when UNSET; we only name it when it says something.
  if (selected.mesh !== null && selected.mesh.mode !== 'UNSET') effective = decided(selected.mesh, selected.mesh.mode, 'mesh')
  if (selected.namespace !== null && selected.namespace.mode !== 'UNSET') {
    effective = decided(selected.namespace, selected.namespace.mode, 'namespace')
  }
  if (selected.workload !== null && selected.workload.mode !== 'UNSET') {
    effective = decided(selected.workload, selected.workload.mode, 'workload')
  }
  return effective
}

/** The mode for a connection to `port` of the workload. */
export function effectiveMtls(selected: SelectedPeerAuthentications, port: number): EffectiveMtls {
  const portMode = selected.workload?.portLevelMtls.find((p) => p.port === port)?.mode
  if (selected.workload !== null && portMode !== undefined && portMode !== 'UNSET') return decided(selected.workload, portMode, 'port')
  return workloadMtls(selected)
}

/** Ports of the workload whose mode differs from the workload-wide one. */
export function portExceptions(selected: SelectedPeerAuthentications): { readonly strict: readonly number[]; readonly permissive: readonly number[] } {
  const base = workloadMtls(selected).mode
  const strict: number[] = []
  const permissive: number[] = []
  for (const p of selected.workload?.portLevelMtls ?? []) {
    if (p.mode === 'UNSET') continue
    const mode = p.mode === 'STRICT' ? 'STRICT' : 'PERMISSIVE'
    if (mode === base) continue
    ;(mode === 'STRICT' ? strict : permissive).push(p.port)
  }
  return { strict: strict.sort((a, b) => a - b), permissive: permissive.sort((a, b) => a - b) }
}
