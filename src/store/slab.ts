// A shard's message bytes: every chat's messages, back to back in the order they were stored, in
// 1 MiB chunks shared by all of the shard's chats.
//
// Why one slab per shard and not one buffer per chat: a chat of ten messages paid for its own
// buffer, its growth slack and V8's per-ArrayBuffer bookkeeping, which made 1M messages in 100k
// chats cost ~3x their JSON (docs/performance.md, "Memory"). Here the only per-message cost beyond
// its bytes is its index entry in its chat.
//
// A message's place is a location: slot * 2^32 + offset, an integer below 2^53. Slots are reused
// once their chunk is released, so locations stay small however long the process runs. A chunk is
// released when every message in it has been dropped (retention drops a shard's oldest messages,
// which sit in its oldest chunks). A large message (128 KiB or more) that does not fit the current
// chunk's tail gets a chunk of its own, so that the tail is not wasted.

import { copyBytes } from '../bytes.js'

const CHUNK_BYTES = 1024 * 1024
const OWN_CHUNK_BYTES = CHUNK_BYTES / 8 // messages at least this large get a chunk of their own
const SLOT_SPAN = 2 ** 32
const CACHE_LINE_BYTES = 64

/** A slab's whole state, as plain data and ArrayBuffers: what crosses threads (see recover.ts). */
export interface SlabState {
  /** Each slot's chunk (its own ArrayBuffer), or null for a free slot. */
  readonly chunks: (ArrayBuffer | null)[]
  readonly live: number[]
  readonly freeSlots: number[]
  readonly current: number
  readonly tail: number
}

/**
 * One slab's state holding the chunks of several (scans of consecutive log runs, recover.ts):
 * each state's slots follow the previous states' slots, so a location from state k is
 * `bases[k]` + its location there. The last state that has a chunk being filled keeps filling it.
 */
export function joinSlabs(states: readonly SlabState[]): { readonly state: SlabState; readonly bases: readonly number[] } {
  const chunks: (ArrayBuffer | null)[] = []
  const live: number[] = []
  const freeSlots: number[] = []
  const bases: number[] = []
  let current = -1
  let tail = 0
  for (const s of states) {
    const first = chunks.length
    bases.push(first * SLOT_SPAN)
    chunks.push(...s.chunks)
    live.push(...s.live)
    freeSlots.push(...s.freeSlots.map((slot) => slot + first))
    if (s.current >= 0) {
      current = s.current + first
      tail = s.tail
    }
  }
  return { state: { chunks, live, freeSlots, current, tail }, bases }
}

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
  /** A running sum of what `touch` read (see there). */
  touched = 0

  /** A slab holding what `state` describes (state from another slab's `export()`). */
  static from(state: SlabState): Slab {
    const slab = new Slab()
    state.chunks.forEach((ab, slot) => {
      slab.chunks[slot] = ab === null ? undefined : Buffer.from(ab)
      slab.held += ab === null ? 0 : ab.byteLength
    })
    slab.live.push(...state.live)
    slab.freeSlots.push(...state.freeSlots)
    slab.current = state.current
    slab.tail = state.tail
    if (state.current >= 0) slab.chunk = slab.chunks[state.current] as Buffer
    slab.target = slab.chunk
    return slab
  }

  /** This slab's state; its chunks' ArrayBuffers may then be transferred (and this slab dropped). */
  export(): SlabState {
    return {
      chunks: this.chunks.map((c) => (c === undefined ? null : (c.buffer as ArrayBuffer))),
      live: [...this.live],
      freeSlots: [...this.freeSlots],
      current: this.current,
      tail: this.tail,
    }
  }

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

  /** Stores `length` bytes at `loc` of `src`; returns the location. */
  putFrom(src: Slab, loc: number, length: number): number {
    const at = this.tail + length <= this.chunk.length ? this.inCurrent() : this.place(length)
    src.copy(loc, length, this.target, at)
    return this.commit(at, length)
  }

  /** Copies `length` bytes at `loc` into `out` at `at` (copyBytes: a cold page copies ten); returns the bytes copied. */
  copy(loc: number, length: number, out: Buffer, at: number): number {
    const slot = Math.floor(loc / SLOT_SPAN)
    const offset = loc - slot * SLOT_SPAN
    copyBytes(this.chunks[slot] as Buffer, offset, offset + length, out, at)
    return length
  }

  /**
   * Reads one byte of every cache line of `length` bytes at `loc` (and the last byte). Touching
   * the scattered messages of a page first, all of them, before copying any, lets the CPU wait for
   * their cache misses side by side instead of one copy after another (docs/performance.md).
   * The sum goes to `touched`, so that the reads are not optimised away.
   */
  touch(loc: number, length: number): void {
    const slot = Math.floor(loc / SLOT_SPAN)
    const offset = loc - slot * SLOT_SPAN
    const chunk = this.chunks[slot] as Buffer
    let sum = chunk[offset + length - 1] as number
    for (let i = offset; i < offset + length; i += CACHE_LINE_BYTES) sum += chunk[i] as number
    this.touched = (this.touched + sum) | 0
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
