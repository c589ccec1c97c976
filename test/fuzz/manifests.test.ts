// Fuzz (bounded, seeded): mutated Kubernetes objects of every kind the agent and
// the waypoint read (Namespace, Pod, Service, EndpointSlice, ServiceAccount,
// AuthorizationPolicy, PeerAuthentication, Gateway, HTTPRoute) through the same
// code they run: the source's conversion (common/kube/convert.ts), the agent's
// model and workload API (meshResources, then the xDS codec both ways), the
// waypoint's state (Gateway, HTTPRoutes, L7 policies), each policy converter,
// and mutated YAML text through the manifests folder source. Every object is
// accepted or rejected with an AmbientError naming the object and the bad field;
// nothing throws anything else, and nothing takes long. Replay a failure with
// AMBIENT_FUZZ_SEED=<seed>.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { AmbientError } from '../../common/errors.js'
import { convertObject } from '../../common/kube/convert.js'
import { InvalidObjectError } from '../../common/kube/errors.js'
import { ManifestsSource } from '../../common/local/manifests-source.js'
import { silentLogger } from '../../common/log.js'
import { convertAuthorizationPolicy } from '../../common/model/convert/authorization-policy.js'
import { convertGateway } from '../../common/model/convert/gateway.js'
import { convertHttpRoute } from '../../common/model/convert/http-route.js'
import { convertPeerAuthentication } from '../../common/model/convert/peer-authentication.js'
import { convertWaypointAuthorizationPolicy } from '../../common/model/convert/waypoint-authorization.js'
import { meshResources } from '../../common/model/mesh-resources.js'
import { applyBatch, emptySnapshot, type Snapshot } from '../../common/model/snapshot.js'
import {
  XdsResourceError,
  decodeAddress,
  decodeAuthorization,
  decodeLocalWorkload,
  encodeAuthorization,
  encodeLocalWorkload,
  encodeServiceAddress,
  encodeWorkloadAddress,
} from '../../common/xds/codec.js'
import { WaypointState } from '../../waypoint/state.js'
import { Rng, fuzzSeed, mutateBytesN, mutateValueN } from './mutator.js'
import { SEED_OBJECTS } from './seed-objects.js'

const SEED = fuzzSeed()
const MAX_OBJECTS = 4000
const MAX_MS = 10_000
/** One object's whole pipeline; far above the normal (well under 10 ms), far below a hang. */
const SLOW_MS = 1500
const MESH = { trustDomain: 'cluster.local', rootNamespace: 'istio-system', clusterDomain: 'cluster.local' }
const WAYPOINT = { ...MESH, gateway: { namespace: 'shop', name: 'waypoint' } }
t.comment(`fuzz seed ${SEED} (replay: AMBIENT_FUZZ_SEED=${SEED})`)

interface Failure {
  readonly iteration: number
  readonly stage: string
  readonly error: string
  readonly input: string
}

const brief = (value: unknown): string => {
  const s = JSON.stringify(value) ?? String(value)
  return s.length > 600 ? `${s.slice(0, 600)}... (${s.length} chars)` : s
}

/** A thrown error is acceptable only as the named rejection of a function allowed to throw; this checks what the result carries. */
function checkRejection(error: unknown, what: string): string | null {
  if (!(error instanceof AmbientError)) return `${what}: not an AmbientError: ${String(error)}`
  if (!error.code.startsWith('AMBIENT_ERR_')) return `${what}: code ${error.code}`
  const field = (error as { field?: unknown }).field
  if (typeof field !== 'string' || field === '') return `${what}: no field named in ${JSON.stringify(error.message)}`
  return null
}

function baseSnapshot(): Snapshot {
  const changes = SEED_OBJECTS.map((o) => {
    const r = convertObject(o)
    if (!r.ok) throw new Error(`seed ${o.kind} ${o.metadata.name} does not convert: ${r.error.message}`)
    return { type: 'upsert' as const, resource: r.resource }
  })
  return applyBatch(emptySnapshot(), changes)
}

/** The workload API the agent would stream for `snapshot`, encoded and decoded as ztunnel does. */
function throughXds(snapshot: Snapshot): string | null {
  const resources = meshResources(snapshot, { ...MESH, localNetns: new Map([['uid-web', '/run/netns/web']]) })
  for (const p of [...resources.policies.invalid, ...resources.policies.warnings, ...resources.policies.ignored])
    if (p.field === '' || p.policy === '') return `policy problem without object or field: ${brief(p)}`
  const roundTrips: [string, () => Buffer, (b: Buffer) => unknown][] = [
    ...resources.workloads.map((w): [string, () => Buffer, (b: Buffer) => unknown] => [`workload ${w.uid}`, () => encodeWorkloadAddress(w), decodeAddress]),
    ...resources.workloads
      .filter((w) => w.netnsPath !== undefined)
      .map((w): [string, () => Buffer, (b: Buffer) => unknown] => [`local workload ${w.uid}`, () => encodeLocalWorkload(w), decodeLocalWorkload]),
    ...resources.services.map((s): [string, () => Buffer, (b: Buffer) => unknown] => [
      `service ${s.namespace}/${s.hostname}`,
      () => encodeServiceAddress(s),
      decodeAddress,
    ]),
    ...resources.authorizations.map((a): [string, () => Buffer, (b: Buffer) => unknown] => [
      `authorization ${a.namespace}/${a.name}`,
      () => encodeAuthorization(a),
      decodeAuthorization,
    ]),
  ]
  for (const [name, encode, decode] of roundTrips) {
    let bytes: Buffer
    try {
      bytes = encode()
    } catch (err) {
      // The agent leaves such a resource out, logged by name: acceptable only as a named XdsResourceError.
      if (err instanceof XdsResourceError) continue
      return `encoding ${name} threw ${String(err)}`
    }
    try {
      decode(bytes)
    } catch (err) {
      return `ztunnel would reject ${name}, which the agent sent: ${(err as Error).message}`
    }
  }
  return null
}

/** Every stage one mutated object goes through; returns the first broken promise, or null. */
function pipeline(base: Snapshot, object: unknown): { stage: string; error: string } | null {
  const stage = (name: string, run: () => string | null): { stage: string; error: string } | null => {
    try {
      const error = run()
      return error === null ? null : { stage: name, error }
    } catch (err) {
      return {
        stage: name,
        error: `threw ${err instanceof Error ? `${err.name}: ${err.message}\n${err.stack?.split('\n').slice(1, 4).join('\n')}` : String(err)}`,
      }
    }
  }
  let snapshot = base
  return (
    stage('convertObject', () => {
      const r = convertObject(object, { defaultNamespace: 'default' })
      if (!r.ok) return r.error instanceof InvalidObjectError ? checkRejection(r.error, 'convertObject') : `convertObject: ${String(r.error)}`
      snapshot = applyBatch(base, [{ type: 'upsert', resource: r.resource }])
      return null
    }) ??
    stage('agent model and workload API', () => throughXds(snapshot)) ??
    stage('waypoint state', () => {
      const state = WaypointState.build(snapshot, WAYPOINT)
      for (const p of [...state.routeProblems.invalid, ...state.policyProblems.invalid])
        if (p.field === '' || p.policy === '') return `waypoint problem without object or field: ${brief(p)}`
      state.policies(null)
      state.tcpPolicies(null)
      return null
    }) ??
    stage('policy converters', () => {
      const results: [string, { kind: string; error?: unknown }][] = [
        ['AuthorizationPolicy (ztunnel)', convertAuthorizationPolicy(object, { rootNamespace: 'istio-system' })],
        ['AuthorizationPolicy (waypoint)', convertWaypointAuthorizationPolicy(object, { rootNamespace: 'istio-system' })],
        ['PeerAuthentication', convertPeerAuthentication(object)],
        ['Gateway', convertGateway(object)],
        ['HTTPRoute', convertHttpRoute(object)],
      ]
      for (const [what, r] of results) if (r.kind === 'invalid') return checkRejection(r.error, what) ?? null
      return null
    })
  )
}

t.test('the seeds are accepted as written (so the mutants start from valid objects)', async (t) => {
  const base = baseSnapshot()
  for (const o of SEED_OBJECTS) t.equal(pipeline(base, o), null, `${o.kind} ${o.metadata.name}`)
  const resources = meshResources(base, { ...MESH, localNetns: new Map() })
  t.same(resources.policies.invalid, [], 'no seed policy is invalid')
  t.ok(
    resources.services.some((s) => s.name === 'web' && s.waypoint !== null),
    'service web is bound to the waypoint',
  )
  const state = WaypointState.build(base, WAYPOINT)
  t.same(state.routeProblems.invalid, [], 'the seed HTTPRoute is valid')
  t.not(state.gateway, null, 'the waypoint Gateway is valid')
})

t.test(`mutated objects: accepted, or rejected naming the object and field (seed ${SEED})`, async (t) => {
  const rng = new Rng(SEED)
  const base = baseSnapshot()
  const failures: Failure[] = []
  const started = Date.now()
  let count = 0
  let rejected = 0
  let slowest = { ms: 0, iteration: -1 }
  for (; count < MAX_OBJECTS && Date.now() - started < MAX_MS && failures.length < 5; count++) {
    const seed = rng.pick(SEED_OBJECTS)
    const object = mutateValueN(rng, seed)
    const t0 = performance.now()
    const failure = pipeline(base, object)
    const ms = performance.now() - t0
    if (ms > slowest.ms) slowest = { ms, iteration: count }
    if (!convertObject(object).ok) rejected++
    if (failure) failures.push({ iteration: count, ...failure, input: brief(object) })
    else if (ms > SLOW_MS) failures.push({ iteration: count, stage: 'time', error: `took ${Math.round(ms)} ms`, input: brief(object) })
  }
  t.comment(`${count} objects in ${Date.now() - started} ms, ${rejected} rejected by the source, slowest ${slowest.ms.toFixed(1)} ms (#${slowest.iteration})`)
  t.ok(count >= 200, `enough objects were tried (${count})`)
  t.ok(rejected > count / 20 && rejected < count, 'the mutants are a mix of accepted and rejected objects')
  t.same(failures, [], `no crash, no unnamed rejection, no hang (seed ${SEED})`)
})

t.test(`mutated YAML through the manifests folder: bad files are named, good ones keep working (seed ${SEED})`, async (t) => {
  const rng = new Rng(SEED ^ 0x5a5a5a5a)
  const dir = mkdtempSync(join(tmpdir(), 'ambient-fuzz-manifests-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'good.yaml'), SEED_OBJECTS.map((o) => stringify(o)).join('---\n'))
  const texts = SEED_OBJECTS.map((o) => Buffer.from(stringify(o)))
  const directed = [
    'a: *missing\n', // an alias to nothing
    'a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n',
    'kind: List\napiVersion: v1\nitems: [1, null, "x", {kind: Pod}]\n',
    '- a\n- b\n',
    '\t\x00\xff',
  ]
  const source = new ManifestsSource({ dir, logger: silentLogger(), rescanIntervalMs: 0 })
  t.teardown(() => source.stop())
  await source.start()
  const expected = source.snapshot()
  t.equal(expected.pods.size, 3, 'the good file is read')
  const failures: string[] = []
  const started = Date.now()
  let files = 0
  for (let round = 0; round < 40 && Date.now() - started < 10_000; round++) {
    const written: string[] = []
    for (let i = 0; i < 10; i++) {
      const name = `m${i}.yaml`
      const text = round === 0 && i < directed.length ? Buffer.from(directed[i]!, 'latin1') : mutateBytesN(rng, rng.pick(texts), texts, 6)
      writeFileSync(join(dir, name), text)
      written.push(name)
      files++
    }
    try {
      await source.rescan()
    } catch (err) {
      failures.push(`round ${round}: rescan threw ${String(err)}`)
      continue
    }
    const snapshot = source.snapshot()
    for (const key of expected.pods.keys()) if (!snapshot.pods.has(key)) failures.push(`round ${round}: pod ${key} of good.yaml is gone`)
    for (const err of source.errors()) {
      if (err.file === undefined || !written.includes(err.file)) failures.push(`round ${round}: an error names no mutated file: ${err.message}`)
      else if (err.field === '') failures.push(`round ${round}: an error names no field: ${err.message}`)
    }
    if (round === 0) {
      const named = new Set(source.errors().map((e) => e.file))
      for (let i = 0; i < 2; i++)
        if (!named.has(`m${i}.yaml`)) failures.push(`directed m${i}.yaml (${JSON.stringify(directed[i]!.slice(0, 20))}) was not reported`)
    }
  }
  t.comment(`${files} mutated files in ${Date.now() - started} ms`)
  t.same(failures.slice(0, 10), [], `every bad file named, the good file intact (seed ${SEED})`)
})
