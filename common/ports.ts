// The mesh's well-known ports and socket marks (Istio's numbers where Istio has
// them). Every process and the datapath take their defaults from here.

/** In-pod listener the datapath redirects an enrolled pod's connects to. */
export const OUTBOUND_PORT = 15001
/** In-pod listener sk_lookup steers plaintext inbound connections to. */
export const INBOUND_PLAINTEXT_PORT = 15006
/** HBONE (HTTP/2 CONNECT over mutual TLS) on every enrolled pod and waypoint. */
export const DEFAULT_HBONE_PORT = 15008
export const ADMIN_PORT = 15000
export const METRICS_PORT = 15020
export const READINESS_PORT = 15021

/** SO_MARK of ztunnel's own outgoing sockets: the datapath never redirects them. */
export const DEFAULT_PROXY_MARK = 0x539
/** SO_MARK of delivery sockets into a pod: the in-pod policy route returns replies to them. */
export const DEFAULT_DELIVERY_MARK = 0x111
