// Writes the dashboards' JSON next to this file (`npm run dashboards`); with
// --check, writes nothing and exits 1 naming each file that differs from what the
// code generates. The JSON is committed, so a Grafana user needs no Node to import it.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { DashboardBuilder } from '@grafana/grafana-foundation-sdk/dashboard'
import { nodeDashboard } from './node.js'
import { waypointDashboard } from './waypoint.js'

export const DASHBOARDS_DIR = import.meta.dirname

/** File name -> the dashboard it holds. */
export const DASHBOARDS: Readonly<Record<string, () => DashboardBuilder>> = {
  'ambient-node.json': nodeDashboard,
  'ambient-waypoint.json': waypointDashboard,
}

/** The JSON text of each dashboard, as committed. */
export function generate(): Map<string, string> {
  return new Map(Object.entries(DASHBOARDS).map(([file, build]) => [file, JSON.stringify(build().build(), null, 2) + '\n']))
}

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return null
  }
}

if (process.argv[1] === import.meta.filename) {
  const check = process.argv.includes('--check')
  const stale: string[] = []
  for (const [file, text] of generate()) {
    const path = join(DASHBOARDS_DIR, file)
    if (read(path) === text) continue
    if (check) stale.push(path)
    else {
      writeFileSync(path, text)
      console.log(`wrote ${path}`)
    }
  }
  if (stale.length > 0) {
    console.error(`out of date (run npm run dashboards): ${stale.join(', ')}`)
    process.exitCode = 1
  }
}
