// The RPC channel's in-process transport: a caller in the thread that hosts the shard calls its
// ShardService directly, with the same callbacks and errors as a ShardClient over a MessagePort
// but no frame, no copy and no thread hop (gRPC's in-process transport plays the same part).
//
// Why it exists: a crossing between threads costs two wake-ups and two frames; on the 2-core
// reference machine the context switches alone took a third of an HTTP thread's CPU
// (docs/performance.md, "Workers that host their shards"). Requests for a shard in the caller's own
// thread skip them.
//
// Invariants (as ShardClient's): every call's callback runs exactly once; operating errors
// (PullchatError) are answered, anything else is a broken invariant and propagates.

import { PullchatError, fromWire } from '../errors.js'
import type { PullCallback, SendCallback, ShardCaller } from './client.js'
import { sendStrings, type SendBytes } from './send-bytes.js'
import { CODE_OK, type SendResponse, type ShardService } from './types.js'

export class InProcessClient implements ShardCaller {
  readonly shard: number
  private readonly service: ShardService
  private sending = 0

  constructor(shard: number, service: ShardService) {
    this.shard = shard
    this.service = service
  }

  /** Sends waiting for their log round (pulls are answered before the call returns). */
  get inflight(): number {
    return this.sending
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
