// Convert first, then apply: a batch of raw object events becomes model changes
// plus the errors of the objects that were rejected (each rejects only itself; the
// last good version of a rejected object stays in the snapshot).
import type { Change, ResourceKind } from '../model/snapshot.js'
import { convertObject, deletionOf } from './convert.js'
import type { InvalidObjectError, ObjectOrigin } from './errors.js'

export interface RawEvent {
  readonly type: 'upsert' | 'delete'
  readonly kind: ResourceKind
  readonly object: unknown
  readonly origin?: ObjectOrigin
}

export interface ConvertedBatch {
  readonly changes: readonly Change[]
  readonly errors: readonly InvalidObjectError[]
}

export function convertEvents(events: readonly RawEvent[]): ConvertedBatch {
  const changes: Change[] = []
  const errors: InvalidObjectError[] = []
  for (const event of events) {
    if (event.type === 'delete') {
      const result = deletionOf(event.object, event.kind)
      if (result.ok) changes.push(result.change)
      else errors.push(result.error)
      continue
    }
    const result = convertObject(event.object, { kind: event.kind, ...(event.origin && { origin: event.origin }) })
    if (result.ok) changes.push({ type: 'upsert', resource: result.resource })
    else errors.push(result.error)
  }
  return { changes, errors }
}
