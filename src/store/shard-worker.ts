// Entry point of a shard worker thread: recovers the shard's store from its log, then serves.
//
// Control messages from the cluster: { type: 'port', port } (one per HTTP thread) and
// { type: 'stop' }. It reports { type: 'ready', records, ms } after recovery,
// { type: 'stopped' } once the log is synced and closed, and { type: 'fatal', exitCode, message }
// when it cannot go on (corrupt log at start-up, failed fdatasync): the process must then exit
// with that code, because a worker's process.exit() would only end this thread.

import { mkdirSync, unlinkSync } from 'node:fs'
import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import { formatFsync, type Config } from '../config.js'
import { createLogger, errorFields } from '../log.js'
import { answerCollect, createShardMetrics, createThreadRegistry } from '../metrics/index.js'
import { ShardEndpoint } from '../rpc/index.js'
import { WalCorruptError, WalWriter, shardDir } from '../wal/index.js'
import { EXIT_FSYNC_FAILED, EXIT_WAL_CORRUPT } from './exit-codes.js'
import { recoverStore } from './recover.js'
import { SegmentIndex } from './retention.js'
import { Shard, nowUs } from './shard.js'
import { ShardStore } from './shard-store.js'

export interface ShardWorkerData {
  readonly shard: number
  readonly config: Config
}

export type ShardControl =
  | { readonly type: 'port'; readonly port: MessagePort }
  | { readonly type: 'stop' }
  | { readonly type: 'metrics-collect'; readonly id: number }

const SLOW_FSYNC_MS = 100 // log an fdatasync slower than this (at most once per 10 s)

const { shard: shardId, config } = workerData as ShardWorkerData
const log = createLogger(`shard-${shardId}`, config.logLevel)
if (parentPort === null) throw new Error('shard-worker must run in a worker thread')
const control = parentPort

function fatal(exitCode: number, message: string): never {
  control.postMessage({ type: 'fatal', exitCode, message })
  // Stop serving at once: nothing more may be acknowledged. The main thread ends the process.
  throw Object.assign(new Error(message), { fatal: true })
}

const dir = shardDir(config.dataDir, shardId)
mkdirSync(dir, { recursive: true })
const store = new ShardStore()
const registry = createThreadRegistry(`shard-${shardId}`)
const metrics = createShardMetrics(registry, shardId, () => store.stats(), dir)
let slowLoggedAt = 0
const segmentIndex = new SegmentIndex()
const limits = { retentionMs: config.retentionMs, retentionBytes: config.retentionBytes }
// Without retention, nothing needs to know which segment holds which chat's messages.
const retaining = limits.retentionMs > 0 || limits.retentionBytes > 0
let recovery: ReturnType<typeof recoverStore>
try {
  recovery = recoverStore(
    dir,
    shardId,
    store,
    retaining
      ? {
          onRecord: (chat, sendTime, segment) => segmentIndex.note(segment, chat, sendTime),
          onDropOldest: (chat) => segmentIndex.forgetOldest(chat),
        }
      : {},
  )
} catch (err) {
  if (err instanceof WalCorruptError) {
    log.error('refusing to start: corrupt log', { code: 'IM_ERR_WAL_CORRUPT', file: err.file, offset: err.offset, detail: err.message })
    fatal(EXIT_WAL_CORRUPT, err.message)
  }
  throw err
}
if (recovery.log.torn !== null) {
  const t = recovery.log.torn
  log.warn('cut a torn tail off the log', { file: t.file, offset: t.offset, reason: t.reason, bytesDropped: t.bytes })
}
if (recovery.overLimit > 0) {
  log.warn('chats in the log hold more messages than a chat can; their oldest are not served', { messages: recovery.overLimit, code: 'IM_ERR_CHAT_FULL' })
}
let last = recovery.log.segments.at(-1)
if (last !== undefined && recovery.log.torn?.file === last.path && recovery.log.torn.offset === 0) {
  // A crash right after creating a segment: it has no header and no records. Start it anew.
  unlinkSync(last.path)
  last = undefined
}
const writer = new WalWriter(
  {
    dir,
    shard: shardId,
    segmentBytes: config.segmentBytes,
    batchBytesMax: config.walBatchBytesMax,
    pendingBytesMax: config.walPendingBytesMax,
    fsync: config.fsync,
    onRound: (records, bytes, fsyncMs, waitMs) => {
      metrics.walRound(records, bytes, fsyncMs, waitMs)
      if (fsyncMs > SLOW_FSYNC_MS && Date.now() - slowLoggedAt > 10_000) {
        slowLoggedAt = Date.now()
        log.warn('slow fdatasync', { ms: Math.round(fsyncMs), records, bytes })
      }
    },
    onFatal: (err) => {
      log.error('log sync failed; exiting (recovery at restart decides what survived)', { exitCode: EXIT_FSYNC_FAILED, ...errorFields(err) })
      control.postMessage({ type: 'fatal', exitCode: EXIT_FSYNC_FAILED, message: `fdatasync failed: ${err.message}` })
    },
  },
  {
    lastLsn: recovery.log.lastLsn,
    lastSegment: last === undefined ? null : { path: last.path, bytes: recovery.log.lastSegmentBytes },
  },
)
let lastSegmentSeen = writer.currentSegment
const shard = new Shard(shardId, writer, store, {
  onStored: retaining
    ? (chat, sendTime) => {
        const seg = writer.currentSegment
        segmentIndex.note(seg, chat, sendTime)
        if (seg !== lastSegmentSeen) {
          // A segment was sealed: the byte limit may now be exceeded.
          lastSegmentSeen = seg
          setImmediate(enforce)
        }
      }
    : undefined,
})

function enforce(): void {
  try {
    const dropped = segmentIndex.enforce(limits, nowUs(), writer, store)
    if (dropped.segments > 0) log.info('retention dropped segments', dropped)
  } catch (err) {
    log.error('retention failed', errorFields(err))
  }
}
if (retaining) {
  enforce()
  const everyMs = Math.max(1000, Math.min(60_000, limits.retentionMs > 0 ? Math.floor(limits.retentionMs / 10) : 10_000))
  setInterval(enforce, everyMs).unref()
}
const endpoints: ShardEndpoint[] = []
metrics.recovered(recovery.records, recovery.ms / 1000)
const stats = store.stats()
log.info('recovered', {
  records: recovery.records,
  ms: Math.round(recovery.ms * 10) / 10,
  recordsPerSecond: recovery.ms > 0 ? Math.round(recovery.records / (recovery.ms / 1000)) : null,
  segments: recovery.log.segments.length,
  chats: stats.chats,
  fsync: formatFsync(config.fsync),
})

control.on('message', (msg: ShardControl) => {
  if (answerCollect(control, registry, msg)) return
  if (msg.type === 'port') {
    const endpoint = new ShardEndpoint(msg.port, shard, {
      onBadFrame: (err) => log.error('dropped a malformed RPC frame', { code: err.code, detail: err.message }),
    })
    endpoints.push(endpoint)
    msg.port.on('close', () => endpoints.splice(endpoints.indexOf(endpoint) >>> 0, 1))
  } else if (msg.type === 'stop') {
    writer.close().then(() => {
      for (const e of [...endpoints]) e.close()
      const s = store.stats()
      log.info('shard stopped', { chats: s.chats, messages: s.messages, lastLsn: writer.lastLsn })
      control.postMessage({ type: 'stopped' })
    })
  }
})

control.postMessage({ type: 'ready', records: recovery.records, ms: recovery.ms })
