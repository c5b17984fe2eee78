// The calling side of the RPC channel between threads: in every thread, one ShardClient per shard
// that another thread hosts.
//
// Calls made during one event-loop turn are queued and sent as one frame when the turn ends
// (setImmediate runs after the poll phase in which uWS delivered every ready request). Replies
// arrive as frames too and are matched to callbacks by id.
//
// Invariants:
// - every call's callback runs exactly once: with the reply, with the shard's error, with
//   SHARD_UNAVAILABLE when the shard's port closes first, or with OVERLOADED when the in-flight
//   bound is reached;
// - a port, once closed, is never written to again; `attach()` installs the restarted shard's.

import { performance } from 'node:perf_hooks' // the global is a getter, called on every use
import type { MessagePort } from 'node:worker_threads'
import { Errors, PullchatError, fromWire } from '../errors.js'
import { OP_PULL, OP_SEND, decodeFrame, encodeFrame, isErrorEntry, isPullOk, isSendOk } from './codec.js'
import { sendStrings, type SendBytes } from './send-bytes.js'

export type SendCallback = (err: PullchatError | null, sendTime: number) => void

export interface PullPage {
  /** The page's messages as a UTF-8 JSON array. */
  readonly messages: Uint8Array
  readonly hasMore: boolean
  readonly nextCursor: number
  /** How many messages the page holds. */
  readonly count: number
}
export type PullCallback = (err: PullchatError | null, page: PullPage | null) => void

/** What the front end calls a shard through, wherever the shard lives (this module, in-process.ts). */
export interface ShardCaller {
  readonly shard: number
  /** Calls made and not yet answered. */
  readonly inflight: number
  send(chat: string, text: string, sender: string, cb: SendCallback): void
  /** As send, with the text and sender as the literals a request carried (send-bytes.ts), read during the call. */
  sendBytes(chat: string, fields: SendBytes, cb: SendCallback): void
  pull(chat: string, cursor: number, limit: number, reverse: boolean, cb: PullCallback): void
}

interface Pending {
  readonly op: number
  readonly cb: SendCallback | PullCallback
  readonly startedAt: number
}

export class ShardClient implements ShardCaller {
  readonly shard: number
  private readonly inflightMax: number
  private port: MessagePort | null = null
  private queue: unknown[] = []
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private flushScheduled = false
  private readonly flush = (): void => this.flushNow()
  private readonly onRoundTrip: (seconds: number) => void

  constructor(shard: number, inflightMax: number, onRoundTrip: (seconds: number) => void = () => {}) {
    this.shard = shard
    this.inflightMax = inflightMax
    this.onRoundTrip = onRoundTrip
  }

  /** Requests sent or queued and not yet answered. */
  get inflight(): number {
    return this.pending.size
  }

  get connected(): boolean {
    return this.port !== null
  }

  /** Installs the port to a (re)started shard. */
  attach(port: MessagePort): void {
    this.detach()
    this.port = port
    port.on('message', (frame: Uint8Array) => this.onFrame(frame))
    port.on('close', () => {
      if (this.port === port) this.detach()
    })
  }

  /** Forgets the current port; everything in flight on it fails with SHARD_UNAVAILABLE. */
  detach(): void {
    const port = this.port
    this.port = null
    if (port !== null) {
      port.removeAllListeners()
      port.close()
    }
    this.queue = []
    if (this.pending.size === 0) return
    const failed = [...this.pending.values()]
    this.pending.clear()
    const err = new PullchatError(Errors.SHARD_UNAVAILABLE, `shard ${this.shard} is not available`)
    for (const p of failed) fail(p.op, p.cb, err)
  }

  send(chat: string, text: string, sender: string, cb: SendCallback): void {
    const id = this.admit(OP_SEND, cb)
    if (id !== 0) this.queue.push([OP_SEND, id, chat, text, sender])
  }

  // Frames carry strings (the IDL's Message): the literals are decoded here.
  sendBytes(chat: string, fields: SendBytes, cb: SendCallback): void {
    const { text, sender } = sendStrings(fields)
    this.send(chat, text, sender, cb)
  }

  pull(chat: string, cursor: number, limit: number, reverse: boolean, cb: PullCallback): void {
    const id = this.admit(OP_PULL, cb)
    if (id !== 0) this.queue.push([OP_PULL, id, chat, cursor, limit, reverse])
  }

  // Returns the new call's id, or 0 after failing the call.
  private admit(op: number, cb: SendCallback | PullCallback): number {
    if (this.port === null) {
      fail(op, cb, new PullchatError(Errors.SHARD_UNAVAILABLE, `shard ${this.shard} is not available`))
      return 0
    }
    if (this.pending.size >= this.inflightMax) {
      fail(op, cb, new PullchatError(Errors.OVERLOADED, `${this.pending.size} requests in flight to shard ${this.shard}`))
      return 0
    }
    const id = this.nextId
    this.nextId = id >= 0x7fff_ffff ? 1 : id + 1
    this.pending.set(id, { op, cb, startedAt: performance.now() })
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(this.flush)
    }
    return id
  }

  private flushNow(): void {
    this.flushScheduled = false
    if (this.queue.length === 0 || this.port === null) return
    const frame = encodeFrame(this.queue)
    this.queue = []
    this.port.postMessage(frame, [frame.buffer as ArrayBuffer])
  }

  private onFrame(frame: Uint8Array): void {
    let entries: unknown[]
    try {
      entries = decodeFrame(frame)
    } catch (err) {
      // A shard that speaks garbage cannot be trusted with anything in flight.
      this.failAll(err as PullchatError)
      return
    }
    for (const e of entries) this.onReply(e)
  }

  private onReply(e: unknown): void {
    const id = Array.isArray(e) ? (e[0] as number) : -1
    const p = this.pending.get(id)
    if (p === undefined) return // answered already (e.g. failed on detach) or never asked
    this.pending.delete(id)
    this.onRoundTrip((performance.now() - p.startedAt) / 1000)
    if (isErrorEntry(e)) {
      fail(p.op, p.cb, fromWire(e[1], e[2]))
    } else if (p.op === OP_SEND && isSendOk(e)) {
      ;(p.cb as SendCallback)(null, e[2])
    } else if (p.op === OP_PULL && isPullOk(e)) {
      ;(p.cb as PullCallback)(null, { messages: e[2], hasMore: e[3], nextCursor: e[4], count: e[5] })
    } else {
      fail(p.op, p.cb, new PullchatError(Errors.RPC_FRAME, 'malformed RPC reply'))
    }
  }

  private failAll(err: PullchatError): void {
    const failed = [...this.pending.values()]
    this.pending.clear()
    for (const p of failed) fail(p.op, p.cb, err)
  }
}

function fail(op: number, cb: SendCallback | PullCallback, err: PullchatError): void {
  if (op === OP_SEND) (cb as SendCallback)(err, 0)
  else (cb as PullCallback)(err, null)
}
