// Copying a range of bytes between buffers on the request path.
//
// TypedArray.set from a plain Uint8Array over the range: Buffer.copy (and Buffer.subarray) go
// through Buffer's own view of the range in Node 20 and cost about twice as much for a
// message-sized copy (28 against 53-57 ns in a micro-benchmark; docs/performance.md).

/** Copies src[from, to) into `out` at `at`; returns where the copy ends in `out`. */
export function copyBytes(src: Uint8Array, from: number, to: number, out: Uint8Array, at: number): number {
  out.set(new Uint8Array(src.buffer, src.byteOffset + from, to - from), at)
  return at + (to - from)
}
