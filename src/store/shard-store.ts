// A shard's in-memory state: every chat it owns, by canonical chat id.
//
// Sending is two steps so that a log can sit in between: the chat's `nextSendTime()` hands out the
// message's send_time (strictly increasing per chat), and `appendJson()` makes it visible to pulls
// once it is durable. Messages are appended in the order their send_times were assigned.
//
// Chats are found through an open-addressing table, a row of four int32s per slot: the id's
// FNV-1a hash, the chat's number + 1 (0: empty row), and where its first extent is (chat-log.ts).
// A pull of a chat that is one extent (most are) reads the row and goes straight to the extent,
// without touching the chat's ChatLog object or its id's string: the row's hash, then the chat id
// at the start of the extent's first message (extentIsChat), say it is the chat. For a chat out of
// cache that is two dependent misses before the page's bytes, instead of the ~5 that a Map, the
// ChatLog and its index took (docs/performance.md, "Pulls over many chats"), and a batch of pulls
// takes them for all its chats at once (prefetch; "Pulls in batches").

import { fnv1aUnits } from '../fnv.js'
import { Arena, type ArenaState } from './arena.js'
import { CHAT_MESSAGES_MAX, ChatLog, extentIsChat, extentPage, prefetchExtents, type ExtentOwner, type Page, type PageScratch } from './chat-log.js'

export interface StoreStats {
  readonly chats: number
  readonly messages: number
  /** Bytes of message JSON held. */
  readonly jsonBytes: number
  /** Bytes allocated for chats' extents (the arena's chunks) and the chat table. */
  readonly bytes: number
}

const EMPTY_PAGE_JSON = Buffer.from('[]')
const ROW = 4 // int32s per table row: hash, chat number + 1, first extent's slot, where its header is
const TABLE_ROWS_INITIAL = 1024

export interface StoreOptions {
  /** Messages one chat holds at most (tests lower it). */
  readonly chatMessagesMax?: number
}

/** The table's hash of a chat id: FNV-1a over its UTF-16 code units (src/fnv.ts). */
export const chatHash = fnv1aUnits

export class ShardStore implements ExtentOwner {
  private arena = new Arena()
  private readonly logs: ChatLog[] = []
  /** The chats' ids by number, beside `logs`: a pull checks its row's id here, not in the ChatLog. */
  private readonly ids: string[] = []
  private rows = new Int32Array(TABLE_ROWS_INITIAL * ROW)
  private mask = TABLE_ROWS_INITIAL - 1
  /** Messages one chat holds at most. */
  readonly chatMessagesMax: number
  private messages = 0
  // prefetch's columns: each chat's hash, and where its first extent is.
  private ahead = new Int32Array(64)
  private aheadSlots = new Int32Array(64)
  private aheadHps = new Int32Array(64)

  constructor(options: StoreOptions = {}) {
    this.chatMessagesMax = options.chatMessagesMax ?? CHAT_MESSAGES_MAX
  }

  /** Whether the store holds no chat (recovery only fills an empty store). */
  get empty(): boolean {
    return this.logs.length === 0
  }

  /** Stores a message whose send_time came from its chat's `nextSendTime()` (or from the log, on recovery). */
  append(chat: string, sendTime: number, text: string, sender: string): void {
    this.chatLog(chat).append(sendTime, text, sender)
    this.messages++
  }

  /** Stores a message given as its JSON object `src[from, to)`; see ChatLog.appendJson. */
  appendJson(log: ChatLog, sendTime: number, src: Buffer, from: number, to: number): void {
    log.appendJson(sendTime, src, from, to)
    this.messages++
  }

  /** Takes over the arenas of recovery's scans (recover.ts), joined; only an empty store can. Their slots start at `bases`. */
  adoptArenas(states: readonly ArenaState[]): { readonly bases: readonly number[] } {
    if (!this.empty) throw new Error('only an empty store can be recovered into')
    const { arena, bases } = Arena.join(states)
    this.arena = arena
    return { bases }
  }

  /** Recovery: the chat's messages are the extents at `slots`/`hps` of the adopted arena; see ChatLog.adoptExtents. */
  adoptExtents(chat: string, slots: readonly number[], hps: readonly number[]): void {
    const log = this.chatLog(chat)
    log.adoptExtents(slots, hps)
    this.messages += log.count
  }

  /** Drops the `count` oldest messages of a chat (retention). */
  dropOldest(chat: string, count: number): void {
    const log = this.get(chat)
    if (log === undefined) return
    const n = Math.min(count, log.count)
    log.dropOldest(n)
    this.messages -= n
  }

  /** A page of the chat; with `scratch`, a view of it (see PageScratch). */
  pull(chat: string, cursor: number, limit: number, reverse: boolean, scratch?: PageScratch): Page {
    const row = this.rowOf(chat, true)
    const rows = this.rows
    const slot = row < 0 ? -1 : (rows[row + 2] as number)
    if (slot < 0) return { json: EMPTY_PAGE_JSON, count: 0, hasMore: false, nextCursor: cursor }
    const hp = rows[row + 3] as number
    // One extent (its header's first word, H_CHAINED, is 0): the page from the row alone; else the
    // chat's log follows its chain.
    if ((this.arena.u32[slot] as Uint32Array)[hp >> 2] === 0) return extentPage(this.arena, slot, hp, cursor, limit, reverse, scratch)
    return (this.logs[(rows[row + 1] as number) - 1] as ChatLog).pull(cursor, limit, reverse, scratch)
  }

  /**
   * Reads ahead for pulls of `chats[0, n)` that are about to be made: every chat's table row, then
   * its first extent (prefetchExtents), each step for all of them before the next, so that the cache
   * misses of different chats overlap. Changes nothing; returns a sum of what it read (only so that
   * the reads are not optimised away).
   */
  prefetch(chats: readonly string[], n: number): number {
    if (n > this.ahead.length) {
      this.ahead = new Int32Array(2 * n)
      this.aheadSlots = new Int32Array(2 * n)
      this.aheadHps = new Int32Array(2 * n)
    }
    const { ahead, aheadSlots, aheadHps, rows, mask } = this
    let sum = 0
    for (let i = 0; i < n; i++) ahead[i] = chatHash(chats[i] as string)
    for (let i = 0; i < n; i++) sum += rows[(((ahead[i] as number) & mask) * ROW) + 1] as number
    for (let i = 0; i < n; i++) {
      // The first row with the chat's hash: the pull itself checks that it is the chat's.
      const r = this.probe(ahead[i] as number, null, false)
      aheadSlots[i] = r < 0 ? -1 : (rows[r + 2] as number)
      aheadHps[i] = r < 0 ? 0 : (rows[r + 3] as number)
    }
    return sum + prefetchExtents(this.arena, aheadSlots, aheadHps, n)
  }

  get(chat: string): ChatLog | undefined {
    const row = this.rowOf(chat)
    return row < 0 ? undefined : this.logs[(this.rows[row + 1] as number) - 1]
  }

  /** The chat's log, created empty if the chat has none yet. */
  chatLog(chat: string): ChatLog {
    const row = this.rowOf(chat)
    if (row >= 0) return this.logs[(this.rows[row + 1] as number) - 1] as ChatLog
    const no = this.logs.length
    const log = new ChatLog(chat, this.arena, this.chatMessagesMax, this)
    this.logs.push(log)
    this.ids.push(chat)
    if (2 * (no + 1) > this.mask + 1) this.rehash()
    else this.insert(no, chatHash(chat))
    return log
  }

  /** ExtentOwner: the chat's first extent moved; its row says where now. */
  firstMoved(log: ChatLog): void {
    const row = this.rowOf(log.chat)
    this.rows[row + 2] = log.slot
    this.rows[row + 3] = log.hp
  }

  stats(): StoreStats {
    let jsonBytes = 0
    for (const log of this.logs) jsonBytes += log.jsonBytes
    return { chats: this.logs.length, messages: this.messages, jsonBytes, bytes: this.arena.held + this.rows.byteLength }
  }

  /**
   * The chat's row in the table, or -1. A row with the chat's hash is confirmed by its id; for a
   * pull (`fromExtent`), from its extent's bytes where they can tell (extentIsChat), which a pull
   * reads next anyway, and from the id's string only where they cannot. For a chat out of cache
   * that is a load or two fewer, on memory pages of their own.
   */
  private rowOf(chat: string, fromExtent = false): number {
    return this.probe(chatHash(chat), chat, fromExtent)
  }

  /** rowOf for a chat whose hash is `h`; with `chat` null, the first row with that hash, unconfirmed (prefetch). */
  private probe(h: number, chat: string | null, fromExtent: boolean): number {
    const rows = this.rows
    const mask = this.mask
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const r = i * ROW
      const no = rows[r + 1] as number
      if (no === 0) return -1
      if (rows[r] !== h) continue
      if (chat === null) return r
      if (fromExtent) {
        const slot = rows[r + 2] as number
        const is = slot < 0 ? -1 : extentIsChat(this.arena, slot, rows[r + 3] as number, chat)
        if (is === 1) return r
        if (is === 0) continue
      }
      if (this.ids[no - 1] === chat) return r
    }
  }

  private insert(no: number, h: number): void {
    const rows = this.rows
    let i = h & this.mask
    while (rows[i * ROW + 1] !== 0) i = (i + 1) & this.mask
    const r = i * ROW
    const log = this.logs[no] as ChatLog
    rows[r] = h
    rows[r + 1] = no + 1
    rows[r + 2] = log.slot
    rows[r + 3] = log.hp
  }

  // Twice the rows, at most half of them used.
  private rehash(): void {
    const size = 2 * (this.mask + 1)
    this.rows = new Int32Array(size * ROW)
    this.mask = size - 1
    for (let no = 0; no < this.logs.length; no++) this.insert(no, chatHash(this.ids[no] as string))
  }
}
