// One chat's messages, in memory, as a ring-indexed array.
//
// Layout: message i (0 = oldest held) has ring slot (head + i) mod capacity, which holds three numbers:
// its send_time (µs), the location of its JSON encoding in the shard's slab, and that encoding's
// length. The slab (slab.ts) holds every message as `{"chat":..,"text":..,"sender":..,"send_time":..},`
// (note the trailing comma), so a page is a concatenation of byte ranges: a pull copies bytes and
// builds no objects. No long-lived JS object exists per message.
//
// Invariants:
// - send_times are strictly increasing from oldest to newest;
// - the index grows by half when full;
// - `held` is the sum of the held messages' lengths, and each of them is live in the slab;
// - n + unstored <= messagesMax: a send is refused before it is logged, never after.

import assert from 'node:assert'
import { Errors, PullchatError } from '../errors.js'
import { messageJson, recordPrefix } from './message-record.js'
import { Slab } from './slab.js'

const INDEX_CAPACITY_INITIAL = 4 // messages
const INDEX_CAPACITY_SMALL_MAX = 1024 // up to this many slots, the index is a JS array on V8's heap
/** Messages one chat holds at most (33.5M): its index's limit. */
export const CHAT_MESSAGES_MAX = 2 ** 25
const STRIDE = 3 // index slot: send_time, location in the slab, length in bytes

const OPEN_BRACKET = 0x5b // [
const CLOSE_BRACKET = 0x5d // ]
const COMMA = 0x2c // ,

export interface Page {
  /** The page's messages as a JSON array, in the order asked for. */
  readonly json: Buffer
  readonly count: number
  readonly hasMore: boolean
  readonly nextCursor: number
}

const EMPTY_ARRAY = Buffer.from('[]')

/**
 * A buffer that pages are written into instead of a fresh one each: a page is then a view of it,
 * valid until the next page written into the same scratch (see Shard.pullView).
 */
export interface PageScratch {
  buf: Buffer
}

/** A ring for `capacity` messages: on V8's heap while small, a typed array off it beyond that. */
function newRing(capacity: number): number[] | Float64Array {
  return capacity <= INDEX_CAPACITY_SMALL_MAX ? doubles(capacity * STRIDE) : new Float64Array(capacity * STRIDE)
}

/** A JS array of `n` zeros whose elements V8 keeps as unboxed doubles. */
function doubles(n: number): number[] {
  const a = [0.5]
  for (let i = 1; i < n; i++) a.push(0.5)
  return a
}

export class ChatLog {
  readonly chat: string
  /** Highest send_time handed out for this chat, stored or still being made durable. */
  lastSendTime = 0
  private readonly slab: Slab
  // Small chats (most of them) keep their index on V8's heap, which costs a few dozen bytes over
  // the data; large ones in a typed array, off the heap.
  private ring: number[] | Float64Array = doubles(INDEX_CAPACITY_INITIAL * STRIDE)
  private capacity = INDEX_CAPACITY_INITIAL
  private head = 0
  private n = 0
  private held = 0
  /** Sends accepted for this chat (reserve()) and not yet stored or failed (release()). */
  private unstored = 0
  private readonly messagesMax: number
  private prefix: Buffer | undefined = undefined

  /**
   * `slab` holds the bytes; a shard's chats share one. `expected`: how many messages the chat is
   * about to receive (recovery knows), so that its index is allocated once at that size.
   */
  constructor(chat: string, slab: Slab = new Slab(), messagesMax: number = CHAT_MESSAGES_MAX, expected = 0) {
    assert(Number.isSafeInteger(messagesMax) && messagesMax >= 1 && messagesMax <= CHAT_MESSAGES_MAX)
    this.chat = chat
    this.slab = slab
    this.messagesMax = messagesMax
    if (expected > INDEX_CAPACITY_INITIAL) {
      this.capacity = Math.min(expected, messagesMax)
      this.ring = newRing(this.capacity)
    }
  }

  /** Whether the chat holds as many messages as it can. */
  get full(): boolean {
    return this.n >= this.messagesMax
  }

  /**
   * Takes room for one message about to be logged; throws IM_ERR_CHAT_FULL when the chat's held
   * and accepted messages already reach its limit. Each reserve() is followed by one release(),
   * when the log has taken the message or failed to.
   */
  reserve(): void {
    if (this.n + this.unstored >= this.messagesMax) throw this.fullError()
    this.unstored++
  }

  release(): void {
    assert(this.unstored > 0)
    this.unstored--
  }

  private fullError(): PullchatError {
    return new PullchatError(Errors.CHAT_FULL, `chat ${JSON.stringify(this.chat)} holds ${this.n} messages, the most a chat can`)
  }

  /** Number of messages held. */
  get count(): number {
    return this.n
  }

  /** Bytes of memory held by this chat's index (its messages' bytes are in the slab). */
  get bytes(): number {
    return this.ring.length * 8
  }

  /** Bytes of message JSON held (each message with the comma that follows it in a page). */
  get jsonBytes(): number {
    return this.held
  }

  /** send_time of the newest message held, or 0 when empty. */
  get lastStoredTime(): number {
    return this.n === 0 ? 0 : (this.ring[this.at(this.n - 1)] as number)
  }

  /** send_time of the i-th oldest message held. */
  timeAt(i: number): number {
    assert(i >= 0 && i < this.n, 'index out of range')
    return this.ring[this.at(i)] as number
  }

  /** Hands out the next send_time: max(now, last + 1), so strictly increasing per chat. */
  nextSendTime(nowUs: number): number {
    const t = nowUs > this.lastSendTime ? nowUs : this.lastSendTime + 1
    this.lastSendTime = t
    return t
  }

  /** The JSON object a pull returns for this message. */
  messageJson(sendTime: number, text: string, sender: string): string {
    return messageJson(this.chat, sender, text, sendTime)
  }

  /** What every log record of this chat starts with (message-record.ts), made on the first send. */
  recordPrefix(): Buffer {
    this.prefix ??= recordPrefix(this.chat)
    return this.prefix
  }

  /** Appends a message. `sendTime` must be greater than every stored one. */
  append(sendTime: number, text: string, sender: string): void {
    this.checkNext(sendTime)
    const loc = this.slab.putString(this.messageJson(sendTime, text, sender) + ',')
    this.index(sendTime, loc, this.slab.lastLength)
  }

  /** Appends a message given as its JSON object, the bytes `src[from, to)` (as messageJson made them). */
  appendJson(sendTime: number, src: Buffer, from: number, to: number): void {
    this.checkNext(sendTime)
    const loc = this.slab.putBytes(src, from, to, COMMA)
    this.index(sendTime, loc, this.slab.lastLength)
  }

  /**
   * Appends a message whose bytes (its JSON and the comma after it) are already in the slab, at
   * `loc`, `length` bytes long: recovery placed them there (recover.ts).
   */
  appendStored(sendTime: number, loc: number, length: number): void {
    this.checkNext(sendTime)
    this.index(sendTime, loc, length)
  }

  /** Drops the `count` oldest messages (retention). */
  dropOldest(count: number): void {
    assert(count >= 0 && count <= this.n)
    for (let i = 0; i < count; i++) {
      const k = this.at(i)
      const length = this.ring[k + 2] as number
      this.slab.free(this.ring[k + 1] as number, length)
      this.held -= length
    }
    this.head = (this.head + count) % this.capacity
    this.n -= count
    if (this.n === 0) this.head = 0
  }

  /** Index of the first message with send_time >= t (n if none). */
  lowerBound(t: number): number {
    let lo = 0
    let hi = this.n
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.ring[this.at(mid)] as number) < t) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /**
   * One page. Forward: messages with send_time >= cursor, oldest first. Reverse: send_time <=
   * cursor (cursor 0 = from the newest), newest first. `limit` must be >= 1.
   */
  pull(cursor: number, limit: number, reverse: boolean, scratch?: PageScratch): Page {
    assert(limit >= 1)
    if (!reverse) {
      const first = this.lowerBound(cursor)
      if (first >= this.n) return { json: EMPTY_ARRAY, count: 0, hasMore: false, nextCursor: cursor }
      const end = Math.min(first + limit, this.n)
      return { json: this.page(first, end, 1, scratch), count: end - first, hasMore: end < this.n, nextCursor: this.timeAt(end - 1) + 1 }
    }
    const last = cursor === 0 ? this.n - 1 : this.lowerBound(cursor + 1) - 1
    if (last < 0) return { json: EMPTY_ARRAY, count: 0, hasMore: false, nextCursor: cursor }
    const first = Math.max(0, last - limit + 1)
    return { json: this.page(last, first - 1, -1, scratch), count: last - first + 1, hasMore: first > 0, nextCursor: this.timeAt(first) - 1 }
  }

  /**
   * The JSON array of messages from..to (exclusive) stepping by `step`. Each stored message ends in
   * a comma; the last one's becomes the closing bracket. Messages next to each other in the slab
   * (a chat written in a burst, or the only busy chat) are copied as one range.
   */
  private page(from: number, to: number, step: 1 | -1, scratch: PageScratch | undefined): Buffer {
    let bytes = 1
    let runEnd = -1
    for (let i = from; i !== to; i += step) {
      const k = this.at(i)
      const loc = this.ring[k + 1] as number
      const length = this.ring[k + 2] as number
      // Where a new run of bytes starts, read it ahead (Slab.touch); within a run, the CPU's own
      // prefetcher follows the copy.
      if (loc !== runEnd) this.slab.touch(loc, length)
      runEnd = loc + length
      bytes += length
    }
    let out: Buffer
    if (scratch === undefined) out = Buffer.allocUnsafe(bytes)
    else {
      if (scratch.buf.length < bytes) scratch.buf = Buffer.allocUnsafeSlow(Math.max(bytes, scratch.buf.length * 2))
      out = scratch.buf
    }
    out[0] = OPEN_BRACKET
    let at = 1
    let runLoc = 0
    let runLength = 0
    for (let i = from; i !== to; i += step) {
      const k = this.at(i)
      const loc = this.ring[k + 1] as number
      const length = this.ring[k + 2] as number
      if (loc === runLoc + runLength && runLength > 0) {
        runLength += length
      } else {
        if (runLength > 0) at += this.slab.copy(runLoc, runLength, out, at)
        runLoc = loc
        runLength = length
      }
    }
    this.slab.copy(runLoc, runLength, out, at)
    out[bytes - 1] = CLOSE_BRACKET
    return out.length === bytes ? out : out.subarray(0, bytes)
  }

  /** Where in the ring message i's three numbers start. */
  private at(i: number): number {
    const slot = this.head + i
    return (slot < this.capacity ? slot : slot - this.capacity) * STRIDE
  }

  // Before anything is written: a full chat refuses the message whole.
  private checkNext(sendTime: number): void {
    assert(sendTime > this.lastStoredTime && Number.isSafeInteger(sendTime), 'send_time must increase')
    if (this.full) throw this.fullError()
    if (sendTime > this.lastSendTime) this.lastSendTime = sendTime
  }

  private index(sendTime: number, loc: number, length: number): void {
    if (this.n === this.capacity) this.growIndex()
    const k = this.at(this.n)
    this.ring[k] = sendTime
    this.ring[k + 1] = loc
    this.ring[k + 2] = length
    this.held += length
    this.n++
  }

  private growIndex(): void {
    // By half while the index is a JS array (most chats are small, and their index is most of what
    // they cost beyond their bytes), then by doubling (fewer copies of large indexes).
    const small = this.capacity < INDEX_CAPACITY_SMALL_MAX
    const capacity = Math.min(small ? Math.ceil(this.capacity * 1.5) : this.capacity * 2, this.messagesMax)
    assert(capacity > this.capacity, 'grown past the chat limit')
    const old = this.ring
    const ring = newRing(capacity)
    // Oldest first from slot 0: the part from head to the end of the ring, then the wrapped part.
    const tail = (this.capacity - this.head) * STRIDE
    if (ring instanceof Float64Array && old instanceof Float64Array) {
      ring.set(old.subarray(this.head * STRIDE))
      ring.set(old.subarray(0, this.head * STRIDE), tail)
    } else {
      for (let i = 0; i < this.n; i++) {
        const k = this.at(i)
        ring[i * STRIDE] = old[k] as number
        ring[i * STRIDE + 1] = old[k + 1] as number
        ring[i * STRIDE + 2] = old[k + 2] as number
      }
    }
    this.ring = ring
    this.capacity = capacity
    this.head = 0
  }
}
