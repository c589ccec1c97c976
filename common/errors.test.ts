import t from 'tap'
import { AmbientError, isAmbientError } from './errors.js'
import { ConfigError } from './config.js'
import { HboneBadMethodError, HboneError } from './hbone/errors.js'
import { PolicyError } from './model/authorization.js'
import { WorkloadError } from './model/workload-store.js'
import { SourceError } from './kube/errors.js'
import { CaError } from './identity/ca-errors.js'

t.test('the base class: code, name of the subclass, cause chained', async (t) => {
  class ExampleError extends AmbientError<'AMBIENT_ERR_EXAMPLE'> {}
  const cause = new Error('root')
  const err = new ExampleError('AMBIENT_ERR_EXAMPLE', 'bad value "x": use "y"', { cause })
  t.equal(err.code, 'AMBIENT_ERR_EXAMPLE')
  t.equal(err.name, 'ExampleError')
  t.equal(err.message, 'bad value "x": use "y"')
  t.equal(err.cause, cause)
  t.ok(err instanceof Error)
  t.ok(isAmbientError(err))
  t.ok(isAmbientError(err, 'AMBIENT_ERR_EXAMPLE'))
  t.notOk(isAmbientError(err, 'AMBIENT_ERR_OTHER'))
  t.notOk(isAmbientError(new Error('plain')))
})

t.test("every area's errors are AmbientErrors with AMBIENT_ERR_ codes", async (t) => {
  const errors: AmbientError[] = [
    new ConfigError('--port', 'bad'),
    new HboneBadMethodError('GET'),
    new PolicyError('AMBIENT_ERR_POLICY_BAD_VALUE', { kind: 'AuthorizationPolicy', namespace: 'ns', name: 'p' }, 'spec.action', 'bad'),
    new WorkloadError('bad'),
    new SourceError('AMBIENT_ERR_SOURCE_REQUEST', 'bad'),
    new CaError('AMBIENT_ERR_CA_BAD_REQUEST', 'bad'),
  ]
  for (const err of errors) {
    t.ok(err instanceof AmbientError, err.name)
    t.match(err.code, /^AMBIENT_ERR_[A-Z0-9_]+$/, err.name)
  }
  t.ok(new HboneBadMethodError('GET') instanceof HboneError, 'subclasses keep their area class')
})
