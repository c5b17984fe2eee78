// The durability promise, tested as users would break it: the real server under concurrent sends,
// killed with SIGKILL at a random moment, restarted on the same data directory. Every send that
// got a 200 must be there exactly once, with the send_time it was acknowledged with, in order.
// Sends that were in flight at the kill may or may not have survived, but never twice.

import { readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { segmentName, shardDir } from '../../src/wal/index.js'
import { exited, spawnServer } from '../helpers/process.js'
import { layout, type RecordLoc, type SegLoc } from '../wal/helpers.js'
import { request } from '../helpers/server.js'

const ROUNDS = Number(process.env.CRASH_ROUNDS ?? 3)
const SENDERS = 24
const CHATS = ['alice:bob', 'room-1', 'room-2', 'carol:dave', 'room-3', 'erin:frank']

interface Acked {
  readonly chat: string
  readonly text: string
  readonly sendTime: number
}

async function pullAll(port: number, chat: string, agent: http.Agent): Promise<{ text: string; send_time: number; chat: string }[]> {
  const out: { text: string; send_time: number; chat: string }[] = []
  let cursor = 0
  for (;;) {
    const res = await request(port, `/api/pull?chat=${encodeURIComponent(chat)}&cursor=${cursor}&limit=1000`, { agent })
    if (res.status !== 200) throw new Error(`pull ${chat}: ${res.status} ${res.text}`)
    out.push(...res.json.messages)
    cursor = res.json.next_cursor
    if (!res.json.has_more) return out
  }
}

t.test('SIGKILL under load loses no acknowledged send', async (t) => {
  const dataDir = t.testdir()
  const acked = new Map<string, Acked>() // by text
  const attempted = new Set<string>()
  for (let round = 0; round < ROUNDS; round++) {
    const { proc, port } = await spawnServer(t, ['--shards', '2'], { dataDir })
    const agent = new http.Agent({ keepAlive: true, maxSockets: SENDERS })
    const ackedBefore = acked.size
    let stop = false
    const senders = Array.from({ length: SENDERS }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const chat = CHATS[(w + i) % CHATS.length] as string
        const sender = chat.includes(':') ? (chat.split(':')[0] as string) : `w${w}`
        const text = `r${round}-w${w}-${i}`
        attempted.add(text)
        try {
          const res = await request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ chat, text, sender }), agent })
          if (res.status === 200) acked.set(text, { chat: res.json.chat, text, sendTime: res.json.send_time })
          else throw new Error(`unexpected ${res.status}: ${res.text}`)
        } catch (err) {
          if (!stop && (err as Error).message.startsWith('unexpected')) throw err
          return // the connection died with the server
        }
      }
    })
    const killAfterMs = 300 + Math.floor(Math.random() * 700)
    await new Promise((r) => setTimeout(r, killAfterMs))
    const before = acked.size
    proc.kill('SIGKILL')
    stop = true
    t.equal(await exited(proc), 'SIGKILL', `round ${round}: killed after ${killAfterMs} ms`)
    await Promise.all(senders)
    agent.destroy()
    t.ok(before > ackedBefore, `round ${round}: ${before - ackedBefore} sends acknowledged before the kill (${acked.size} so far)`)

    // Restart on the same directory and read everything back.
    const again = await spawnServer(t, ['--shards', '2'], { dataDir })
    t.match(again.output(), /"msg":"recovered"/, 'recovery reported')
    const reader = new http.Agent({ keepAlive: true })
    const seen = new Map<string, { chat: string; send_time: number }>()
    for (const chat of CHATS) {
      const msgs = await pullAll(again.port, chat, reader)
      for (let i = 1; i < msgs.length; i++) {
        if ((msgs[i] as { send_time: number }).send_time <= (msgs[i - 1] as { send_time: number }).send_time) t.fail(`${chat}: send_time not strictly increasing at ${i}`)
      }
      for (const m of msgs) {
        if (seen.has(m.text)) t.fail(`duplicate message ${m.text}`)
        if (!attempted.has(m.text)) t.fail(`a message nobody sent: ${m.text}`)
        seen.set(m.text, { chat: m.chat, send_time: m.send_time })
      }
    }
    let missing = 0
    let wrong = 0
    for (const a of acked.values()) {
      const s = seen.get(a.text)
      if (s === undefined) missing++
      else if (s.send_time !== a.sendTime || s.chat !== a.chat) wrong++
    }
    t.equal(missing, 0, `round ${round}: every acknowledged send survived (${acked.size} acknowledged, ${seen.size} stored)`)
    t.equal(wrong, 0, `round ${round}: with the chat and send_time it was acknowledged with`)
    reader.destroy()
    again.proc.kill('SIGTERM')
    t.equal(await exited(again.proc), 0, 'graceful stop after recovery')
  }
})

t.test('a stop and a restart: the log ends in preallocated zeros, which read as clean, and appending resumes over them', async (t) => {
  const dataDir = t.testdir()
  const send = (port: number, text: string) =>
    request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ chat: 'alice:bob', text, sender: 'alice' }) })
  const first = await spawnServer(t, ['--shards', '1'], { dataDir })
  for (const text of ['one', 'two']) t.equal((await send(first.port, text)).status, 200, `sent ${text}`)
  first.proc.kill('SIGTERM')
  t.equal(await exited(first.proc), 0, 'stopped')
  const segment = join(shardDir(dataDir, 0), segmentName(1))
  const bytes = readFileSync(segment)
  const zerosFrom = bytes.length - bytes.reverse().findIndex((b) => b !== 0)
  t.ok(bytes.length - zerosFrom >= 32 * 1024, `${bytes.length - zerosFrom} zero bytes after the records`)

  const again = await spawnServer(t, ['--shards', '1'], { dataDir })
  t.match(again.output(), /"msg":"recovered","records":2,/, 'both records recovered')
  t.notMatch(again.output(), /torn tail/, 'no torn tail reported')
  t.equal((await send(again.port, 'three')).status, 200, 'sent three')
  const page = await request(again.port, '/api/pull?chat=alice:bob&limit=10')
  t.same(page.json.messages.map((m: { text: string }) => m.text), ['one', 'two', 'three'])
  again.proc.kill('SIGKILL')
  await exited(again.proc)
  const third = await spawnServer(t, ['--shards', '1'], { dataDir })
  t.match(third.output(), /"msg":"recovered","records":3,/, 'after a kill, all three: the third was written over the zeros')
  third.proc.kill('SIGTERM')
  t.equal(await exited(third.proc), 0)
})

// A power cut during the last round's fdatasync can persist its pages in any order: here the page
// holding the round's first record never made it (zeros, as preallocated), the rest of the round
// did. Nothing of that round was acknowledged; the server cuts it and starts. Damage to a round
// that a later one follows is refused, as corruption.
t.test('a power cut that tore the last round out of order: the round is cut, the server starts; an earlier round damaged is refused', async (t) => {
  const dataDir = t.testdir()
  const send = (port: number, text: string) =>
    request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ chat: 'alice:bob', text, sender: 'alice' }) })
  const segment = join(shardDir(dataDir, 0), segmentName(1))
  // Where the records and rounds are (format 2: each round's first record is marked).
  const recordsNow = () => (layout(shardDir(dataDir, 0))[0] as SegLoc).records
  const first = await spawnServer(t, ['--shards', '1'], { dataDir })
  let sent = 0
  for (const text of ['one', 'two']) {
    t.equal((await send(first.port, text)).status, 200, `sent ${text}`)
    sent++
  }
  // Bursts of concurrent sends, until the last round holds several records (sends read in one
  // turn of the event loop share a round; the first of a burst may go alone).
  for (let burst = 0; burst < 10; burst++) {
    const res = await Promise.all(Array.from({ length: 6 }, (_, i) => send(first.port, `b${burst}.${i}`)))
    t.ok(res.every((r) => r.status === 200), `burst ${burst} acknowledged`)
    sent += res.length
    const records = recordsNow()
    if (records.length - records.findLastIndex((r) => r.roundStart) >= 2) break
  }
  first.proc.kill('SIGTERM')
  t.equal(await exited(first.proc), 0, 'stopped')

  const clean = readFileSync(segment)
  const records = recordsNow()
  t.equal(records.length, sent, 'every acknowledged send is a record')
  const last = records.findLastIndex((r) => r.roundStart)
  t.ok(last >= 1 && last <= records.length - 2, `the last round holds ${records.length - last} records`)

  const torn = Buffer.from(clean)
  torn.fill(0, (records[last] as RecordLoc).offset, (records[last] as RecordLoc).end)
  writeFileSync(segment, torn)
  const second = await spawnServer(t, ['--shards', '1'], { dataDir })
  t.match(second.output(), /"msg":"cut a torn tail off the log".*"reason":"zero-length record in the last round/, 'the cut is logged')
  t.match(second.output(), new RegExp(`"msg":"recovered","records":${last},`), `the ${last} records before the round recovered`)
  t.equal((await send(second.port, 'after')).status, 200, 'sends work')
  second.proc.kill('SIGTERM')
  t.equal(await exited(second.proc), 0)

  // The bytes as they were before the cut, with the record before the last round zeroed instead:
  // the last round's first record follows it, so that damage was acknowledged data.
  const earlier = Buffer.from(clean)
  const victim = records[last - 1] as RecordLoc
  earlier.fill(0, victim.offset, victim.end)
  writeFileSync(segment, earlier.subarray(0, (records.at(-1) as RecordLoc).end))
  await t.rejects(spawnServer(t, ['--shards', '1'], { dataDir }), { message: new RegExp(`corrupt log.*offset ${victim.offset}: zero-length record, followed by a valid record[^]*"exitCode":65`) }, 'refuses to start, exit 65')
})
