// @ts-check
// Recovery speed, two ways:
//
// 1. "shard": one shard in this process. Writes a log of MESSAGES messages (the real format,
//    through WalWriter), then times what a shard does at start-up: read and verify every record,
//    read its framing, rebuild the in-memory store, with that split into phases.
// 2. "startup": the real server. Writes a data directory of STARTUP_MESSAGES messages (default
//    10M) for the shards a new data directory gets here (STARTUP_SHARDS to choose), starts `node
//    dist/cluster.js` on it and times it from spawn to listening. Every shard's log is scanned in
//    runs of segments on helper threads, one per core; the figure is messages / that time.
//
//   npm run build && node bench/recovery.mjs     (PARTS=shard,startup MESSAGES=1000000
//                                                 STARTUP_MESSAGES=10000000 CHATS=10000 TEXT_BYTES=64)
//
// STARTUP_DIR=<dir> writes the start-up's data directory there once and reuses it on later runs
// (remove it when done), and SERVER_ROOT=<checkout> starts that checkout's built server instead of
// this one's: builds compared on one log, alternated, as docs/performance.md's eighth session did:
//   STARTUP_DIR=/tmp/rec10m SERVER_ROOT=/tmp/old PARTS=startup node bench/recovery.mjs
// A fresh log per run (the default) also makes the server's memory fresh, which this machine's
// host backs lazily; on one kept log the runs are faster and less noisy.
//
// RECORD_VERSION=1 writes logs in the record format of earlier releases (msgpack), which recovery
// still reads, to compare the two formats' replay on one machine.

import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WalWriter, readLog } from '../dist/wal/index.js'
import { ShardStore, encodeMessage, encodeMessageV1, readStoredMessage, recoverStore } from '../dist/store/index.js'
import { DEFAULT_SHARDS, SERVER_NODE_FLAGS, startProcess, stopProcess, writeDataDir } from './lib.mjs'

const env = process.env
const parts = (env.PARTS ?? 'shard,startup').split(',')
const messages = Number(env.MESSAGES ?? 1_000_000)
const startupMessages = Number(env.STARTUP_MESSAGES ?? 10_000_000)
const chats = Number(env.CHATS ?? 10_000)
const textBytes = Number(env.TEXT_BYTES ?? 64)
const recordVersion = Number(env.RECORD_VERSION ?? 2)
const encode = recordVersion === 1 ? encodeMessageV1 : encodeMessage
const text = 'x'.repeat(textBytes)
const t0 = Date.now() * 1000
/** Message i: chats in turn, send_times increasing. @param {number} i @returns {[string, string, string, number]} */
const messageAt = (i) => {
  const c = i % chats
  return [`user${c}:user${c + 1}`, `user${c}`, text, t0 + i]
}
const tmp = (/** @type {string} */ what) => mkdtempSync(join(env.BENCH_DIR ?? tmpdir(), `pullchat-${what}-bench-`))

/** @param {string} dir */
async function writeShardLog(dir) {
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
  const chunk = 10_000
  for (let i = 0; i < messages; i += chunk) {
    await new Promise((resolve, reject) => {
      let left = Math.min(chunk, messages - i)
      const n = left
      for (let j = 0; j < n; j++) {
        writer.append(encode(...messageAt(i + j)), (err) => {
          if (err) reject(err)
          else if (--left === 0) resolve(undefined)
        })
      }
    })
  }
  await writer.close()
}

async function shardPart() {
  const dir = tmp('recovery')
  const tw = performance.now()
  await writeShardLog(dir)
  const writeS = (performance.now() - tw) / 1000
  // Where recovery's time goes: reading and verifying alone, then with reading each record's framing.
  let t = performance.now()
  readLog(dir, 0, () => {})
  const scanS = (performance.now() - t) / 1000
  t = performance.now()
  readLog(dir, 0, (p) => readStoredMessage(p))
  const decodeS = (performance.now() - t) / 1000
  const rss0 = process.memoryUsage().rss
  const store = new ShardStore()
  const rec = recoverStore(dir, 0, store)
  const stats = store.stats()
  const rss1 = process.memoryUsage().rss
  rmSync(dir, { recursive: true, force: true })
  if (rec.records !== messages || stats.messages !== messages) throw new Error(`recovered ${rec.records}, expected ${messages}`)
  const result = {
    part: 'shard',
    messages,
    chats,
    textBytes,
    recordVersion,
    segments: rec.log.segments.length,
    writeSeconds: +writeS.toFixed(2),
    recoverySeconds: +(rec.ms / 1000).toFixed(3),
    messagesPerSecond: Math.round(messages / (rec.ms / 1000)),
    // Phase 1 (scanShard: reading, verifying, decoding, copying into the slab) and phase 2
    // (applyScan: indexing), with phase 1's reading-and-verifying and decoding measured apart.
    phases: {
      readAndVerifySeconds: +scanS.toFixed(3),
      decodeSeconds: +(decodeS - scanS).toFixed(3),
      scanSeconds: +(rec.scanMs / 1000).toFixed(3),
      applySeconds: +((rec.ms - rec.scanMs) / 1000).toFixed(3),
    },
    storeJsonBytes: stats.jsonBytes,
    rssGrowthBytesPerMessage: Math.round((rss1 - rss0) / messages),
  }
  console.log(`one shard: ${messages} messages in ${chats} chats (${textBytes}-byte texts, record version ${recordVersion}, ${result.segments} segments): ${result.recoverySeconds} s, ${result.messagesPerSecond} messages/s`)
  console.log(JSON.stringify(result))
}

async function startupPart() {
  // STARTUP_DIR keeps the data directory (written there once, reused by later runs), so that
  // builds can be started on one log in turn; SERVER_ROOT starts another checkout's server
  // (its dist/ built) on it.
  const keep = env.STARTUP_DIR
  const dataDir = keep ?? tmp('startup')
  const shards = Number(env.STARTUP_SHARDS ?? DEFAULT_SHARDS)
  const tw = performance.now()
  if (keep === undefined || !existsSync(join(keep, 'pullchat.json'))) {
    mkdirSync(dataDir, { recursive: true })
    await writeDataDir(dataDir, shards, startupMessages, messageAt)
  }
  const writeS = (performance.now() - tw) / 1000
  const ts = performance.now()
  const cluster = join(env.SERVER_ROOT ?? '.', 'dist/cluster.js')
  const server = await startProcess([...SERVER_NODE_FLAGS, cluster], { PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', SHARDS: String(shards) })
  const startupS = (performance.now() - ts) / 1000
  // Each shard logs what it replayed: {"msg":"recovered","records":..,"ms":..}.
  const shardLines = [...server.output.matchAll(/^.*"msg":"recovered".*$/gm)].map((m) => JSON.parse(m[0]))
  await stopProcess(server.proc)
  if (keep === undefined) rmSync(dataDir, { recursive: true, force: true })
  const records = shardLines.reduce((a, l) => a + l.records, 0)
  if (records !== startupMessages) throw new Error(`the server recovered ${records} records, expected ${startupMessages}`)
  const result = {
    part: 'startup',
    messages: startupMessages,
    chats,
    textBytes,
    recordVersion: 2,
    shards,
    writeSeconds: +writeS.toFixed(2),
    startupSeconds: +startupS.toFixed(3),
    messagesPerSecond: Math.round(startupMessages / startupS),
    shardRecoveries: shardLines.map((l) => ({ thread: l.thread, records: l.records, seconds: +(l.ms / 1000).toFixed(3), scanSeconds: +(l.scanMs / 1000).toFixed(3), messagesPerSecond: l.recordsPerSecond })),
  }
  console.log(`server start-up${env.SERVER_ROOT === undefined ? '' : ` (${env.SERVER_ROOT})`}: ${startupMessages} messages in ${chats} chats over ${shards} shards: listening after ${result.startupSeconds} s, ${result.messagesPerSecond} messages/s`)
  console.log(JSON.stringify(result))
}

if (parts.includes('shard')) await shardPart()
if (parts.includes('startup')) await startupPart()
