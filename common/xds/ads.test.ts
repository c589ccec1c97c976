import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { DELTA_ADS_PATH, decodeRequest, decodeResponse, encodeRequest, encodeResponse, type DeltaDiscoveryResponse } from './ads.js'
import { ADDRESS_TYPE_URL } from './codec.js'
import { PROTO_DIR, PROTO_FILES } from './proto.js'

// An independent reading of the same protos: @grpc/proto-loader, as any other grpc-js peer would load them.
const definition = protoLoader.loadSync([...PROTO_FILES], { includeDirs: [PROTO_DIR], keepCase: true, defaults: true, bytes: Buffer })
const service = (
  grpc.loadPackageDefinition(definition) as unknown as {
    envoy: { service: { discovery: { v3: { AggregatedDiscoveryService: grpc.ServiceClientConstructor } } } }
  }
).envoy.service.discovery.v3.AggregatedDiscoveryService.service
const method = service['DeltaAggregatedResources']!

t.test('the protos load in proto-loader and name the method we call', async (t) => {
  t.equal(method.path, DELTA_ADS_PATH)
  t.ok(method.requestStream && method.responseStream)
})

t.test('a response reads the same through proto-loader: the Any carries type_url and value', async (t) => {
  const response: DeltaDiscoveryResponse = {
    systemVersionInfo: '7',
    typeUrl: ADDRESS_TYPE_URL,
    nonce: '42',
    removedResources: ['gone'],
    resources: [{ name: 'ns/a', version: 'abc', resource: { typeUrl: ADDRESS_TYPE_URL, value: Buffer.from([1, 2, 3]) } }],
  }
  const other = method.responseDeserialize(encodeResponse(response)) as Record<string, unknown>
  t.match(other, {
    system_version_info: '7',
    type_url: ADDRESS_TYPE_URL,
    nonce: '42',
    removed_resources: ['gone'],
    resources: [{ name: 'ns/a', version: 'abc', resource: { type_url: ADDRESS_TYPE_URL, value: Buffer.from([1, 2, 3]) } }],
  })
  t.strictSame(decodeResponse(method.responseSerialize(other)), { ...response, resources: [{ ...response.resources[0]!, aliases: [] }] })
})

t.test('a NACK request reads the same through proto-loader', async (t) => {
  const bytes = encodeRequest({
    node: { id: 'ztunnel-a', cluster: 'c1' },
    typeUrl: ADDRESS_TYPE_URL,
    responseNonce: '9',
    initialResourceVersions: { 'ns/a': 'v1' },
    errorDetail: { code: 3, message: 'ns/b: bad' },
  })
  t.match(method.requestDeserialize(bytes), {
    node: { id: 'ztunnel-a', cluster: 'c1' },
    type_url: ADDRESS_TYPE_URL,
    response_nonce: '9',
    initial_resource_versions: { 'ns/a': 'v1' },
    error_detail: { code: 3, message: 'ns/b: bad' },
  })
  t.strictSame(decodeRequest(bytes), {
    node: { id: 'ztunnel-a', cluster: 'c1' },
    typeUrl: ADDRESS_TYPE_URL,
    resourceNamesSubscribe: [],
    resourceNamesUnsubscribe: [],
    initialResourceVersions: { 'ns/a': 'v1' },
    responseNonce: '9',
    errorDetail: { code: 3, message: 'ns/b: bad' },
  })
})
