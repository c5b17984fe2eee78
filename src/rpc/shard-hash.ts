// Which shard owns a chat: FNV-1a (32-bit) over the canonical chat id's UTF-16 code units, mixed
// by murmur3's 32-bit finalizer, mod the shard count. Stable across processes, versions and
// restarts: the data directory's layout depends on it, so changing it is a data migration.
//
// Why the finalizer: FNV-1a multiplies by an odd number, which never carries high bits down, so
// its low k bits depend only on the low k bits of each code unit. Taken mod a power of two (2, 4,
// 8 shards) that ignores most of the id: "user1:user2", "user2:user3", ... put 91% of chats on
// one of 2 shards. Mixing first makes every bit count.

import { fnv1aUnits } from '../fnv.js'

export function hashChat(chat: string): number {
  return fnv1aUnits(chat) >>> 0
}

function mix(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

export function shardOf(chat: string, shards: number): number {
  // One shard (the default on two cores) owns every chat: no hash to compute on each request.
  return shards === 1 ? 0 : mix(hashChat(chat)) % shards
}
