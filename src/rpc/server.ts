// The serving side of the RPC channel: a shard serves one port per other thread that calls it.
//
// Each incoming frame is a batch; every entry is validated, dispatched to the ShardService, and
// its reply queued. Replies produced by one task (one incoming frame, one group-commit round) go
// back as one frame. An entry that
// fails validation is answered with IM_ERR_RPC_FRAME when its id can be read; a frame that cannot
// be decoded at all is dropped and reported through `onBadFrame` (its callers then wait for the
// shard to restart or the client to give up: a peer that sends garbage is a bug, not traffic).

import type { MessagePort } from 'node:worker_threads'
import { Errors, PullchatError, asPullchatError } from '../errors.js'
import { OP_PULL, OP_SEND, decodeFrame, encodeFrame, entryId, isRequestEntry } from './codec.js'
import { CODE_OK, type PullResponse, type SendResponse, type ShardService } from './types.js'

export interface ServeOptions {
  readonly onBadFrame?: (err: PullchatError) => void
}

export class ShardEndpoint {
  private readonly port: MessagePort
  private readonly service: ShardService
  private readonly onBadFrame: (err: PullchatError) => void
  private replies: unknown[] = []
  private flushScheduled = false
  private closed = false
  private readonly flush = (): void => this.flushNow()

  constructor(port: MessagePort, service: ShardService, options: ServeOptions = {}) {
    this.port = port
    this.service = service
    this.onBadFrame = options.onBadFrame ?? (() => {})
    port.on('message', (frame: Uint8Array) => this.onFrame(frame))
    port.on('close', () => {
      this.closed = true
    })
  }

  close(): void {
    this.flushNow()
    this.closed = true
    this.port.close()
  }

  private onFrame(frame: Uint8Array): void {
    let entries: unknown[]
    try {
      entries = decodeFrame(frame)
    } catch (err) {
      this.onBadFrame(asPullchatError(err))
      return
    }
    this.prefetch(entries)
    for (const e of entries) this.dispatch(e)
  }

  // Tells the shard which chats this frame pulls before any is pulled (ShardService.prefetch).
  private prefetch(entries: unknown[]): void {
    if (this.service.prefetch === undefined) return
    const chats: string[] = []
    for (const e of entries) if (Array.isArray(e) && e[0] === OP_PULL && typeof e[2] === 'string') chats.push(e[2])
    if (chats.length > 1) this.service.prefetch(chats, chats.length)
  }

  private dispatch(e: unknown): void {
    if (!isRequestEntry(e)) {
      const id = entryId(e)
      if (id !== undefined) this.reply([id, Errors.RPC_FRAME.wireId, 'malformed RPC request'])
      else this.onBadFrame(new PullchatError(Errors.RPC_FRAME, 'RPC request without an id'))
      return
    }
    const id = e[1]
    try {
      if (e[0] === OP_SEND) {
        this.service.send({ message: { chat: e[2], text: e[3], sender: e[4], send_time: 0 } }, (res: SendResponse) => {
          this.reply(res.code === CODE_OK ? [id, CODE_OK, res.send_time] : [id, res.code, res.msg])
        })
      } else {
        const res: PullResponse = this.service.pull({ chat: e[2], cursor: e[3], limit: e[4], reverse: e[5] })
        this.reply(res.code === CODE_OK ? [id, CODE_OK, res.messages, res.has_more, res.next_cursor, res.count] : [id, res.code, res.msg])
      }
    } catch (err) {
      // Operating errors are answered; anything else is a broken invariant and takes the shard
      // down loudly (the supervisor restarts it and its callers get 503).
      if (!(err instanceof PullchatError)) throw err
      this.reply([id, err.spec.wireId, err.message])
    }
  }

  private reply(entry: unknown[]): void {
    if (this.closed) return
    this.replies.push(entry)
    if (!this.flushScheduled) {
      // Replies are produced in bursts (every entry of one incoming frame, or every send of one
      // group-commit round), each inside one task: send them when that task ends, without
      // waiting for another turn of the event loop.
      this.flushScheduled = true
      queueMicrotask(this.flush)
    }
  }

  private flushNow(): void {
    this.flushScheduled = false
    if (this.replies.length === 0 || this.closed) return
    const frame = encodeFrame(this.replies)
    this.replies = []
    this.port.postMessage(frame, [frame.buffer as ArrayBuffer])
  }
}
