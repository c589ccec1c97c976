// Captures what crosses between testbed nodes while `traffic` runs: on a node's
// uplink (eth0 in the node's netns), where every packet to or from that node's
// pods passes. (On the fabric bridge device itself, forwarded frames show up only
// while the bridge is promiscuous, which proved unreliable.)
import { spawn } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'

export const TLS_APPLICATION_DATA = Buffer.from([0x17, 0x03, 0x03])

export async function captureBetweenNodes(nodeNetnsPath: string, file: string, traffic: () => Promise<void>): Promise<Buffer> {
  const dump = spawn(
    'nsenter',
    [`--net=${nodeNetnsPath}`, '--', 'tcpdump', '--immediate-mode', '-Z', 'root', '-i', 'eth0', '-U', '-s', '0', '-w', file, 'tcp'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tcpdump did not start within 10 s')), 10_000)
    dump.stderr.on('data', (d) => {
      if (String(d).includes('listening on')) {
        clearTimeout(timer)
        resolve()
      }
    })
    dump.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`tcpdump exited ${code} (is tcpdump installed?)`))
    })
  })
  try {
    // "listening on" comes as the capture opens; give it a moment before traffic.
    await new Promise((r) => setTimeout(r, 500))
    await traffic()
    await new Promise((r) => setTimeout(r, 500))
  } finally {
    const exited = new Promise((r) => dump.once('exit', r))
    dump.kill('SIGINT')
    await exited
  }
  const bytes = readFileSync(file)
  rmSync(file)
  return bytes
}
