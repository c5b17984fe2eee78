// Shared by the RPC tests: a fake ShardService whose behaviour the message text chooses, and a
// recorder of one call's outcome.

import { Errors, PullchatError } from '../../src/errors.js'
import type { Message, PullRequest, PullResponse, SendRequest, SendResponse, ShardService } from '../../src/rpc/types.js'

/** One call's outcome; `calls` counts how many times its callback ran. */
export interface Call<T> {
  readonly done: Promise<void>
  calls: number
  err: PullchatError | null
  value: T | null
}

export function record<T>(start: (cb: (err: PullchatError | null, value: T | null) => void) => void): Call<T> {
  let resolve = (): void => {}
  const call: Call<T> = { done: new Promise<void>((r) => (resolve = r)), calls: 0, err: null, value: null }
  start((err, value) => {
    call.calls++
    call.err = err
    call.value = value
    resolve()
  })
  return call
}

/**
 * A fake shard whose behaviour is chosen by the message text:
 * "n:<t>" answers send_time t at once; "later:<t>" answers t after 30 ms; "hold:<t>" answers t
 * when `release()` is called; "throw" throws CHAT_FULL; "refuse" answers SENDER_NOT_MEMBER;
 * "unknown" answers an error id nobody knows. A pull answers its own request as the JSON page,
 * hasMore = reverse and nextCursor = cursor + limit; chat "throw" throws INVALID_FIELD.
 */
export class FakeShard implements ShardService {
  readonly sends: Message[] = []
  readonly pulls: PullRequest[] = []
  /** The chats of each prefetch, and how many pulls had been made before it. */
  readonly prefetches: { chats: string[]; pullsBefore: number }[] = []
  private held: Array<() => void> = []

  send(req: SendRequest, reply: (res: SendResponse) => void): void {
    this.sends.push(req.message)
    const [kind, arg] = req.message.text.split(':')
    const ok = (): void => reply({ code: 0, msg: '', send_time: Number(arg) })
    if (kind === 'n') ok()
    else if (kind === 'later') setTimeout(ok, 30)
    else if (kind === 'hold') this.held.push(ok)
    else if (kind === 'throw') throw new PullchatError(Errors.CHAT_FULL, `chat ${JSON.stringify(req.message.chat)} is full`)
    else if (kind === 'refuse') reply({ code: Errors.SENDER_NOT_MEMBER.wireId, msg: `${req.message.sender} is not a member of ${req.message.chat}`, send_time: 0 })
    else if (kind === 'unknown') reply({ code: 999, msg: 'from the future', send_time: 0 })
    else reply({ code: 0, msg: '', send_time: 1 })
  }

  pull(req: PullRequest): PullResponse {
    this.pulls.push(req)
    if (req.chat === 'throw') throw new PullchatError(Errors.INVALID_FIELD, 'limit must be at least 1')
    return { code: 0, msg: '', messages: Buffer.from(JSON.stringify(req)), has_more: req.reverse, next_cursor: req.cursor + req.limit, count: 0 }
  }

  prefetch(chats: readonly string[], n: number): void {
    this.prefetches.push({ chats: chats.slice(0, n), pullsBefore: this.pulls.length })
  }

  get holding(): number {
    return this.held.length
  }

  /** Answers every held send, in reverse order of arrival. */
  release(): void {
    const held = this.held.reverse()
    this.held = []
    for (const r of held) r()
  }
}

