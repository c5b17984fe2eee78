// Metrics of the shards a thread hosts: what each holds, its log, and its recovery.

import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Gauge, type Registry } from 'prom-client'
import { SeriesCounter, SeriesHistogram } from './series.js'
import { BATCH_BUCKETS, FSYNC_BUCKETS_S, PREFIX } from './thread-registry.js'

export interface ShardMetrics {
  /**
   * After each group-commit round: records, bytes, the fdatasync time as the shard saw it (0 when
   * none), how long the round's oldest record waited for it to begin, and the fdatasync call's own
   * time on the log's sync thread (undefined when unknown).
   */
  walRound(records: number, bytes: number, fsyncMs: number, waitMs: number, callMs?: number): void
  recovered(records: number, seconds: number): void
}

export interface ShardStats {
  readonly chats: number
  readonly messages: number
  readonly jsonBytes: number
  readonly bytes: number
}

/** The shard metrics of one thread's registry: `add()` one set of series per shard it hosts. */
export interface ShardMetricsSet {
  add(shard: number, stats: () => ShardStats, walDir: string): ShardMetrics
}

interface HostedSeries {
  readonly label: { readonly shard: string }
  readonly stats: () => ShardStats
  readonly segments: () => { count: number; bytes: number }
}

/**
 * `spareBytes`: the thread's memory written ahead at start-up (STORE_PREFAULT_BYTES), or freed
 * whole by its shards and kept since, that they do not hold now; one series for the thread.
 */
export function createShardMetrics(registry: Registry, spareBytes: () => number): ShardMetricsSet {
  const labelNames = ['shard'] as const
  const hosted: HostedSeries[] = []
  const gauge = (name: string, help: string, read: (h: HostedSeries) => number): void => {
    new Gauge({
      name: `${PREFIX}${name}`,
      help,
      labelNames,
      registers: [registry],
      collect() {
        for (const h of hosted) this.set(h.label, read(h))
      },
    })
  }
  gauge('store_chats', 'Chats held, by shard', (h) => h.stats().chats)
  gauge('store_messages', 'Messages held, by shard', (h) => h.stats().messages)
  gauge('store_message_bytes', 'Bytes of message JSON held, by shard', (h) => h.stats().jsonBytes)
  gauge('store_allocated_bytes', 'Bytes allocated for messages and chats\' indexes, by shard', (h) => h.stats().bytes)
  new Gauge({
    name: `${PREFIX}store_prefault_spare_bytes`,
    help: 'Bytes of memory written ahead (STORE_PREFAULT_BYTES at start-up, then chunks freed and kept up to that) that this thread\'s shards do not hold now',
    registers: [registry],
    collect() {
      this.set(spareBytes())
    },
  })
  gauge('wal_segments', 'Log segment files, by shard', (h) => h.segments().count)
  gauge('wal_segment_bytes', 'Bytes in log segment files, by shard', (h) => h.segments().bytes)

  // Updated after every log round: series metrics (series.ts), each shard's resolved once.
  const appends = new SeriesCounter({ name: `${PREFIX}wal_appends_total`, help: 'Records written to the log', registers: [registry] })
  const written = new SeriesCounter({ name: `${PREFIX}wal_bytes_total`, help: 'Bytes written to the log', registers: [registry] })
  const histogram = (name: string, help: string, buckets: number[]): SeriesHistogram =>
    new SeriesHistogram({ name: `${PREFIX}${name}`, help, buckets, registers: [registry] })
  const fsync = histogram(
    'wal_fsync_duration_seconds',
    'Latency of the log\'s fdatasync calls as the shard sees them: from asking for one to its answer (the call on the sync thread and the hand-off to that thread and back)',
    FSYNC_BUCKETS_S,
  )
  const fsyncCall = histogram(
    'wal_fdatasync_call_seconds',
    'The log\'s fdatasync calls alone, timed on the sync thread that makes them: the disk\'s part of wal_fsync_duration_seconds',
    FSYNC_BUCKETS_S,
  )
  const batch = histogram('wal_batch_records', 'Records per group-commit round', BATCH_BUCKETS)
  const wait = histogram(
    'wal_wait_seconds',
    'How long the oldest record of each group-commit round waited for the round to begin (the previous round\'s write and fdatasync)',
    FSYNC_BUCKETS_S,
  )
  const recoveryRecords = new Gauge({ name: `${PREFIX}recovery_records`, help: 'Records replayed at the shard\'s last start', labelNames, registers: [registry] })
  const recoverySeconds = new Gauge({ name: `${PREFIX}recovery_duration_seconds`, help: 'Time the shard\'s last recovery took', labelNames, registers: [registry] })

  return {
    add(shard, stats, walDir) {
      const label = { shard: String(shard) }
      // Walk the store and the directory once per scrape, not once per gauge.
      hosted.push({ label, stats: cachedFor(1000, stats), segments: cachedFor(1000, () => segmentFiles(walDir)) })
      // Series exist from the start (at zero), so that rate() and histogram_quantile() have data at once.
      const shardAppends = appends.labels(label)
      const shardBytes = written.labels(label)
      const shardFsync = fsync.labels(label)
      const shardFsyncCall = fsyncCall.labels(label)
      const shardBatch = batch.labels(label)
      const shardWait = wait.labels(label)
      return {
        walRound: (records, bytes, fsyncMs, waitMs, callMs) => {
          if (records > 0) {
            shardAppends.inc(records)
            shardBytes.inc(bytes)
            shardBatch.observe(records)
            shardWait.observe(waitMs / 1000)
          }
          if (fsyncMs > 0) shardFsync.observe(fsyncMs / 1000)
          if (callMs !== undefined) shardFsyncCall.observe(callMs / 1000)
        },
        recovered: (records, seconds) => {
          recoveryRecords.set(label, records)
          recoverySeconds.set(label, seconds)
        },
      }
    },
  }
}

function segmentFiles(walDir: string): { count: number; bytes: number } {
  let count = 0
  let bytes = 0
  for (const f of readdirSync(walDir)) {
    if (!f.endsWith('.wal')) continue
    count++
    try {
      bytes += statSync(join(walDir, f)).size
    } catch {
      // deleted by retention meanwhile
    }
  }
  return { count, bytes }
}

function cachedFor<T>(ms: number, read: () => T): () => T {
  let at = -Infinity
  let value: T
  return () => {
    const now = performance.now()
    if (now - at > ms) {
      value = read()
      at = now
    }
    return value
  }
}
