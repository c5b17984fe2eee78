// @ts-check
// In-memory append cost: 1M ShardStore.append calls over 10k chats (what recovery's rebuild
// phase and every acknowledged send do).   npm run build && node bench/store-append.mjs
import { ShardStore } from '../dist/store/index.js'

const n = Number(process.env.MESSAGES ?? 1_000_000)
const chatsN = Number(process.env.CHATS ?? 10_000)
const text = 'x'.repeat(Number(process.env.TEXT_BYTES ?? 64))
const chats = Array.from({ length: chatsN }, (_, c) => `user${c}:user${c + 1}`)
const senders = Array.from({ length: chatsN }, (_, c) => `user${c}`)
for (let run = 0; run < 3; run++) {
  const store = new ShardStore()
  const t = performance.now()
  for (let k = 0; k < n; k++) store.append(/** @type {string} */ (chats[k % chatsN]), 1e15 + k, text, /** @type {string} */ (senders[k % chatsN]))
  const ms = performance.now() - t
  console.log(`${n} appends over ${chatsN} chats: ${ms.toFixed(0)} ms, ${((ms * 1000) / n).toFixed(2)} µs each`)
}
