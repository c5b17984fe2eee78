// Recovery's scans (recover.ts) find each record's chat by its id's UTF-8 bytes, which the
// record's header holds (message-record.ts), instead of reading them into a string and looking
// that up in a Map. Over 10k chats written in turn, the string per record, its hash and a Map
// lookup whose key lies anywhere in the heap were ~15% of a scan (docs/performance.md, "Recovery").
//
// An open-addressing table over a hash of the bytes (FNV-1a, src/fnv.ts), and every id's bytes side by side in
// one buffer to compare against: a lookup reads two small, dense arrays. A chat can be named by
// more than one byte sequence (bytes that are not UTF-8 decode to the same string as others):
// each sequence is an entry of its own naming the same chat.

import { fnv1aBytes as hash } from '../fnv.js'

const EMPTY = -1

export class ChatIds {
  /** Every entry's id bytes, one after another. */
  private bytes = Buffer.allocUnsafe(16 * 1024)
  private used = 0
  /** Per entry: where its bytes start in `bytes`, their length, their hash and the chat they name. */
  private from = new Int32Array(256)
  private len = new Int32Array(256)
  private hashes = new Int32Array(256)
  private chats = new Int32Array(256)
  private entries = 0
  /** Open addressing, linear probing: an entry's index, or EMPTY. Never more than half full. */
  private slots = new Int32Array(512).fill(EMPTY)

  /** The chat that the bytes src[from, to) name, or -1 when no entry has those bytes. */
  find(src: Uint8Array, from: number, to: number): number {
    const h = hash(src, from, to)
    const n = to - from
    const mask = this.slots.length - 1
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const e = this.slots[s] as number
      if (e === EMPTY) return -1
      if (this.hashes[e] === h && this.len[e] === n && this.same(e, src, from, n)) return this.chats[e] as number
    }
  }

  /** Makes the bytes src[from, to), which no entry has yet (find() answered -1), name `chat`. */
  add(src: Uint8Array, from: number, to: number, chat: number): void {
    const n = to - from
    if (this.entries === this.from.length) this.growEntries()
    if (2 * (this.entries + 1) > this.slots.length) this.rehash(2 * this.slots.length)
    if (this.used + n > this.bytes.length) {
      const bytes = Buffer.allocUnsafe(Math.max(2 * this.bytes.length, this.used + n))
      bytes.set(this.bytes.subarray(0, this.used))
      this.bytes = bytes
    }
    this.bytes.set(src.subarray(from, to), this.used)
    const e = this.entries++
    this.from[e] = this.used
    this.len[e] = n
    this.hashes[e] = hash(src, from, to)
    this.chats[e] = chat
    this.used += n
    this.place(e)
  }

  private same(e: number, src: Uint8Array, from: number, n: number): boolean {
    const at = this.from[e] as number
    for (let i = 0; i < n; i++) if (this.bytes[at + i] !== src[from + i]) return false
    return true
  }

  private place(e: number): void {
    const mask = this.slots.length - 1
    let s = (this.hashes[e] as number) & mask
    while (this.slots[s] !== EMPTY) s = (s + 1) & mask
    this.slots[s] = e
  }

  private rehash(size: number): void {
    this.slots = new Int32Array(size).fill(EMPTY)
    for (let e = 0; e < this.entries; e++) this.place(e)
  }

  private growEntries(): void {
    const grown = (a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> => {
      const b = new Int32Array(2 * a.length)
      b.set(a)
      return b
    }
    this.from = grown(this.from)
    this.len = grown(this.len)
    this.hashes = grown(this.hashes)
    this.chats = grown(this.chats)
  }
}
