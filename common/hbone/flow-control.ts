// HTTP/2 flow-control settings shared by both ends of HBONE. Node's default
// 64 KiB windows cap one stream at a window per round trip; HBONE carries bulk
// TCP, so both the stream window and the connection window are raised.

/** Stream and connection receive window, bytes (bench/hbone-throughput.ts measures the choice). */
export const DEFAULT_WINDOW = 4 * 1024 * 1024

/** nghttp2's session memory cap (MB): room for a full window on several streams. */
export function sessionMemoryMb(windowSize: number): number {
  return Math.max(64, Math.ceil((windowSize * 8) / 1e6))
}

/**
 * SETTINGS_MAX_FRAME_SIZE we advertise: the peer may send DATA frames this large.
 * HTTP/2's 16 KiB default splits every 64 KiB socket read into four frames, four
 * stream 'data' events and four writes on the other side.
 */
export const MAX_FRAME_SIZE = 1024 * 1024
