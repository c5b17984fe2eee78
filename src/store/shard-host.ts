// One shard brought up in whatever thread hosts it: its store recovered from its log, the log's
// writer, retention, and its metrics. `scanShards` runs the first phase of recovery for every
// shard a worker hosts, in parallel on helper threads; `openShard` applies a scan and returns once
// the shard can serve; `close()` syncs and closes its log.
//
// Failures: a corrupt log at start-up and a failed fdatasync later are environmental stops. They
// are logged here and reported through `onFatal` with the process exit code; the caller must end
// the process (a worker thread's process.exit() would only end the thread).

import { mkdirSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { Piscina } from 'piscina'
import { formatFsync, type Config } from '../config.js'
import type { Logger } from '../log.js'
import { errorFields } from '../log.js'
import type { ShardMetricsSet } from '../metrics/index.js'
import { WalCorruptError, WalWriter, listSegments, resumeState, shardDir, splitSegments, type SegmentFile } from '../wal/index.js'
import { EXIT_FSYNC_FAILED, EXIT_WAL_CORRUPT } from './exit-codes.js'
import { applyScan, joinScans, wholeScan, type JoinedScan, type ShardScan } from './recover.js'
import type { ScanResult, ScanTask } from './recover-task.js'
import { SegmentIndex } from './retention.js'
import { Shard, nowUs } from './shard.js'
import { ShardStore } from './shard-store.js'

const SLOW_FSYNC_MS = 100 // log an fdatasync slower than this (at most once per 10 s)

export interface HostedShard {
  readonly id: number
  /** The ShardService that callers in this thread call directly and RPC endpoints serve. */
  readonly shard: Shard
  readonly records: number
  /** Resolves once the shard's log can sync (its sync thread is up): serve only after. */
  readonly ready: Promise<void>
  /** Stops retention, then syncs and closes the log. Resolves when everything acknowledged is durable. */
  close(): Promise<void>
}

/**
 * Thrown by openShard after `onFatal` was told (corrupt log): the thread must not serve. Its own
 * `fatal` field crosses to the main thread with the worker's error, which then says nothing more.
 */
export class ShardFatalError extends Error {
  readonly fatal = true
  constructor(message: string) {
    super(message)
    this.name = 'ShardFatalError'
  }
}

/**
 * Whether shards keep retention's index of which segment holds which chat's messages, which
 * recovery builds from its scans' per-record columns (scanShards's `perRecord`). Without
 * retention nothing needs it.
 */
export const retains = (config: Pick<Config, 'retentionMs' | 'retentionBytes'>): boolean => config.retentionMs > 0 || config.retentionBytes > 0

/** A shard's scanned log, joined (recover.ts), or where it is corrupt. */
export type ShardScanned =
  | { readonly scan: JoinedScan; readonly corrupt?: undefined }
  | { readonly scan?: undefined; readonly corrupt: { readonly file: string; readonly offset: number; readonly reason: string } }

/**
 * Recovery's first phase for each of `shards`, on one helper thread per core: each shard's log is
 * cut into runs of segments, so that the cores share the work however many shards there are (one
 * shard's log in two runs on a 2-core machine), and the runs of every shard are scanned in
 * parallel. Resolves in the order given, each shard as soon as its runs are scanned and joined;
 * a corrupt run, or runs that do not join, are scanned again as one whole log for the exact error.
 * `perRecord`: keep each record's chat, send_time and segment (retains(config); recover.ts).
 */
export function scanShards(dataDir: string, shards: readonly number[], perRecord = true): Promise<ShardScanned>[] {
  if (shards.length === 0) return []
  for (const s of shards) mkdirSync(shardDir(dataDir, s), { recursive: true })
  const cores = availableParallelism()
  const runsPerShard = Math.max(1, Math.floor(cores / shards.length))
  const runsOf = shards.map((shard) => splitSegments(listSegments(shardDir(dataDir, shard)), runsPerShard))
  // No more helpers than runs to scan (a new data directory has one empty run per shard).
  const threads = Math.min(cores, runsOf.reduce((n, runs) => n + runs.length, 0))
  const pool = new Piscina<ScanTask, ScanResult>({
    filename: new URL('./recover-task.js', import.meta.url).href,
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: Infinity,
  })
  const scanOne = async (shard: number, i: number): Promise<ShardScanned> => {
    const dir = shardDir(dataDir, shard)
    const runs = runsOf[i] as SegmentFile[][]
    const scans = await Promise.all(runs.map((segments, k) => pool.run({ dir, shard, run: { segments, holdsLast: k === runs.length - 1 }, perRecord })))
    const joined = scans.every((r) => r.scan !== undefined) ? joinScans(scans.map((r) => r.scan as ShardScan)) : null
    if (joined !== null) return { scan: joined }
    const whole = await pool.run({ dir, shard, perRecord })
    return whole.scan !== undefined ? { scan: wholeScan(whole.scan) } : { corrupt: whole.corrupt }
  }
  const scans = shards.map(scanOne)
  void Promise.allSettled(scans).then(() => pool.destroy())
  return scans
}

export function openShard(
  shardId: number,
  config: Config,
  log: Logger,
  metricsSet: ShardMetricsSet,
  onFatal: (exitCode: number, message: string) => void,
  scanned: ShardScanned,
): HostedShard {
  const dir = shardDir(config.dataDir, shardId)
  mkdirSync(dir, { recursive: true })
  const store = new ShardStore()
  const metrics = metricsSet.add(shardId, () => store.stats(), dir)
  let slowLoggedAt = 0
  const segmentIndex = new SegmentIndex()
  const limits = { retentionMs: config.retentionMs, retentionBytes: config.retentionBytes }
  const retaining = retains(config)
  let recovery: ReturnType<typeof applyScan>
  try {
    if (scanned.corrupt !== undefined) throw new WalCorruptError(scanned.corrupt.file, scanned.corrupt.offset, scanned.corrupt.reason)
    recovery = applyScan(
      store,
      scanned.scan,
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
      onFatal(EXIT_WAL_CORRUPT, err.message)
      throw new ShardFatalError(err.message)
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
  const writer = new WalWriter(
    {
      dir,
      shard: shardId,
      segmentBytes: config.segmentBytes,
      batchBytesMax: config.walBatchBytesMax,
      pendingBytesMax: config.walPendingBytesMax,
      fsync: config.fsync,
      onRound: (records, bytes, fsyncMs, waitMs, callMs) => {
        metrics.walRound(records, bytes, fsyncMs, waitMs, callMs)
        if (fsyncMs > SLOW_FSYNC_MS && Date.now() - slowLoggedAt > 10_000) {
          slowLoggedAt = Date.now()
          // callMs: the call alone, on the sync thread; the rest of ms is the hand-off (the threads
          // not running), not the disk.
          log.warn('slow fdatasync', { ms: Math.round(fsyncMs), callMs: callMs === undefined ? undefined : Math.round(callMs), records, bytes })
        }
      },
      beforeCallbacks: (records) => shard.readAheadDurable(records),
      onPreallocateFailed: (err) => {
        log.warn('could not write zeros ahead of the log; its rounds append until the next segment', { file: writer.currentSegment, ...errorFields(err) })
      },
      onFatal: (err) => {
        log.error('log sync failed; exiting (recovery at restart decides what survived)', { exitCode: EXIT_FSYNC_FAILED, ...errorFields(err) })
        onFatal(EXIT_FSYNC_FAILED, `fdatasync failed: ${err.message}`)
      },
    },
    resumeState(recovery.log),
  )
  let lastSegmentSeen = writer.answeredSegment
  const shard = new Shard(shardId, writer, store, {
    onStored: retaining
      ? (chat, sendTime) => {
          // Where this message's record is: the round after its own may have started a segment.
          const seg = writer.answeredSegment
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
  let timer: NodeJS.Timeout | null = null
  if (retaining) {
    enforce()
    const everyMs = Math.max(1000, Math.min(60_000, limits.retentionMs > 0 ? Math.floor(limits.retentionMs / 10) : 10_000))
    timer = setInterval(enforce, everyMs).unref()
  }
  metrics.recovered(recovery.records, recovery.ms / 1000)
  const stats = store.stats()
  log.info('recovered', {
    records: recovery.records,
    ms: Math.round(recovery.ms * 10) / 10,
    scanMs: Math.round(recovery.scanMs * 10) / 10,
    recordsPerSecond: recovery.ms > 0 ? Math.round(recovery.records / (recovery.ms / 1000)) : null,
    segments: recovery.log.segments.length,
    chats: stats.chats,
    fsync: formatFsync(config.fsync),
  })
  return {
    id: shardId,
    shard,
    records: recovery.records,
    ready: writer.ready(),
    close: async () => {
      if (timer !== null) clearInterval(timer)
      await writer.close()
      const s = store.stats()
      log.info('shard stopped', { chats: s.chats, messages: s.messages, lastLsn: writer.lastLsn })
    },
  }
}
