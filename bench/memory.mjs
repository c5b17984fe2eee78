// @ts-check
// Memory per stored message: fills a ShardStore (the structure a shard keeps) with N messages and
// reports the growth of RSS per message against the size of the message's JSON, as a pull returns
// it. Run with --expose-gc so the figures are taken after a full collection.
//
//   npm run build && node --expose-gc bench/memory.mjs          (MESSAGES=1000000,10000000 CHATS=100000 TEXT_BYTES=64)

import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { ShardStore } from '../dist/store/index.js'

const sizes = (process.env.MESSAGES ?? '1000000').split(',').map(Number)
if (sizes.length > 1) {
  // One process per size: the previous size's store, garbage by then, is not always released
  // before the next baseline is read, which understates the next figure.
  for (const n of sizes) {
    const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url)], { env: { ...process.env, MESSAGES: String(n) }, stdio: 'inherit' })
    if (r.status !== 0) process.exit(r.status ?? 1)
  }
  process.exit(0)
}
const chatsN = Number(process.env.CHATS ?? 100_000)
const textBytes = Number(process.env.TEXT_BYTES ?? 64)
const gc = /** @type {any} */ (globalThis).gc ?? (() => {})
const text = 'x'.repeat(textBytes)
const chats = Array.from({ length: chatsN }, (_, c) => `user${c}:user${c + 1}`)
const senders = Array.from({ length: chatsN }, (_, c) => `user${c}`)

// Twice: the first full collection can leave work for a second one to finish (weak handles).
const collect = () => {
  gc()
  gc()
}

for (const n of sizes) {
  collect()
  const m0 = process.memoryUsage()
  const store = new ShardStore()
  const t0 = 1_795_577_316_479_813
  for (let k = 0; k < n; k++) {
    const c = k % chatsN
    store.append(/** @type {string} */ (chats[c]), t0 + k, text, /** @type {string} */ (senders[c]))
  }
  collect()
  const m1 = process.memoryUsage()
  const rss0 = m0.rss
  const rss1 = m1.rss
  const stats = store.stats()
  // JSON size of a message as pulled, without the separator the store keeps after each one.
  const jsonPerMessage = (stats.jsonBytes - stats.messages) / stats.messages
  const rssPerMessage = (rss1 - rss0) / n
  console.log(
    `${n} messages in ${chatsN} chats (${textBytes}-byte texts): RSS +${((rss1 - rss0) / 2 ** 20).toFixed(0)} MiB, ` +
      `${rssPerMessage.toFixed(1)} bytes/message for ${jsonPerMessage.toFixed(1)} bytes of JSON: ${(rssPerMessage / jsonPerMessage).toFixed(2)}x`,
  )
  // Where it is: V8's heap (chats' indexes and objects) and outside it (the slab's chunks).
  const perMessage = (/** @type {'heapUsed' | 'arrayBuffers'} */ k) => +((m1[k] - m0[k]) / n).toFixed(1)
  console.log(
    JSON.stringify({
      messages: n,
      chats: chatsN,
      textBytes,
      rssBytesPerMessage: +rssPerMessage.toFixed(1),
      jsonBytesPerMessage: +jsonPerMessage.toFixed(1),
      ratio: +(rssPerMessage / jsonPerMessage).toFixed(3),
      heapUsedBytesPerMessage: perMessage('heapUsed'),
      arrayBufferBytesPerMessage: perMessage('arrayBuffers'),
    }),
  )
  if (store.stats().messages !== n) throw new Error('lost messages')
}
