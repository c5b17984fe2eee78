// A run of messages' bytes, back to back in the order they came, in 1 MiB chunks: what a
// recovery scan (recover.ts) reads a run of the log into before it puts each chat's messages in
// that chat's extent. Until the store moved to extents (chat-log.ts), this was the shard's store of
// bytes; `free` (a chunk released once nothing in it is live) is left from then and tested.
//
// A message's place is a location: slot * 2^32 + offset, an integer below 2^53. A large message
// (128 KiB or more) that does not fit the current chunk's tail gets a chunk of its own, so that
// the tail is not wasted.

import { copyBytes } from '../bytes.js'

const CHUNK_BYTES = 1024 * 1024
const OWN_CHUNK_BYTES = CHUNK_BYTES / 8 // messages at least this large get a chunk of their own
const SLOT_SPAN = 2 ** 32

export class Slab {
  private readonly chunks: (Buffer | undefined)[] = []
  /** Bytes of live (not dropped) messages per slot. */
  private readonly live: number[] = []
  private readonly freeSlots: number[] = []
  private current = -1
  private chunk: Buffer = Buffer.alloc(0)
  private tail = 0
  /** Where the message being stored goes (the current chunk, or a chunk of its own). */
  private target: Buffer = this.chunk
  private targetSlot = -1
  private held = 0
  /** Length in bytes of what the last `put*` call stored. */
  lastLength = 0

  /** Bytes of chunks held (allocated, including unused tails). */
  get bytes(): number {
    return this.held
  }

  /** Stores a string's UTF-8 bytes; returns the location. */
  putString(s: string): number {
    // UTF-8 takes at most 3 bytes per UTF-16 unit: count exactly only when that bound does not fit.
    const at = this.tail + s.length * 3 <= this.chunk.length ? this.inCurrent() : this.place(Buffer.byteLength(s))
    return this.commit(at, this.target.write(s, at))
  }

  /** Stores `src[from, to)` followed by one `suffix` byte; returns the location. */
  putBytes(src: Buffer, from: number, to: number, suffix: number): number {
    const n = to - from + 1
    const at = this.tail + n <= this.chunk.length ? this.inCurrent() : this.place(n)
    copyBytes(src, from, to, this.target, at)
    this.target[at + n - 1] = suffix
    return this.commit(at, n)
  }

  /** Copies `length` bytes at `loc` into `out` at `at` (copyBytes: a cold page copies ten); returns the bytes copied. */
  copy(loc: number, length: number, out: Buffer, at: number): number {
    const slot = Math.floor(loc / SLOT_SPAN)
    const offset = loc - slot * SLOT_SPAN
    copyBytes(this.chunks[slot] as Buffer, offset, offset + length, out, at)
    return length
  }

  /** Marks `length` bytes at `loc` as dropped; releases the chunk when nothing in it is live. */
  free(loc: number, length: number): void {
    const slot = Math.floor(loc / SLOT_SPAN)
    const left = (this.live[slot] as number) - length
    this.live[slot] = left
    if (left > 0) return
    if (slot === this.current) {
      this.tail = 0 // the chunk being filled is empty again: fill it from the start
      return
    }
    this.held -= (this.chunks[slot] as Buffer).length
    this.chunks[slot] = undefined
    this.freeSlots.push(slot)
  }

  private inCurrent(): number {
    this.target = this.chunk
    this.targetSlot = this.current
    return this.tail
  }

  /** Picks where `n` bytes go when the fast path's bound does not fit; returns the offset. */
  private place(n: number): number {
    if (this.current >= 0) {
      if (this.live[this.current] === 0) this.tail = 0 // emptied by drops: fill it from the start
      if (this.tail + n <= this.chunk.length) return this.inCurrent()
    }
    if (n >= OWN_CHUNK_BYTES) {
      // A chunk of its own, holding this message alone; the current chunk stays current.
      this.targetSlot = this.newSlot(Buffer.allocUnsafeSlow(n))
      this.target = this.chunks[this.targetSlot] as Buffer
      return 0
    }
    this.current = this.newSlot(Buffer.allocUnsafeSlow(CHUNK_BYTES))
    this.chunk = this.chunks[this.current] as Buffer
    this.tail = 0
    return this.inCurrent()
  }

  private commit(at: number, n: number): number {
    const slot = this.targetSlot
    this.lastLength = n
    this.live[slot] = (this.live[slot] as number) + n
    if (slot === this.current) this.tail = at + n
    return slot * SLOT_SPAN + at
  }

  private newSlot(chunk: Buffer): number {
    const slot = this.freeSlots.pop() ?? this.chunks.length
    this.chunks[slot] = chunk
    this.live[slot] = 0
    this.held += chunk.length
    return slot
  }
}
