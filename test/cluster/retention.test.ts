// Retention by bytes: whole sealed segments are deleted, the same messages leave memory, and they
// stay gone after a restart.

import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { decodeMessage } from '../../src/store/message-record.js'
import { readLog } from '../../src/wal/index.js'
import { getJson, postJson, startServer } from '../helpers/server.js'

const SEGMENT_BYTES = 64 * 1024
const RETENTION_BYTES = 160 * 1024

async function all(port: number, chat: string): Promise<string[]> {
  const texts: string[] = []
  let cursor = 0
  for (;;) {
    const page = await getJson(port, '/api/pull', { chat, cursor, limit: 1000 })
    texts.push(...page.json.messages.map((m: { text: string }) => m.text))
    cursor = page.json.next_cursor
    if (!page.json.has_more) return texts
  }
}

/** The texts of the messages in a shard's log, in log order. */
function loggedTexts(dir: string): string[] {
  const texts: string[] = []
  readLog(dir, 0, (payload) => {
    const m = decodeMessage(payload)
    if (m !== null) texts.push(m.text)
  })
  return texts
}

t.test('retention by bytes drops the oldest segments from disk and memory', async (t) => {
  const dataDir = t.testdir()
  const opts = { shards: 1, segmentBytes: SEGMENT_BYTES, retentionBytes: RETENTION_BYTES, dataDir }
  const sent: string[] = []
  const mismatches: string[] = []
  {
    const { port, cluster } = await startServer(t, opts)
    const dir = join(dataDir, 'shard-0')
    const pad = 'x'.repeat(200)
    for (let batch = 0; batch < 20; batch++) {
      const replies = await Promise.all(
        Array.from({ length: 100 }, (_, i) => {
          const text = `m${String(batch * 100 + i).padStart(5, '0')}-${pad}`
          return postJson(port, '/api/send', { chat: 'a:b', text, sender: 'a' }).then((r) => ({ r, text }))
        }),
      )
      for (const { r } of replies) t.equal(r.status, 200)
      // Acknowledgement order is send_time order within the chat.
      const ordered = replies.sort((x, y) => x.r.json.send_time - y.r.json.send_time)
      sent.push(...ordered.map((x) => x.text))
      // Retention ran right after the roll, before these answers went out. Each message was
      // counted in the segment its record is in, so what left the disk left memory, no more and
      // no less (a round's messages counted in the segment the round after it started would stay
      // in memory after their segment went). Checked after every batch: each roll is a chance.
      const held = await all(port, 'a:b')
      const logged = loggedTexts(dir)
      if (held.length !== logged.length || held.some((text, i) => text !== logged[i])) {
        mismatches.push(`after batch ${batch}: ${held.length} held, ${logged.length} in the log`)
      }
    }
    t.same(mismatches, [], 'after every batch, memory holds exactly the messages the log holds')
    await new Promise((r) => setTimeout(r, 200)) // retention runs right after a roll
    const held = await all(port, 'a:b')
    t.ok(held.length < sent.length, `dropped some: ${held.length} of ${sent.length} held`)
    t.ok(held.length > 0, 'kept some')
    t.same(held, sent.slice(sent.length - held.length), 'what is held is the newest messages, in order, none missing')
    const bytes = readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0)
    t.ok(bytes <= RETENTION_BYTES + SEGMENT_BYTES, `log is ${bytes} bytes, within the limit plus one segment`)
    t.same(held, loggedTexts(dir), 'memory holds exactly the messages the log holds')
    await cluster.stop()
    // At start-up retention runs at once, so it may drop one more segment than the running
    // server had (which checks at each roll and on a timer).
    const again = await startServer(t, opts)
    const after = await all(again.port, 'a:b')
    t.ok(after.length > 0, `after a restart ${after.length} held`)
    t.same(after, held.slice(held.length - after.length), 'after a restart: the newest messages, none that was dropped')
    t.equal(after.at(-1), sent.at(-1))
  }
})
