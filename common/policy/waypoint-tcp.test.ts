import t from 'tap'
import { l7Match, type WaypointAuthorization } from '../model/waypoint-authorization.js'
import { authorizeL7, compileWaypointPolicies, type L7Request } from './waypoint-authz.js'
import { tcpView } from './waypoint-tcp.js'

const policy = (name: string, action: WaypointAuthorization['action'], groups: WaypointAuthorization['groups']): WaypointAuthorization => ({
  namespace: 'shop',
  name,
  action,
  dryRun: false,
  targets: [{ kind: 'Gateway', namespace: 'shop', name: 'waypoint' }],
  provider: null,
  groups,
})
const exact = (value: string) => ({ kind: 'exact' as const, value })
const fromShop = { matches: [l7Match({ namespaces: ['shop'] })] }
const toGet = { matches: [l7Match({ methods: [exact('GET')] })] }
const toPort = { matches: [l7Match({ destinationPorts: [5432] })] }

const connection = (peer: string): L7Request => ({
  peerIdentity: `spiffe://cluster.local/ns/${peer}/sa/x`,
  sourceIp: '198.19.4.1',
  destinationIp: '198.18.100.10',
  destinationPort: 5432,
  method: '',
  path: '/',
  host: '',
  headers: {},
})
const decide = (policies: WaypointAuthorization[], peer: string) => authorizeL7(compileWaypointPolicies(policies.map(tcpView)), connection(peer))

t.test('an ALLOW rule that needs HTTP never allows a connection; its L4-only rules still do', async (t) => {
  const allow = policy('allow', 'ALLOW', [{ rules: [fromShop, toGet] }])
  t.same(tcpView(allow).groups, [{ rules: [{ matches: [l7Match({})] }] }], 'the HTTP rule never matches (kept in place: rule numbers stay)')
  t.match(decide([allow], 'shop'), { allowed: false, code: 'no-allow-match' }, 'an ALLOW policy remains: nothing matches, denied')
  const both = policy('both', 'ALLOW', [{ rules: [fromShop, toGet] }, { rules: [fromShop, toPort] }])
  t.match(decide([both], 'shop'), { allowed: true, policy: { name: 'both' }, rule: 1 })
  t.match(decide([both], 'bank'), { allowed: false })
})

t.test('a DENY rule ignores its HTTP attributes: it denies more than written, never less', async (t) => {
  const deny = policy('deny', 'DENY', [{ rules: [fromShop, toGet] }])
  t.same(tcpView(deny).groups, [{ rules: [{ matches: [l7Match({ namespaces: ['shop'] })] }] }])
  t.match(decide([deny], 'shop'), { allowed: false, code: 'deny-policy', policy: { name: 'deny' } })
  t.match(decide([deny], 'bank'), { allowed: true })
  const onlyHttp = policy('only', 'DENY', [{ rules: [toGet] }])
  t.match(decide([onlyHttp], 'bank'), { allowed: false, code: 'deny-policy' }, 'a DENY of only GETs denies every connection')
})
