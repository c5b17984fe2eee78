// ChatLog and ShardStore against a naive model: a plain array of messages per chat, filtered and
// sliced on every pull. The log's extents (index and bytes together, moved, chained and dropped), the
// shard's shared arena and byte-copy pages must be indistinguishable from it, byte for byte.
//
// Property tests are time-boxed. A failure's message holds fast-check's seed and path; replay it
// with FC_SEED=<seed> FC_PATH=<path> npx tap test/store/chat-log.test.ts

import assert from 'node:assert/strict'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { holds } from '../helpers/fast-check.js'
import { ChatLog, type Page } from '../../src/store/chat-log.js'
import { Arena } from '../../src/store/arena.js'
import { ShardStore, chatHash } from '../../src/store/shard-store.js'

// ---------------------------------------------------------------------------------------------
// The model

interface Msg {
  readonly send_time: number
  readonly text: string
  readonly sender: string
}

interface ModelPage {
  readonly items: readonly Msg[]
  readonly hasMore: boolean
  readonly nextCursor: number
}

const wire = (chat: string, m: Msg) => ({ chat, text: m.text, sender: m.sender, send_time: m.send_time })
const modelJson = (chat: string, items: readonly Msg[]): string => JSON.stringify(items.map((m) => wire(chat, m)))
// Each held message costs its JSON plus one trailing comma.
const heldBytes = (chat: string, m: Msg): number => Buffer.byteLength(JSON.stringify(wire(chat, m))) + 1

class Model {
  readonly chat: string
  msgs: Msg[] = []
  sizes: number[] = []
  lastSendTime = 0
  jsonBytes = 0

  constructor(chat: string) {
    this.chat = chat
  }

  get lastStoredTime(): number {
    return this.msgs.at(-1)?.send_time ?? 0
  }

  nextSendTime(nowUs: number): number {
    this.lastSendTime = Math.max(nowUs, this.lastSendTime + 1)
    return this.lastSendTime
  }

  append(m: Msg): void {
    this.msgs.push(m)
    const size = heldBytes(this.chat, m)
    this.sizes.push(size)
    this.jsonBytes += size
    this.lastSendTime = Math.max(this.lastSendTime, m.send_time)
  }

  dropOldest(n: number): void {
    this.msgs.splice(0, n)
    for (const size of this.sizes.splice(0, n)) this.jsonBytes -= size
  }

  page(cursor: number, limit: number, reverse: boolean): ModelPage {
    if (!reverse) {
      const match = this.msgs.filter((m) => m.send_time >= cursor)
      const items = match.slice(0, limit)
      const last = items.at(-1)
      return { items, hasMore: match.length > items.length, nextCursor: last === undefined ? cursor : last.send_time + 1 }
    }
    const match = cursor === 0 ? this.msgs : this.msgs.filter((m) => m.send_time <= cursor)
    const items = match.slice(Math.max(0, match.length - limit)).reverse()
    const oldest = items.at(-1)
    return { items, hasMore: match.length > items.length, nextCursor: oldest === undefined ? cursor : oldest.send_time - 1 }
  }
}

/** Throws (node:assert) unless `page` is exactly what the model says. */
function assertPage(page: Page, model: Model, cursor: number, limit: number, reverse: boolean): void {
  const want = model.page(cursor, limit, reverse)
  const what = `pull(cursor=${cursor}, limit=${limit}, reverse=${reverse})`
  assert.ok(Buffer.isBuffer(page.json), `${what}: json is a Buffer`)
  // Byte for byte: the store keeps JSON.stringify's output, so it must match it exactly.
  assert.equal(page.json.toString('utf8'), modelJson(model.chat, want.items), `${what}: json bytes`)
  assert.deepEqual(JSON.parse(page.json.toString('utf8')), want.items.map((m) => wire(model.chat, m)), `${what}: parsed json`)
  assert.equal(page.count, want.items.length, `${what}: count`)
  assert.equal(page.hasMore, want.hasMore, `${what}: hasMore`)
  assert.equal(page.nextCursor, want.nextCursor, `${what}: nextCursor`)
}

/** Throws unless the log's counters and index agree with the model. */
function assertState(log: ChatLog, model: Model): void {
  assert.equal(log.count, model.msgs.length, 'count')
  assert.equal(log.jsonBytes, model.jsonBytes, 'jsonBytes')
  assert.ok(log.bytes >= log.count * 24, `index bytes ${log.bytes} hold ${log.count} messages`)
  assert.equal(log.lastStoredTime, model.lastStoredTime, 'lastStoredTime')
  assert.equal(log.lastSendTime, model.lastSendTime, 'lastSendTime')
  for (let i = 0; i < model.msgs.length; i++) assert.equal(log.timeAt(i), model.msgs[i]?.send_time, `timeAt(${i})`)
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c))
const nasty = fc.constantFrom('"', '\\', '\\"', '\u0000', '\n', '\r', '\t', '\u001f', '\u007f', '\u2028', '\u2029', '😀', '👩‍👩‍👧', '\ufeff', '\ufffd', '</script>', '{"a":1},')
const unit = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 2, arbitrary: nasty },
  { weight: 1, arbitrary: loneSurrogate },
)
/** Arbitrary unicode: any code point, JSON's special characters, emoji, lone surrogates; sometimes long. */
const text = fc.oneof(
  { weight: 8, arbitrary: fc.string({ unit, maxLength: 24 }) },
  { weight: 1, arbitrary: fc.string({ unit, minLength: 100, maxLength: 400 }) },
)
const sender = fc.string({ unit, minLength: 1, maxLength: 12 })
const chatId = fc.string({ unit, minLength: 1, maxLength: 16 })

/** A clock reading relative to the last send_time (behind, equal or ahead), or an absolute one. */
type Clock = { readonly rel: number } | { readonly abs: number }
const clock: fc.Arbitrary<Clock> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ rel: fc.integer({ min: -1000, max: 1000 }) }) },
  { weight: 1, arbitrary: fc.record({ abs: fc.constantFrom(0, 1, 1795577316479813) }) },
)
const readClock = (c: Clock, last: number): number => ('abs' in c ? c.abs : Math.max(0, last + c.rel))

/** A cursor: 0, near a held message's send_time (exact, between, beyond the ends), or anywhere. */
type CursorSpec = { readonly zero: true } | { readonly near: number; readonly delta: number } | { readonly abs: number }
const cursor: fc.Arbitrary<CursorSpec> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({ zero: true as const }) },
  { weight: 6, arbitrary: fc.record({ near: fc.nat(), delta: fc.integer({ min: -2, max: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ abs: fc.oneof(fc.nat(5000), fc.constant(Number.MAX_SAFE_INTEGER)) }) },
)
function readCursor(c: CursorSpec, model: Model): number {
  if ('zero' in c) return 0
  if ('abs' in c) return c.abs
  const n = model.msgs.length
  // Indexes n and n+1 stand for "past the newest".
  const i = c.near % (n + 2)
  const base = i < n ? (model.msgs[i]?.send_time ?? 0) : model.lastSendTime + (i - n)
  return Math.max(0, base + c.delta)
}

const limit = fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 50 }))

type Op =
  | { readonly op: 'send'; readonly clock: Clock; readonly text: string; readonly sender: string }
  | { readonly op: 'assign'; readonly clock: Clock }
  | { readonly op: 'recover'; readonly gap: number; readonly text: string; readonly sender: string }
  | { readonly op: 'pull'; readonly cursor: CursorSpec; readonly limit: number; readonly reverse: boolean }
  | { readonly op: 'drop'; readonly n: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  // A send: the shard assigns max(now, last + 1), then appends once durable.
  { weight: 8, arbitrary: fc.record({ op: fc.constant('send' as const), clock, text, sender }) },
  // A send_time handed out whose message never became durable.
  { weight: 1, arbitrary: fc.record({ op: fc.constant('assign' as const), clock }) },
  // Recovery: appends with send_times read back from the log.
  { weight: 2, arbitrary: fc.record({ op: fc.constant('recover' as const), gap: fc.integer({ min: 1, max: 1_000_000 }), text, sender }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('pull' as const), cursor, limit, reverse: fc.boolean() }) },
  // Retention; n is taken modulo count + 1.
  { weight: 2, arbitrary: fc.record({ op: fc.constant('drop' as const), n: fc.nat(40) }) },
)

/** Runs one op on both the log and the model, throwing on any disagreement. */
function step(log: ChatLog, model: Model, o: Op): void {
  switch (o.op) {
    case 'send':
    case 'assign': {
      const now = readClock(o.clock, model.lastSendTime)
      const before = log.lastSendTime
      const st = log.nextSendTime(now)
      assert.equal(st, model.nextSendTime(now), `nextSendTime(${now})`)
      assert.ok(st > before, `nextSendTime(${now}) = ${st} is not above ${before}`)
      if (o.op === 'send') {
        log.append(st, o.text, o.sender)
        model.append({ send_time: st, text: o.text, sender: o.sender })
      }
      break
    }
    case 'recover': {
      const st = model.lastStoredTime + o.gap
      log.append(st, o.text, o.sender)
      model.append({ send_time: st, text: o.text, sender: o.sender })
      break
    }
    case 'pull': {
      const c = readCursor(o.cursor, model)
      assertPage(log.pull(c, o.limit, o.reverse), model, c, o.limit, o.reverse)
      break
    }
    case 'drop': {
      const n = o.n % (model.msgs.length + 1)
      log.dropOldest(n)
      model.dropOldest(n)
      break
    }
  }
  assertState(log, model)
}

/** Every cursor worth asking about: 0, each send_time and its neighbours, beyond both ends. */
function interestingCursors(model: Model): number[] {
  const set = new Set<number>([0, 1, model.lastSendTime + 1, model.lastSendTime + 2, Number.MAX_SAFE_INTEGER])
  for (const m of model.msgs) for (const d of [-1, 0, 1]) set.add(Math.max(0, m.send_time + d))
  return [...set]
}

// ---------------------------------------------------------------------------------------------
// Examples

const EXAMPLE_CHAT = 'alice:bob'
const EXAMPLE = [
  { send_time: 1000, text: 'hi', sender: 'alice' },
  { send_time: 2000, text: 'a "quote" and a \\ backslash', sender: 'bob' },
  { send_time: 3000, text: 'émoji 😀\nnew line', sender: 'alice' },
]
const M1 = '{"chat":"alice:bob","text":"hi","sender":"alice","send_time":1000}'
const M2 = '{"chat":"alice:bob","text":"a \\"quote\\" and a \\\\ backslash","sender":"bob","send_time":2000}'
const M3 = '{"chat":"alice:bob","text":"émoji 😀\\nnew line","sender":"alice","send_time":3000}'

function exampleLog(): ChatLog {
  const log = new ChatLog(EXAMPLE_CHAT)
  for (const m of EXAMPLE) log.append(m.send_time, m.text, m.sender)
  return log
}

const summary = (p: Page) => ({ json: p.json.toString('utf8'), count: p.count, hasMore: p.hasMore, nextCursor: p.nextCursor })

t.test('a 3-message chat: the exact JSON of every page', async (t) => {
  const log = exampleLog()
  t.equal(log.count, 3)
  t.equal(log.jsonBytes, Buffer.byteLength(M1) + Buffer.byteLength(M2) + Buffer.byteLength(M3) + 3)
  t.equal(log.lastStoredTime, 3000)
  t.equal(log.lastSendTime, 3000)

  t.same(summary(log.pull(0, 10, false)), { json: `[${M1},${M2},${M3}]`, count: 3, hasMore: false, nextCursor: 3001 }, 'forward, all')
  t.same(summary(log.pull(0, 10, true)), { json: `[${M3},${M2},${M1}]`, count: 3, hasMore: false, nextCursor: 999 }, 'reverse from the newest')
  t.same(JSON.parse(log.pull(0, 10, false).json.toString()), EXAMPLE.map((m) => ({ chat: EXAMPLE_CHAT, ...m })), 'parses back to the messages')

  t.same(summary(log.pull(0, 2, false)), { json: `[${M1},${M2}]`, count: 2, hasMore: true, nextCursor: 2001 }, 'forward page 1')
  t.same(summary(log.pull(2001, 2, false)), { json: `[${M3}]`, count: 1, hasMore: false, nextCursor: 3001 }, 'forward page 2')
  t.same(summary(log.pull(3001, 2, false)), { json: '[]', count: 0, hasMore: false, nextCursor: 3001 }, 'forward past the newest')
  t.same(summary(log.pull(2000, 1, false)), { json: `[${M2}]`, count: 1, hasMore: true, nextCursor: 2001 }, 'forward cursor is inclusive')

  t.same(summary(log.pull(0, 2, true)), { json: `[${M3},${M2}]`, count: 2, hasMore: true, nextCursor: 1999 }, 'reverse page 1')
  t.same(summary(log.pull(1999, 2, true)), { json: `[${M1}]`, count: 1, hasMore: false, nextCursor: 999 }, 'reverse page 2')
  t.same(summary(log.pull(999, 2, true)), { json: '[]', count: 0, hasMore: false, nextCursor: 999 }, 'reverse before the oldest')
  t.same(summary(log.pull(2000, 5, true)), { json: `[${M2},${M1}]`, count: 2, hasMore: false, nextCursor: 999 }, 'reverse cursor is inclusive')
  t.same(summary(log.pull(2500, 1, true)), { json: `[${M2}]`, count: 1, hasMore: true, nextCursor: 1999 }, 'reverse cursor between messages')
})

t.test('dropOldest: pages start at the oldest held message', async (t) => {
  const log = exampleLog()
  log.dropOldest(1)
  t.equal(log.count, 2)
  t.equal(log.jsonBytes, Buffer.byteLength(M2) + Buffer.byteLength(M3) + 2)
  t.same(summary(log.pull(0, 10, false)), { json: `[${M2},${M3}]`, count: 2, hasMore: false, nextCursor: 3001 })
  t.same(summary(log.pull(1000, 10, true)), { json: '[]', count: 0, hasMore: false, nextCursor: 1000 })
  log.dropOldest(2)
  t.equal(log.count, 0)
  t.equal(log.jsonBytes, 0)
  t.equal(log.lastStoredTime, 0)
  t.equal(log.lastSendTime, 3000, 'send_times keep increasing after everything is dropped')
  t.same(summary(log.pull(0, 10, true)), { json: '[]', count: 0, hasMore: false, nextCursor: 0 })
  t.same(summary(log.pull(0, 10, false)), { json: '[]', count: 0, hasMore: false, nextCursor: 0 })
  t.equal(log.nextSendTime(5), 3001)
})

t.test('nextSendTime is max(now, last + 1), strictly increasing when the clock steps back', async (t) => {
  const log = new ChatLog('c')
  t.equal(log.nextSendTime(100), 100)
  t.equal(log.nextSendTime(50), 101, 'clock went back')
  t.equal(log.nextSendTime(101), 102, 'clock stood still')
  t.equal(log.nextSendTime(500), 500, 'clock jumped ahead')
  t.equal(log.count, 0, 'assigning stores nothing')
  log.append(500, 'x', 's')
  log.append(700, 'recovered', 's')
  t.equal(log.lastSendTime, 700, 'an append above lastSendTime raises it')
  t.equal(log.nextSendTime(0), 701)
})

t.test('bad calls are broken invariants and throw', async (t) => {
  const log = exampleLog()
  const assertion = { code: 'ERR_ASSERTION' }
  t.throws(() => log.append(3000, 'x', 's'), { ...assertion, message: 'send_time must increase' }, 'equal send_time')
  t.throws(() => log.append(2999, 'x', 's'), { ...assertion, message: 'send_time must increase' }, 'older send_time')
  t.throws(() => log.append(3000.5, 'x', 's'), { ...assertion, message: 'send_time must increase' }, 'not an integer')
  t.throws(() => log.pull(0, 0, false), assertion, 'limit 0')
  t.throws(() => log.dropOldest(4), assertion, 'dropping more than held')
  t.throws(() => log.dropOldest(-1), assertion, 'dropping a negative count')
  t.throws(() => log.timeAt(3), { ...assertion, message: 'index out of range' })
  t.throws(() => log.timeAt(-1), { ...assertion, message: 'index out of range' })
  t.equal(log.count, 3, 'nothing changed')
  t.equal(log.pull(0, 10, false).json.toString(), `[${M1},${M2},${M3}]`)
})

t.test('a small chat moves to a larger extent when full, leaving dropped messages behind', async (t) => {
  const log = new ChatLog('c')
  const model = new Model('c')
  const add = (st: number, txt: string): void => {
    log.append(st, txt, 's')
    model.append({ send_time: st, text: txt, sender: 's' })
  }
  const check = (): void => {
    assertState(log, model)
    for (const c of interestingCursors(model)) for (const l of [1, 2, 10]) for (const r of [false, true]) assertPage(log.pull(c, l, r), model, c, l, r)
  }
  // Four ~110-byte messages: the first extent (room for two) moves once.
  for (let i = 1; i <= 4; i++) add(i, String(i).repeat(60))
  check()
  const bytes = log.bytes
  log.dropOldest(3)
  model.dropOldest(3)
  check()
  // Two more, after three dropped: the extent has room again.
  add(5, '5'.repeat(60))
  add(6, '6'.repeat(60))
  check()
  t.equal(log.bytes, bytes, 'the extent did not grow')
  t.equal(log.count, 3)
  t.equal(log.pull(0, 10, false).json.toString(), modelJson('c', model.msgs))
  // Now it has to grow; one message of 2000 bytes.
  add(7, '7'.repeat(60))
  add(8, '\u00e9'.repeat(1000))
  check()
  t.ok(log.bytes > bytes, `grew from ${bytes} to ${log.bytes}`)
  t.same(
    JSON.parse(log.pull(0, 2, true).json.toString()).map((m: { send_time: number }) => m.send_time),
    [8, 7],
  )
})

t.test('large chats chain extents, and drop whole extents from the front', async (t) => {
  const log = new ChatLog('big')
  const model = new Model('big')
  let st = 0
  const add = (n: number): void => {
    for (let i = 0; i < n; i++) {
      st += 1 + (i % 3)
      const txt = `m${st}`.repeat(1 + (st % 4))
      log.append(st, txt, st % 2 === 0 ? 'a' : 'b')
      model.append({ send_time: st, text: txt, sender: st % 2 === 0 ? 'a' : 'b' })
    }
  }
  add(3000) // past RELOCATE_BYTES_MAX: a chain of extents
  t.ok(log.extents > 1, `${log.extents} extents`)
  const extents = log.extents
  log.dropOldest(1700)
  model.dropOldest(1700)
  t.ok(log.extents < extents, `dropping the oldest freed extents (${extents} -> ${log.extents})`)
  add(2500)
  log.dropOldest(10)
  model.dropOldest(10)
  add(3000)
  assertState(log, model)
  t.ok(log.bytes >= 16 * 6790 + log.jsonBytes, `extents of ${log.bytes} bytes hold ${log.jsonBytes} bytes of JSON and an index`)
  const times = model.msgs.map((m) => m.send_time)
  for (const c of [0, 1, times[0] as number, times[1] as number, times[2000] as number, (times.at(-1) as number) - 1, times.at(-1) as number, st + 1]) {
    for (const l of [1, 7, 1000]) for (const r of [false, true]) assertPage(log.pull(c, l, r), model, c, l, r)
  }
  t.equal(log.count, 6790)
})

t.test('pages across extents, and messages with blocks of their own', async (t) => {
  const log = new ChatLog('wide')
  const model = new Model('wide')
  let st = 0
  const add = (txt: string): void => {
    st++
    log.append(st, txt, 's')
    model.append({ send_time: st, text: txt, sender: 's' })
  }
  // 50-60 KB messages: pages cross extents; every 7th is 200 KB, and one is larger than a chunk
  // (a block of its own).
  for (let i = 0; i < 60; i++) add(i === 30 ? 'c'.repeat(1_100_000) : i % 7 === 6 ? 'b'.repeat(200_000) : String(i % 10).repeat(50_000 + i * 150))
  for (const c of [0, 1, 17, 18, 19, 40, st]) for (const l of [1, 5, 25, 100]) for (const r of [false, true]) assertPage(log.pull(c, l, r), model, c, l, r)
  log.dropOldest(30)
  model.dropOldest(30)
  for (let i = 0; i < 20; i++) add('é'.repeat(30_000 + i)) // two bytes per unit
  assertState(log, model)
  for (const c of [0, 31, 45, 60, st]) for (const l of [1, 7, 100]) for (const r of [false, true]) assertPage(log.pull(c, l, r), model, c, l, r)
  t.equal(log.count, 50)
})

t.test('a chat emptied by retention, then sent a message larger than its extent, moves instead of chaining', async (t) => {
  // Found by the chained-extents property: chaining after an empty extent left it first in the
  // chain, and a reverse pull before the first message came back as "]".
  const log = new ChatLog('e')
  const model = new Model('e')
  log.append(1, 'x'.repeat(5000), 'a')
  model.append({ send_time: 1, text: 'x'.repeat(5000), sender: 'a' })
  log.dropOldest(1)
  model.dropOldest(1)
  log.append(2, 'y'.repeat(20_000), 'b')
  model.append({ send_time: 2, text: 'y'.repeat(20_000), sender: 'b' })
  t.equal(log.extents, 1)
  for (const c of interestingCursors(model)) for (const r of [false, true]) assertPage(log.pull(c, 1, r), model, c, 1, r)
  t.equal(log.pull(1, 1, true).json.toString(), '[]')
})

// ---------------------------------------------------------------------------------------------
// Properties

t.test('ChatLog behaves like the array model under any sequence of sends, pulls and drops', (t) =>
  holds(
    t,
    fc.property(chatId, fc.array(op, { maxLength: 250, size: 'max' }), (chat, ops) => {
      const log = new ChatLog(chat)
      const model = new Model(chat)
      for (const o of ops) step(log, model, o)
      // Finally, every interesting cursor in both directions, with a small and a large limit.
      for (const c of interestingCursors(model)) {
        for (const l of [1, 3, 50]) {
          assertPage(log.pull(c, l, false), model, c, l, false)
          assertPage(log.pull(c, l, true), model, c, l, true)
        }
      }
    }),
  ),
)

t.test('long retention runs: the extent refills and moves many times', (t) =>
  holds(
    t,
    // Steady state: bursts of sends, then drops down to a small window, repeatedly.
    fc.property(
      fc.array(fc.record({ sends: fc.integer({ min: 1, max: 12 }), keep: fc.nat(6), texts: fc.array(text, { minLength: 12, maxLength: 12 }) }), { minLength: 1, maxLength: 40, size: 'max' }),
      fc.integer({ min: 1, max: 50 }),
      (rounds, l) => {
        const log = new ChatLog('r')
        const model = new Model('r')
        let now = 1
        for (const r of rounds) {
          for (let i = 0; i < r.sends; i++) step(log, model, { op: 'send', clock: { abs: now++ }, text: r.texts[i] ?? '', sender: 's' })
          const n = Math.max(0, model.msgs.length - r.keep)
          step(log, model, { op: 'drop', n })
          for (const c of [0, model.msgs[0]?.send_time ?? 0, model.lastStoredTime]) {
            assertPage(log.pull(c, l, false), model, c, l, false)
            assertPage(log.pull(c, l, true), model, c, l, true)
          }
        }
      },
    ),
  ),
)

t.test('chats past RELOCATE_BYTES_MAX chain extents: the same pages under sends, pulls and drops', (t) => {
  let chained = 0
  let freed = 0
  // Texts of 1-30 KB: a few sends take a chat past the size at which it stops moving.
  // Mixed with short ones, so that extents hold several messages and pages fall within one or across two.
  const longText = fc.oneof(
    { weight: 1, arbitrary: fc.tuple(text, fc.integer({ min: 1000, max: 30_000 })).map(([s, k]) => s + 'x'.repeat(k)) },
    { weight: 2, arbitrary: text },
  )
  const longOp: fc.Arbitrary<Op> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ op: fc.constant('send' as const), clock, text: longText, sender }) },
    { weight: 6, arbitrary: fc.record({ op: fc.constant('pull' as const), cursor, limit, reverse: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('drop' as const), n: fc.nat(6) }) },
  )
  return holds(
    t,
    fc.property(fc.array(longOp, { maxLength: 100, size: 'max' }), (ops) => {
      const log = new ChatLog('long')
      const model = new Model('long')
      let most = 0
      for (const o of ops) {
        const before = log.extents
        step(log, model, o)
        most = Math.max(most, log.extents)
        if (o.op === 'drop' && log.extents < before) freed++
      }
      if (most > 1) chained++
      for (const c of interestingCursors(model)) {
        for (const l of [1, 3, 50]) {
          assertPage(log.pull(c, l, false), model, c, l, false)
          assertPage(log.pull(c, l, true), model, c, l, true)
        }
      }
    }),
  ).then(() => {
    t.ok(chained > 0, `${chained} runs chained extents`)
    t.ok(freed > 0, `${freed} drops freed a chat's first extent`)
  })
})

/** A fresh log and model holding `count` messages with send_times 1 + gaps. */
function filled(gaps: readonly number[], texts: readonly string[]): { log: ChatLog; model: Model; append: (text: string) => void } {
  const log = new ChatLog('p')
  const model = new Model('p')
  let texti = 0
  const append = (txt: string, gap = 1): void => {
    const st = model.lastSendTime + gap
    log.append(st, txt, 'u')
    model.append({ send_time: st, text: txt, sender: 'u' })
  }
  for (const g of gaps) append(texts[texti++ % Math.max(1, texts.length)] ?? '', g)
  return { log, model, append: (txt) => append(txt) }
}

const pagingCase = fc.record({
  gaps: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 120, size: 'max' }),
  texts: fc.array(text, { minLength: 1, maxLength: 8 }),
  limit,
  // Messages appended between one page and the next (polling while the chat is live).
  between: fc.array(fc.nat(5), { maxLength: 30, size: 'max' }),
})

t.test('forward paging with nextCursor visits every message exactly once, also while messages arrive', (t) =>
  holds(
    t,
    fc.property(pagingCase, fc.nat(4), ({ gaps, texts, limit, between }, late) => {
      const { log, model, append } = filled(gaps, texts)
      const seen: number[] = []
      let c = 0
      for (let pages = 0; ; pages++) {
        assert.ok(pages <= 2 * model.msgs.length + 2, `paging does not end after ${pages} pages`)
        const page = log.pull(c, limit, false)
        assertPage(page, model, c, limit, false)
        const items = JSON.parse(page.json.toString()) as Array<{ send_time: number }>
        seen.push(...items.map((m) => m.send_time))
        c = page.nextCursor
        for (let i = 0; i < (between[pages] ?? 0); i++) append(`new ${pages}.${i}`)
        if (!page.hasMore && (between[pages] ?? 0) === 0) break
      }
      assert.deepEqual(seen, model.msgs.map((m) => m.send_time), 'visited every message once, in order')
      // Polling on: the next poll returns exactly what arrived since.
      for (let i = 0; i < late; i++) append(`late ${i}`)
      const page = log.pull(c, 50, false)
      assert.deepEqual((JSON.parse(page.json.toString()) as Msg[]).map((m) => m.text), Array.from({ length: late }, (_, i) => `late ${i}`))
      assert.equal(page.hasMore, false)
    }),
  ),
)

t.test('reverse paging with nextCursor visits every message exactly once, newest first, also while messages arrive', (t) =>
  holds(
    t,
    fc.property(pagingCase, ({ gaps, texts, limit, between }) => {
      const { log, model, append } = filled(gaps, texts)
      const expected = model.msgs.map((m) => m.send_time).reverse()
      const seen: number[] = []
      let c = 0
      for (let pages = 0; ; pages++) {
        assert.ok(pages <= expected.length + 1, `paging does not end after ${pages} pages`)
        const page = log.pull(c, limit, true)
        assertPage(page, model, c, limit, true)
        seen.push(...(JSON.parse(page.json.toString()) as Msg[]).map((m) => m.send_time))
        if (!page.hasMore) break
        c = page.nextCursor
        // Newer messages arriving meanwhile are above the cursor and must not show up.
        for (let i = 0; i < (between[pages] ?? 0); i++) append(`new ${pages}.${i}`)
      }
      assert.deepEqual(seen, expected, 'visited every message once, newest first')
    }),
  ),
)

// ---------------------------------------------------------------------------------------------
// ShardStore

const EMPTY = { json: '[]', count: 0, hasMore: false, nextCursor: 0 }

t.test('ShardStore: unknown chats, separate chats, stats', async (t) => {
  const store = new ShardStore()
  t.same({ ...store.stats(), bytes: 0 }, { chats: 0, messages: 0, jsonBytes: 0, bytes: 0 })
  t.ok(store.stats().bytes <= 64 * 1024, `an empty store holds its table only (${store.stats().bytes} bytes)`)
  t.same(summary(store.pull('nobody', 0, 10, false)), EMPTY)
  t.same(summary(store.pull('nobody', 42, 10, true)), { ...EMPTY, nextCursor: 42 })
  t.equal(store.get('nobody'), undefined, 'pulling does not create a chat')
  t.equal(store.stats().chats, 0)

  t.equal(store.chatLog('a:b').nextSendTime(1000), 1000)
  t.equal(store.chatLog('a:b').nextSendTime(900), 1001)
  t.equal(store.chatLog('c:d').nextSendTime(900), 900, 'each chat has its own clock')
  store.append('a:b', 1001, 'to a:b', 'a')
  store.append('c:d', 900, 'to c:d', 'c')
  store.append('c:d', 901, 'again', 'd')
  t.equal(store.pull('a:b', 0, 10, false).json.toString(), '[{"chat":"a:b","text":"to a:b","sender":"a","send_time":1001}]')
  t.equal(
    store.pull('c:d', 0, 10, true).json.toString(),
    '[{"chat":"c:d","text":"again","sender":"d","send_time":901},{"chat":"c:d","text":"to c:d","sender":"c","send_time":900}]',
  )
  t.equal(store.get('a:b')?.count, 1)
  t.equal(store.get('c:d')?.count, 2)
  const stats = store.stats()
  t.equal(stats.chats, 2)
  t.equal(stats.messages, 3)
  t.equal(stats.jsonBytes, (store.get('a:b')?.jsonBytes ?? 0) + (store.get('c:d')?.jsonBytes ?? 0))
  t.ok(stats.bytes >= stats.jsonBytes)
  t.same(summary(store.pull('A:B', 7, 10, false)), { ...EMPTY, nextCursor: 7 }, 'chat ids are case sensitive')
})

t.test('ShardStore: chats that retention empties give their memory back', async (t) => {
  const store = new ShardStore()
  for (let c = 0; c < 1000; c++) for (let i = 1; i <= 40; i++) store.append(`c${c}`, i, 'x'.repeat(100), 'u')
  const full = store.stats().bytes
  t.ok(full > 40 * 1000 * 100, `${full} bytes held for 40k messages`)
  for (let c = 0; c < 1000; c++) store.dropOldest(`c${c}`, 40)
  const empty = store.stats()
  t.equal(empty.messages, 0)
  t.ok(empty.bytes <= 64 * 1024, `${empty.bytes} bytes held once every chat is empty: the table only`)
  t.same(summary(store.pull('c1', 0, 10, false)), EMPTY)
  store.append('c1', 41, 'again', 'u')
  t.equal(store.pull('c1', 0, 10, false).json.toString(), '[{"chat":"c1","text":"again","sender":"u","send_time":41}]')
  t.equal(store.pull('c1', 0, 10, true).json.toString(), '[{"chat":"c1","text":"again","sender":"u","send_time":41}]')
})

/**
 * Two ids, `${a}${i}` and `${b}${j}`, with the same table hash (chatHash): a pull of either finds
 * the other's row first, or second, depending on which chat came first, and must tell them apart.
 */
function sameHash(a: string, b: string): [string, string] {
  const seen = new Map<number, string>()
  for (let i = 0; i < 100_000; i++) seen.set(chatHash(`${a}${i}`), `${a}${i}`)
  for (let j = 0; ; j++) {
    const other = seen.get(chatHash(`${b}${j}`))
    if (other !== undefined) return [other, `${b}${j}`]
  }
}
// Ids whose bytes a pull can compare with a message's (plain), and ids it cannot: JSON escapes a
// quote, and UTF-8 spells 'é' in two bytes (chat-log.ts, extentIsChat).
const [PLAIN_A, PLAIN_B] = sameHash('p', 'r')
const [PLAIN_C, QUOTED] = sameHash('k', 'q"')
const [ACCENTED, PLAIN_D] = sameHash('é', 'w')
const CHATS = ['a:b', 'b:c', 'room', '😀:\ud800', 'x"y\\z', 'tab\there', PLAIN_A, PLAIN_B, QUOTED, ACCENTED]
const UNKNOWN = ['nobody', '', 'A:B', 'a:b ', PLAIN_C, PLAIN_D]

t.test('ShardStore: chats whose ids hash alike each get their own pages, whether a pull can read their ids in the bytes or not', async (t) => {
  const pairs = [
    [PLAIN_A, PLAIN_B],
    [PLAIN_B, PLAIN_A],
    [QUOTED, PLAIN_C],
    [PLAIN_C, QUOTED],
    [ACCENTED, PLAIN_D],
    [PLAIN_D, ACCENTED],
  ]
  for (const [x = '', y = ''] of pairs) {
    t.equal(chatHash(x), chatHash(y), `${x} and ${y} hash alike`)
    const store = new ShardStore()
    const json = (chat: string, text: string, st: number) => JSON.stringify([{ chat, text, sender: 'u', send_time: st }])
    store.append(x, 1, 'to x', 'u')
    t.same(summary(store.pull(y, 0, 10, false)), EMPTY, `${y}: the row of ${x} is not its own`)
    store.append(y, 2, 'to y', 'u')
    t.equal(store.pull(x, 0, 10, false).json.toString(), json(x, 'to x', 1))
    t.equal(store.pull(y, 0, 10, true).json.toString(), json(y, 'to y', 2), `${y}: found past ${x}'s row`)
    store.dropOldest(x, 1)
    t.same(summary(store.pull(x, 0, 10, false)), EMPTY, `${x} emptied by retention (its extent freed)`)
    t.equal(store.pull(y, 0, 10, false).json.toString(), json(y, 'to y', 2), `${y} still found`)
  }
})

type StoreOp =
  | { readonly op: 'send'; readonly chat: number; readonly clock: Clock; readonly text: string; readonly sender: string }
  | { readonly op: 'assign'; readonly chat: number; readonly clock: Clock }
  | { readonly op: 'pull'; readonly chat: number; readonly cursor: CursorSpec; readonly limit: number; readonly reverse: boolean }
  | { readonly op: 'drop'; readonly chat: number; readonly n: number }
  | { readonly op: 'prefetch'; readonly chats: readonly number[] }

const chatIndex = fc.nat(CHATS.length + UNKNOWN.length - 1)
const storeOp: fc.Arbitrary<StoreOp> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('send' as const), chat: fc.nat(CHATS.length - 1), clock, text, sender }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('assign' as const), chat: fc.nat(CHATS.length - 1), clock }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('pull' as const), chat: chatIndex, cursor, limit, reverse: fc.boolean() }) },
  // Chats share the shard's arena: dropping one chat's oldest messages must not disturb the others.
  { weight: 1, arbitrary: fc.record({ op: fc.constant('drop' as const), chat: chatIndex, n: fc.nat(4) }) },
  // A hint before pulls (a batch of them, in-process.ts): it must change nothing.
  { weight: 1, arbitrary: fc.record({ op: fc.constant('prefetch' as const), chats: fc.array(chatIndex, { maxLength: 8 }) }) },
)

t.test('ShardStore keeps chats separate and counts them (model per chat)', (t) =>
  holds(
    t,
    fc.property(fc.array(storeOp, { maxLength: 200, size: 'max' }), (ops) => {
      const store = new ShardStore()
      const models = new Map<string, Model>()
      const all = [...CHATS, ...UNKNOWN]
      const modelOf = (chat: string): Model => {
        let m = models.get(chat)
        if (m === undefined) models.set(chat, (m = new Model(chat)))
        return m
      }
      let messages = 0
      for (const o of ops) {
        const chat = all[o.chat] ?? ''
        if (o.op === 'pull') {
          const model = models.get(chat) ?? new Model(chat)
          const c = readCursor(o.cursor, model)
          assertPage(store.pull(chat, c, o.limit, o.reverse), model, c, o.limit, o.reverse)
        } else if (o.op === 'prefetch') {
          const chats = o.chats.map((c) => all[c] ?? '')
          assert.ok(Number.isFinite(store.prefetch([...chats, 'not pulled'], chats.length)), 'prefetch reads numbers')
        } else if (o.op === 'drop') {
          store.dropOldest(chat, o.n)
          const model = models.get(chat)
          const n = Math.min(o.n, model?.msgs.length ?? 0)
          model?.dropOldest(n)
          messages -= n
        } else {
          const model = modelOf(chat)
          const now = readClock(o.clock, model.lastSendTime)
          const st = store.chatLog(chat).nextSendTime(now)
          assert.equal(st, model.nextSendTime(now), `assign(${JSON.stringify(chat)}, ${now})`)
          if (o.op === 'send') {
            store.append(chat, st, o.text, o.sender)
            model.append({ send_time: st, text: o.text, sender: o.sender })
            messages++
          }
        }
        const stats = store.stats()
        assert.equal(stats.chats, models.size, 'stats.chats')
        assert.equal(stats.messages, messages, 'stats.messages')
        let jsonBytes = 0
        for (const m of models.values()) jsonBytes += m.jsonBytes
        assert.equal(stats.jsonBytes, jsonBytes, 'stats.jsonBytes')
        assert.ok(stats.bytes >= stats.jsonBytes, 'stats.bytes >= stats.jsonBytes')
      }
      for (const chat of UNKNOWN) store.dropOldest(chat, 1)
      for (const chat of UNKNOWN) assert.equal(store.get(chat), undefined, `${JSON.stringify(chat)} was never created`)
      for (const [chat, model] of models) {
        const log = store.get(chat)
        assert.ok(log !== undefined)
        assertState(log, model)
        assertPage(store.pull(chat, 0, 1000, false), model, 0, 1000, false)
      }
    }),
  ),
)

t.test('pullView: the same pages as pull, written into one buffer that the next pullView reuses', async (t) => {
  const { Shard } = await import('../../src/store/shard.js')
  const shard = new Shard(0)
  const texts = Array.from({ length: 300 }, (_, i) => `m${i} ${'x'.repeat(i % 97)}`)
  for (const [i, text] of texts.entries()) shard.store.append(i % 3 === 0 ? 'a:b' : 'room', 1_000_000 + i, text, 'a')
  const reqs = [
    { chat: 'a:b', cursor: 0, limit: 10, reverse: false },
    { chat: 'room', cursor: 0, limit: 1000, reverse: true },
    { chat: 'room', cursor: 1_000_100, limit: 7, reverse: false },
    { chat: 'nobody', cursor: 5, limit: 3, reverse: false },
  ]
  for (const req of reqs) {
    const owned = shard.pull(req)
    const view = shard.pullView(req)
    t.same({ ...view, messages: Buffer.from(view.messages).toString() }, { ...owned, messages: Buffer.from(owned.messages).toString() }, JSON.stringify(req))
  }
  const first = shard.pullView(reqs[0] as (typeof reqs)[number])
  const before = Buffer.from(first.messages).toString()
  shard.pullView(reqs[1] as (typeof reqs)[number])
  t.not(Buffer.from(first.messages).toString(), before, 'a view is overwritten by the next pullView')
  const owned = shard.pull(reqs[0] as (typeof reqs)[number])
  shard.pullView(reqs[1] as (typeof reqs)[number])
  t.equal(Buffer.from(owned.messages).toString(), before, 'pull returns bytes of its own')
})

t.test('prefetchTails reads only bytes that appends have written', async (t) => {
  // A read of a page never written maps the kernel's zero page, and the append's write then faults
  // again and flushes every other thread's TLB (docs/performance.md, "Recovery"). So: fill what no
  // append wrote with a poison; what prefetchTails reads must not change.
  const arena = new Arena()
  const logs: ChatLog[] = []
  for (let c = 0; c < 40; c++) {
    const log = new ChatLog(`chat${c}`, arena)
    // From one message to past a first move and into chained extents.
    for (let i = 1; i <= c * c; i++) log.append(i, 'x'.repeat(10 + ((c * i) % 90)), 'me')
    if (c % 5 === 4) log.dropOldest(log.count)
    logs.push(log)
  }
  const before = ChatLog.prefetchTails(logs, logs.length)
  // Each extent's free middle: after its bytes, before its index (layout at the top of chat-log.ts).
  let poisoned = 0
  for (let slot = 0; slot < arena.bufs.length; slot++) {
    const u = arena.u32[slot] as Uint32Array
    for (const log of logs) {
      const extents: number[] = []
      const hps: number[] = []
      log.extentList(extents, hps)
      extents.forEach((s, k) => {
        if (s !== slot) return
        const hp = hps[k] as number
        const w = hp >> 2
        const start = hp + 32 - (u[w + 5] as number)
        const from = start + (u[w + 4] as number)
        const to = hp - (u[w + 2] as number) * 16
        ;(arena.bufs[slot] as Buffer).fill(0xa5, from, to)
        poisoned += to - from
      })
    }
  }
  t.ok(poisoned > 1000, `poisoned ${poisoned} free bytes`)
  t.equal(ChatLog.prefetchTails(logs, logs.length), before, 'the same words read')
  // And the appends that follow are unaffected.
  for (const log of logs) log.append(1e9, 'after', 'me')
  t.equal(logs[3]?.pull(0, 1, true).json.toString(), '[{"chat":"chat3","text":"after","sender":"me","send_time":1000000000}]')
})
