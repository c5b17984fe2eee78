// FNV-1a, 32 bits: the hash of chat ids. Over a string's UTF-16 code units for the shard a chat
// belongs to (src/rpc/shard-hash.ts, which also mixes it) and for the shard's chat table
// (src/store/shard-store.ts); over the UTF-8 bytes of an id as a log record holds them for
// recovery's scans (src/store/chat-ids.ts). Both answer an int32.

const OFFSET = 0x811c9dc5 | 0
const PRIME = 0x01000193

/** FNV-1a over the UTF-16 code units of `s`. */
export function fnv1aUnits(s: string): number {
  let h = OFFSET
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), PRIME)
  return h
}

/** FNV-1a over the bytes `src[from, to)`. */
export function fnv1aBytes(src: Uint8Array, from: number, to: number): number {
  let h = OFFSET
  for (let i = from; i < to; i++) h = Math.imul(h ^ (src[i] as number), PRIME)
  return h
}
