// The write-ahead log: segment files of checksummed records, group commit, recovery and repair.
// Knows bytes and files only; what a record means is the store's business.
export * from './format.js'
export { readLog, readSegments, joinLogParts, splitSegments, scanSegment, listSegments, WalCorruptError, type LogPart, type RecoveredLog, type SegmentFile, type SegmentScan, type ScanOutcome } from './reader.js'
export { WalWriter, resumeState, PREALLOCATE_BYTES_MAX, WalBackpressureError, WalStoppedError, WalSyncError, realIo, type WalIo, type FsyncPolicy, type WriterOptions, type WriterState, type AppendCallback } from './writer.js'
export { lockDataDir, readShardCount, recordShardCount, processStartTime, shardDir, DataDirError, LOCK_FILE, META_FILE, type DataDirLock } from './data-dir.js'
export { repairLog, WalLaterFormatError, type RepairAction } from './repair.js'
