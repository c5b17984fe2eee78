// @ts-check
// Recovery speed: writes a shard log of N messages (the real format, through WalWriter), then
// times what a shard does at start-up: read, verify and decode every record and rebuild the
// in-memory store. Reports messages replayed per second.
//
//   npm run build && node bench/recovery.mjs              (MESSAGES=1000000 CHATS=10000 TEXT_BYTES=64)

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WalWriter, readLog } from '../dist/wal/index.js'
import { ShardStore, decodeMessage, encodeMessage, recoverStore } from '../dist/store/index.js'

const messages = Number(process.env.MESSAGES ?? 1_000_000)
const chats = Number(process.env.CHATS ?? 10_000)
const textBytes = Number(process.env.TEXT_BYTES ?? 64)
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'pullchat-recovery-bench-'))

async function writeLog() {
  const writer = new WalWriter(
    {
      dir,
      shard: 0,
      segmentBytes: 64 * 1024 * 1024,
      batchBytesMax: 4 * 1024 * 1024,
      pendingBytesMax: 8 * 1024 * 1024 * 1024,
      fsync: { kind: 'unsafe-none' }, // same bytes on disk; only how fast we get them there differs
      onFatal: (err) => {
        throw err
      },
    },
    { lastLsn: 0, lastSegment: null },
  )
  const text = 'x'.repeat(textBytes)
  const t0 = Date.now() * 1000
  const chunk = 10_000
  for (let i = 0; i < messages; i += chunk) {
    await new Promise((resolve, reject) => {
      let left = Math.min(chunk, messages - i)
      const n = left
      for (let j = 0; j < n; j++) {
        const k = i + j
        const c = k % chats
        writer.append(encodeMessage(`user${c}:user${c + 1}`, `user${c}`, text, t0 + k), (err) => {
          if (err) reject(err)
          else if (--left === 0) resolve(undefined)
        })
      }
    })
  }
  await writer.close()
}

const tw = performance.now()
await writeLog()
const writeS = (performance.now() - tw) / 1000
// Where recovery's time goes: reading and verifying alone, then with decoding.
let t = performance.now()
readLog(dir, 0, () => {})
const scanS = (performance.now() - t) / 1000
t = performance.now()
readLog(dir, 0, (p) => decodeMessage(p))
const decodeS = (performance.now() - t) / 1000
const rss0 = process.memoryUsage().rss
const store = new ShardStore()
const rec = recoverStore(dir, 0, store)
const stats = store.stats()
const rss1 = process.memoryUsage().rss
rmSync(dir, { recursive: true, force: true })
if (rec.records !== messages || stats.messages !== messages) throw new Error(`recovered ${rec.records}, expected ${messages}`)
const result = {
  messages,
  chats,
  textBytes,
  segments: rec.log.segments.length,
  writeSeconds: +writeS.toFixed(2),
  recoverySeconds: +(rec.ms / 1000).toFixed(3),
  messagesPerSecond: Math.round(messages / (rec.ms / 1000)),
  phases: { readAndVerifySeconds: +scanS.toFixed(3), decodeSeconds: +(decodeS - scanS).toFixed(3), rebuildStoreSeconds: +(rec.ms / 1000 - decodeS).toFixed(3) },
  storeJsonBytes: stats.jsonBytes,
  rssGrowthBytesPerMessage: Math.round((rss1 - rss0) / messages),
}
console.log(`recovery of ${messages} messages in ${chats} chats (${textBytes}-byte texts, ${result.segments} segments): ${result.recoverySeconds} s, ${result.messagesPerSecond} messages/s`)
console.log(JSON.stringify(result))
