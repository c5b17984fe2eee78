// The shard's slab: messages' bytes in shared 1 MiB chunks, released once nothing in them is live.

import assert from 'node:assert/strict'
import fc from 'fast-check'
import t from 'tap'
import { holds } from '../helpers/fast-check.js'
import { Slab } from '../../src/store/slab.js'

const MiB = 1024 * 1024
const SLOT_SPAN = 2 ** 32
const COMMA = 0x2c

function read(slab: Slab, loc: number, length: number): string {
  const out = Buffer.alloc(length)
  assert.equal(slab.copy(loc, length, out, 0), length)
  return out.toString('utf8')
}

t.test('strings and byte ranges come back as stored', async (t) => {
  const slab = new Slab()
  t.equal(slab.bytes, 0, 'nothing allocated before the first message')
  const a = slab.putString('{"text":"é😀"},')
  t.equal(slab.lastLength, Buffer.byteLength('{"text":"é😀"},'), 'length in UTF-8 bytes')
  t.equal(read(slab, a, slab.lastLength), '{"text":"é😀"},')
  const src = Buffer.from('xx{"b":1}yy')
  const b = slab.putBytes(src, 2, 9, COMMA)
  t.equal(slab.lastLength, 8, 'the range plus the suffix byte')
  t.equal(read(slab, b, 8), '{"b":1},')
  t.equal(b, a + Buffer.byteLength('{"text":"é😀"},'), 'stored back to back')
  t.equal(slab.bytes, MiB, 'one chunk')
})

t.test('a chunk is released when everything in it was dropped, and its slot is reused', async (t) => {
  const slab = new Slab()
  const msg = 'x'.repeat(999) + ','
  const locs: number[] = []
  while (slab.bytes < 2 * MiB) locs.push(slab.putString(msg))
  // The last message opened the second chunk.
  const inFirst = locs.filter((l) => l < SLOT_SPAN)
  t.equal(inFirst.length, Math.floor(MiB / 1000), 'the first chunk holds as many as fit')
  t.equal(Math.floor((locs.at(-1) as number) / SLOT_SPAN), 1, 'the next message went to a new chunk')
  for (const l of inFirst.slice(0, -1)) slab.free(l, 1000)
  t.equal(slab.bytes, 2 * MiB, 'still held while one message in it is live')
  slab.free(inFirst.at(-1) as number, 1000)
  t.equal(slab.bytes, MiB, 'released with its last message')
  // Fill the second chunk: the third chunk takes slot 0 again.
  let l = 0
  while (slab.bytes < 2 * MiB) l = slab.putString(msg)
  t.equal(Math.floor(l / SLOT_SPAN), 0, 'slot 0 reused')
  t.equal(read(slab, l, 1000), msg)
  t.equal(read(slab, locs.at(-1) as number, 1000), msg, 'messages in other chunks are untouched')
})

t.test('a large message that does not fit the current chunk gets a chunk of its own, released with it', async (t) => {
  const slab = new Slab()
  const filler = 'f'.repeat(1023) + ','
  let last = 0
  for (let i = 0; i < 900; i++) last = slab.putString(filler) // 900 KiB of the first chunk
  const big = 'é'.repeat(100 * 1024) + ',' // 200 KiB of UTF-8: more than the tail left
  const loc = slab.putString(big)
  t.equal(slab.bytes, MiB + Buffer.byteLength(big), 'a chunk sized exactly')
  t.equal(read(slab, loc, slab.lastLength), big)
  t.equal(slab.putString('{"b":2},'), last + 1024, 'the shared chunk stays current: its tail is not wasted')
  slab.free(loc, Buffer.byteLength(big))
  t.equal(slab.bytes, MiB, 'released')
  t.equal(read(slab, last, 1024), filler)
  const fits = slab.putString('é'.repeat(20 * 1024) + ',') // 40 KiB, still fits the tail
  t.equal(fits, last + 1024 + 8, 'a message that fits goes to the tail')
})

t.test('a string goes to the tail when its exact size fits there, even if the 3-bytes-per-unit bound does not', async (t) => {
  const slab = new Slab()
  let last = 0
  for (let i = 0; i < 800; i++) last = slab.putString('f'.repeat(1023) + ',') // 800 KiB used
  const ascii = 'a'.repeat(130 * 1024) // large; bound 390 KiB > the 224 KiB left; exactly 130 KiB
  t.equal(slab.putString(ascii), last + 1024, 'in the tail, not a chunk of its own')
  t.equal(slab.bytes, MiB, 'no new chunk')
  const big = 'b'.repeat(130 * 1024) // does not fit the 94 KiB left
  const loc = slab.putString(big)
  t.equal(Math.floor(loc / SLOT_SPAN), 1, 'a chunk of its own')
  t.equal(slab.bytes, MiB + 130 * 1024)
  t.equal(read(slab, loc, slab.lastLength), big)
  t.equal(slab.putString('{"c":3},'), last + 1024 + 130 * 1024, 'the shared chunk is still current')
})

t.test('the current chunk, once emptied by drops, is filled again from its start', async (t) => {
  const slab = new Slab()
  const a = slab.putString('{"a":1},')
  slab.free(a, 8)
  t.equal(slab.putString('{"b":2},'), a, 'same place')
  t.equal(slab.bytes, MiB)
})

t.test('FIFO puts and drops of any sizes: live bytes intact, memory bounded by the live window', (t) =>
  holds(
    t,
    fc.property(
      fc.array(
        fc.record({
          size: fc.oneof({ weight: 20, arbitrary: fc.integer({ min: 1, max: 3000 }) }, { weight: 1, arbitrary: fc.integer({ min: 100_000, max: 300_000 }) }),
          keep: fc.integer({ min: 0, max: 50 }),
        }),
        { minLength: 1, maxLength: 400 },
      ),
      (steps) => {
        const slab = new Slab()
        const live: { loc: number; length: number; fill: number }[] = []
        let maxLoc = 0
        steps.forEach((s, i) => {
          const fill = 0x30 + (i % 64)
          const src = Buffer.alloc(s.size + 2, fill)
          const loc = slab.putBytes(src, 1, s.size + 1, COMMA)
          assert.equal(slab.lastLength, s.size + 1)
          live.push({ loc, length: s.size + 1, fill })
          maxLoc = Math.max(maxLoc, loc)
          while (live.length > s.keep) {
            const m = live.shift() as (typeof live)[number]
            slab.free(m.loc, m.length)
          }
          let liveBytes = 0
          for (const m of live) {
            const got = Buffer.alloc(m.length)
            slab.copy(m.loc, m.length, got, 0)
            assert.ok(got.subarray(0, -1).every((b) => b === m.fill) && got[m.length - 1] === COMMA, 'live message intact')
            liveBytes += m.length
          }
          // At most: the chunks the live window spans (plus one partly filled), and own chunks.
          assert.ok(slab.bytes <= liveBytes + (Math.ceil(liveBytes / (MiB / 2)) + 2) * MiB, `bytes ${slab.bytes} for ${liveBytes} live`)
        })
        // Slots are reused: locations stay within as many slots as were ever live at once.
        assert.ok(maxLoc < 60 * SLOT_SPAN, 'slots reused')
      },
    ),
    { numRuns: 100 },
  ),
)
