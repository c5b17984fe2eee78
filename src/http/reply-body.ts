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
const DIGIT_0 = 0x30
/** Digits of the largest safe integer, 2^53 - 1. */
const UINT_DIGITS_MAX = 16
const E8 = 100_000_000

/**
 * `{"messages":<messages>,"has_more":..,"next_cursor":..}`; `messages` is a JSON array's bytes.
 * A view valid until the next reply body is built.
 */
export function pullBody(messages: Uint8Array, hasMore: boolean, nextCursor: number): Buffer {
  const mid = hasMore ? PULL_MORE : PULL_LAST
  const out = room(PULL_HEAD.length + messages.length + mid.length + UINT_DIGITS_MAX + 1)
  let at = PULL_HEAD.copy(out, 0)
  out.set(messages, at)
  at += messages.length
  at += mid.copy(out, at)
  at = writeUint(out, at, nextCursor)
  out[at++] = CLOSE_BRACE
  return out.subarray(0, at)
}

/** `{"chat":"<chat>","send_time":..}`. A view valid until the next reply body is built. */
export function sendBody(chat: string, sendTime: number): Buffer {
  const chatJson = JSON.stringify(chat)
  // A JSON string of UTF-16 units takes at most 3 bytes per unit in UTF-8.
  const out = room(SEND_HEAD.length + chatJson.length * 3 + SEND_TIME.length + UINT_DIGITS_MAX + 1)
  let at = SEND_HEAD.copy(out, 0)
  at += out.write(chatJson, at)
  at += SEND_TIME.copy(out, at)
  at = writeUint(out, at, sendTime)
  out[at++] = CLOSE_BRACE
  return out.subarray(0, at)
}

/**
 * Writes the decimal digits of `n`, a safe non-negative integer, at `at`; returns the offset after
 * them. `out` must have room for 16 bytes. (Replies reach the handlers only once the RPC codec has
 * checked that their send_time and next_cursor are such integers, so the check here guards against
 * a programming error, not against input.)
 */
export function writeUint(out: Uint8Array, at: number, n: number): number {
  if (!(Number.isSafeInteger(n) && n >= 0)) throw new RangeError(`not a safe non-negative integer: ${n}`)
  if (n < E8) return writeSmall(out, at, n)
  // Two halves below 10^8, each an int32. The division is exact enough: for n < 2^53, n / 1e8 is
  // never rounded up to the next integer (half an ulp there is under 1e-8; the test sweeps the edges).
  const high = Math.floor(n / E8)
  let low = n - high * E8
  at = writeSmall(out, at, high)
  for (let i = at + 7; i >= at; i--) {
    const q = (low / 10) | 0
    out[i] = DIGIT_0 + low - q * 10
    low = q
  }
  return at + 8
}

// 0 <= n < 10^8.
function writeSmall(out: Uint8Array, at: number, n: number): number {
  let digits = 1
  for (let p = 10; p <= n; p *= 10) digits++
  for (let i = at + digits - 1; i >= at; i--) {
    const q = (n / 10) | 0
    out[i] = DIGIT_0 + n - q * 10
    n = q
  }
  return at + digits
}
