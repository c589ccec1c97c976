// security.istio.io/v1 PeerAuthentication -> the model (after the checks of Istio's
// ValidatePeerAuthentication), and the L4 DENY Authorization that carries a
// workload's mTLS requirement to ztunnel, in the form Istio's control plane sends
// (pilot/pkg/serviceregistry/ambient/authorization.go): the static policy
// `<root>/istio_converted_static_strict` (DENY when the peer has no identity) when
// the workload is STRICT everywhere, or `<ns>/converted_peer_authentication_<name>`
// when its workload policy has port exceptions. Pure.
import {
  type Authorization,
  type Group,
  type PolicyError,
  type PolicyRef,
  type PolicyWarning,
  PolicyError as PolicyErrorClass,
  match,
} from '../authorization.js'
import {
  type MtlsMode,
  type PeerAuthentication,
  type PortMtls,
  type SelectedPeerAuthentications,
  portExceptions,
  workloadMtls,
} from '../peer-authentication.js'
import { badField, badValue, checkKeys, labelMap, optionalRecord, optionalString, readMeta } from './object-fields.js'

export const STATIC_STRICT_POLICY_NAME = 'istio_converted_static_strict'
export const CONVERTED_PEER_AUTHENTICATION_PREFIX = 'converted_peer_authentication_'

/** Whether an Authorization is a PeerAuthentication in Istio's converted form (by Istio's naming). */
export function isConvertedPeerAuthentication(name: string): boolean {
  return name === STATIC_STRICT_POLICY_NAME || name.startsWith(CONVERTED_PEER_AUTHENTICATION_PREFIX)
}
const MODES: readonly MtlsMode[] = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT']

export type PeerAuthenticationConversion =
  | { readonly kind: 'converted'; readonly policy: PeerAuthentication; readonly warnings: readonly PolicyWarning[] }
  | { readonly kind: 'invalid'; readonly ref: PolicyRef; readonly error: PolicyError }

export function convertPeerAuthentication(object: unknown, options: { readonly namespace?: string } = {}): PeerAuthenticationConversion {
  try {
    const { ref, meta, root } = readMeta('PeerAuthentication', object, options.namespace)
    const warnings: PolicyWarning[] = []
    const spec = optionalRecord(ref, root['spec'], 'spec') ?? {}
    checkKeys(ref, spec, ['selector', 'mtls', 'portLevelMtls'], 'spec')
    const selectorObj = optionalRecord(ref, spec['selector'], 'spec.selector')
    if (selectorObj !== undefined) checkKeys(ref, selectorObj, ['matchLabels'], 'spec.selector')
    const selector = selectorObj === undefined ? null : labelMap(ref, selectorObj['matchLabels'], 'spec.selector.matchLabels')
    const mode = readMode(ref, spec['mtls'], 'spec.mtls', warnings)
    const portLevelMtls = readPorts(ref, spec['portLevelMtls'], warnings)
    if (portLevelMtls !== null && (selector === null || Object.keys(selector).length === 0)) {
      throw badField(ref, 'spec.portLevelMtls', 'a mesh or namespace PeerAuthentication cannot have port level mTLS; add spec.selector')
    }
    const policy: PeerAuthentication = {
      namespace: ref.namespace,
      name: ref.name,
      selector,
      mode,
      portLevelMtls: portLevelMtls ?? [],
      creationTimestamp: meta.creationTimestamp,
    }
    return { kind: 'converted', policy, warnings }
  } catch (err) {
    if (err instanceof PolicyErrorClass) return { kind: 'invalid', ref: err.policy, error: err }
    throw err
  }
}

function readMode(ref: PolicyRef, value: unknown, field: string, warnings: PolicyWarning[]): MtlsMode {
  const mtls = optionalRecord(ref, value, field)
  if (mtls === undefined) return 'UNSET'
  checkKeys(ref, mtls, ['mode'], field)
  const mode = optionalString(ref, mtls['mode'], `${field}.mode`) ?? 'UNSET'
  if (!(MODES as readonly string[]).includes(mode)) {
    throw badValue(ref, `${field}.mode`, `${JSON.stringify(mode)} is not an mTLS mode; use UNSET, DISABLE, PERMISSIVE or STRICT`)
  }
  if (mode === 'DISABLE') {
    warnings.push({
      code: 'AMBIENT_WARN_POLICY_MTLS_DISABLE',
      policy: ref,
      field: `${field}.mode`,
      message: 'DISABLE behaves as PERMISSIVE in ambient: ztunnel still uses mTLS between meshed pods and accepts plaintext',
    })
  }
  return mode as MtlsMode
}

function readPorts(ref: PolicyRef, value: unknown, warnings: PolicyWarning[]): readonly PortMtls[] | null {
  const ports = optionalRecord(ref, value, 'spec.portLevelMtls')
  if (ports === undefined) return null
  const entries = Object.entries(ports)
  if (entries.length === 0) throw badField(ref, 'spec.portLevelMtls', 'if set, must have at least one port')
  return entries
    .map(([port, mtls]) => {
      const field = `spec.portLevelMtls["${port}"]`
      if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) throw badValue(ref, field, `${JSON.stringify(port)} is not a port (1-65535)`)
      return { port: Number(port), mode: readMode(ref, mtls, field, warnings) }
    })
    .sort((a, b) => a.port - b.port)
}

const NO_IDENTITY = match({ notPrincipals: [{ kind: 'presence' }] })

/** Istio's static STRICT policy: DENY any connection whose peer has no identity. */
export function staticStrictAuthorization(rootNamespace: string): Authorization {
  return {
    name: STATIC_STRICT_POLICY_NAME,
    namespace: rootNamespace,
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    groups: [{ rules: [{ matches: [NO_IDENTITY] }] }],
    dryRun: false,
  }
}

/**
 * The DENY Authorization that enforces a workload's PeerAuthentication, or null
 * when it accepts plaintext on every port. Same result as Istio's static STRICT
 * policy plus convertPeerAuthentication (merged strictness, port exceptions).
 */
export function mtlsAuthorization(selected: SelectedPeerAuthentications, rootNamespace: string): Authorization | null {
  const base = workloadMtls(selected).mode
  const { strict, permissive } = portExceptions(selected)
  const workload = selected.workload
  if (workload === null || (strict.length === 0 && permissive.length === 0)) {
    return base === 'STRICT' ? staticStrictAuthorization(rootNamespace) : null
  }
  const groups: Group[] = []
  if (base === 'STRICT') {
    // deny without identity, except on the permissive ports
    groups.push({ rules: [{ matches: [NO_IDENTITY] }, { matches: [match({ notDestinationPorts: permissive })] }] })
  }
  for (const port of strict) {
    groups.push({ rules: [{ matches: [match({ notPrincipals: [{ kind: 'presence' }], destinationPorts: [port] })] }] })
  }
  return {
    name: CONVERTED_PEER_AUTHENTICATION_PREFIX + workload.name,
    namespace: workload.namespace,
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    groups,
    dryRun: false,
  }
}
