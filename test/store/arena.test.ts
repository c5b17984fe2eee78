// The arena's buddy allocator: blocks never overlap, freed neighbours merge, and a chunk free as a
// whole is released; chunks written ahead (prefaultChunks) are taken before new memory, and chunks
// freed whole are kept among them up to as many as were written ahead.

import assert from 'node:assert/strict'
import fc from 'fast-check'
import t from 'tap'
import { holds } from '../helpers/fast-check.js'
import { Arena, CHUNK_BYTES, ORDER_CHUNK, ORDER_MIN, orderFor, prefaultChunks, spareBytes } from '../../src/store/arena.js'

t.test('orderFor: the smallest block that holds the bytes', async (t) => {
  t.equal(orderFor(1), ORDER_MIN)
  t.equal(orderFor(256), 8)
  t.equal(orderFor(257), 9)
  t.equal(orderFor(CHUNK_BYTES), ORDER_CHUNK)
  t.equal(orderFor(CHUNK_BYTES + 1), ORDER_CHUNK + 1, 'larger than a chunk: a block of its own')
})

t.test('split and merge: two halves freed make the whole again, and the chunk goes', async (t) => {
  const a = new Arena()
  a.alloc(ORDER_CHUNK - 1)
  const first = { slot: a.slot, offset: a.offset }
  a.alloc(ORDER_CHUNK - 1)
  const second = { slot: a.slot, offset: a.offset }
  t.same([first.slot, second.slot], [0, 0], 'both halves of one chunk')
  t.same(new Set([first.offset, second.offset]), new Set([0, CHUNK_BYTES / 2]))
  t.equal(a.held, CHUNK_BYTES)
  t.equal(a.used, CHUNK_BYTES)
  a.free(first.slot, first.offset, ORDER_CHUNK - 1)
  t.equal(a.held, CHUNK_BYTES, 'half free: the chunk stays')
  a.free(second.slot, second.offset, ORDER_CHUNK - 1)
  t.equal(a.held, 0, 'all free: the chunk is released')
  t.equal(a.used, 0)
  a.alloc(ORDER_MIN)
  t.equal(a.slot, 0, 'its slot is reused')
})

t.test('a block larger than a chunk is its own, released when freed', async (t) => {
  const a = new Arena()
  a.alloc(ORDER_CHUNK + 1, CHUNK_BYTES + 10)
  t.equal(a.offset, 0)
  t.equal(a.bufs[a.slot]?.length, CHUNK_BYTES + 4096, 'rounded up to 4 KiB')
  t.equal(a.held, CHUNK_BYTES + 4096)
  a.free(a.slot, 0, ORDER_CHUNK + 1)
  t.equal(a.held, 0)
})

type Op = { readonly alloc: number } | { readonly free: number }

t.test('any sequence of allocs and frees: no two live blocks overlap, and freeing everything releases everything', (t) =>
  holds(
    t,
    fc.property(
      fc.array(
        fc.oneof(
          { weight: 3, arbitrary: fc.record({ alloc: fc.integer({ min: ORDER_MIN, max: ORDER_CHUNK + 1 }) }) },
          { weight: 2, arbitrary: fc.record({ free: fc.nat() }) },
        ),
        { maxLength: 300 },
      ),
      (ops: Op[]) => {
        const a = new Arena()
        const live: { slot: number; offset: number; order: number; size: number; mark: number }[] = []
        let mark = 0
        const check = (): void => {
          // Each live block still holds the mark written over it: nothing else was given its bytes.
          for (const b of live) {
            const buf = a.bufs[b.slot] as Buffer
            assert.ok(b.offset + b.size <= buf.length, 'inside its chunk')
            assert.equal(buf[b.offset], b.mark, 'first byte')
            assert.equal(buf[b.offset + b.size - 1], b.mark, 'last byte')
          }
          assert.equal(a.used, live.reduce((s, b) => s + b.size, 0), 'used')
        }
        for (const op of ops) {
          if ('alloc' in op) {
            const bytes = op.alloc > ORDER_CHUNK ? CHUNK_BYTES + 1 + mark * 100 : 1 << op.alloc
            a.alloc(op.alloc, bytes)
            const size = op.alloc > ORDER_CHUNK ? (a.bufs[a.slot] as Buffer).length : 1 << op.alloc
            mark = (mark + 1) & 0xff
            const b = { slot: a.slot, offset: a.offset, order: op.alloc, size, mark }
            if (op.alloc <= ORDER_CHUNK) assert.equal(b.offset % size, 0, 'aligned to its size')
            ;(a.bufs[b.slot] as Buffer).fill(b.mark, b.offset, b.offset + size)
            live.push(b)
          } else if (live.length > 0) {
            const [b] = live.splice(op.free % live.length, 1)
            if (b !== undefined) a.free(b.slot, b.offset, b.order)
          }
          check()
        }
        for (const b of live.splice(0)) a.free(b.slot, b.offset, b.order)
        assert.equal(a.held, 0, 'every chunk released')
        assert.equal(a.used, 0)
      },
    ),
  ),
)

t.test('join: arenas exported by other threads become one, their slots renumbered and their free blocks reusable', async (t) => {
  const a = new Arena()
  // Two chunks' worth of quarter-chunk blocks; then every block of the first chunk freed, which
  // releases it (its slot stays, empty), and one block of the second.
  const blocks: { slot: number; offset: number }[] = []
  for (let i = 0; i < 8; i++) {
    a.alloc(ORDER_CHUNK - 2)
    blocks.push({ slot: a.slot, offset: a.offset })
    ;(a.bufs[a.slot] as Buffer).fill(i + 1, a.offset, a.offset + CHUNK_BYTES / 4)
  }
  for (const b of blocks.slice(0, 4)) a.free(b.slot, b.offset, ORDER_CHUNK - 2)
  const kept = blocks.slice(5)
  a.free((blocks[4] as { slot: number }).slot, (blocks[4] as { offset: number }).offset, ORDER_CHUNK - 2)
  const b = new Arena()
  b.alloc(ORDER_MIN)
  ;(b.bufs[b.slot] as Buffer).fill(0xee, b.offset, b.offset + 256)
  const bLoc = { slot: b.slot, offset: b.offset }
  const { arena, bases } = Arena.join([a.export(), b.export()])
  t.same(bases, [0, 2], "b's slots follow a's, the released one included")
  t.equal(arena.held, CHUNK_BYTES * 2, 'the released chunk holds nothing; one chunk from each')
  t.equal(arena.used, 3 * (CHUNK_BYTES / 4) + 256, 'what is allocated: three quarters of one chunk, one block of the other')
  for (const [i, k] of kept.entries()) t.equal(arena.bufs[k.slot]?.[k.offset], i + 6, `a's block ${i + 5} kept its bytes`)
  t.equal(arena.bufs[bLoc.slot + 2]?.[bLoc.offset], 0xee, "b's block kept its bytes")
  // The free quarter in a's second chunk is reused before any new chunk.
  arena.alloc(ORDER_CHUNK - 2)
  t.equal(arena.held, CHUNK_BYTES * 2, 'no new chunk for a block that fits a free one')
  // Freeing everything releases everything.
  arena.free(arena.slot, arena.offset, ORDER_CHUNK - 2)
  for (const k of kept) arena.free(k.slot, k.offset, ORDER_CHUNK - 2)
  arena.free(bLoc.slot + 2, bLoc.offset, ORDER_MIN)
  t.equal(arena.held, 0)
  t.equal(arena.used, 0)
})

t.test('prefaultChunks: arenas take the chunks written ahead first, then new memory', async (t) => {
  t.equal(spareBytes(), 0, 'none until asked for')
  t.equal(prefaultChunks(0), 0)
  t.equal(prefaultChunks(CHUNK_BYTES + 1), 2, 'whole chunks, rounded up')
  t.equal(spareBytes(), 2 * CHUNK_BYTES)
  const a = new Arena()
  a.alloc(ORDER_CHUNK + 1, CHUNK_BYTES + 4096)
  t.equal(spareBytes(), 2 * CHUNK_BYTES, 'a block larger than a chunk is one of its own')
  a.alloc(ORDER_MIN)
  t.equal(spareBytes(), CHUNK_BYTES, "the arena's first chunk was one written ahead")
  const chunk = a.bufs[a.slot] as Buffer
  t.equal(chunk.length, CHUNK_BYTES)
  t.ok(chunk.every((b) => b === 0), 'written with zeros')
  const b = new Arena()
  b.alloc(ORDER_CHUNK)
  t.equal(spareBytes(), 0, 'another arena of the thread takes the next')
  b.alloc(ORDER_CHUNK)
  t.equal(b.held, 2 * CHUNK_BYTES, 'none left: a new chunk from the system')
  t.equal(spareBytes(), 0)
  t.throws(() => prefaultChunks(-1))

  // Two chunks were written ahead: chunks freed whole go back among them, up to two.
  const first = b.bufs[0] as Buffer
  b.free(0, 0, ORDER_CHUNK)
  t.equal(spareBytes(), CHUNK_BYTES, 'a chunk freed whole is kept, written, for the next')
  t.equal(b.held, CHUNK_BYTES, 'and no longer held by its arena')
  a.free(a.slot, a.offset, ORDER_MIN)
  t.equal(spareBytes(), 2 * CHUNK_BYTES, 'as many as were written ahead')
  b.free(1, 0, ORDER_CHUNK)
  t.equal(spareBytes(), 2 * CHUNK_BYTES, 'no more: the third goes back to the system')
  t.equal(b.held, 0)
  const c = new Arena()
  c.alloc(ORDER_MIN)
  t.equal(spareBytes(), CHUNK_BYTES, 'a new arena takes a kept chunk')
  c.alloc(ORDER_CHUNK)
  t.equal(spareBytes(), 0)
  t.ok([chunk, first].includes(c.bufs[0] as Buffer) && [chunk, first].includes(c.bufs[1] as Buffer) && c.bufs[0] !== c.bufs[1], 'the very chunks freed before')
})
