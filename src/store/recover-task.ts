// The piscina task that runs recovery's first phase (scanSegments over a run of a shard's log, or
// scanShard over all of it) on a helper thread, and hands the scan back without copying its
// buffers. A corrupt log comes back as data, not as a thrown error: an Error that crosses threads
// loses its class and fields (file, offset).
//
// piscina fits here: a stateless task that is all CPU and file reads, several of them at once.
// It does not fit the shards themselves, which are stateful and must stay on the thread that
// serves them (README, "Dependencies").

import { move, transferableSymbol, valueSymbol } from 'piscina'
import { WalCorruptError, type SegmentFile } from '../wal/index.js'
import { scanSegments, scanShard, scanTransferList, type ShardScan } from './recover.js'

export interface ScanTask {
  readonly dir: string
  readonly shard: number
  /** A run of the log's segments (and whether it ends with the last); absent: the whole log. */
  readonly run?: { readonly segments: readonly SegmentFile[]; readonly holdsLast: boolean }
  /** Keep each record's chat, send_time and segment (scanSegments's `perRecord`); default true. */
  readonly perRecord?: boolean
}

export type ScanResult =
  | { readonly scan: ShardScan; readonly corrupt?: undefined }
  | { readonly scan?: undefined; readonly corrupt: { readonly file: string; readonly offset: number; readonly reason: string } }

export default function scanTask({ dir, shard, run, perRecord = true }: ScanTask): ScanResult {
  let scan: ShardScan
  try {
    scan = run === undefined ? scanShard(dir, shard, perRecord) : scanSegments(run.segments, shard, run.holdsLast, perRecord)
  } catch (err) {
    if (err instanceof WalCorruptError) return { corrupt: { file: err.file, offset: err.offset, reason: err.reason } }
    throw err
  }
  const result = { scan }
  return move({
    get [transferableSymbol]() {
      return scanTransferList(scan)
    },
    get [valueSymbol]() {
      return result
    },
  }) as unknown as ScanResult
}
