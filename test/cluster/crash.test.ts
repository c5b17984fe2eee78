// The durability promise, tested as users would break it: the real server under concurrent sends,
// killed with SIGKILL at a random moment, restarted on the same data directory. Every send that
// got a 200 must be there exactly once, with the send_time it was acknowledged with, in order.
// Sends that were in flight at the kill may or may not have survived, but never twice.

import { readFileSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { segmentName, shardDir } from '../../src/wal/index.js'
import { exited, spawnServer } from '../helpers/process.js'
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
    t.ok(acked.size > before - 1 && acked.size > 0, `round ${round}: ${acked.size} sends acknowledged so far`)

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
