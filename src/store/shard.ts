// A shard: the ShardService that owns a subset of chats (those with shardOf(chat) === id).
//
// A send gets its send_time at once (max(now, last + 1), so strictly increasing per chat even if
// the wall clock steps back), is appended to the shard's log, and becomes visible to pulls when
// the log says it is durable; only then is it acknowledged. A send the log could not take is
// answered with an error and stored nowhere. Pulls never wait for the log.

import { performance } from 'node:perf_hooks'
import { Errors, PullchatError } from '../errors.js'
import { CODE_OK, type Message, type PullRequest, type PullResponse, type SendBytes, type SendRequest, type SendResponse, type ShardService } from '../rpc/index.js'
import { WalBackpressureError, WalStoppedError, WalSyncError, type AppendCallback } from '../wal/index.js'
import { jsonOffset } from './message-record.js'
import { ShardStore } from './shard-store.js'
import { ChatLog, type PageScratch } from './chat-log.js'

/** Wall-clock time in microseconds, from a monotonic source anchored at thread start. */
export function nowUs(): number {
  return Math.trunc((performance.timeOrigin + performance.now()) * 1000)
}

/** Where a shard makes messages durable: the WAL writer, or nothing (tests, benchmarks). */
export interface MessageLog {
  append(payload: Uint8Array, cb: AppendCallback): void
}

/** A log that keeps nothing: every append succeeds at once. */
export const NO_LOG: MessageLog = { append: (_payload, cb) => cb(null) }

function storageError(shard: number, err: NodeJS.ErrnoException): SendResponse {
  if (err instanceof WalStoppedError) return { code: Errors.SHARD_UNAVAILABLE.wireId, msg: `shard ${shard} stopped: ${err.message}`, send_time: 0 }
  const e = err instanceof WalSyncError ? Errors.WAL_SYNC : err.code === 'ENOSPC' || err.code === 'EDQUOT' ? Errors.WAL_NO_SPACE : Errors.WAL_WRITE
  return { code: e.wireId, msg: `${e.message} (${err.code ?? err.message})`, send_time: 0 }
}

export class Shard implements ShardService {
  readonly id: number
  readonly store: ShardStore
  private readonly log: MessageLog
  private readonly clock: () => number
  private readonly onStored: ((chat: string, sendTime: number) => void) | undefined
  private readonly scratch: PageScratch = { buf: Buffer.allocUnsafeSlow(64 * 1024) }
  // The chats of the sends in the log, in append order, from `landed` on: the log answers them in
  // that order, and readAheadDurable reads ahead for a round's before its answers store them.
  private landing: ChatLog[] = []
  private landed = 0
  /** A sum of what the last prefetch read: kept, so that the compiler keeps the reads. */
  readAhead = 0

  constructor(
    id: number,
    log: MessageLog = NO_LOG,
    store: ShardStore = new ShardStore(),
    options: { clock?: () => number; onStored?: (chat: string, sendTime: number) => void } = {},
  ) {
    this.id = id
    this.log = log
    this.store = store
    this.clock = options.clock ?? nowUs
    this.onStored = options.onStored
  }

  send(req: SendRequest, reply: (res: SendResponse) => void): void {
    const { chat, text, sender } = req.message
    if (chat === '' || text === '' || sender === '') throw new PullchatError(Errors.MISSING_FIELD)
    const log = this.store.chatLog(chat)
    const sendTime = this.admit(log)
    this.logSend(chat, log, sendTime, req.message, reply)
  }

  /** As send, with the text and sender as the literals a request carried, copied into the record. */
  sendBytes(chat: string, fields: SendBytes, reply: (res: SendResponse) => void): void {
    if (chat === '' || fields.textTo - fields.textFrom <= 2 || fields.senderTo - fields.senderFrom <= 2) throw new PullchatError(Errors.MISSING_FIELD)
    const log = this.store.chatLog(chat)
    const sendTime = this.admit(log)
    this.logSend(chat, log, sendTime, fields, reply)
  }

  // Room in the chat is taken before the message is logged: a logged message is always stored.
  private admit(log: ChatLog): number {
    log.reserve()
    return log.nextSendTime(this.clock())
  }

  // Appends the message's record (which carries its JSON, what the store keeps once it is durable)
  // to the log; stores the message and answers when the log says it is durable.
  private logSend(chat: string, log: ChatLog, sendTime: number, message: Message | SendBytes, reply: (res: SendResponse) => void): void {
    try {
      const record = log.encodeSend(sendTime, message)
      const jsonFrom = jsonOffset(record)
      this.log.append(record, (err) => {
        this.landed++
        log.release()
        if (err !== null) {
          reply(storageError(this.id, err))
          return
        }
        this.store.appendJson(log, sendTime, record, jsonFrom, record.length)
        this.onStored?.(chat, sendTime)
        reply({ code: CODE_OK, msg: '', send_time: sendTime })
      })
      this.landing.push(log)
      if (this.landed >= 1024) {
        this.landing = this.landing.slice(this.landed)
        this.landed = 0
      }
    } catch (err) {
      log.release()
      if (err instanceof WalBackpressureError) throw new PullchatError(Errors.OVERLOADED, err.message)
      if (err instanceof WalStoppedError) throw new PullchatError(Errors.SHARD_UNAVAILABLE, `shard ${this.id} stopped: ${err.message}`)
      throw err
    }
  }

  pull(req: PullRequest): PullResponse {
    return this.page(req, undefined)
  }

  /** As pull, but the page is a view that this shard's next pullView overwrites. */
  pullView(req: PullRequest): PullResponse {
    return this.page(req, this.scratch)
  }

  /**
   * The log's next `n` answers are for durable sends, whose messages they store: reads their chats'
   * tails ahead together, so that the cache misses of a round's chats overlap (docs/performance.md,
   * seventh session). Changes nothing.
   */
  readAheadDurable(n: number): void {
    const from = this.landed
    this.readAhead = ChatLog.prefetchTails(this.landing, Math.min(n, this.landing.length - from), from)
  }

  prefetch(chats: readonly string[], n: number): void {
    this.readAhead = this.store.prefetch(chats, n)
  }

  private page(req: PullRequest, scratch: PageScratch | undefined): PullResponse {
    if (req.limit < 1) throw new PullchatError(Errors.INVALID_FIELD, 'limit must be at least 1')
    const page = this.store.pull(req.chat, req.cursor, req.limit, req.reverse, scratch)
    return { code: CODE_OK, msg: '', messages: page.json, has_more: page.hasMore, next_cursor: page.nextCursor, count: page.count }
  }
}
