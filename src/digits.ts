// Decimal digits of safe integers written as bytes, for reply bodies (src/http/reply-body.ts) and
// log records (src/store/message-record.ts). Why not `${n}`: a send_time or a cursor is a new
// 16-digit number nearly every time; turning it into a string misses V8's number-to-string cache,
// and the cache, an old-generation object, then holds the new string, so every young-generation
// collection copies such strings out (docs/performance.md, "Many chats").

const DIGIT_0 = 0x30
/** Digits of the largest safe integer, 2^53 - 1. */
export const UINT_DIGITS_MAX = 16
const E8 = 100_000_000

/**
 * Writes the decimal digits of `n`, a safe non-negative integer, at `at`; returns the offset after
 * them. `out` must have room for UINT_DIGITS_MAX bytes. (Replies reach the handlers only once the
 * RPC codec has checked that their send_time and next_cursor are such integers, and a shard makes
 * its send_times so, so the check here guards against a programming error, not against input.)
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

/** How many decimal digits writeUint writes for `n`. */
export function uintDigits(n: number): number {
  let digits = 1
  for (let p = 10; p <= n; p *= 10) digits++
  return digits
}

// 0 <= n < 10^8.
function writeSmall(out: Uint8Array, at: number, n: number): number {
  const digits = uintDigits(n)
  for (let i = at + digits - 1; i >= at; i--) {
    const q = (n / 10) | 0
    out[i] = DIGIT_0 + n - q * 10
    n = q
  }
  return at + digits
}
