// One chat's messages, in memory: its index and its messages' bytes together, in extents.
//
// An extent is a block of the shard's arena (arena.ts) laid out as
//
//   [message bytes, oldest first ->   free   <- index entries, oldest last][header, 32 B]
//
// Message bytes are each message's JSON encoding with a comma after it,
// `{"chat":..,"text":..,"sender":..,"send_time":..},`, so that a page is one copy of the bytes
// between its first and last message (the last comma becomes the closing bracket) and builds no
// objects. Index entry j (16 B), counted back from the header, holds message j's send_time, where
// its bytes start in the extent and their length. Index and bytes fill the extent from both ends;
// it is full when they meet. An extent is known by where its header is (slot and byte offset in
// the arena): the header, the first index entries and the size that places the bytes come in one
// or two adjacent cache lines.
//
// Most chats are one extent: when it fills, the chat moves to a block twice the size (or the same
// size, when retention dropped enough), the dropped messages left behind. Past RELOCATE_BYTES_MAX
// a chat grows by chaining another extent instead, each half the size of all before it (8 KiB to
// 1 MiB), which keeps the unused part of a large chat to about a quarter. So a cold
// chat's page is a chain of loads no longer than: the shard's table row (shard-store.ts), its one
// extent's header and index, then one run of bytes the CPU reads ahead. The previous layout (an
// index per chat on V8's heap, every message at the tail of one shared slab) cost ~10 scattered
// cache misses per page of a cold chat (docs/performance.md).
//
// Invariants:
// - send_times are strictly increasing from oldest to newest, within and across extents;
// - an extent's messages are contiguous: message j+1 starts where message j ends;
// - only the first extent has dropped messages (retention drops the oldest); an extent after the
//   first holds at least one message;
// - every message's bytes start `{"chat":<the chat's id as JSON>`, as messageJson writes them (a
//   pull confirms its chat from them: extentIsChat; recovery refuses a record that does not);
// - `held` is the sum of the held messages' lengths;
// - n + unstored <= messagesMax: a send is refused before it is logged, never after.

import assert from 'node:assert'
import { copyBytes } from '../bytes.js'
import { Errors, PullchatError } from '../errors.js'
import { Arena, ORDER_CHUNK, orderFor } from './arena.js'
import { QUOTE, jsonKeeps } from '../json-bytes.js'
import { CHAT_KEY, RecordPrefixes, encodeSend, encodeSendBytes, messageJson } from './message-record.js'
import type { SendBytes } from '../rpc/send-bytes.js'

/** Messages one chat holds at most (33.5M). */
export const CHAT_MESSAGES_MAX = 2 ** 25
/** A chat whose one extent would grow past this chains extents instead of moving. */
export const RELOCATE_BYTES_MAX = 8 * 1024

// Extent header, in 32-bit words from where it starts (the block's last 32 bytes).
const H_CHAINED = 0 // 1 when another extent of the chat follows this one (ShardStore.pull reads it)
// word 1: unused
const H_COUNT = 2 // index entries written, dropped ones included
const H_DROPPED = 3 // entries dropped from the front (first extent only)
const H_END = 4 // where the next message's bytes go, from the extent's start (its block's)
const H_SIZE = 5 // bytes
const H_ORDER = 6 // the arena block's order (above ORDER_CHUNK: a block of its own)
// word 7: unused
export const HEADER_BYTES = 32
const ENTRY_BYTES = 16

const OPEN_BRACKET = 0x5b // [
const CLOSE_BRACKET = 0x5d // ]
const COMMA = 0x2c // ,

/**
 * The record prefixes of the chats of this thread's shards (they are never dropped: a chat, once
 * made, stays in its store). One per thread, as a shard's chats live in one thread.
 */
const PREFIXES = new RecordPrefixes()

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

/** Who is told when a chat's first extent moves (its store's table keeps where it is). */
export interface ExtentOwner {
  firstMoved(log: ChatLog): void
}

// Index entry j of the extent whose header is at `hp`: where its words are.
const entryWord = (hp: number, j: number): number => (hp - (j + 1) * ENTRY_BYTES) >> 2

function timeOf(f: Float64Array, hp: number, j: number): number {
  return f[entryWord(hp, j) >> 1] as number
}

/** Where the block of the extent whose header is at `hp` starts (its bytes' offsets are from there). */
const blockStart = (u: Uint32Array, hp: number): number => hp + HEADER_BYTES - (u[(hp >> 2) + H_SIZE] as number)

/** First entry in [lo, hi) of the extent whose send_time is >= t (hi if none). */
function lowerBoundIn(f: Float64Array, hp: number, lo: number, hi: number, t: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (timeOf(f, hp, mid) < t) lo = mid + 1
    else hi = mid
  }
  return lo
}

function emptyPage(cursor: number): Page {
  return { json: EMPTY_ARRAY, count: 0, hasMore: false, nextCursor: cursor }
}

function pageBuffer(bytes: number, scratch: PageScratch | undefined): Buffer {
  if (scratch === undefined) return Buffer.allocUnsafe(bytes)
  if (scratch.buf.length < bytes) scratch.buf = Buffer.allocUnsafeSlow(Math.max(bytes, scratch.buf.length * 2))
  return scratch.buf
}

function closePage(out: Buffer, bytes: number): Buffer {
  out[0] = OPEN_BRACKET
  out[bytes - 1] = CLOSE_BRACKET
  return out.length === bytes ? out : out.subarray(0, bytes)
}

/**
 * Whether the extent at `slot`/`hp`, a chat's first, is chat `chat`'s, read from the bytes of its
 * first held message: every message's JSON starts `{"chat":<its chat's id as JSON>` (messageJson,
 * recordPrefix; recovery checks each record's, readStoredMessage). 1: it is; 0: it is not; -1: the
 * bytes cannot tell (no message held, or an id with a character that JSON escapes or that UTF-8
 * spells in more than one byte), compare ids instead. This is how a pull confirms the chat its
 * table row leads to without reading the id's string, which lies elsewhere in memory
 * (ShardStore.pull).
 */
export function extentIsChat(arena: Arena, slot: number, hp: number, chat: string): number {
  const u = arena.u32[slot] as Uint32Array
  const w = hp >> 2
  const dropped = u[w + H_DROPPED] as number
  if (dropped === (u[w + H_COUNT] as number)) return -1
  const buf = arena.bufs[slot] as Buffer
  // Past `{"chat":` and the id's opening quote.
  const at = blockStart(u, hp) + (u[entryWord(hp, dropped) + 2] as number) + CHAT_KEY.length + 1
  const n = chat.length
  for (let i = 0; i < n; i++) {
    const c = chat.charCodeAt(i)
    if (c >= 0x80 || !jsonKeeps(c)) return -1
    if (buf[at + i] !== c) return 0
  }
  return buf[at + n] === QUOTE ? 1 : 0
}

/**
 * Reads ahead, for pulls about to be made, the extents at `slots[i]`/`hps[i]` for i < n (slots
 * below 0 are skipped): their headers, then their first held index entries, then those messages'
 * first bytes, each step for every extent before the next step, so that the cache misses of
 * different extents overlap instead of following one another. Returns a sum of what it read
 * (only so that the reads are not optimised away).
 */
export function prefetchExtents(arena: Arena, slots: Int32Array, hps: Int32Array, n: number): number {
  const { u32 } = arena
  let sum = 0
  for (let i = 0; i < n; i++) {
    const slot = slots[i] as number
    if (slot >= 0) sum += (u32[slot] as Uint32Array)[((hps[i] as number) >> 2) + H_DROPPED] as number
  }
  for (let i = 0; i < n; i++) {
    const slot = slots[i] as number
    if (slot < 0) continue
    const hp = hps[i] as number
    const u = u32[slot] as Uint32Array
    sum += u[entryWord(hp, u[(hp >> 2) + H_DROPPED] as number) + 2] as number
  }
  for (let i = 0; i < n; i++) {
    const slot = slots[i] as number
    if (slot < 0) continue
    const hp = hps[i] as number
    const u = u32[slot] as Uint32Array
    const w = hp >> 2
    const dropped = u[w + H_DROPPED] as number
    if (dropped === (u[w + H_COUNT] as number)) continue
    sum += u[(blockStart(u, hp) + (u[entryWord(hp, dropped) + 2] as number)) >> 2] as number
  }
  return sum
}

/**
 * A page of a chat that is one extent, whose header is at `slot`/`hp` of `arena`: what
 * ShardStore.pull answers from its table row without touching the chat's ChatLog. Forward:
 * messages with send_time >= cursor, oldest first. Reverse: send_time <= cursor (cursor 0 = from
 * the newest), newest first.
 */
export function extentPage(arena: Arena, slot: number, hp: number, cursor: number, limit: number, reverse: boolean, scratch: PageScratch | undefined): Page {
  const u = arena.u32[slot] as Uint32Array
  const f = arena.f64[slot] as Float64Array
  const w = hp >> 2
  const count = u[w + H_COUNT] as number
  const dropped = u[w + H_DROPPED] as number
  const start = blockStart(u, hp)
  if (!reverse) {
    const first = lowerBoundIn(f, hp, dropped, count, cursor)
    if (first >= count) return emptyPage(cursor)
    const end = Math.min(first + limit, count)
    const e = entryWord(hp, end - 1)
    const from = start + (u[entryWord(hp, first) + 2] as number)
    const to = start + (u[e + 2] as number) + (u[e + 3] as number)
    const bytes = to - from + 1
    const out = pageBuffer(bytes, scratch)
    copyBytes(arena.bufs[slot] as Buffer, from, to, out, 1)
    return { json: closePage(out, bytes), count: end - first, hasMore: end < count, nextCursor: (f[e >> 1] as number) + 1 }
  }
  const last = cursor === 0 ? count - 1 : lowerBoundIn(f, hp, dropped, count, cursor + 1) - 1
  if (last < dropped) return emptyPage(cursor)
  const first = Math.max(dropped, last - limit + 1)
  let bytes = 1
  for (let j = first; j <= last; j++) bytes += u[entryWord(hp, j) + 3] as number
  const out = pageBuffer(bytes, scratch)
  const buf = arena.bufs[slot] as Buffer
  let at = 1
  for (let j = last; j >= first; j--) {
    const e = entryWord(hp, j)
    const from = start + (u[e + 2] as number)
    at = copyBytes(buf, from, from + (u[e + 3] as number), out, at)
  }
  return { json: closePage(out, bytes), count: last - first + 1, hasMore: first > dropped, nextCursor: timeOf(f, hp, first) - 1 }
}

/**
 * Allocates an empty extent of at least `bytes` (header included); its slot is `arena.slot`, and
 * the header's place is returned.
 */
function allocExtent(arena: Arena, bytes: number): number {
  const order = orderFor(bytes)
  arena.alloc(order, bytes)
  const { slot, offset } = arena
  const size = order > ORDER_CHUNK ? (arena.bufs[slot] as Buffer).length : 1 << order
  const hp = offset + size - HEADER_BYTES
  const u = arena.u32[slot] as Uint32Array
  const w = hp >> 2
  u[w + H_CHAINED] = 0
  u[w + H_COUNT] = 0
  u[w + H_DROPPED] = 0
  u[w + H_END] = 0
  u[w + H_SIZE] = size
  u[w + H_ORDER] = order
  return hp
}

/** The size of the extent chained after extents of `held` bytes in all (see ChatLog.grow). */
function chainedBytes(held: number): number {
  let size = RELOCATE_BYTES_MAX
  while (size * 2 <= held / 2 && size < 1 << ORDER_CHUNK) size *= 2
  return size
}

/** The bytes an extent needs for `count` messages of `bytes` in all. */
const extentBytes = (count: number, bytes: number): number => HEADER_BYTES + bytes + count * ENTRY_BYTES

/**
 * Appends messages [from, to) of the extent at slot/hp, their bytes and index entries, to the
 * extent at dSlot/dHp, which has room for them; then frees the first extent. How a chat moves to a
 * larger extent, and how recovery merges a small chat's extents.
 */
function moveMessages(arena: Arena, slot: number, hp: number, from: number, to: number, dSlot: number, dHp: number): void {
  const u = arena.u32[slot] as Uint32Array
  const f = arena.f64[slot] as Float64Array
  const du = arena.u32[dSlot] as Uint32Array
  const df = arena.f64[dSlot] as Float64Array
  const start = blockStart(u, hp)
  const end = u[(hp >> 2) + H_END] as number
  const first = from < to ? (u[entryWord(hp, from) + 2] as number) : end
  const j0 = du[(dHp >> 2) + H_COUNT] as number
  const at = du[(dHp >> 2) + H_END] as number
  copyBytes(arena.bufs[slot] as Buffer, start + first, start + end, arena.bufs[dSlot] as Buffer, blockStart(du, dHp) + at)
  for (let i = from; i < to; i++) {
    const a = entryWord(hp, i)
    const b = entryWord(dHp, j0 + i - from)
    df[b >> 1] = f[a >> 1] as number
    du[b + 2] = (u[a + 2] as number) - first + at
    du[b + 3] = u[a + 3] as number
  }
  du[(dHp >> 2) + H_COUNT] = j0 + to - from
  du[(dHp >> 2) + H_END] = at + end - first
  arena.free(slot, start, u[(hp >> 2) + H_ORDER] as number)
}

export class ChatLog {
  readonly chat: string
  /** Highest send_time handed out for this chat, stored or still being made durable. */
  lastSendTime = 0
  private readonly arena: Arena
  private readonly owner: ExtentOwner | undefined
  /** The first extent's slot (-1: none yet) and header; the last's, where messages are appended. */
  slot = -1
  hp = 0
  private tailSlot = -1
  private tailHp = 0
  // The last extent's header words an append reads, kept here too (written through to the header):
  // an append then only writes to the extent, and a write that misses the cache does not stall
  // the thread the way a read does. Chats written in turn (recovery's scans, sends across many
  // chats) each find their extent out of cache (docs/performance.md). loadTail() sets them
  // whenever the last extent changes or is written by anything else (moveMessages).
  private tailStart = 0 // where the last extent's block starts (blockStart)
  private tailSize = 0 // H_SIZE
  private tailCount = 0 // H_COUNT
  private tailEnd = 0 // H_END
  /** Every extent's slot and header, oldest first, once the chat has more than one; else null. */
  private chain: number[] | null = null
  private n = 0
  private held = 0
  /** Sends accepted for this chat (reserve()) and not yet stored or failed (release()). */
  private unstored = 0
  /** Messages this chat holds at most. */
  readonly messagesMax: number
  /** Where this chat's record prefix is in PREFIXES (-1: not written yet), and where it ends. */
  private prefixFrom = -1
  private prefixTo = 0

  /**
   * `arena` holds the extents; a shard's chats share one. `owner`: its store, told when the first
   * extent moves.
   */
  constructor(chat: string, arena: Arena = new Arena(), messagesMax: number = CHAT_MESSAGES_MAX, owner?: ExtentOwner) {
    assert(Number.isSafeInteger(messagesMax) && messagesMax >= 1 && messagesMax <= CHAT_MESSAGES_MAX)
    this.chat = chat
    this.arena = arena
    this.messagesMax = messagesMax
    this.owner = owner
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

  /** Bytes of the arena held by this chat's extents (its index and messages). */
  get bytes(): number {
    let bytes = 0
    for (let k = 0; k < this.extents; k++) bytes += this.u(k)[(this.hpAt(k) >> 2) + H_SIZE] as number
    return bytes
  }

  /** Appends the chat's extents' slots and headers, oldest first, to `slots` and `hps` (recovery's scans). */
  extentList(slots: number[], hps: number[]): void {
    for (let k = 0; k < this.extents; k++) {
      slots.push(this.slotAt(k))
      hps.push(this.hpAt(k))
    }
  }

  /** How many extents the chat's messages are in. */
  get extents(): number {
    return this.chain === null ? (this.slot < 0 ? 0 : 1) : this.chain.length >> 1
  }

  /** Bytes of message JSON held (each message with the comma that follows it in a page). */
  get jsonBytes(): number {
    return this.held
  }

  /** send_time of the newest message held, or 0 when empty. */
  get lastStoredTime(): number {
    // The newest entry: its line is one prefetchTails reads ahead.
    return this.n === 0 ? 0 : timeOf(this.arena.f64[this.tailSlot] as Float64Array, this.tailHp, this.tailCount - 1)
  }

  /** send_time of the i-th oldest message held. */
  timeAt(i: number): number {
    assert(Number.isInteger(i) && i >= 0 && i < this.n, 'index out of range')
    for (let k = 0; ; k++) {
      const w = this.hpAt(k) >> 2
      const u = this.u(k)
      const live = (u[w + H_COUNT] as number) - (u[w + H_DROPPED] as number)
      if (i < live) return timeOf(this.f(k), this.hpAt(k), (u[w + H_DROPPED] as number) + i)
      i -= live
    }
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

  /**
   * The log record of a send to this chat (message-record.ts: encodeSend, encodeSendBytes), from the
   * chat's record prefix, written into PREFIXES on its first send.
   */
  encodeSend(sendTime: number, message: { readonly text: string; readonly sender: string } | SendBytes): Buffer {
    if (this.prefixFrom < 0) {
      this.prefixFrom = PREFIXES.add(this.chat)
      this.prefixTo = PREFIXES.used
    }
    const prefix = PREFIXES.bytes
    return 'bytes' in message
      ? encodeSendBytes(prefix, this.prefixFrom, this.prefixTo, sendTime, message)
      : encodeSend(prefix, this.prefixFrom, this.prefixTo, sendTime, message.text, message.sender)
  }

  /** Appends a message. `sendTime` must be greater than every stored one. */
  append(sendTime: number, text: string, sender: string): void {
    this.checkNext(sendTime)
    const json = this.messageJson(sendTime, text, sender) + ','
    const n = Buffer.byteLength(json)
    const at = this.room(n)
    ;(this.arena.bufs[this.tailSlot] as Buffer).write(json, at)
    this.commit(sendTime, at, n)
  }

  /**
   * Reads ahead, for appends about to be made to `logs[from, from + n)`, the cache lines each will
   * write: its last extent's header, its newest index entry and the last byte of its messages (the
   * next entry and bytes go beside them). Their places come from the ChatLog, so the reads of
   * different logs overlap. It reads only bytes already written: a read of a page never written maps
   * the kernel's zero page, and the append's write then faults again and flushes the other threads'
   * TLBs (an IPI per page; docs/performance.md). Returns a sum of what it read (only so that the
   * reads are not optimised away).
   */
  static prefetchTails(logs: readonly ChatLog[], n: number, from = 0): number {
    let sum = 0
    const to = from + n
    for (let i = from; i < to; i++) {
      const log = logs[i] as ChatLog
      if (log.tailSlot < 0) continue
      const u = log.arena.u32[log.tailSlot] as Uint32Array
      sum += u[(log.tailHp >> 2) + H_COUNT] as number
      if (log.tailCount > 0) sum += (u[entryWord(log.tailHp, log.tailCount - 1)] as number) + ((log.arena.bufs[log.tailSlot] as Buffer)[log.tailStart + log.tailEnd - 1] as number)
    }
    return sum
  }

  /** Appends a message given as its JSON object, the bytes `src[from, to)` (as messageJson made them, for this chat). */
  appendJson(sendTime: number, src: Buffer, from: number, to: number): void {
    this.checkNext(sendTime)
    const n = to - from + 1
    const at = this.room(n)
    const buf = this.arena.bufs[this.tailSlot] as Buffer
    buf[copyBytes(src, from, to, buf, at)] = COMMA
    this.commit(sendTime, at, n)
  }

  /**
   * Recovery (recover.ts): takes over extents that scans of consecutive runs of the log filled
   * with this chat's messages (their own ChatLogs, extentList), oldest first; the chat must be
   * empty. Their messages
   * become the chat's, without a copy; extents that together fit in one that would not have to
   * chain are merged into it (a chat read as two runs is mostly small, and a pull of one extent
   * is the cheaper kind).
   */
  adoptExtents(slots: readonly number[], hps: readonly number[]): void {
    assert(this.slot < 0 && this.n === 0, 'only an empty chat adopts extents')
    let count = 0
    let bytes = 0
    for (let k = 0; k < slots.length; k++) {
      const u = this.arena.u32[slots[k] as number] as Uint32Array
      const w = (hps[k] as number) >> 2
      count += u[w + H_COUNT] as number
      bytes += u[w + H_END] as number
    }
    if (slots.length > 1 && extentBytes(count, bytes) <= RELOCATE_BYTES_MAX) {
      const hp = allocExtent(this.arena, extentBytes(count, bytes))
      const slot = this.arena.slot
      for (let k = 0; k < slots.length; k++) {
        const ks = slots[k] as number
        const kh = hps[k] as number
        moveMessages(this.arena, ks, kh, 0, (this.arena.u32[ks] as Uint32Array)[(kh >> 2) + H_COUNT] as number, slot, hp)
      }
      this.link(slot, hp)
    } else {
      for (let k = 0; k < slots.length; k++) this.link(slots[k] as number, hps[k] as number)
    }
    this.n = count
    this.held = bytes
    const last = this.lastStoredTime
    if (last > this.lastSendTime) this.lastSendTime = last
  }

  /** Drops the `count` oldest messages (retention). */
  dropOldest(count: number): void {
    assert(count >= 0 && count <= this.n)
    let left = count
    while (left > 0) {
      const u = this.arena.u32[this.slot] as Uint32Array
      const w = this.hp >> 2
      const written = u[w + H_COUNT] as number
      let dropped = u[w + H_DROPPED] as number
      const d = Math.min(left, written - dropped)
      for (let j = dropped; j < dropped + d; j++) this.held -= u[entryWord(this.hp, j) + 3] as number
      dropped += d
      left -= d
      this.n -= d
      if (dropped < written) {
        u[w + H_DROPPED] = dropped
      } else if (this.chain === null) {
        // The chat's one extent, emptied: freed, so that a chat that retention emptied holds no
        // memory but its ChatLog and table row; its next message gets a new first extent.
        this.arena.free(this.slot, blockStart(u, this.hp), u[w + H_ORDER] as number)
        this.slot = -1
        this.hp = 0
        this.tailSlot = -1
        this.tailHp = 0
        this.owner?.firstMoved(this)
      } else {
        this.arena.free(this.slot, blockStart(u, this.hp), u[w + H_ORDER] as number)
        this.chain.splice(0, 2)
        this.slot = this.chain[0] as number
        this.hp = this.chain[1] as number
        if (this.chain.length === 2) this.chain = null
        this.owner?.firstMoved(this)
      }
    }
  }

  /**
   * One page. Forward: messages with send_time >= cursor, oldest first. Reverse: send_time <=
   * cursor (cursor 0 = from the newest), newest first. `limit` must be >= 1.
   */
  pull(cursor: number, limit: number, reverse: boolean, scratch?: PageScratch): Page {
    assert(limit >= 1)
    if (this.slot < 0) return emptyPage(cursor)
    if (this.chain === null) return extentPage(this.arena, this.slot, this.hp, cursor, limit, reverse, scratch)
    return reverse ? this.chainReverse(cursor, limit, scratch) : this.chainForward(cursor, limit, scratch)
  }

  // --- more than one extent -------------------------------------------------------------------

  private slotAt(k: number): number {
    return this.chain === null ? this.slot : (this.chain[2 * k] as number)
  }

  private hpAt(k: number): number {
    return this.chain === null ? this.hp : (this.chain[2 * k + 1] as number)
  }

  private u(k: number): Uint32Array {
    return this.arena.u32[this.slotAt(k)] as Uint32Array
  }

  private f(k: number): Float64Array {
    return this.arena.f64[this.slotAt(k)] as Float64Array
  }

  /** The last extent whose first held message's send_time is <= t, or -1. */
  private extentAtOrBefore(t: number): number {
    let lo = 0
    let hi = this.extents
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const hp = this.hpAt(mid)
      if (timeOf(this.f(mid), hp, this.u(mid)[(hp >> 2) + H_DROPPED] as number) <= t) lo = mid + 1
      else hi = mid
    }
    return lo - 1
  }

  /** A page over a chain: per extent, one run of bytes. */
  private chainForward(cursor: number, limit: number, scratch: PageScratch | undefined): Page {
    const m = this.extents
    let k = Math.max(0, this.extentAtOrBefore(cursor))
    let hp = this.hpAt(k)
    let u = this.u(k)
    let j = lowerBoundIn(this.f(k), hp, u[(hp >> 2) + H_DROPPED] as number, u[(hp >> 2) + H_COUNT] as number, cursor)
    if (j >= (u[(hp >> 2) + H_COUNT] as number)) {
      if (++k === m) return emptyPage(cursor)
      j = 0
    }
    // A page with a message after it in the same extent: that extent's page (one copy, no arrays).
    if (j + limit < (this.u(k)[(this.hpAt(k) >> 2) + H_COUNT] as number)) {
      return extentPage(this.arena, this.slotAt(k), this.hpAt(k), cursor, limit, false, scratch)
    }
    // Per extent from k on: its index and the byte range [from, to) of the entries taken.
    const pieces: number[] = []
    let left = limit
    let bytes = 1
    let lastTime = 0
    let hasMore = false
    for (; k < m; k++, j = 0) {
      hp = this.hpAt(k)
      u = this.u(k)
      const written = u[(hp >> 2) + H_COUNT] as number
      const end = Math.min(written, j + left)
      const e = entryWord(hp, end - 1)
      const start = blockStart(u, hp)
      const from = start + (u[entryWord(hp, j) + 2] as number)
      const to = start + (u[e + 2] as number) + (u[e + 3] as number)
      pieces.push(k, from, to)
      bytes += to - from
      lastTime = this.f(k)[e >> 1] as number
      left -= end - j
      if (left === 0) {
        hasMore = end < written || k + 1 < m
        break
      }
    }
    const out = pageBuffer(bytes, scratch)
    let at = 1
    for (let p = 0; p < pieces.length; p += 3) {
      at = copyBytes(this.arena.bufs[this.slotAt(pieces[p] as number)] as Buffer, pieces[p + 1] as number, pieces[p + 2] as number, out, at)
    }
    return { json: closePage(out, bytes), count: limit - left, hasMore, nextCursor: lastTime + 1 }
  }

  /** A reverse page over a chain: message by message, newest first. */
  private chainReverse(cursor: number, limit: number, scratch: PageScratch | undefined): Page {
    let k: number
    let j: number
    if (cursor === 0) {
      k = this.extents - 1
      j = (this.u(k)[(this.hpAt(k) >> 2) + H_COUNT] as number) - 1
    } else {
      k = this.extentAtOrBefore(cursor)
      if (k < 0) return emptyPage(cursor)
      const hp = this.hpAt(k)
      const u = this.u(k)
      j = lowerBoundIn(this.f(k), hp, u[(hp >> 2) + H_DROPPED] as number, u[(hp >> 2) + H_COUNT] as number, cursor + 1) - 1
    }
    // A page with a message before it in the same extent: that extent's page.
    if (j - limit >= (this.u(k)[(this.hpAt(k) >> 2) + H_DROPPED] as number)) {
      return extentPage(this.arena, this.slotAt(k), this.hpAt(k), cursor, limit, true, scratch)
    }
    // The messages taken, newest first: their byte ranges [from, to) and their extent.
    const taken: number[] = []
    let bytes = 1
    let firstTime = 0
    let hasMore = false
    while (k >= 0) {
      const hp = this.hpAt(k)
      const u = this.u(k)
      if (j < (u[(hp >> 2) + H_DROPPED] as number)) {
        if (--k >= 0) j = (this.u(k)[(this.hpAt(k) >> 2) + H_COUNT] as number) - 1
        continue
      }
      if (taken.length === 3 * limit) {
        hasMore = true
        break
      }
      const e = entryWord(hp, j)
      const from = blockStart(u, hp) + (u[e + 2] as number)
      taken.push(k, from, from + (u[e + 3] as number))
      bytes += u[e + 3] as number
      firstTime = this.f(k)[e >> 1] as number
      j--
    }
    const out = pageBuffer(bytes, scratch)
    let at = 1
    for (let p = 0; p < taken.length; p += 3) {
      at = copyBytes(this.arena.bufs[this.slotAt(taken[p] as number)] as Buffer, taken[p + 1] as number, taken[p + 2] as number, out, at)
    }
    return { json: closePage(out, bytes), count: taken.length / 3, hasMore, nextCursor: firstTime - 1 }
  }

  // --- appending --------------------------------------------------------------------------------

  // Before anything is written: a full chat refuses the message whole.
  private checkNext(sendTime: number): void {
    assert(sendTime > this.lastStoredTime && Number.isSafeInteger(sendTime), 'send_time must increase')
    if (this.full) throw this.fullError()
    if (sendTime > this.lastSendTime) this.lastSendTime = sendTime
  }

  /** Makes room for `n` bytes and one index entry in the last extent; returns where the bytes go in its chunk. */
  private room(n: number): number {
    if (this.slot < 0) {
      // A chat's first message: room for it and one more like it.
      this.place(HEADER_BYTES + 2 * (n + ENTRY_BYTES))
    } else if (HEADER_BYTES + this.tailEnd + n + (this.tailCount + 1) * ENTRY_BYTES > this.tailSize) {
      this.grow(n)
    }
    return this.tailStart + this.tailEnd
  }

  /** Indexes the `n` bytes just written at `at` (room's answer) as the last extent's next message. */
  private commit(sendTime: number, at: number, n: number): void {
    const u = this.arena.u32[this.tailSlot] as Uint32Array
    const w = this.tailHp >> 2
    const count = this.tailCount
    const e = entryWord(this.tailHp, count)
    const rel = at - this.tailStart
    ;(this.arena.f64[this.tailSlot] as Float64Array)[e >> 1] = sendTime
    u[e + 2] = rel
    u[e + 3] = n
    u[w + H_COUNT] = this.tailCount = count + 1
    u[w + H_END] = this.tailEnd = rel + n
    this.held += n
    this.n++
  }

  /** Reads the last extent's header into the fields appends use (see tailStart). */
  private loadTail(): void {
    if (this.tailSlot < 0) return
    const u = this.arena.u32[this.tailSlot] as Uint32Array
    const w = this.tailHp >> 2
    this.tailSize = u[w + H_SIZE] as number
    this.tailStart = blockStart(u, this.tailHp)
    this.tailCount = u[w + H_COUNT] as number
    this.tailEnd = u[w + H_END] as number
  }

  /** A new extent of at least `bytes`, empty, as the first (the chat has none) or chained after the last. */
  private place(bytes: number): void {
    const hp = allocExtent(this.arena, bytes)
    this.link(this.arena.slot, hp)
  }

  /** Makes the extent at slot/hp the chat's first (it has none) or chains it after the last. */
  private link(slot: number, hp: number): void {
    if (this.slot < 0) {
      this.slot = slot
      this.hp = hp
      this.owner?.firstMoved(this)
    } else {
      const t = this.arena.u32[this.tailSlot] as Uint32Array
      t[(this.tailHp >> 2) + H_CHAINED] = 1
      this.chain ??= [this.slot, this.hp]
      this.chain.push(slot, hp)
    }
    this.tailSlot = slot
    this.tailHp = hp
    this.loadTail()
  }

  /** The last extent has no room for `n` more bytes: move the chat to a larger one, or chain one. */
  private grow(n: number): void {
    const u = this.arena.u32[this.slot] as Uint32Array
    const hp = this.hp
    const w = hp >> 2
    const size = u[w + H_SIZE] as number
    if (this.chain === null) {
      const dropped = u[w + H_DROPPED] as number
      const live = (u[w + H_COUNT] as number) - dropped
      assert(live > 0, 'an emptied extent is freed (dropOldest)')
      const liveBytes = (u[w + H_END] as number) - (u[entryWord(hp, dropped) + 2] as number)
      const need = HEADER_BYTES + liveBytes + n + (live + 1) * ENTRY_BYTES
      if (need <= RELOCATE_BYTES_MAX) {
        this.relocate(Math.max(need, Math.min(2 * size, RELOCATE_BYTES_MAX)))
        return
      }
    }
    // Chain an extent of half what the chat's extents hold so far (a power of two, at least
    // RELOCATE_BYTES_MAX, at most a chunk): the chat grows by ~1.4x an extent, and the last one,
    // the only one not full, is at most about a third of it. A message larger than that gets a
    // block of its own.
    this.place(Math.max(HEADER_BYTES + n + ENTRY_BYTES, chainedBytes(this.bytes)))
  }

  /** Moves the chat's one extent to a new one of at least `bytes`, without its dropped messages. */
  private relocate(bytes: number): void {
    const oldSlot = this.slot
    const oldHp = this.hp
    const u = this.arena.u32[oldSlot] as Uint32Array
    this.slot = -1
    this.place(bytes)
    moveMessages(this.arena, oldSlot, oldHp, u[(oldHp >> 2) + H_DROPPED] as number, u[(oldHp >> 2) + H_COUNT] as number, this.slot, this.hp)
    this.loadTail()
  }
}
