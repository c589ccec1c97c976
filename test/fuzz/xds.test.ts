// Fuzz (bounded, seeded): the agent -> ztunnel xDS stream with broken peers.
// - Codec: mutated DeltaDiscoveryRequest/Response and Address (workload,
//   service), Authorization and LocalWorkload bytes decode, or throw the named
//   AmbientError of their layer (AMBIENT_ERR_XDS_MESSAGE, AMBIENT_ERR_XDS_RESOURCE).
// - The agent's XdsServer (agent/xds/server.ts) on a real Unix socket: streams
//   sending mutated requests (bytes, and valid protobuf with hostile values);
//   an undecodable request ends its own stream only, is counted and logged by
//   code, and a well-behaved ztunnel client connected meanwhile keeps getting
//   its updates.
// - ztunnel's XdsClient (ztunnel/state/xds-client.ts) against a hand-made server
//   sending mutated responses: each is ACKed or NACKed naming the resource, a
//   response that does not decode ends the stream and the client reconnects, and
//   a valid update afterwards is applied.
// Replay a failure with AMBIENT_FUZZ_SEED=<seed>.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { AmbientError } from '../../common/errors.js'
import { convertObject } from '../../common/kube/convert.js'
import { silentLogger } from '../../common/log.js'
import { meshResources } from '../../common/model/mesh-resources.js'
import { applyBatch, emptySnapshot } from '../../common/model/snapshot.js'
import type { Workload } from '../../common/model/workload.js'
import {
  DELTA_ADS_PATH,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type XdsResource,
} from '../../common/xds/ads.js'
import {
  ADDRESS_TYPE_URL,
  AUTHORIZATION_TYPE_URL,
  LOCAL_WORKLOAD_TYPE_URL,
  TYPE_URLS,
  decodeAddress,
  decodeAuthorization,
  decodeLocalWorkload,
  encodeAuthorization,
  encodeLocalWorkload,
  encodeServiceAddress,
  encodeWorkloadAddress,
  serviceResourceName,
  type TypeUrl,
} from '../../common/xds/codec.js'
import { XdsServer, type XdsResources } from '../../agent/xds/server.js'
import { XdsClient, type XdsState } from '../../ztunnel/state/xds-client.js'
import { Rng, fuzzSeed, hostileValue, mutateBytesN, mutateValueN } from './mutator.js'
import { SEED_OBJECTS } from './seed-objects.js'

const SEED = fuzzSeed()
t.comment(`fuzz seed ${SEED} (replay: AMBIENT_FUZZ_SEED=${SEED})`)

// ---- realistic resources: the seed cluster as the agent would stream it ----
const snapshot = applyBatch(
  emptySnapshot(),
  SEED_OBJECTS.map((o) => {
    const r = convertObject(o)
    if (!r.ok) throw r.error
    return { type: 'upsert' as const, resource: r.resource }
  }),
)
const MESH: XdsResources = meshResources(snapshot, {
  trustDomain: 'cluster.local',
  rootNamespace: 'istio-system',
  clusterDomain: 'cluster.local',
  localNetns: new Map([['uid-web', '/run/netns/web']]),
})
const RESOURCES: Record<TypeUrl, XdsResource[]> = {
  [ADDRESS_TYPE_URL]: [
    ...MESH.workloads.map((w) => ({ name: w.uid, version: '1', resource: { typeUrl: ADDRESS_TYPE_URL, value: encodeWorkloadAddress(w) } })),
    ...MESH.services.map((s) => ({ name: serviceResourceName(s), version: '1', resource: { typeUrl: ADDRESS_TYPE_URL, value: encodeServiceAddress(s) } })),
  ],
  [AUTHORIZATION_TYPE_URL]: MESH.authorizations.map((a) => ({
    name: `${a.namespace}/${a.name}`,
    version: '1',
    resource: { typeUrl: AUTHORIZATION_TYPE_URL, value: encodeAuthorization(a) },
  })),
  [LOCAL_WORKLOAD_TYPE_URL]: MESH.workloads
    .filter((w) => w.netnsPath !== undefined)
    .map((w) => ({ name: w.uid, version: '1', resource: { typeUrl: LOCAL_WORKLOAD_TYPE_URL, value: encodeLocalWorkload(w) } })),
}
const DECODERS: Record<TypeUrl, (b: Uint8Array) => unknown> = {
  [ADDRESS_TYPE_URL]: decodeAddress,
  [AUTHORIZATION_TYPE_URL]: decodeAuthorization,
  [LOCAL_WORKLOAD_TYPE_URL]: decodeLocalWorkload,
}
const VALID_REQUESTS: Buffer[] = [
  encodeRequest({ node: { id: 'n1', cluster: '' }, typeUrl: ADDRESS_TYPE_URL, resourceNamesSubscribe: ['*'], initialResourceVersions: { a: '1', b: '2' } }),
  encodeRequest({ node: { id: 'n1', cluster: 'c' }, typeUrl: AUTHORIZATION_TYPE_URL, responseNonce: '7' }),
  encodeRequest({ typeUrl: LOCAL_WORKLOAD_TYPE_URL, responseNonce: '3', errorDetail: { code: 3, message: 'bad: resource x' } }),
]
const response = (type: TypeUrl, nonce: string, resources: readonly XdsResource[], removed: readonly string[] = []): DeltaDiscoveryResponse => ({
  systemVersionInfo: '1',
  typeUrl: type,
  nonce,
  resources,
  removedResources: [...removed],
})
const VALID_RESPONSES: Buffer[] = TYPE_URLS.map((type) => encodeResponse(response(type, '1', RESOURCES[type], ['gone'])))

t.ok(
  RESOURCES[ADDRESS_TYPE_URL].length >= 5 && RESOURCES[AUTHORIZATION_TYPE_URL].length >= 2 && RESOURCES[LOCAL_WORKLOAD_TYPE_URL].length >= 1,
  'seed resources',
)

/** Runs `decode`; null when it returned or threw the named error `code`, else what it threw. */
function decodesOrNames(decode: () => unknown, code: string): string | null {
  try {
    decode()
    return null
  } catch (err) {
    if (err instanceof AmbientError && err.code === code) return null
    return `threw ${err instanceof Error ? `${err.name}: ${err.message}\n${err.stack?.split('\n').slice(1, 3).join('\n')}` : String(err)}`
  }
}

t.test(`codec: mutated messages and resources decode or throw a named error (seed ${SEED})`, async (t) => {
  const rng = new Rng(SEED)
  const failures: string[] = []
  const started = Date.now()
  let n = 0
  const resourceBytes = TYPE_URLS.flatMap((type) => RESOURCES[type].map((r) => [type, r.resource!.value] as const))
  for (; n < 20_000 && Date.now() - started < 8000 && failures.length < 5; n++) {
    const which = n % 3
    if (which === 0) {
      const input = mutateBytesN(rng, rng.pick(VALID_REQUESTS), VALID_REQUESTS)
      const f = decodesOrNames(() => decodeRequest(input), 'AMBIENT_ERR_XDS_MESSAGE')
      if (f) failures.push(`#${n} request ${input.toString('hex').slice(0, 200)}: ${f}`)
    } else if (which === 1) {
      const input = mutateBytesN(rng, rng.pick(VALID_RESPONSES), VALID_RESPONSES)
      const f = decodesOrNames(() => decodeResponse(input), 'AMBIENT_ERR_XDS_MESSAGE')
      if (f) failures.push(`#${n} response ${input.toString('hex').slice(0, 200)}: ${f}`)
    } else {
      const [type, bytes] = rng.pick(resourceBytes)
      const input = mutateBytesN(
        rng,
        bytes,
        resourceBytes.map(([, b]) => b),
      )
      // A resource decoded as the wrong type is what a confused server sends too.
      const decodeAs = rng.chance(0.9) ? type : rng.pick(TYPE_URLS)
      const f = decodesOrNames(() => DECODERS[decodeAs](input), 'AMBIENT_ERR_XDS_RESOURCE')
      if (f) failures.push(`#${n} ${decodeAs} ${input.toString('hex').slice(0, 200)}: ${f}`)
    }
  }
  t.comment(`${n} mutated messages and resources in ${Date.now() - started} ms`)
  t.ok(n >= 1000, `enough inputs (${n})`)
  t.same(failures, [], `every bad input named (seed ${SEED})`)
})

// ---- the agent's server ----

type RawCall = grpc.ClientDuplexStream<Buffer, Buffer>

function rawStream(client: grpc.Client): RawCall {
  const identity = (b: Buffer): Buffer => b
  return client.makeBidiStreamRequest(DELTA_ADS_PATH, identity, identity)
}

function statusWithin(call: RawCall, ms: number): Promise<grpc.StatusObject | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms)
    call.on('error', () => undefined)
    call.on('data', () => undefined)
    call.once('status', (s: grpc.StatusObject) => {
      clearTimeout(timer)
      resolve(s)
    })
  })
}

/** A valid request of random shape with hostile values (still protobuf), or null when protobufjs refuses to encode it. */
function hostileRequest(rng: Rng): Buffer | null {
  const base: Record<string, unknown> = {
    node: { id: 'fuzz', cluster: '' },
    typeUrl: rng.chance(0.7) ? rng.pick(TYPE_URLS) : String(hostileValue(rng)),
    resourceNamesSubscribe: ['*'],
    resourceNamesUnsubscribe: [],
    initialResourceVersions: rng.chance(0.3) ? Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`w${i}`, 'v'])) : { a: '1' },
    responseNonce: rng.pick(['', '1', '2', '999999', String(hostileValue(rng))]),
    errorDetail: rng.chance(0.3) ? { code: 3, message: 'x'.repeat(rng.int(100_000)) } : null,
  }
  try {
    return encodeRequest(mutateValueN(rng, base, 2) as DeltaDiscoveryRequest)
  } catch {
    return null
  }
}

t.test(`agent xds server: broken clients end only their own stream; a ztunnel keeps its updates (seed ${SEED})`, async (t) => {
  const rng = new Rng(SEED ^ 0x1234567)
  const dir = mkdtempSync(join(tmpdir(), 'ambient-fuzz-xds-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const socket = join(dir, 'agent.sock')
  const server = new XdsServer({ socketPath: socket, log: silentLogger() })
  await server.start()
  t.teardown(() => server.stop())
  server.update(MESH)
  let latest: XdsState | null = null
  const good = new XdsClient({ address: socket, node: { id: 'ztunnel-good' }, log: silentLogger(), onUpdate: (s) => (latest = s) })
  good.start()
  t.teardown(() => good.stop())
  await good.ready()
  const reconnectsBefore = good.status().reconnects

  const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure())
  t.teardown(() => client.close())
  let expectedBad = 0
  let ended = 0
  let kept = 0
  const failures: string[] = []
  const started = Date.now()
  let streams = 0
  for (let batch = 0; batch < 12 && Date.now() - started < 8000; batch++) {
    const calls = Array.from({ length: 8 }, () => {
      const call = rawStream(client)
      const bytes = rng.chance(0.5) ? mutateBytesN(rng, rng.pick(VALID_REQUESTS), VALID_REQUESTS) : (hostileRequest(rng) ?? Buffer.from([0xff]))
      let undecodable = false
      try {
        decodeRequest(bytes)
      } catch {
        undecodable = true
      }
      if (undecodable) expectedBad++
      call.write(rng.pick(VALID_REQUESTS))
      call.write(bytes)
      streams++
      // An undecodable one must end (INTERNAL): waited for longer, as a loaded machine is slow to say so.
      return { call, undecodable, status: statusWithin(call, undecodable ? 3000 : 400) }
    })
    for (const { call, undecodable, status } of calls) {
      const s = await status
      if (s !== null) ended++
      else kept++
      if (undecodable && s?.code !== grpc.status.INTERNAL) failures.push(`an undecodable request ended with ${s === null ? 'nothing' : grpc.status[s.code]}`)
      if (!undecodable && s !== null && s.code !== grpc.status.CANCELLED)
        failures.push(`a decodable request ended its stream: ${grpc.status[s.code]} ${s.details}`)
      call.cancel()
    }
  }
  t.comment(`${streams} broken streams in ${Date.now() - started} ms: ${ended} ended by the server, ${kept} kept open`)
  t.same(failures.slice(0, 5), [], 'only undecodable requests end a stream, with INTERNAL')
  t.equal(server.stats().badRequests, expectedBad, `each undecodable request counted (${expectedBad})`)
  t.ok(expectedBad > 0 && expectedBad < streams, 'the mutants were a mix of decodable and not')

  // The well-behaved ztunnel saw none of it and still gets updates.
  const extra: Workload = { ...MESH.workloads[0]!, uid: 'Kubernetes//Pod/shop/after-fuzz', name: 'after-fuzz', ips: ['198.19.4.99'] }
  server.update({ ...MESH, workloads: [...MESH.workloads, extra] })
  const deadline = Date.now() + 5000
  while (!(latest as XdsState | null)?.workloads.some((w) => w.name === 'after-fuzz') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  t.ok(
    (latest as XdsState | null)?.workloads.some((w) => w.name === 'after-fuzz'),
    'the good client got the update after the fuzzing',
  )
  t.equal(good.status().reconnects, reconnectsBefore, 'the good client was never disconnected')
  t.equal(good.status().connected, true)
})

// ---- ztunnel's client ----

interface FakeServer {
  readonly requests: DeltaDiscoveryRequest[]
  /** Streams opened so far (a reconnect opens one). */
  streams: number
  send(bytes: Buffer): void
  stop(): Promise<void>
}

/** A server that answers each subscription with the valid state, and sends what the test gives it on the latest stream. */
async function fakeServer(socket: string): Promise<FakeServer> {
  const server = new grpc.Server()
  let current: grpc.ServerDuplexStream<DeltaDiscoveryRequest, Buffer> | null = null
  const fake: FakeServer = {
    requests: [],
    streams: 0,
    send: (bytes) => void current?.write(bytes),
    stop: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown()
        resolve()
      }),
  }
  const definition: grpc.ServiceDefinition = {
    DeltaAggregatedResources: {
      path: DELTA_ADS_PATH,
      requestStream: true,
      responseStream: true,
      requestSerialize: encodeRequest,
      requestDeserialize: decodeRequest,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    },
  }
  server.addService(definition, {
    DeltaAggregatedResources: (call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, Buffer>) => {
      current = call
      fake.streams++
      call.on('error', () => undefined)
      call.on('data', (req: DeltaDiscoveryRequest) => {
        fake.requests.push(req)
        const type = TYPE_URLS.find((x) => x === req.typeUrl)
        if (req.responseNonce === '' && type) call.write(encodeResponse(response(type, `init-${fake.streams}-${type}`, RESOURCES[type])))
      })
    },
  })
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  )
  return fake
}

/** A response the client must ACK or NACK, or bytes it may not decode at all; the nonce to wait for. */
function mutatedResponse(rng: Rng, i: number): { bytes: Buffer; nonce: string; rejectNames: string[] } {
  const nonce = `fuzz-${i}`
  const type = rng.pick(TYPE_URLS)
  const pickResource = (): XdsResource => rng.pick(RESOURCES[type])
  switch (rng.int(5)) {
    case 0:
    case 1: {
      // one resource with mutated bytes: accepted or NACKed by name
      const r = pickResource()
      const value = mutateBytesN(
        rng,
        r.resource!.value,
        RESOURCES[type].map((x) => x.resource!.value),
      )
      return { bytes: encodeResponse(response(type, nonce, [{ ...r, resource: { typeUrl: type, value } }])), nonce, rejectNames: [r.name] }
    }
    case 2: {
      // a well-formed response with hostile structure
      const r = pickResource()
      const variants: DeltaDiscoveryResponse[] = [
        response(type, nonce, [{ ...r, resource: null }]),
        response(type, nonce, [{ ...r, resource: { typeUrl: rng.pick(TYPE_URLS.filter((x) => x !== type)), value: r.resource!.value } }]),
        response(type, nonce, [{ ...r, name: `${r.name}-renamed` }]),
        response(type, nonce, [r, r, r], [r.name, 'never-sent', '']),
        response(
          type,
          nonce,
          [],
          Array.from({ length: 2000 }, (_, k) => `gone-${k}`),
        ),
        response(String(hostileValue(rng)) as TypeUrl, nonce, [r]),
      ]
      const which = rng.int(variants.length)
      return { bytes: encodeResponse(variants[which]!), nonce, rejectNames: which <= 2 ? [which === 2 ? `${r.name}-renamed` : r.name] : [] }
    }
    default:
      // the envelope itself mutated: may not decode (the stream ends and the client reconnects)
      return { bytes: mutateBytesN(rng, rng.pick(VALID_RESPONSES), VALID_RESPONSES), nonce: '', rejectNames: [] }
  }
}

t.test(`ztunnel xds client: mutated responses are ACKed or NACKed by name, or end the stream; it recovers (seed ${SEED})`, async (t) => {
  const rng = new Rng(SEED ^ 0x7654321)
  const dir = mkdtempSync(join(tmpdir(), 'ambient-fuzz-xdsc-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const socket = join(dir, 'agent.sock')
  const fake = await fakeServer(socket)
  t.teardown(() => fake.stop())
  let updates = 0
  let latest: XdsState | null = null
  const client = new XdsClient({
    address: socket,
    node: { id: 'ztunnel-fuzz' },
    log: silentLogger(),
    onUpdate: (s) => {
      updates++
      latest = s
    },
    backoffMs: { initial: 5, max: 20 },
  })
  client.start()
  t.teardown(() => client.stop())
  await client.ready()

  const failures: string[] = []
  const started = Date.now()
  let sent = 0
  let acks = 0
  let nacks = 0
  let reconnects = 0
  for (; sent < 400 && Date.now() - started < 10_000 && failures.length < 5; sent++) {
    const m = mutatedResponse(rng, sent)
    const streamsBefore = fake.streams
    const seen = fake.requests.length
    fake.send(m.bytes)
    // A mutated envelope may carry any nonce, even none: answered or not, it gets a short wait.
    const deadline = Date.now() + (m.nonce === '' ? 300 : 3000)
    let answer: DeltaDiscoveryRequest | undefined
    for (;;) {
      answer = fake.requests.slice(seen).find((r) => r.responseNonce !== '' && (m.nonce === '' || r.responseNonce === m.nonce))
      if (answer || fake.streams > streamsBefore || Date.now() > deadline) break
      await new Promise((r) => setTimeout(r, 2))
    }
    if (fake.streams > streamsBefore) {
      reconnects++
      // wait for the client to resubscribe to every type before the next one
      const until = Date.now() + 3000
      while (fake.requests.slice(seen).filter((r) => r.responseNonce.startsWith('init-')).length < TYPE_URLS.length && Date.now() < until)
        await new Promise((r) => setTimeout(r, 2))
      continue
    }
    if (!answer) {
      if (m.nonce === '') continue // a mutated envelope that decoded with some other nonce: answered under that one
      failures.push(`#${sent}: no ACK or NACK within 3 s`)
      continue
    }
    if (answer.errorDetail) {
      nacks++
      for (const name of m.rejectNames)
        if (!answer.errorDetail.message.includes(name) && m.rejectNames.length > 0 && !answer.errorDetail.message.startsWith('unknown type'))
          failures.push(`#${sent}: NACK does not name ${name}: ${answer.errorDetail.message.slice(0, 200)}`)
    } else acks++
  }
  t.comment(`${sent} mutated responses in ${Date.now() - started} ms: ${acks} ACKed, ${nacks} NACKed, ${reconnects} ended the stream`)
  t.same(failures, [], `every response answered, every NACK naming its resource (seed ${SEED})`)
  t.ok(nacks > 0 && acks > 0, 'both ACKs and NACKs')
  t.match(client.status().lastError ?? '', /./, 'the client recorded its last error')

  // A valid update afterwards is applied.
  const before = updates
  const extra: Workload = { ...MESH.workloads[0]!, uid: 'Kubernetes//Pod/shop/after-fuzz', name: 'after-fuzz', ips: ['198.19.4.98'] }
  fake.send(
    encodeResponse(
      response(ADDRESS_TYPE_URL, 'final', [{ name: extra.uid, version: 'x', resource: { typeUrl: ADDRESS_TYPE_URL, value: encodeWorkloadAddress(extra) } }]),
    ),
  )
  const deadline = Date.now() + 5000
  while (!(latest as XdsState | null)?.workloads.some((w) => w.name === 'after-fuzz') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  t.ok(updates > before, 'the client applied an update after the fuzzing')
  t.ok(
    (latest as XdsState | null)?.workloads.some((w) => w.name === 'after-fuzz'),
    'with the new workload',
  )
})
