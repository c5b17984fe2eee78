// Which shard owns a chat: FNV-1a (32-bit) over the canonical chat id's UTF-16 code units, mod
// the shard count. Stable across processes, versions and restarts: the data directory's layout
// depends on it, so changing it is a data migration.

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

export function hashChat(chat: string): number {
  let h = FNV_OFFSET
  for (let i = 0; i < chat.length; i++) {
    h ^= chat.charCodeAt(i)
    h = Math.imul(h, FNV_PRIME)
  }
  return h >>> 0
}

export function shardOf(chat: string, shards: number): number {
  return hashChat(chat) % shards
}
