// A shard: the ShardService that owns a subset of chats (those with shardOf(chat) === id).
//
// A send gets its send_time at once (max(now, last + 1), so strictly increasing per chat even if
// the wall clock steps back) and becomes visible to pulls when it is acknowledged. This is the
// seam where the write-ahead log sits: between assign() and append().

import { performance } from 'node:perf_hooks'
import { Errors, PullchatError } from '../errors.js'
import { CODE_OK, type PullRequest, type PullResponse, type SendRequest, type SendResponse, type ShardService } from '../rpc/index.js'
import { ShardStore } from './shard-store.js'

/** Wall-clock time in microseconds, from a monotonic source anchored at thread start. */
export function nowUs(): number {
  return Math.trunc((performance.timeOrigin + performance.now()) * 1000)
}

export class Shard implements ShardService {
  readonly id: number
  readonly store = new ShardStore()
  private readonly clock: () => number

  constructor(id: number, clock: () => number = nowUs) {
    this.id = id
    this.clock = clock
  }

  send(req: SendRequest, reply: (res: SendResponse) => void): void {
    const { chat, text, sender } = req.message
    if (chat === '' || text === '' || sender === '') throw new PullchatError(Errors.MISSING_FIELD)
    const sendTime = this.store.assign(chat, this.clock())
    this.store.append(chat, sendTime, text, sender)
    reply({ code: CODE_OK, msg: '', send_time: sendTime })
  }

  pull(req: PullRequest): PullResponse {
    if (req.limit < 1) throw new PullchatError(Errors.INVALID_FIELD, 'limit must be at least 1')
    const page = this.store.pull(req.chat, req.cursor, req.limit, req.reverse)
    return { code: CODE_OK, msg: '', messages: page.json, has_more: page.hasMore, next_cursor: page.nextCursor }
  }
}
