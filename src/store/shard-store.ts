// A shard's in-memory state: every chat it owns, by canonical chat id.
//
// Sending is two steps so that a log can sit in between: the chat's `nextSendTime()` hands out the
// message's send_time (strictly increasing per chat), and `appendJson()` makes it visible to pulls
// once it is durable. Messages are appended in the order their send_times were assigned.

import { CHAT_MESSAGES_MAX, ChatLog, type Page, type PageScratch } from './chat-log.js'
import { Slab, type SlabState } from './slab.js'

export interface StoreStats {
  readonly chats: number
  readonly messages: number
  /** Bytes of message JSON held. */
  readonly jsonBytes: number
  /** Bytes allocated for messages (the slab's chunks) and the chats' indexes. */
  readonly bytes: number
}

const EMPTY_PAGE_JSON = Buffer.from('[]')

export interface StoreOptions {
  /** Messages one chat holds at most (tests lower it). */
  readonly chatMessagesMax?: number
}

export class ShardStore {
  private readonly chats = new Map<string, ChatLog>()
  private slab = new Slab()
  private readonly chatMessagesMax: number
  private messages = 0

  constructor(options: StoreOptions = {}) {
    this.chatMessagesMax = options.chatMessagesMax ?? CHAT_MESSAGES_MAX
  }

  /** Takes over a slab's bytes (recovery's; see recover.ts). Only an empty store can. */
  adoptSlab(state: SlabState): void {
    if (this.chats.size !== 0 || this.messages !== 0) throw new Error('only an empty store can adopt a slab')
    this.slab = Slab.from(state)
  }

  /** Indexes a message whose bytes are already in the slab (recovery); see ChatLog.appendStored. */
  appendStored(log: ChatLog, sendTime: number, loc: number, length: number): void {
    log.appendStored(sendTime, loc, length)
    this.messages++
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

  /** Drops the `count` oldest messages of a chat (retention). */
  dropOldest(chat: string, count: number): void {
    const log = this.chats.get(chat)
    if (log === undefined) return
    const n = Math.min(count, log.count)
    log.dropOldest(n)
    this.messages -= n
  }

  /** A page of the chat; with `scratch`, a view of it (see PageScratch). */
  pull(chat: string, cursor: number, limit: number, reverse: boolean, scratch?: PageScratch): Page {
    const log = this.chats.get(chat)
    if (log === undefined) return { json: EMPTY_PAGE_JSON, count: 0, hasMore: false, nextCursor: cursor }
    return log.pull(cursor, limit, reverse, scratch)
  }

  get(chat: string): ChatLog | undefined {
    return this.chats.get(chat)
  }

  /** The chat's log, created empty if the chat has none yet (sized for `expected` messages). */
  chatLog(chat: string, expected = 0): ChatLog {
    let log = this.chats.get(chat)
    if (log === undefined) {
      log = new ChatLog(chat, this.slab, this.chatMessagesMax, expected)
      this.chats.set(chat, log)
    }
    return log
  }

  stats(): StoreStats {
    let bytes = this.slab.bytes
    let jsonBytes = 0
    for (const log of this.chats.values()) {
      bytes += log.bytes
      jsonBytes += log.jsonBytes
    }
    return { chats: this.chats.size, messages: this.messages, jsonBytes, bytes }
  }
}
