// Retention: deleting whole sealed log segments by age or by total bytes, and dropping the same
// messages from memory.
//
// Every segment's messages are, for each chat, that chat's oldest held messages (segments are
// deleted oldest first and a chat's messages are logged in send_time order), so dropping "the
// first n of chat c" for each chat counted in a segment drops exactly that segment's messages.

import { statSync } from 'node:fs'
import type { ShardStore } from './shard-store.js'

export interface RetentionLimits {
  /** Delete a sealed segment once its newest message is older than this; 0 = never. */
  readonly retentionMs: number
  /** Delete oldest sealed segments while the log is larger than this; 0 = no limit. */
  readonly retentionBytes: number
}

interface SegmentContent {
  readonly chats: Map<string, number>
  newestUs: number
}

export interface SegmentRemover {
  readonly currentSegment: string
  removeSealed(path: string): void
}

export class SegmentIndex {
  // Insertion order is log order.
  private readonly segments = new Map<string, SegmentContent>()

  /** Records that a message of `chat` with `sendTime` is in the segment at `path`. */
  note(path: string, chat: string, sendTime: number): void {
    let seg = this.segments.get(path)
    if (seg === undefined) {
      seg = { chats: new Map(), newestUs: 0 }
      this.segments.set(path, seg)
    }
    seg.chats.set(chat, (seg.chats.get(chat) ?? 0) + 1)
    if (sendTime > seg.newestUs) seg.newestUs = sendTime
  }

  /** Forgets the oldest noted message of `chat`, which the store dropped by itself. */
  forgetOldest(chat: string): void {
    for (const seg of this.segments.values()) {
      const n = seg.chats.get(chat)
      if (n === undefined) continue
      if (n > 1) seg.chats.set(chat, n - 1)
      else seg.chats.delete(chat)
      return
    }
  }

  /** Segment paths known, oldest first. */
  paths(): string[] {
    return [...this.segments.keys()]
  }

  /**
   * Deletes what the limits say must go and drops those messages from the store. Returns the
   * number of segments and messages dropped.
   */
  enforce(limits: RetentionLimits, nowUs: number, log: SegmentRemover, store: ShardStore): { segments: number; messages: number } {
    let segments = 0
    let messages = 0
    if (limits.retentionMs === 0 && limits.retentionBytes === 0) return { segments, messages }
    const sizes = new Map<string, number>()
    let total = 0
    for (const path of this.segments.keys()) {
      const size = sizeOf(path)
      sizes.set(path, size)
      total += size
    }
    if (!this.segments.has(log.currentSegment)) total += sizeOf(log.currentSegment)
    for (const [path, seg] of this.segments) {
      if (path === log.currentSegment) break
      const tooOld = limits.retentionMs > 0 && seg.newestUs < nowUs - limits.retentionMs * 1000
      const tooBig = limits.retentionBytes > 0 && total > limits.retentionBytes
      if (!tooOld && !tooBig) break
      log.removeSealed(path)
      for (const [chat, n] of seg.chats) {
        store.dropOldest(chat, n)
        messages += n
      }
      this.segments.delete(path)
      total -= sizes.get(path) ?? 0
      segments++
    }
    return { segments, messages }
  }
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size
  } catch {
    return 0
  }
}
