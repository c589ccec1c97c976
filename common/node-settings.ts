// The settings the node's processes (agent, ztunnel) must agree on, declared and
// parsed once: node name, datapath pins and marks, HBONE port, trust domain, root
// namespace, log level. Each process adds its own flags beside these.
import type { Command } from 'commander'
import { DEFAULT_DELIVERY_MARK, DEFAULT_HBONE_PORT, DEFAULT_PROXY_MARK } from './ports.js'
import { fromEnv, parseInteger, parseLogLevel, parsePort, requireString, type LogLevel } from './config.js'

export const NODE_DEFAULTS = {
  pinRoot: '/sys/fs/bpf/ambient',
  proxyMark: String(DEFAULT_PROXY_MARK),
  deliveryMark: String(DEFAULT_DELIVERY_MARK),
  hbonePort: String(DEFAULT_HBONE_PORT),
  trustDomain: 'cluster.local',
  rootNamespace: 'istio-system',
  logLevel: 'info',
} as const

export interface NodeFlags {
  readonly node?: string
  readonly pinRoot: string
  readonly proxyMark: string
  readonly deliveryMark: string
  readonly hbonePort: string
  readonly trustDomain: string
  readonly rootNamespace: string
  readonly logLevel: string
}

export interface NodeSettings {
  readonly node: string
  readonly pinRoot: string
  readonly proxyMark: number
  readonly deliveryMark: number
  readonly hbonePort: number
  readonly trustDomain: string
  readonly rootNamespace: string
  readonly logLevel: LogLevel
}

/** Adds the shared flags to a process's command. */
export function addNodeOptions(command: Command): Command {
  return command
    .option('--node <name>', 'this node (default: $AMBIENT_NODE_NAME)')
    .option('--pin-root <dir>', 'bpffs folder of the datapath pins', NODE_DEFAULTS.pinRoot)
    .option('--proxy-mark <n>', "SO_MARK of ztunnel's own outgoing sockets (never captured)", NODE_DEFAULTS.proxyMark)
    .option('--delivery-mark <n>', 'SO_MARK of delivery sockets into pods', NODE_DEFAULTS.deliveryMark)
    .option('--hbone-port <port>', 'HBONE port inside each pod', NODE_DEFAULTS.hbonePort)
    .option('--trust-domain <td>', 'SPIFFE trust domain of the mesh', NODE_DEFAULTS.trustDomain)
    .option('--root-namespace <ns>', "Istio's root namespace: its policies without a selector apply mesh-wide", NODE_DEFAULTS.rootNamespace)
    .option('--log-level <level>', 'debug, info, warn or error', NODE_DEFAULTS.logLevel)
}

export function parseNodeSettings(flags: NodeFlags, env: NodeJS.ProcessEnv): NodeSettings {
  return {
    node: requireString('--node (or AMBIENT_NODE_NAME)', flags.node ?? fromEnv(env, 'AMBIENT_NODE_NAME', '')),
    pinRoot: requireString('--pin-root', flags.pinRoot),
    proxyMark: parseInteger('--proxy-mark', flags.proxyMark, 1, 0xffffffff),
    deliveryMark: parseInteger('--delivery-mark', flags.deliveryMark, 1, 0xffffffff),
    hbonePort: parsePort('--hbone-port', flags.hbonePort),
    trustDomain: requireString('--trust-domain', flags.trustDomain),
    rootNamespace: requireString('--root-namespace', flags.rootNamespace),
    logLevel: parseLogLevel(flags.logLevel),
  }
}
