// Reply bodies written as bytes must be exactly what JSON.stringify would have written.

import fc from 'fast-check'
import t from 'tap'
import { holds } from '../helpers/fast-check.js'
import { writeUint } from '../../src/digits.js'
import { pullBody, sendBody } from '../../src/http/reply-body.js'

const digits = (n: number): string => {
  const out = Buffer.alloc(16)
  return out.subarray(0, writeUint(out, 0, n)).toString('latin1')
}

t.test('writeUint writes what String() does', async (t) => {
  // Every length, the edges of each half, and integers next to multiples of 10^8, where n / 1e8
  // would round across an integer if the division were less exact.
  const edges = [0, 1, 9, 10, 99, 100, 99_999_999, 100_000_000, 100_000_001, 199_999_999, 1795577316479813, Number.MAX_SAFE_INTEGER]
  for (let k = 1; k < 90_071_992; k = k * 3 + 1) edges.push(k * 1e8 - 1, k * 1e8, k * 1e8 + 1)
  for (let p = 1; p <= 1e15; p *= 10) edges.push(p - 1, p)
  for (const n of edges) if (n <= Number.MAX_SAFE_INTEGER) t.equal(digits(n), String(n), String(n))
  await holds(t, fc.property(fc.maxSafeNat(), (n) => digits(n) === String(n)), { numRuns: 20_000 })
  await holds(t, fc.property(fc.integer({ min: 1, max: 90_071_992 }), fc.integer({ min: -3, max: 3 }), (k, d) => {
    const n = k * 1e8 + d
    return n > Number.MAX_SAFE_INTEGER || digits(n) === String(n)
  }))
})

t.test('writeUint refuses what is not a safe non-negative integer', async (t) => {
  for (const n of [-1, 0.5, Number.MAX_SAFE_INTEGER + 1, NaN, Infinity]) t.throws(() => writeUint(Buffer.alloc(32), 0, n), RangeError, String(n))
})

t.test('pullBody is the page object as JSON', async (t) => {
  const messages = JSON.stringify([{ chat: 'a:b', text: 'hé "quoted" 😀', sender: 'a', send_time: 1795577316479813 }])
  for (const [hasMore, nextCursor] of [[true, 1795577316479814], [false, 0], [false, Number.MAX_SAFE_INTEGER]] as const) {
    const body = pullBody(Buffer.from(messages), hasMore, nextCursor).toString()
    t.equal(body, JSON.stringify({ messages: JSON.parse(messages), has_more: hasMore, next_cursor: nextCursor }))
  }
  t.equal(pullBody(Buffer.from('[]'), false, 7).toString(), '{"messages":[],"has_more":false,"next_cursor":7}')
})

t.test('sendBody is the send reply as JSON, whatever the chat id holds', async (t) => {
  await holds(t, fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.maxSafeNat(), (chat, sendTime) =>
    sendBody(chat, sendTime).toString() === JSON.stringify({ chat, send_time: sendTime })))
  // ASCII, where printable ids are written unit by unit: the quote, the backslash, control
  // characters and DEL must still come out as JSON.stringify spells them.
  await holds(t, fc.property(fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)), maxLength: 40 }), fc.maxSafeNat(), (chat, sendTime) =>
    sendBody(chat, sendTime).toString() === JSON.stringify({ chat, send_time: sendTime })))
  t.equal(sendBody('alice:bob', 1).toString(), '{"chat":"alice:bob","send_time":1}')
  for (const chat of ['a"b', 'a\\b', 'a\u0000b', 'tab\there', '~', '\u007f', 'café', '😀', '\ud800']) {
    t.equal(sendBody(chat, 2).toString(), JSON.stringify({ chat, send_time: 2 }), JSON.stringify(chat))
  }
})
