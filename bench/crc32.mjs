// @ts-check
// How fast the log's checksum (zlib.crc32, built into Node 20) runs on record-sized payloads.
//   node bench/crc32.mjs
import { crc32 } from 'node:zlib'

for (const size of [64, 128, 512, 4096]) {
  const buf = Buffer.alloc(size, 0x5a)
  const n = Math.round(200_000_000 / (size + 64))
  let x = 0
  const t0 = performance.now()
  for (let i = 0; i < n; i++) x ^= crc32(buf)
  const s = (performance.now() - t0) / 1000
  console.log(`${String(size).padStart(5)}-byte payloads: ${(n / s / 1e6).toFixed(2)} M/s, ${((n * size) / s / 1e9).toFixed(2)} GB/s (${x & 1})`)
}
