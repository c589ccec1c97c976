// Which identities each node may ask certificates for: the SPIFFE ids of the
// pods scheduled on it. The agent's sources (Kubernetes informers or the local
// manifests folder) feed a registry; tests use StaticPodRegistry, and
// `ambient ca --node-identities FILE` fills one from a YAML map.
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { parseSpiffeId } from '../common/identity/pki.js'
import { CaError } from '../common/identity/ca-errors.js'
import type { Snapshot } from '../common/model/snapshot.js'
import { spiffeIdentity } from '../common/model/workload.js'

/** Each node's pod identities in a snapshot (pods not finished, scheduled, not hostNetwork). */
export function identitiesByNode(snapshot: Snapshot, trustDomain: string): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  for (const pod of snapshot.pods.values()) {
    if (pod.nodeName === '' || pod.hostNetwork || pod.phase === 'Succeeded' || pod.phase === 'Failed') continue
    const id = spiffeIdentity(trustDomain, pod.namespace, pod.serviceAccount)
    const ids = (out[pod.nodeName] ??= [])
    if (!ids.includes(id)) ids.push(id)
  }
  return out
}

export interface PodRegistry {
  /** SPIFFE ids of the pods currently scheduled on `node`. */
  identitiesOnNode(node: string): ReadonlySet<string>
}

/** A registry held in memory: node name → identities. */
export class StaticPodRegistry implements PodRegistry {
  private readonly nodes = new Map<string, Set<string>>()

  constructor(initial: Readonly<Record<string, readonly string[]>> = {}) {
    for (const [node, identities] of Object.entries(initial)) this.nodes.set(node, new Set(identities))
  }

  identitiesOnNode(node: string): ReadonlySet<string> {
    return this.nodes.get(node) ?? new Set()
  }

  /** Replaces every node at once. */
  replaceAll(nodes: Readonly<Record<string, readonly string[]>>): void {
    this.nodes.clear()
    for (const [node, identities] of Object.entries(nodes)) this.setNode(node, identities)
  }

  /** Replaces a node's identities (an empty list removes the node). */
  setNode(node: string, identities: readonly string[]): void {
    if (identities.length === 0) this.nodes.delete(node)
    else this.nodes.set(node, new Set(identities))
  }
}

/** Reads `{ <node>: [spiffe ids] }` from YAML, checking every id. */
export function readNodeIdentities(file: string): Record<string, string[]> {
  const bad = (message: string, cause?: unknown): CaError => new CaError('AMBIENT_ERR_CA_NODE_IDENTITIES', `${file}: ${message}`, { cause })
  let doc: unknown
  try {
    doc = parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw bad(`cannot read node identities: ${(err as Error).message}`, err)
  }
  if (doc === null || doc === undefined) return {}
  if (typeof doc !== 'object' || Array.isArray(doc)) throw bad('expected a map of node name to a list of SPIFFE ids')
  const out: Record<string, string[]> = {}
  for (const [node, ids] of Object.entries(doc as Record<string, unknown>)) {
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) throw bad(`node ${node}: expected a list of SPIFFE ids`)
    for (const id of ids as string[]) {
      try {
        parseSpiffeId(id)
      } catch (err) {
        throw bad(`node ${node}: ${(err as Error).message}`, err)
      }
    }
    out[node] = ids as string[]
  }
  return out
}
