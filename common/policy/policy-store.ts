// ztunnel's L4 policy state: the PolicySet built from the latest policies, and
// the one place connections are evaluated against it. A new set replaces the old
// one at once; listeners (open-connection re-evaluation) are told.
import type { Authorization } from '../model/authorization.js'
import { isConvertedPeerAuthentication } from '../model/convert/peer-authentication.js'
import { convertPolicies, type PolicyProblem } from '../model/convert/policies.js'
import { parseSpiffeId } from '../identity/pki.js'
import { evaluate, type Decision } from './matcher.js'
import { PolicySet } from './policy-set.js'
import type { Workload } from '../model/workload-store.js'

export interface PolicyUpdate {
  /** Counts the updates applied since start (admin /config_dump; tests wait on it). */
  readonly generation: number
  readonly authorizations: number
  readonly peerAuthentications: number
  readonly warnings: readonly PolicyProblem[]
  readonly invalid: readonly PolicyProblem[]
  readonly ignored: readonly PolicyProblem[]
}

export interface InboundAttributes {
  /** SPIFFE id of the peer certificate; null for plaintext. */
  readonly peerIdentity: string | null
  readonly sourceIp: string
  readonly destination: Workload
  readonly destinationIp: string
  readonly destinationPort: number
}

export class PolicyStore {
  private set: PolicySet
  private readonly listeners = new Set<() => void>()
  /** What the last update applied and left out (admin /config_dump). */
  lastUpdate: PolicyUpdate = { generation: 0, authorizations: 0, peerAuthentications: 0, warnings: [], invalid: [], ignored: [] }

  constructor(readonly rootNamespace: string) {
    this.set = PolicySet.build({ authorizations: [], peerAuthentications: [], rootNamespace })
  }

  /**
   * Replaces every policy with Authorizations as the control plane sends them
   * (istio.security.Authorization, already converted and validated by the agent;
   * WORKLOAD_SELECTOR ones are attached to workloads by name).
   */
  replaceAuthorizations(authorizations: readonly Authorization[]): PolicyUpdate {
    const converted = authorizations.map((authorization) => ({
      authorization,
      selector: null,
      source: {
        kind: isConvertedPeerAuthentication(authorization.name) ? ('PeerAuthentication' as const) : ('AuthorizationPolicy' as const),
        namespace: authorization.namespace,
        name: authorization.name,
      },
    }))
    this.set = PolicySet.build({ authorizations: converted, peerAuthentications: [], rootNamespace: this.rootNamespace })
    this.lastUpdate = {
      generation: this.lastUpdate.generation + 1,
      authorizations: converted.filter((c) => c.source.kind === 'AuthorizationPolicy').length,
      peerAuthentications: converted.filter((c) => c.source.kind === 'PeerAuthentication').length,
      warnings: [],
      invalid: [],
      ignored: [],
    }
    for (const listener of this.listeners) listener()
    return this.lastUpdate
  }

  /** Replaces every policy with those among `objects`; malformed ones are left out and returned. */
  replaceAll(objects: readonly unknown[]): PolicyUpdate {
    const converted = convertPolicies(objects, this.rootNamespace)
    this.set = PolicySet.build({
      authorizations: converted.authorizations,
      peerAuthentications: converted.peerAuthentications,
      rootNamespace: this.rootNamespace,
    })
    this.lastUpdate = {
      generation: this.lastUpdate.generation + 1,
      authorizations: converted.authorizations.length,
      peerAuthentications: converted.peerAuthentications.length,
      warnings: converted.warnings,
      invalid: converted.invalid,
      ignored: converted.ignored,
    }
    for (const listener of this.listeners) listener()
    return this.lastUpdate
  }

  evaluate(conn: InboundAttributes): Decision {
    let sourceIdentity
    if (conn.peerIdentity) {
      try {
        sourceIdentity = parseSpiffeId(conn.peerIdentity)
      } catch {
        sourceIdentity = undefined // not a workload identity: treated as no identity (fails STRICT)
      }
    }
    return evaluate(this.set, {
      sourceIdentity,
      sourceIp: conn.sourceIp,
      destination: {
        ip: conn.destinationIp,
        port: conn.destinationPort,
        namespace: conn.destination.namespace,
        labels: conn.destination.labels,
        authorizationPolicies: conn.destination.authorizationPolicies,
      },
    })
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }
}
