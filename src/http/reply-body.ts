// Reply bodies written as bytes, with their numbers' digits written by hand, into one buffer per
// thread that every reply reuses.
//
// The body returned is a view of that buffer: valid until the next reply body is built on this
// thread. The front end hands it to uWS, which copies it, before it builds another (uws-adapter.ts
// writes every reply as soon as it has one). Why reuse: a fresh buffer per reply, at ~100k pulls/s,
// is ~250 MB/s of ArrayBuffer memory outside V8's heap, and V8 answered that in some processes with
// a mark-compact every ~85 ms for as long as the load lasted (docs/performance.md, "Garbage").
//
// Why by hand: a send_time or a cursor is a new 16-digit number in nearly every reply. Turning it
// into a string (`${n}`) misses V8's number-to-string cache, and the cache, an old-generation
// object, then holds the new string, so every young-generation collection copies such strings out.
// Over pulls of many chats that cost the thread serving HTTP ~0.8 µs of CPU per request, which pulls of
// one hot chat (the same cursor every time, a cache hit) did not pay (docs/performance.md,
// "Many chats").

import { UINT_DIGITS_MAX, writeUint } from '../digits.js'
import { QUOTE, jsonKeeps } from '../json-bytes.js'

let scratch = Buffer.allocUnsafeSlow(64 * 1024)

/** The reply buffer, with room for at least `bytes`. */
function room(bytes: number): Buffer {
  if (scratch.length < bytes) scratch = Buffer.allocUnsafeSlow(Math.max(bytes, scratch.length * 2))
  return scratch
}

const PULL_HEAD = Buffer.from('{"messages":')
const PULL_MORE = Buffer.from(',"has_more":true,"next_cursor":')
const PULL_LAST = Buffer.from(',"has_more":false,"next_cursor":')
const SEND_HEAD = Buffer.from('{"chat":')
const SEND_TIME = Buffer.from(',"send_time":')
const CLOSE_BRACE = 0x7d // }

/**
 * `{"messages":<messages>,"has_more":..,"next_cursor":..}`; `messages` is a JSON array's bytes.
 * A view valid until the next reply body is built.
 */
export function pullBody(messages: Uint8Array, hasMore: boolean, nextCursor: number): Buffer {
  const mid = hasMore ? PULL_MORE : PULL_LAST
  const out = room(PULL_HEAD.length + messages.length + mid.length + UINT_DIGITS_MAX + 1)
  // TypedArray.set, not Buffer.copy: copy() makes a view of its source per call (docs/performance.md).
  out.set(PULL_HEAD, 0)
  let at = PULL_HEAD.length
  out.set(messages, at)
  at += messages.length
  out.set(mid, at)
  at += mid.length
  at = writeUint(out, at, nextCursor)
  out[at++] = CLOSE_BRACE
  return out.subarray(0, at)
}

/** `{"chat":"<chat>","send_time":..}`. A view valid until the next reply body is built. */
export function sendBody(chat: string, sendTime: number): Buffer {
  // The id's JSON is at most 6 bytes per UTF-16 unit (`\u001f`) plus its quotes.
  const out = room(SEND_HEAD.length + chat.length * 6 + 2 + SEND_TIME.length + UINT_DIGITS_MAX + 1)
  out.set(SEND_HEAD, 0)
  let at = writeJsonString(out, SEND_HEAD.length, chat)
  out.set(SEND_TIME, at)
  at += SEND_TIME.length
  at = writeUint(out, at, sendTime)
  out[at++] = CLOSE_BRACE
  return out.subarray(0, at)
}

/**
 * Writes `s` as a JSON string, quotes included, at `at`; returns where it ends. ASCII that JSON
 * keeps as it is (nearly every chat id) is written unit by unit; anything else as
 * JSON.stringify spells it. Why not JSON.stringify and Buffer.write every time: a new string and a
 * call into C++ per send, ~2.5% of the thread's CPU under sends (docs/performance.md).
 */
function writeJsonString(out: Buffer, at: number, s: string): number {
  const n = s.length
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x80 || !jsonKeeps(c)) return at + out.write(JSON.stringify(s), at)
  }
  out[at++] = QUOTE
  for (let i = 0; i < n; i++) out[at++] = s.charCodeAt(i)
  out[at++] = QUOTE
  return at
}
