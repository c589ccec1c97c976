// `ambient datapath ...`: low-level operations on the node's BPF datapath, for
// operators and tests. The agent does the same through datapath/.
import type { Command } from 'commander'
import { ConfigError, parseInteger, parseIPv4, parsePort, requireString } from '../common/config.js'
import { Datapath, netnsCookieOf, type DatapathSettings } from '../datapath/datapath.js'
import { DEFAULT_DELIVERY_MARK, DEFAULT_HBONE_PORT, DEFAULT_PROXY_MARK } from '../datapath/abi.js'
import { BPF_OBJECTS_DIR, DEFAULT_PIN_ROOT } from '../common/paths.js'
import { printTable } from './output.js'

interface CommonFlags {
  pinRoot: string
  objects: string
  proxyMark: string
  deliveryMark: string
  hbonePort: string
}

function settingsOf(flags: CommonFlags): DatapathSettings {
  return Object.freeze({
    pinRoot: requireString('--pin-root', flags.pinRoot),
    objectsDir: requireString('--objects', flags.objects),
    proxyMark: parseInteger('--proxy-mark', flags.proxyMark, 1, 0xffffffff),
    deliveryMark: parseInteger('--delivery-mark', flags.deliveryMark, 1, 0xffffffff),
    hbonePort: parsePort('--hbone-port', flags.hbonePort),
  })
}

function withCommon(cmd: Command): Command {
  return cmd
    .option('--pin-root <dir>', 'bpffs folder of the datapath pins', DEFAULT_PIN_ROOT)
    .option('--objects <dir>', 'folder with the compiled BPF objects', BPF_OBJECTS_DIR)
    .option('--proxy-mark <n>', "SO_MARK of ztunnel's own sockets (never redirected)", String(DEFAULT_PROXY_MARK))
    .option('--delivery-mark <n>', "SO_MARK of ztunnel's delivery sockets into pods (in-pod reply route)", String(DEFAULT_DELIVERY_MARK))
    .option('--hbone-port <port>', 'inbound port left to the HBONE listener in each pod', String(DEFAULT_HBONE_PORT))
}

export function registerDatapathCommand(program: Command): void {
  const dp = program.command('datapath').description("load, inspect and unload the node's BPF datapath")

  withCommon(dp.command('load'))
    .description('load the BPF programs, attach them to the pods cgroup and pin everything (idempotent; adopts a loaded datapath)')
    .requiredOption('--cgroup <path>', "cgroup v2 folder that holds the node's pods, e.g. /sys/fs/cgroup/kubepods.slice")
    .action((flags: CommonFlags & { cgroup: string }) => {
      const datapath = Datapath.load(settingsOf(flags), flags.cgroup)
      console.log(`datapath loaded at ${datapath.dir}, hooks on ${flags.cgroup}`)
      datapath.close()
    })

  withCommon(dp.command('unload'))
    .description('detach every program and remove every pin of this datapath version')
    .action((flags: CommonFlags) => {
      const removed = Datapath.unload(settingsOf(flags).pinRoot)
      console.log(removed ? 'datapath unloaded' : 'no datapath was loaded')
    })

  withCommon(dp.command('enroll'))
    .description("capture a pod's TCP traffic: outgoing connects to ztunnel's outbound port, incoming connections to its inbound listener")
    .requiredOption('--netns <path>', "the pod's network namespace, e.g. /run/netns/cni-1234 or /proc/PID/ns/net")
    .requiredOption('--ip <ipv4>', "the pod's IPv4 address")
    .option('--outbound-port <port>', "ztunnel's outbound listener port in the pod", '15001')
    .action(async (flags: CommonFlags & { netns: string; ip: string; outboundPort: string }) => {
      const datapath = Datapath.open(settingsOf(flags))
      try {
        const pod = await datapath.enrollPod({
          netnsPath: flags.netns,
          ip: parseIPv4('--ip', flags.ip),
          outboundPort: parsePort('--outbound-port', flags.outboundPort),
        })
        console.log(`enrolled ${pod.ip} (netns cookie ${pod.netnsCookie})`)
      } finally {
        datapath.close()
      }
    })

  withCommon(dp.command('unenroll'))
    .description('stop capturing a pod (by netns path, or by --cookie when the netns is gone)')
    .option('--netns <path>', "the pod's network namespace")
    .option('--cookie <n>', "the pod's netns cookie (from `ambient datapath status`)")
    .requiredOption('--ip <ipv4>', "the pod's IPv4 address")
    .action(async (flags: CommonFlags & { netns?: string; cookie?: string; ip: string }) => {
      if (!flags.netns && !flags.cookie) throw new ConfigError('--netns', 'give --netns or --cookie')
      const datapath = Datapath.open(settingsOf(flags))
      try {
        const cookie = flags.cookie ? BigInt(parseInteger('--cookie', flags.cookie, 1, Number.MAX_SAFE_INTEGER)) : await netnsCookieOf(flags.netns!)
        await datapath.unenrollPod({ netnsCookie: cookie, ip: parseIPv4('--ip', flags.ip), netnsPath: flags.netns })
        console.log(`unenrolled ${flags.ip}`)
      } finally {
        datapath.close()
      }
    })

  withCommon(dp.command('status'))
    .description('enrolled pods, map occupancy and per-program counters')
    .option('--json', 'print JSON')
    .action((flags: CommonFlags & { json?: boolean }) => {
      const datapath = Datapath.open(settingsOf(flags))
      try {
        const status = {
          dir: datapath.dir,
          pods: datapath.enrolledPods().map((p) => ({ ...p, netnsCookie: String(p.netnsCookie) })),
          maps: datapath.occupancy(),
          counters: Object.fromEntries(Object.entries(datapath.counters()).map(([k, v]) => [k, Number(v)])),
        }
        if (flags.json) {
          console.log(JSON.stringify(status, null, 2))
          return
        }
        console.log(`datapath ${status.dir}`)
        printTable(
          ['POD IP', 'NETNS COOKIE', 'OUTBOUND PORT', 'INBOUND', 'LINK'],
          status.pods.map((p) => [p.ip, p.netnsCookie, String(p.outboundPort), String(p.inbound), String(p.linkPinned)]),
        )
        printTable(
          ['MAP', 'ENTRIES', 'CAPACITY'],
          status.maps.map((m) => [m.name, String(m.entries), String(m.capacity)]),
        )
        printTable(
          ['COUNTER', 'VALUE'],
          Object.entries(status.counters).map(([k, v]) => [k, String(v)]),
        )
      } finally {
        datapath.close()
      }
    })
}
