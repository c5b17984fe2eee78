// One chat's messages, in memory, as ring-indexed struct-of-arrays.
//
// Layout: message i (0 = oldest held) lives at ring slot (head + i) & mask. `times[slot]` is its
// send_time (µs) and `starts[slot]` the byte offset of its JSON encoding in `arena`. The arena holds
// every message as `{"chat":..,"text":..,"sender":..,"send_time":..},` (note the trailing comma),
// back to back in send order, so a forward page is one contiguous byte range: a pull copies bytes
// and builds no objects. No long-lived JS object exists per message.
//
// Invariants:
// - times are strictly increasing from oldest to newest;
// - starts are increasing, starts(0) >= arenaHead, and message i ends where i+1 starts (the last
//   ends at arenaTail);
// - capacity is a power of two; the index doubles when full, the arena doubles (or compacts, after
//   old messages were dropped) when the next message does not fit.

import assert from 'node:assert'
import { Errors, PullchatError } from '../errors.js'

const INDEX_CAPACITY_INITIAL = 4 // messages
const ARENA_BYTES_INITIAL = 256 // bytes: about two short messages
const ARENA_BYTES_MAX = 0xffff_ffff // offsets are Uint32

const OPEN_BRACKET = 0x5b // [
const CLOSE_BRACKET = 0x5d // ]

export interface Page {
  /** The page's messages as a JSON array, in the order asked for. */
  readonly json: Buffer
  readonly count: number
  readonly hasMore: boolean
  readonly nextCursor: number
}

const EMPTY_ARRAY = Buffer.from('[]')

export class ChatLog {
  readonly chat: string
  /** Highest send_time handed out for this chat, stored or still being made durable. */
  lastSendTime = 0
  private readonly prefix: string
  private times = new Float64Array(INDEX_CAPACITY_INITIAL)
  private starts = new Uint32Array(INDEX_CAPACITY_INITIAL)
  private mask = INDEX_CAPACITY_INITIAL - 1
  private head = 0
  private n = 0
  private arena: Buffer = Buffer.allocUnsafeSlow(ARENA_BYTES_INITIAL)
  private arenaHead = 0
  private arenaTail = 0
  private lastSender = ''
  private lastSenderJson = ''

  constructor(chat: string) {
    this.chat = chat
    this.prefix = `{"chat":${JSON.stringify(chat)},"text":`
  }

  /** Number of messages held. */
  get count(): number {
    return this.n
  }

  /** Bytes of memory held by this chat's arrays (allocated, not just used). */
  get bytes(): number {
    return this.arena.length + this.times.byteLength + this.starts.byteLength
  }

  /** Bytes of message JSON held. */
  get jsonBytes(): number {
    return this.arenaTail - this.arenaHead
  }

  /** send_time of the newest message held, or 0 when empty. */
  get lastStoredTime(): number {
    return this.n === 0 ? 0 : (this.times[(this.head + this.n - 1) & this.mask] as number)
  }

  /** send_time of the i-th oldest message held. */
  timeAt(i: number): number {
    assert(i >= 0 && i < this.n, 'index out of range')
    return this.times[(this.head + i) & this.mask] as number
  }

  /** Hands out the next send_time: max(now, last + 1), so strictly increasing per chat. */
  nextSendTime(nowUs: number): number {
    const t = nowUs > this.lastSendTime ? nowUs : this.lastSendTime + 1
    this.lastSendTime = t
    return t
  }

  /** Appends a message. `sendTime` must be greater than every stored one. */
  append(sendTime: number, text: string, sender: string): void {
    assert(sendTime > this.lastStoredTime && Number.isSafeInteger(sendTime), 'send_time must increase')
    if (sendTime > this.lastSendTime) this.lastSendTime = sendTime
    if (sender !== this.lastSender) {
      // Direct chats have two senders: one cached encoding saves most JSON.stringify calls.
      this.lastSender = sender
      this.lastSenderJson = ',"sender":' + JSON.stringify(sender) + ',"send_time":'
    }
    const json = this.prefix + JSON.stringify(text) + this.lastSenderJson + sendTime + '},'
    // UTF-8 takes at most 3 bytes per UTF-16 unit: only count exactly when that bound does not fit.
    if (this.arenaTail + json.length * 3 > this.arena.length) {
      const size = Buffer.byteLength(json)
      if (this.arenaTail + size > this.arena.length) this.growArena(size)
    }
    if (this.n === this.times.length) this.growIndex()
    const slot = (this.head + this.n) & this.mask
    this.times[slot] = sendTime
    this.starts[slot] = this.arenaTail
    this.arenaTail += this.arena.write(json, this.arenaTail)
    this.n++
  }

  /** Drops the `count` oldest messages (retention). */
  dropOldest(count: number): void {
    assert(count >= 0 && count <= this.n)
    this.head = (this.head + count) & this.mask
    this.n -= count
    if (this.n === 0) {
      this.head = 0
      this.arenaHead = 0
      this.arenaTail = 0
    } else {
      this.arenaHead = this.starts[this.head] as number
    }
  }

  /** Index of the first message with send_time >= t (n if none). */
  lowerBound(t: number): number {
    let lo = 0
    let hi = this.n
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.times[(this.head + mid) & this.mask] as number) < t) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /**
   * One page. Forward: messages with send_time >= cursor, oldest first. Reverse: send_time <=
   * cursor (cursor 0 = from the newest), newest first. `limit` must be >= 1.
   */
  pull(cursor: number, limit: number, reverse: boolean): Page {
    assert(limit >= 1)
    if (!reverse) {
      const first = this.lowerBound(cursor)
      if (first >= this.n) return { json: EMPTY_ARRAY, count: 0, hasMore: false, nextCursor: cursor }
      const end = Math.min(first + limit, this.n)
      const from = this.startOf(first)
      const to = this.endOf(end - 1) // includes the trailing comma, replaced by ']'
      const out = Buffer.allocUnsafe(to - from + 1)
      out[0] = OPEN_BRACKET
      this.arena.copy(out, 1, from, to - 1)
      out[out.length - 1] = CLOSE_BRACKET
      return { json: out, count: end - first, hasMore: end < this.n, nextCursor: this.timeAt(end - 1) + 1 }
    }
    const last = cursor === 0 ? this.n - 1 : this.lowerBound(cursor + 1) - 1
    if (last < 0) return { json: EMPTY_ARRAY, count: 0, hasMore: false, nextCursor: cursor }
    const first = Math.max(0, last - limit + 1)
    const bytes = this.endOf(last) - this.startOf(first)
    const out = Buffer.allocUnsafe(bytes + 1)
    out[0] = OPEN_BRACKET
    let at = 1
    for (let i = last; i >= first; i--) {
      const s = this.startOf(i)
      const e = this.endOf(i)
      at += this.arena.copy(out, at, s, e)
    }
    out[out.length - 1] = CLOSE_BRACKET
    return { json: out, count: last - first + 1, hasMore: first > 0, nextCursor: this.timeAt(first) - 1 }
  }

  private startOf(i: number): number {
    return this.starts[(this.head + i) & this.mask] as number
  }

  private endOf(i: number): number {
    return i + 1 < this.n ? (this.starts[(this.head + i + 1) & this.mask] as number) : this.arenaTail
  }

  private growIndex(): void {
    const capacity = this.times.length * 2
    const times = new Float64Array(capacity)
    const starts = new Uint32Array(capacity)
    for (let i = 0; i < this.n; i++) {
      const slot = (this.head + i) & this.mask
      times[i] = this.times[slot] as number
      starts[i] = this.starts[slot] as number
    }
    this.times = times
    this.starts = starts
    this.mask = capacity - 1
    this.head = 0
  }

  private growArena(size: number): void {
    const live = this.arenaTail - this.arenaHead
    const needed = live + size
    if (needed > ARENA_BYTES_MAX) throw new PullchatError(Errors.CHAT_FULL)
    let target = this.arena.length
    // Compact in place when dropping old messages freed at least half of the arena.
    if (needed > target / 2) {
      while (target < needed) target *= 2
      target = Math.min(target, ARENA_BYTES_MAX)
    }
    const arena = target === this.arena.length ? this.arena : Buffer.allocUnsafeSlow(target)
    this.arena.copy(arena, 0, this.arenaHead, this.arenaTail)
    const shift = this.arenaHead
    if (shift !== 0) {
      for (let i = 0; i < this.n; i++) {
        const slot = (this.head + i) & this.mask
        this.starts[slot] = (this.starts[slot] as number) - shift
      }
    }
    this.arena = arena
    this.arenaHead = 0
    this.arenaTail = live
  }
}
