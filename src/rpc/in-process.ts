// The RPC channel's in-process transport: a caller in the thread that hosts the shard calls its
// ShardService directly, with the same callbacks and errors as a ShardClient over a MessagePort
// but no frame, no copy and no thread hop (gRPC's in-process transport plays the same part).
//
// Why it exists: a crossing between threads costs two wake-ups and two frames; on the 2-core
// reference machine the context switches alone took a third of an HTTP thread's CPU
// (docs/performance.md, "Workers that host their shards"). Requests for a shard in the caller's own
// thread skip them.
//
// Pulls are answered in batches, once per turn of the event loop (setImmediate: after every request
// that this turn's poll delivered): the shard is told every chat of the batch first (prefetch), and
// reads ahead for all of them, so that a batch of pulls of chats out of cache waits on memory about
// once instead of once per pull (docs/performance.md, "Pulls in batches"). Sends are not batched
// here: the log batches them.
//
// Invariants (as ShardClient's): every call's callback runs exactly once; operating errors
// (PullchatError) are answered, anything else is a broken invariant and propagates (from
// flushPulls, for pulls; the pulls queued after it are answered on the next turn).

import { PullchatError, fromWire } from '../errors.js'
import type { PullCallback, SendCallback, ShardCaller } from './client.js'
import { sendStrings, type SendBytes } from './send-bytes.js'
import { CODE_OK, type SendResponse, type ShardService } from './types.js'

export class InProcessClient implements ShardCaller {
  readonly shard: number
  private readonly service: ShardService
  private sending = 0
  // The pulls of this turn, in columns: [next, queued) are waiting.
  private readonly chats: string[] = []
  private readonly cursors: number[] = []
  private readonly limits: number[] = []
  private readonly reverses: boolean[] = []
  private readonly callbacks: PullCallback[] = []
  private next = 0
  private queued = 0
  private readonly flush = (): void => this.flushPulls()

  constructor(shard: number, service: ShardService) {
    this.shard = shard
    this.service = service
  }

  /** Sends waiting for their log round, and pulls waiting for the end of the loop's turn. */
  get inflight(): number {
    return this.sending + this.queued - this.next
  }

  send(chat: string, text: string, sender: string, cb: SendCallback): void {
    this.call(cb, (reply) => this.service.send({ message: { chat, text, sender, send_time: 0 } }, reply))
  }

  sendBytes(chat: string, fields: SendBytes, cb: SendCallback): void {
    const { service } = this
    if (service.sendBytes === undefined) {
      const { text, sender } = sendStrings(fields)
      this.send(chat, text, sender, cb)
      return
    }
    this.call(cb, (reply) => service.sendBytes?.(chat, fields, reply))
  }

  private call(cb: SendCallback, send: (reply: (res: SendResponse) => void) => void): void {
    let answered = false
    const reply = (res: SendResponse): void => {
      answered = true
      this.sending--
      if (res.code === CODE_OK) cb(null, res.send_time)
      else cb(fromWire(res.code, res.msg), 0)
    }
    this.sending++
    try {
      send(reply)
    } catch (err) {
      if (answered) throw err // thrown by the callback itself: not the shard's error to answer
      this.sending--
      if (!(err instanceof PullchatError)) throw err
      cb(err, 0)
    }
  }

  pull(chat: string, cursor: number, limit: number, reverse: boolean, cb: PullCallback): void {
    const i = this.queued++
    this.chats[i] = chat
    this.cursors[i] = cursor
    this.limits[i] = limit
    this.reverses[i] = reverse
    this.callbacks[i] = cb
    if (i === 0) setImmediate(this.flush)
  }

  /** Answers the pulls queued so far (at the end of the loop's turn; tests call it directly). */
  flushPulls(): void {
    const { chats, cursors, limits, reverses, callbacks } = this
    try {
      if (this.next === 0 && this.queued > 0) this.service.prefetch?.(chats, this.queued)
      while (this.next < this.queued) {
        const i = this.next++
        const cb = callbacks[i] as PullCallback
        callbacks[i] = NO_CALLBACK // the batch's columns are reused: let go of what they held
        this.pullNow(chats[i] as string, cursors[i] as number, limits[i] as number, reverses[i] as boolean, cb)
      }
    } finally {
      if (this.next < this.queued) setImmediate(this.flush) // after a broken invariant: the rest next turn
      else this.next = this.queued = 0
    }
  }

  private pullNow(chat: string, cursor: number, limit: number, reverse: boolean, cb: PullCallback): void {
    let res
    try {
      // The page is passed on, and copied into the reply, before this returns: a view will do.
      const req = { chat, cursor, limit, reverse }
      res = this.service.pullView !== undefined ? this.service.pullView(req) : this.service.pull(req)
    } catch (err) {
      if (!(err instanceof PullchatError)) throw err
      cb(err, null)
      return
    }
    if (res.code !== CODE_OK) cb(fromWire(res.code, res.msg), null)
    else cb(null, { messages: res.messages, hasMore: res.has_more, nextCursor: res.next_cursor, count: res.count })
  }
}

const NO_CALLBACK: PullCallback = () => {}
