// Upgrading or restarting ztunnel without refusing or resetting a connection
// (--handoff-socket). The running ztunnel listens on a Unix socket; a new one
// started with the same path connects to it before opening any pod listener and
// takes over the running one's listening sockets in every pod (outbound, inbound,
// HBONE), passed as descriptors (SCM_RIGHTS). They are the same kernel sockets, so
// no SYN is refused and none is dropped meanwhile (the listener registered in the
// SOCKHASH does not change either); the old process then stops accepting, frees its
// node ports (metrics, readiness, admin), lets its open connections finish up to
// --drain-timeout, and exits.
//
// Frames (native sendFrame/recvFrame: a 4-byte length and JSON, descriptors
// attached), successor -> predecessor unless said:
//   takeover {version, pid}
//   <- pods {pods: [{uid, ip, netnsPath, netnsCookie}], last}   3 fds per pod: outbound, inbound, hbone
//   adopted {pods}         the successor serves on them now
//   <- released            the predecessor stopped accepting and freed its ports
// The predecessor keeps serving if the successor goes away before `adopted`.
import net from 'node:net'
import { existsSync, rmSync } from 'node:fs'
import type { Logger } from 'pino'
import { AmbientError } from '../common/errors.js'
import { closeFd, recvFrame, sendFrame, unixConnect, type NativeError } from '../native/index.js'

export type HandoffErrorCode = 'AMBIENT_ERR_HANDOFF_PROTOCOL' | 'AMBIENT_ERR_HANDOFF_SOCKET'
export class HandoffError extends AmbientError<HandoffErrorCode> {}

/** One pod's listening sockets, as the predecessor serves them. */
export interface HandedPod {
  readonly uid: string
  readonly ip: string
  readonly netnsPath: string
  readonly netnsCookie: bigint
  readonly fds: { readonly outbound: number; readonly inbound: number; readonly hbone: number }
}

const VERSION = 1
/** 3 descriptors per pod, at most 253 per frame. */
const PODS_PER_FRAME = 80
/** How long either side waits for the other's next frame (adopting 1,000 pods includes their certificates). */
const FRAME_TIMEOUT_MS = 60_000

type Message =
  | { readonly type: 'takeover'; readonly version: number; readonly pid: number }
  | {
      readonly type: 'pods'
      readonly pods: readonly { uid: string; ip: string; netnsPath: string; netnsCookie: string }[]
      readonly last: boolean
    }
  | { readonly type: 'adopted'; readonly pods: number }
  | { readonly type: 'released' }

async function send(fd: number, message: Message, fds: readonly number[] = []): Promise<void> {
  const data = Buffer.from(JSON.stringify(message))
  const deadline = Date.now() + FRAME_TIMEOUT_MS
  for (;;) {
    try {
      return sendFrame(fd, data, fds)
    } catch (err) {
      if ((err as NativeError).code !== 'EAGAIN' || Date.now() > deadline) throw protocolError(`cannot send ${message.type}`, err)
      await new Promise((r) => setTimeout(r, 10)) // the peer reads slower than we write
    }
  }
}

async function receive<T extends Message['type']>(fd: number, type: T): Promise<{ message: Extract<Message, { type: T }>; fds: readonly number[] }> {
  let frame
  try {
    frame = await recvFrame(fd, FRAME_TIMEOUT_MS)
  } catch (err) {
    throw protocolError(`no ${type} frame`, err)
  }
  if (frame === null) throw protocolError(`the peer closed the handoff socket before ${type}`)
  let message: Message
  try {
    message = JSON.parse(frame.data.toString('utf8')) as Message
  } catch (err) {
    for (const f of frame.fds) closeFd(f)
    throw protocolError(`a frame that is not JSON where ${type} was due`, err)
  }
  if (message.type !== type) {
    for (const f of frame.fds) closeFd(f)
    throw protocolError(`got ${JSON.stringify(message.type)} where ${type} was due`)
  }
  return { message: message as Extract<Message, { type: T }>, fds: frame.fds }
}

function protocolError(what: string, cause?: unknown): HandoffError {
  const detail = cause instanceof Error ? `: ${cause.message}` : ''
  return new HandoffError('AMBIENT_ERR_HANDOFF_PROTOCOL', `ztunnel handoff failed, ${what}${detail}`, { cause })
}

/** The successor's side: a running ztunnel found at the handoff socket. */
export class Predecessor {
  private constructor(
    private readonly fd: number,
    private readonly path: string,
  ) {}

  /** Connects to the ztunnel running at `path`; null when none listens there (nothing to take over). */
  static connect(path: string): Predecessor | null {
    try {
      return new Predecessor(unixConnect(path), path)
    } catch (err) {
      const code = (err as NativeError).code
      if (code === 'ENOENT' || code === 'ECONNREFUSED') return null
      throw new HandoffError('AMBIENT_ERR_HANDOFF_SOCKET', `cannot connect to the handoff socket ${path}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** Asks for every pod's listening sockets; the descriptors are the caller's. */
  async takeOver(): Promise<HandedPod[]> {
    await send(this.fd, { type: 'takeover', version: VERSION, pid: process.pid })
    const pods: HandedPod[] = []
    try {
      for (;;) {
        const { message, fds } = await receive(this.fd, 'pods')
        if (fds.length !== message.pods.length * 3) {
          for (const f of fds) closeFd(f)
          throw protocolError(`${fds.length} descriptors came with ${message.pods.length} pods (3 each)`)
        }
        message.pods.forEach((p, i) => {
          const [outbound, inbound, hbone] = fds.slice(i * 3, i * 3 + 3) as [number, number, number]
          pods.push({ uid: p.uid, ip: p.ip, netnsPath: p.netnsPath, netnsCookie: BigInt(p.netnsCookie), fds: { outbound, inbound, hbone } })
        })
        if (message.last) return pods
      }
    } catch (err) {
      for (const p of pods) for (const f of Object.values(p.fds)) closeFd(f)
      throw err
    }
  }

  /** Tells the predecessor we serve on its sockets now; resolves once it stopped accepting and freed its ports. */
  async adopted(count: number): Promise<void> {
    await send(this.fd, { type: 'adopted', pods: count })
    await receive(this.fd, 'released')
  }

  close(): void {
    closeFd(this.fd)
  }

  toString(): string {
    return this.path
  }
}

export interface HandoffServerOptions {
  readonly path: string
  readonly log: Logger
  /** Every pod's listening sockets now (their descriptors stay ours). */
  readonly pods: () => readonly HandedPod[]
  /** The successor serves: stop accepting, free the node ports; resolves when done. */
  readonly release: () => Promise<void>
}

/** The running ztunnel's side: hands its sockets to the first successor that asks, then closes. */
export class HandoffServer {
  private server: net.Server | null = null
  private busy = false

  constructor(private readonly options: HandoffServerOptions) {}

  /** Listens at the path (a leftover socket file there, with nobody listening, is replaced). */
  async start(): Promise<void> {
    const { path } = this.options
    if (existsSync(path)) {
      // Only called with nobody answering there (Predecessor.connect returned null, or it handed over and closed).
      rmSync(path, { force: true })
    }
    const server = net.createServer({ pauseOnConnect: true }, (socket) => void this.onSuccessor(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(new HandoffError('AMBIENT_ERR_HANDOFF_SOCKET', `cannot listen on the handoff socket ${path}: ${err.message}`, { cause: err })),
      )
      server.listen(path, () => resolve())
    })
    this.server = server
  }

  /** Stops listening and removes the socket file, at once (a handoff under way keeps its connection). */
  async stop(): Promise<void> {
    this.server?.close()
    this.server = null
  }

  private async onSuccessor(socket: net.Socket): Promise<void> {
    const log = this.options.log
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd
    if (this.busy || this.server === null || fd === undefined || fd < 0) return void socket.destroy()
    this.busy = true
    try {
      const { message } = await receive(fd, 'takeover')
      if (message.version !== VERSION) throw protocolError(`the successor speaks version ${message.version}, this ztunnel ${VERSION}`)
      const pods = this.options.pods()
      log.info({ successor: message.pid, pods: pods.length }, 'handing the pods over to a new ztunnel')
      for (let i = 0; i === 0 || i < pods.length; i += PODS_PER_FRAME) {
        const chunk = pods.slice(i, i + PODS_PER_FRAME)
        const last = i + PODS_PER_FRAME >= pods.length
        const listed = chunk.map((p) => ({ uid: p.uid, ip: p.ip, netnsPath: p.netnsPath, netnsCookie: String(p.netnsCookie) }))
        await send(
          fd,
          { type: 'pods', pods: listed, last },
          chunk.flatMap((p) => [p.fds.outbound, p.fds.inbound, p.fds.hbone]),
        )
      }
      const adopted = await receive(fd, 'adopted')
      await this.stop()
      await this.options.release()
      await send(fd, { type: 'released' })
      log.info({ successor: message.pid, adopted: adopted.message.pods }, 'handed over to the new ztunnel: draining')
    } catch (err) {
      // Nothing changed on our side until `adopted`: we keep serving.
      log.error({ err: (err as Error).message }, 'handoff to a new ztunnel failed; still serving')
    } finally {
      this.busy = false
      socket.destroy()
    }
  }
}
