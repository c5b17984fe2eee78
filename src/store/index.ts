// The store: shards that own chats and keep each chat's messages and index together, in extents of
// the shard's arena (chat-log.ts, arena.ts), found through an open-addressing table (shard-store.ts).
export { ChatLog, type Page } from './chat-log.js'
export { ShardStore, type StoreStats } from './shard-store.js'
export { prefaultChunks, spareBytes } from './arena.js'
export { Shard, nowUs, NO_LOG, type MessageLog } from './shard.js'
export { recoverStore, scanShard, scanSegments, joinScans, wholeScan, applyScan, type Recovery, type ShardScan, type JoinedScan } from './recover.js'
export { encodeMessage, encodeMessageV1, decodeMessage, readStoredMessage, messageJson, messageRecordChecker, type MessageRecord } from './message-record.js'
export * from './exit-codes.js'
export { openShard, retains, scanShards, ShardFatalError, type HostedShard } from './shard-host.js'
