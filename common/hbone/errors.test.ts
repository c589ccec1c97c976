import t from 'tap'
import {
  HboneBadAuthorityError,
  HboneBadMethodError,
  HboneDeniedError,
  HboneNotLocalError,
  HboneStatusError,
  HboneUnknownDestinationError,
  HboneUpstreamError,
  statusFor,
} from './errors.js'

t.test('one mapping from error to status and outcome', async (t) => {
  const cases: ReadonlyArray<readonly [unknown, number, string]> = [
    [new HboneBadMethodError('GET'), 400, 'bad_request'],
    [new HboneBadAuthorityError('x', 'bad'), 400, 'bad_request'],
    [new HboneNotLocalError('10.0.0.1:80'), 400, 'not_local'],
    [new HboneUnknownDestinationError('10.0.0.1:80'), 503, 'unknown_destination'],
    [new HboneDeniedError('10.0.0.1:80', 'spiffe://td/ns/a/sa/b', 'ns/deny-all'), 401, 'denied'],
    [new HboneUpstreamError('10.0.0.1:80', new Error('ECONNREFUSED')), 503, 'upstream_failure'],
    [new HboneStatusError('10.0.0.1:80', 401), 503, 'internal'],
    [new Error('boom'), 503, 'internal'],
    ['not an error', 503, 'internal'],
  ]
  for (const [err, status, outcome] of cases) t.same(statusFor(err), { status, outcome }, String(err))
})

t.test('messages are lowercase and name the value', async (t) => {
  const denied = new HboneDeniedError('10.0.0.1:80', 'spiffe://td/ns/a/sa/b', 'ns/deny-all')
  t.equal(denied.code, 'AMBIENT_ERR_HBONE_DENIED')
  t.match(denied.message, /^hbone connection from spiffe:\/\/td\/ns\/a\/sa\/b to 10\.0\.0\.1:80 denied by policy ns\/deny-all$/)
  const upstream = new HboneUpstreamError('10.0.0.1:80', new Error('connect ECONNREFUSED'))
  t.type(upstream.cause, Error)
  t.equal(new HboneStatusError('10.0.0.1:80', 503).status, 503)
})
