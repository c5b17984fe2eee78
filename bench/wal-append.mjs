// @ts-check
// Durable append throughput by group-commit batch size: the real WalWriter with FSYNC=always,
// 128-byte payloads, `batch` appends issued together per round, one round at a time. Batch 1 is
// "one fdatasync per record", the baseline group commit is measured against.
//
//   npm run build && node bench/wal-append.mjs            (BENCH_SECONDS=3 BATCHES=1,10,100,1000
//                                                          PREALLOCATE=0 to append instead of
//                                                          overwriting preallocated zeros)

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WalWriter } from '../dist/wal/index.js'

const seconds = Number(process.env.BENCH_SECONDS ?? 3)
const batches = (process.env.BATCHES ?? '1,10,100,1000').split(',').map(Number)
const dirBase = process.env.BENCH_DIR ?? tmpdir()
const payload = Buffer.alloc(128, 0x61)
const preallocate = process.env.PREALLOCATE !== '0'

/** @param {number} batch */
async function run(batch) {
  const dir = mkdtempSync(join(dirBase, 'pullchat-wal-bench-'))
  const syncMs = /** @type {number[]} */ ([])
  const writer = new WalWriter(
    {
      dir,
      shard: 0,
      segmentBytes: 64 * 1024 * 1024,
      batchBytesMax: 64 * 1024 * 1024,
      pendingBytesMax: 1024 * 1024 * 1024,
      fsync: { kind: 'always' },
      ...(preallocate ? {} : { preallocateBytesMax: 0 }),
      onFatal: (err) => {
        throw err
      },
      onRound: (_records, _bytes, ms) => syncMs.push(ms),
    },
    { lastLsn: 0, lastSegment: null },
  )
  let records = 0
  const t0 = performance.now()
  while (performance.now() - t0 < seconds * 1000) {
    await new Promise((resolve, reject) => {
      let left = batch
      for (let i = 0; i < batch; i++) {
        writer.append(payload, (err) => {
          if (err) reject(err)
          else if (--left === 0) resolve(undefined)
        })
      }
    })
    records += batch
  }
  const elapsed = (performance.now() - t0) / 1000
  await writer.close()
  rmSync(dir, { recursive: true, force: true })
  syncMs.sort((a, b) => a - b)
  const q = (/** @type {number} */ p) => syncMs[Math.min(syncMs.length - 1, Math.floor(p * syncMs.length))] ?? 0
  return { batch, recordsPerSecond: Math.round(records / elapsed), fsyncsPerSecond: Math.round(syncMs.length / elapsed), fsyncMsP50: +q(0.5).toFixed(3), fsyncMsP99: +q(0.99).toFixed(3) }
}

const rows = []
for (const b of batches) rows.push(await run(b))
const base = rows[0]?.recordsPerSecond ?? 1
console.log(`durable appends, FSYNC=always, 128-byte records, ${seconds}s each, dir ${dirBase}, ${preallocate ? "over preallocated zeros" : "appended (PREALLOCATE=0)"}`)
console.log('batch  records/s   fsyncs/s  fsync p50 ms  fsync p99 ms  vs batch ' + rows[0]?.batch)
for (const r of rows) {
  console.log(
    `${String(r.batch).padStart(5)}  ${String(r.recordsPerSecond).padStart(9)}  ${String(r.fsyncsPerSecond).padStart(9)}  ${String(r.fsyncMsP50).padStart(12)}  ${String(r.fsyncMsP99).padStart(12)}  ${(r.recordsPerSecond / base).toFixed(1)}x`,
  )
}
if (process.env.BENCH_JSON) console.log(JSON.stringify(rows))
