// Captures the traffic that crosses between testbed nodes (on the fabric bridge)
// while `traffic` runs, and says what it saw.
import { spawn } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'

export const TLS_APPLICATION_DATA = Buffer.from([0x17, 0x03, 0x03])

export async function captureBetweenNodes(fabricNetnsPath: string, file: string, traffic: () => Promise<void>): Promise<Buffer> {
  const dump = spawn('nsenter', [`--net=${fabricNetnsPath}`, '--', 'tcpdump', '-i', 'br0', '-U', '-s', '0', '-w', file, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] })
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
    await traffic()
    await new Promise((r) => setTimeout(r, 300))
  } finally {
    const exited = new Promise((r) => dump.once('exit', r))
    dump.kill('SIGINT')
    await exited
  }
  const bytes = readFileSync(file)
  rmSync(file)
  return bytes
}
