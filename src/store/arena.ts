// A shard's memory for chats' extents (chat-log.ts): blocks of 2^k bytes, 256 B to 1 MiB, carved
// out of 1 MiB chunks by a buddy allocator, and blocks larger than a chunk on their own. A new
// chunk is one written ahead at start-up when there is one (prefaultChunks), else new memory; a
// chunk freed whole goes back among those written ahead while they are fewer than start-up wrote,
// else to the system.
//
// Why a buddy allocator: a chat's extent moves to a block twice its size when it fills, and chats
// written in turn all grow at about the same time. With plain size classes, the blocks they leave
// would wait for chats of that size that never come (a throwaway simulation held 2.5-5.8x the
// messages' JSON, docs/performance.md). Here two free neighbours of one size merge into a block of
// the next, which the next chat to grow takes; a chunk that is free again as a whole is released.
//
// A block is named by its chunk's slot and its offset there. Each chunk is seen through a Buffer,
// a Uint32Array and a Float64Array over the same bytes, so that an extent's header and index are
// read as typed-array elements. A free block keeps its free list's links in its first 8 bytes
// and the next 8 (see link); `orders` marks, per 256-byte unit of a chunk,
// the order + 1 of a free block that starts there (0: none), which is how a block finds whether
// its buddy is free.

import assert from 'node:assert'

export const ORDER_MIN = 8 // 256 B
export const ORDER_CHUNK = 20 // 1 MiB
export const CHUNK_BYTES = 1 << ORDER_CHUNK
const UNITS = CHUNK_BYTES >> ORDER_MIN
const OWN_ALIGN = 4096

// Chunks written once ahead of need (prefaultChunks), which arenas take before asking the system
// for new ones, and chunks freed whole since, kept while there are fewer than `spareMax`. One list
// per thread: a thread's shards share it.
const spare: Buffer[] = []
let spareMax = 0

/**
 * Allocates chunks of `bytes` in all (rounded up to whole chunks) and writes every byte of them,
 * so that the arenas of this thread take their first chunks with every page already in memory.
 * Why: the first write to a page of new memory is a page fault, and on a virtual machine whose
 * host hands memory back and forth (the reference machine: up to ~10 µs a page, and fdatasyncs
 * often slower while it happens) the store pays it while serving, all at once when many chats move
 * to larger extents together (docs/performance.md, twentieth session). Returns the number of chunks.
 */
export function prefaultChunks(bytes: number): number {
  assert(Number.isSafeInteger(bytes) && bytes >= 0)
  const n = Math.ceil(bytes / CHUNK_BYTES)
  for (let i = 0; i < n; i++) spare.push(Buffer.allocUnsafeSlow(CHUNK_BYTES).fill(0))
  spareMax += n
  return n
}

/** Bytes of chunks written ahead (prefaulted, or freed whole since and kept) that no arena of this thread holds. */
export const spareBytes = (): number => spare.length * CHUNK_BYTES

/** The order of the smallest block of at least `bytes` (at least ORDER_MIN); above ORDER_CHUNK for a block of its own. */
export function orderFor(bytes: number): number {
  let order = ORDER_MIN
  while (1 << order < bytes && order <= ORDER_CHUNK) order++
  return order
}

/** An arena's chunks and which of their blocks are free, as plain data and ArrayBuffers: what crosses threads (recover.ts). */
export interface ArenaState {
  /** Per slot: its chunk or own block, or null for a released slot. */
  readonly chunks: (ArrayBuffer | null)[]
  /** Per slot: its free blocks' orders per unit (see Arena), or null for an own block or a released slot. */
  readonly orders: (Uint8Array | null)[]
}

export class Arena {
  /** Per slot, the chunk (or a large block of its own), and the same bytes as words. */
  readonly bufs: Buffer[] = []
  readonly u32: Uint32Array[] = []
  readonly f64: Float64Array[] = []
  /** Per slot: free blocks' orders per unit (see the top), or null for a block of its own. */
  private readonly orders: (Uint8Array | null | undefined)[] = []
  private readonly freeSlots: number[] = []
  /** Per order, the first free block's slot + 1 (0: none) and offset. */
  private readonly headSlot = new Int32Array(ORDER_CHUNK + 1)
  private readonly headOff = new Int32Array(ORDER_CHUNK + 1)
  /** Bytes of chunks and own blocks held. */
  held = 0
  /** Bytes of blocks handed out and not freed. */
  used = 0
  /** Where the last alloc() put its block. */
  slot = 0
  offset = 0

  /**
   * One arena holding the blocks of several (scans of consecutive log runs, recover.ts): state k's
   * slots follow the states before it, so its slot s is `bases[k]` + s here.
   */
  static join(states: readonly ArenaState[]): { readonly arena: Arena; readonly bases: readonly number[] } {
    const arena = new Arena()
    const bases: number[] = []
    const released: number[] = []
    for (const st of states) {
      bases.push(arena.bufs.length)
      st.chunks.forEach((ab, s) => {
        const orders = st.orders[s] ?? null
        // A released slot stays one, so that the slots after it keep their numbers.
        const slot = arena.setSlot(arena.bufs.length, ab === null ? Buffer.alloc(0) : Buffer.from(ab), orders)
        if (ab === null) {
          released.push(slot)
          return
        }
        arena.used += ab.byteLength
        if (orders === null) return
        // Its free blocks go on this arena's lists.
        for (let u = 0; u < orders.length; u++) {
          const o = orders[u] as number
          if (o === 0) continue
          arena.used -= 1 << (o - 1)
          arena.link(slot, u << ORDER_MIN, o - 1)
        }
      })
    }
    for (const slot of released) arena.releaseSlot(slot, 0)
    return { arena, bases }
  }

  /** This arena's state; its ArrayBuffers may then be transferred (and this arena dropped). */
  export(): ArenaState {
    return {
      chunks: this.bufs.map((b, s) => (this.orders[s] === undefined ? null : (b.buffer as ArrayBuffer))),
      orders: this.orders.map((o) => o ?? null),
    }
  }

  /** Allocates a block of 2^order bytes (or `bytes` rounded up, when order > ORDER_CHUNK); sets slot and offset. */
  alloc(order: number, bytes = 1 << order): void {
    if (order > ORDER_CHUNK) {
      const size = Math.ceil(bytes / OWN_ALIGN) * OWN_ALIGN
      this.slot = this.newSlot(Buffer.allocUnsafeSlow(size), null)
      this.offset = 0
      this.used += size
      return
    }
    let o = order
    while (o < ORDER_CHUNK && this.headSlot[o] === 0) o++
    let slot: number
    let offset: number
    if (this.headSlot[o] === 0) {
      slot = this.newSlot(spare.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES), new Uint8Array(UNITS))
      offset = 0
    } else {
      slot = (this.headSlot[o] as number) - 1
      offset = this.headOff[o] as number
      this.unlink(slot, offset, o)
    }
    // Split down to the order asked for, each upper half free.
    while (o > order) {
      o--
      this.link(slot, offset + (1 << o), o)
    }
    this.slot = slot
    this.offset = offset
    this.used += 1 << order
  }

  /** Frees the block at slot/offset, of 2^order bytes (or a block of its own). */
  free(slot: number, offset: number, order: number): void {
    const orders = this.orders[slot]
    assert(orders !== undefined, 'a block of a released slot')
    if (orders === null) {
      assert(offset === 0, 'not a block of its own')
      const size = (this.bufs[slot] as Buffer).length
      this.used -= size
      this.releaseSlot(slot, size)
      return
    }
    this.used -= 1 << order
    let o = order
    let at = offset
    while (o < ORDER_CHUNK) {
      const buddy = at ^ (1 << o)
      if (orders[buddy >> ORDER_MIN] !== o + 1) break
      this.unlink(slot, buddy, o)
      at = Math.min(at, buddy)
      o++
    }
    if (o === ORDER_CHUNK) {
      // Its pages are in memory already: kept for the next chunk this thread needs, as many as
      // start-up wrote ahead (STORE_PREFAULT_BYTES), so that retention and moves do not hand
      // memory back only to fault it in again.
      const buf = this.bufs[slot] as Buffer
      this.releaseSlot(slot, CHUNK_BYTES)
      if (spare.length < spareMax) spare.push(buf)
    } else this.link(slot, at, o)
  }

  // Free lists are doubly linked through the blocks' first 16 bytes: next's slot + 1 and offset,
  // then previous's (slot + 1 = 0: none).
  private link(slot: number, offset: number, order: number): void {
    const u = this.u32[slot] as Uint32Array
    const w = offset >> 2
    const nextSlot = this.headSlot[order] as number
    const nextOff = this.headOff[order] as number
    u[w] = nextSlot
    u[w + 1] = nextOff
    u[w + 2] = 0
    u[w + 3] = 0
    if (nextSlot !== 0) {
      const n = this.u32[nextSlot - 1] as Uint32Array
      n[(nextOff >> 2) + 2] = slot + 1
      n[(nextOff >> 2) + 3] = offset
    }
    this.headSlot[order] = slot + 1
    this.headOff[order] = offset
    ;(this.orders[slot] as Uint8Array)[offset >> ORDER_MIN] = order + 1
  }

  private unlink(slot: number, offset: number, order: number): void {
    ;(this.orders[slot] as Uint8Array)[offset >> ORDER_MIN] = 0
    const u = this.u32[slot] as Uint32Array
    const w = offset >> 2
    const nextSlot = u[w] as number
    const nextOff = u[w + 1] as number
    const prevSlot = u[w + 2] as number
    const prevOff = u[w + 3] as number
    if (prevSlot === 0) {
      this.headSlot[order] = nextSlot
      this.headOff[order] = nextOff
    } else {
      const p = this.u32[prevSlot - 1] as Uint32Array
      p[prevOff >> 2] = nextSlot
      p[(prevOff >> 2) + 1] = nextOff
    }
    if (nextSlot !== 0) {
      const n = this.u32[nextSlot - 1] as Uint32Array
      n[(nextOff >> 2) + 2] = prevSlot
      n[(nextOff >> 2) + 3] = prevOff
    }
  }

  private newSlot(buf: Buffer, orders: Uint8Array | null): number {
    return this.setSlot(this.freeSlots.pop() ?? this.bufs.length, buf, orders)
  }

  private setSlot(slot: number, buf: Buffer, orders: Uint8Array | null): number {
    this.bufs[slot] = buf
    this.u32[slot] = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >> 2)
    this.f64[slot] = new Float64Array(buf.buffer, buf.byteOffset, buf.length >> 3)
    this.orders[slot] = orders
    this.held += buf.length
    return slot
  }

  private releaseSlot(slot: number, size: number): void {
    const none = Buffer.alloc(0)
    this.bufs[slot] = none
    this.u32[slot] = new Uint32Array(0)
    this.f64[slot] = new Float64Array(0)
    this.orders[slot] = undefined
    this.held -= size
    this.freeSlots.push(slot)
  }
}
