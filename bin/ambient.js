#!/usr/bin/env node
// The `ambient` CLI. Runs the TypeScript sources through tsx's loader.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../cli/main.ts')
await main(process.argv)
