// @ts-check
// What a pull costs in the store alone, for one hot chat against many cold ones, and what this
// machine's memory makes the floor. No HTTP, no threads: one ShardStore in this process.
//
// bench:scale puts pulls over 100k chats at 0.91-0.93 of pulls of one chat (twenty-first session;
// it gave 1.02-1.06 until wrk's two threads were started together, in the eighteenth, and less
// still before pulls were batched and before the store kept each chat in extents;
// docs/performance.md). This says
// what the store's part of a pull costs, step by step (lookup and index build on each other; pull
// is the store's own, whole; batched is pull as the server makes it under load):
//   lookup  the chat's log by id (the shard's table, then its ChatLog);
//   index   and the send_times of its first and tenth messages (ChatLog.timeAt);
//   pull    the whole page (ShardStore.pull: the table's row, the extent, the bytes copied out);
//   batched pulls in batches of STORE_BATCH (32), the store reading ahead for each batch first
//           (ShardStore.prefetch), as the server does for the pulls of one event-loop turn; and
//           that figure in parts: the read-ahead, the pulls after it, and the same batch's pulls
//           made again (not part of `batched`: what its pulls cost once their bytes are in cache,
//           so the difference from the first time is what bringing their pages from memory costs).
// and what a cache miss costs here: one load after another over 4 MB (cache) and 256 MB (memory),
// and loads that do not wait for each other over 256 MB.
//
// Then the same pulls from a layout simulated beside it, the one that led to the store's extents:
// a "flat" store whose chat table is an open-addressing Int32Array and Float64Array (FNV-1a of the
// id), each slot leading to one contiguous run of bytes holding the chat's id, its index and its
// messages, back to back, sized exactly (the messages' bytes are the real store's, taken from its
// pages). It answers only what this benchmark asks (the first page of a chat): a bound on what
// such a layout gives, to compare the store with.
//
//   npm run build && node bench/store-pull.mjs   (STORE_MESSAGES=1000000 STORE_CHATS=100000
//                                                 STORE_LAYOUT=interleaved|grouped STORE_ROUNDS=5
//                                                 STORE_BATCH=32
//                                                 BENCH_OUT)

import { writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { BENCH_TEXT, HOT_CHAT, HOT_MESSAGES, benchChat, root, spreadChats } from './lib.mjs'

const env = process.env
const messages = Number(env.STORE_MESSAGES ?? 1_000_000)
const chats = Number(env.STORE_CHATS ?? 100_000)
const grouped = env.STORE_LAYOUT === 'grouped'
const rounds = Number(env.STORE_ROUNDS ?? 5)
const out = env.BENCH_OUT ?? join(root, 'bench', 'results', 'store-pull')
const OPS = 200_000

const { ShardStore } = await import(join(root, 'dist', 'store', 'shard-store.js'))

// As the benchmarks' stores (writeBenchStore): the hot chat, then the many chats in turn.
const store = new ShardStore()
let t = Date.now() * 1000 - 3_600_000_000
for (let i = 0; i < HOT_MESSAGES; i++) store.append(HOT_CHAT, t++, BENCH_TEXT, 'loader')
const perChat = Math.ceil(messages / chats)
for (let k = 0; k < messages; k++) {
  const c = grouped ? Math.floor(k / perChat) : k % chats
  store.append(benchChat(c), t++, BENCH_TEXT, `u${c}`)
}
const ids = spreadChats(chats)
const scratch = { buf: Buffer.allocUnsafeSlow(64 * 1024) }
let sink = 0

// A request's chat id is a new string each time (parsed from its URL), its hash not yet computed.
const fresh = (/** @type {string} */ s) => (' ' + s).slice(1)

/** @type {Record<string, (id: string) => void>} */
const steps = {
  lookup: (id) => {
    sink += store.get(id) === undefined ? 0 : 1
  },
  index: (id) => {
    const log = store.get(id)
    sink += log.timeAt(0) + log.timeAt(Math.min(9, log.count - 1))
  },
  pull: (id) => {
    sink += store.pull(id, 0, 10, false, scratch).json.length
  },
}

/** ns per call of `step` over `OPS` requests, to the hot chat or over every chat in turn. */
function time(/** @type {(id: string) => void} */ step, /** @type {boolean} */ many) {
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < OPS; i++) step(fresh(many ? (ids[i % ids.length] ?? HOT_CHAT) : HOT_CHAT))
  return Number(process.hrtime.bigint() - t0) / OPS
}

// Pulls as the server makes them under load: a batch of requests whose chats the store is told
// first (ShardStore.prefetch: what the in-process transport does once per turn of the event loop).
const BATCH = Number(env.STORE_BATCH ?? 32)

/**
 * ns per pull, in batches of BATCH, to the hot chat or over every chat in turn: in all (read-ahead
 * and pulls), and in parts: the read-ahead, the pulls, and the same pulls made again at once.
 */
function timeBatched(/** @type {boolean} */ many) {
  const batch = new Array(BATCH)
  let ahead = 0n
  let first = 0n
  let again = 0n
  for (let i = 0; i < OPS; i += BATCH) {
    for (let k = 0; k < BATCH; k++) batch[k] = fresh(many ? (ids[(i + k) % ids.length] ?? HOT_CHAT) : HOT_CHAT)
    const t0 = process.hrtime.bigint()
    sink += store.prefetch(batch, BATCH)
    const t1 = process.hrtime.bigint()
    for (let k = 0; k < BATCH; k++) sink += store.pull(batch[k], 0, 10, false, scratch).json.length
    const t2 = process.hrtime.bigint()
    for (let k = 0; k < BATCH; k++) sink += store.pull(batch[k], 0, 10, false, scratch).json.length
    again += process.hrtime.bigint() - t2
    ahead += t1 - t0
    first += t2 - t1
  }
  const per = (/** @type {bigint} */ ns) => Number(ns) / OPS
  return { all: per(ahead + first), ahead: per(ahead), pulls: per(first), again: per(again) }
}

/** ns per load: a chase through `bytes` of memory (each load's address from the one before), or independent loads. */
function memory(/** @type {number} */ bytes, /** @type {boolean} */ dependent) {
  const slots = bytes / 4
  const lines = slots / 16
  const order = new Int32Array(lines)
  for (let i = 0; i < lines; i++) order[i] = i
  for (let i = lines - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    const x = order[i] ?? 0
    order[i] = order[j] ?? 0
    order[j] = x
  }
  const a = new Int32Array(slots)
  for (let i = 0; i < lines; i++) a[(order[i] ?? 0) * 16] = (order[(i + 1) % lines] ?? 0) * 16
  const n = 2_000_000
  let p = 0
  const t0 = process.hrtime.bigint()
  if (dependent) for (let i = 0; i < n; i++) p = a[p] ?? 0
  else for (let i = 0; i < n; i++) p += a[((i * 7919) % lines) * 16] ?? 0
  sink += p
  return Number(process.hrtime.bigint() - t0) / n
}

const median = (/** @type {number[]} */ xs) => {
  const s = [...xs].sort((x, y) => x - y)
  const m = s.length >> 1
  return s.length % 2 === 1 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2
}

// timeBatched's parts, and how the report names them.
const BATCH_PARTS = /** @type {const} */ ({ ahead: '  of which the read-ahead', pulls: '  and the pulls after it', again: 'the same pulls again (bytes in cache)' })
const partNames = new Map(Object.entries(BATCH_PARTS).map(([p, label]) => [`batched.${p}`, label]))
/** @type {Record<string, { hot: number[], many: number[] }>} */
const samples = Object.fromEntries([...Object.keys(steps), 'batched', ...partNames.keys()].map((k) => [k, { hot: [], many: [] }]))
for (let r = 0; r < rounds + 1; r++) {
  for (const [name, step] of Object.entries(steps)) {
    const hot = time(step, false)
    const many = time(step, true)
    // The first round warms up (compiles) and is not counted.
    if (r > 0) {
      samples[name]?.hot.push(hot)
      samples[name]?.many.push(many)
    }
  }
  const hot = timeBatched(false)
  const many = timeBatched(true)
  if (r > 0) {
    samples.batched?.hot.push(hot.all)
    samples.batched?.many.push(many.all)
    for (const p of /** @type {(keyof typeof BATCH_PARTS)[]} */ (Object.keys(BATCH_PARTS))) {
      samples[`batched.${p}`]?.hot.push(hot[p])
      samples[`batched.${p}`]?.many.push(many[p])
    }
  }
}
// The flat layout, simulated (see the top of this file). Region of a chat: [id length][id bytes]
// [zeros to a multiple of 8][count u32][4 zero bytes][count x (send_time f64, offset u32, length u32)]
// [messages, each with its trailing comma]; offsets from the region's start. Regions are written
// chat after chat into 8 MiB chunks.
const FLAT_CHUNK = 8 << 20
const flatChunks = [Buffer.allocUnsafeSlow(FLAT_CHUNK)]
let flatTail = 0
const fnv = (/** @type {string} */ s) => {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h
}
let flatCap = 1
while (flatCap < chats * 2) flatCap *= 2
const flatMask = flatCap - 1
const flatHash = new Int32Array(flatCap)
const flatLoc = new Float64Array(flatCap) // region location + 1; 0 = empty slot
for (const id of [HOT_CHAT, ...Array.from({ length: chats }, (_, c) => benchChat(c))]) {
  const log = store.get(id)
  const n = Math.min(log.count, 10)
  const page = store.pull(id, 0, n, false).json // "[m1,m2,...]": the messages with their commas
  const idBytes = Buffer.from(id)
  const head = 1 + idBytes.length + ((8 - ((1 + idBytes.length) % 8)) % 8) + 8
  const size = head + n * 16 + page.length - 1
  if (flatTail + size > FLAT_CHUNK) {
    flatChunks.push(Buffer.allocUnsafeSlow(FLAT_CHUNK))
    flatTail = 0
  }
  const chunk = flatChunks[flatChunks.length - 1] ?? Buffer.alloc(0)
  const r = chunk.subarray(flatTail, flatTail + size).fill(0)
  r[0] = idBytes.length
  idBytes.copy(r, 1)
  r.writeUInt32LE(n, head - 8)
  let at = head + n * 16
  // The page's messages, split where each ends in '}' and a comma (or the closing bracket): the
  // benchmark's texts hold neither.
  const lengths = []
  for (let i = 0, off = 1; i < n; i++) {
    const end = (i === n - 1 ? page.length - 1 : page.indexOf('},', off, 'latin1') + 1) + 1
    lengths.push(end - off)
    off = end
  }
  for (let i = 0; i < n; i++) {
    r.writeDoubleLE(log.timeAt(i), head + i * 16)
    r.writeUInt32LE(at, head + i * 16 + 8)
    r.writeUInt32LE(lengths[i] ?? 0, head + i * 16 + 12)
    at += lengths[i] ?? 0
  }
  page.copy(r, head + n * 16, 1, page.length - 1)
  r[r.length - 1] = 0x2c // the last message's comma (the page had its closing bracket there)
  const h = fnv(id)
  let slot = h & flatMask
  while (flatLoc[slot] !== 0) slot = (slot + 1) & flatMask
  flatHash[slot] = h
  flatLoc[slot] = (flatChunks.length - 1) * FLAT_CHUNK + flatTail + 1
  flatTail += size
}
const flatOut = Buffer.allocUnsafeSlow(64 * 1024)
/** The first page (up to 10 messages) of chat `id` from the flat layout, as pullchat's JSON array; its length. */
function flatPull(/** @type {string} */ id) {
  const h = fnv(id)
  let slot = h & flatMask
  for (;;) {
    const l = flatLoc[slot] ?? 0
    if (l === 0) return 0
    if (flatHash[slot] === h) {
      const loc = l - 1
      const chunk = flatChunks[Math.floor(loc / FLAT_CHUNK)] ?? Buffer.alloc(0)
      const o = loc % FLAT_CHUNK
      const idLength = chunk[o] ?? 0
      let same = idLength === id.length
      for (let k = 0; same && k < idLength; k++) same = chunk[o + 1 + k] === id.charCodeAt(k)
      if (same) {
        const head = o + 1 + idLength + ((8 - ((1 + idLength) % 8)) % 8) + 8
        const n = chunk.readUInt32LE(head - 8)
        if (n === 0) return 2
        const from = o + chunk.readUInt32LE(head + 8)
        const to = o + chunk.readUInt32LE(head + (n - 1) * 16 + 8) + chunk.readUInt32LE(head + (n - 1) * 16 + 12)
        // Read the run ahead, one byte per cache line, as Slab.touch does, then copy it once.
        let sum = 0
        for (let x = from; x < to; x += 64) sum += chunk[x] ?? 0
        flatOut[0] = 0x5b
        flatOut.set(new Uint8Array(chunk.buffer, chunk.byteOffset + from, to - from), 1)
        flatOut[to - from] = 0x5d
        sink += sum
        return to - from + 1
      }
    }
    slot = (slot + 1) & flatMask
  }
}
// The simulation answers what the store answers.
for (const id of [HOT_CHAT, ...ids.slice(0, 1000)]) {
  const want = store.pull(id, 0, 10, false).json
  const length = flatPull(id)
  if (length !== want.length || !flatOut.subarray(0, length).equals(want)) throw new Error(`the flat layout's page of ${id} differs from the store's`)
}
const flat = { hot: /** @type {number[]} */ ([]), many: /** @type {number[]} */ ([]) }
for (let r = 0; r < rounds + 1; r++) {
  const step = (/** @type {string} */ id) => {
    sink += flatPull(id)
  }
  const hot = time(step, false)
  const many = time(step, true)
  if (r > 0) {
    flat.hot.push(hot)
    flat.many.push(many)
  }
}

const mem = { cacheDependent: memory(4 << 20, true), memoryDependent: memory(256 << 20, true), memoryIndependent: memory(256 << 20, false) }

const result = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, { hotNs: Math.round(median(v.hot)), manyNs: Math.round(median(v.many)) }]))
console.log(`store of ${HOT_MESSAGES} messages in the hot chat and ${messages} in ${chats} chats (${grouped ? 'grouped' : 'interleaved'}), ${cpus()[0]?.model.trim()}`)
console.log(`ns per request, median of rounds (each step includes the ones above it; batched: pulls in batches of ${BATCH}, read ahead first):`)
for (const [k, v] of Object.entries(result)) console.log(`  ${(partNames.get(k) ?? k).padEnd(37)} hot chat ${String(v.hotNs).padStart(5)}   over ${chats} chats ${String(v.manyNs).padStart(5)}`)
const flatResult = { hotNs: Math.round(median(flat.hot)), manyNs: Math.round(median(flat.many)) }
console.log(`  flat layout, simulated (not the store's): pull: hot chat ${String(flatResult.hotNs).padStart(5)}   over ${chats} chats ${String(flatResult.manyNs).padStart(5)}`)
console.log(`memory: a load that waits for the one before, within 4 MB ${mem.cacheDependent.toFixed(0)} ns, within 256 MB ${mem.memoryDependent.toFixed(0)} ns; loads that do not wait, within 256 MB ${mem.memoryIndependent.toFixed(0)} ns each`)
writeFileSync(`${out}.json`, JSON.stringify({ date: new Date().toISOString(), machine: { cores: cpus().length, model: cpus()[0]?.model.trim() }, settings: { messages, chats, layout: grouped ? 'grouped' : 'interleaved', rounds, ops: OPS, batch: BATCH }, steps: result, flatLayoutPullNs: flatResult, memoryNs: mem, sink: sink % 2 }, null, 2) + '\n')
console.log(`written: ${out}.json`)
