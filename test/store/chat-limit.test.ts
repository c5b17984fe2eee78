// A chat's message limit (IM_ERR_CHAT_FULL), with the limit lowered so that it can be reached:
// a send to a full chat is refused before it is logged, so a logged message is always stored and
// recovery never meets a chat it cannot hold; a log that holds more anyway (written by a version
// without that check) still recovers, keeping each chat's newest messages.

import t from 'tap'
import { Errors } from '../../src/errors.js'
import type { SendResponse } from '../../src/rpc/index.js'
import { ChatLog } from '../../src/store/chat-log.js'
import { recoverStore } from '../../src/store/recover.js'
import { SegmentIndex } from '../../src/store/retention.js'
import { Shard, type MessageLog } from '../../src/store/shard.js'
import { ShardStore } from '../../src/store/shard-store.js'
import type { AppendCallback } from '../../src/wal/index.js'
import { writeLog, type Msg } from '../wal/helpers.js'

const texts = (store: ShardStore, chat: string): string[] =>
  (JSON.parse(store.pull(chat, 0, 1000, false).json.toString()) as { text: string }[]).map((m) => m.text)

/** A log that holds every append until the test settles it. */
class HeldLog implements MessageLog {
  readonly appended: Buffer[] = []
  private readonly callbacks: AppendCallback[] = []
  append(payload: Uint8Array, cb: AppendCallback): void {
    this.appended.push(Buffer.from(payload))
    this.callbacks.push(cb)
  }
  settle(i: number, err: NodeJS.ErrnoException | null = null): void {
    ;(this.callbacks[i] as AppendCallback)(err)
  }
}

t.test('a full chat refuses a message whole, and takes messages again once it has room', async (t) => {
  const log = new ChatLog('room', undefined, 3)
  for (let i = 1; i <= 3; i++) log.append(i, `m${i}`, 'alice')
  t.ok(log.full)
  const before = log.pull(0, 10, false).json.toString()
  t.throws(() => log.append(4, 'm4', 'alice'), { code: 'IM_ERR_CHAT_FULL', statusCode: 507 })
  t.equal(log.count, 3)
  t.equal(log.pull(0, 10, false).json.toString(), before, 'the refused message is nowhere in the pages')
  t.throws(() => log.reserve(), { code: 'IM_ERR_CHAT_FULL' }, 'no room to reserve either')
  log.dropOldest(1)
  t.notOk(log.full)
  log.reserve()
  t.throws(() => log.reserve(), { code: 'IM_ERR_CHAT_FULL' }, 'the room freed is taken by the reservation')
  log.release()
  log.append(4, 'm4', 'alice')
  t.same(JSON.parse(log.pull(0, 10, false).json.toString()).map((m: { text: string }) => m.text), ['m2', 'm3', 'm4'])
})

t.test('a send to a full chat is refused before it reaches the log; sends in flight count', async (t) => {
  const held = new HeldLog()
  const store = new ShardStore({ chatMessagesMax: 3 })
  const shard = new Shard(0, held, store)
  const replies: SendResponse[] = []
  const send = (text: string, chat = 'room'): void => shard.send({ message: { chat, text, sender: 'alice', send_time: 0 } }, (r) => replies.push(r))

  send('one')
  send('two')
  send('three')
  t.equal(held.appended.length, 3, 'three sends are in the log, none durable yet')
  t.throws(() => send('four'), { name: 'PullchatError', code: 'IM_ERR_CHAT_FULL', statusCode: 507 }, 'a fourth is refused while three are in flight')
  t.equal(held.appended.length, 3, 'the refused send was not logged')

  // A failed append gives its room back.
  held.settle(1, Object.assign(new Error('EIO'), { code: 'EIO' }))
  t.equal(replies[0]?.code, Errors.WAL_WRITE.wireId)
  send('five')
  t.equal(held.appended.length, 4)
  held.settle(0)
  held.settle(2)
  held.settle(3)
  t.same(replies.map((r) => r.code), [Errors.WAL_WRITE.wireId, 0, 0, 0])
  t.same(texts(store, 'room'), ['one', 'three', 'five'], 'exactly the acknowledged sends are stored')
  t.throws(() => send('six'), { code: 'IM_ERR_CHAT_FULL' }, 'full once they are stored')
  t.equal(held.appended.length, 4)

  // Other chats are not affected, and retention makes room.
  send('elsewhere', 'other')
  t.equal(held.appended.length, 5)
  store.dropOldest('room', 1)
  send('seven')
  t.equal(held.appended.length, 6)
})

t.test('a log holding more messages than a chat can still recovers, keeping the newest', async (t) => {
  const dir = t.testdir()
  const msgs: Msg[] = Array.from({ length: 5 }, (_, i) => ({ chat: 'room', sender: 'alice', text: `m${i + 1}`, sendTime: 1_000 + i }))
  msgs.push({ chat: 'other', sender: 'bob', text: 'o1', sendTime: 2_000 })
  await writeLog(dir, msgs)

  const store = new ShardStore({ chatMessagesMax: 3 })
  const dropped: string[] = []
  const recovery = recoverStore(dir, 0, store, { onDropOldest: (chat) => dropped.push(chat) })
  t.equal(recovery.records, 6, 'every record was read')
  t.equal(recovery.overLimit, 2)
  t.same(dropped, ['room', 'room'])
  t.same(texts(store, 'room'), ['m3', 'm4', 'm5'])
  t.same(texts(store, 'other'), ['o1'])
  t.equal(store.stats().messages, 4)
})

t.test("retention's segment index forgets the messages recovery dropped", async (t) => {
  const store = new ShardStore()
  for (let i = 1; i <= 5; i++) store.append('room', i, `m${i}`, 'alice')
  const index = new SegmentIndex()
  index.note('/nonexistent/a.wal', 'room', 1)
  index.note('/nonexistent/a.wal', 'room', 2)
  for (let i = 3; i <= 5; i++) index.note('/nonexistent/b.wal', 'room', 1e15 + i)
  // As recovery does for a chat over its limit: the store drops its oldest, the index forgets it.
  store.dropOldest('room', 1)
  index.forgetOldest('room')
  const removed: string[] = []
  const result = index.enforce({ retentionMs: 1, retentionBytes: 0 }, 1e15, { currentSegment: '/nonexistent/c.wal', removeSealed: (p) => removed.push(p) }, store)
  t.same(removed, ['/nonexistent/a.wal'], 'only the old segment goes')
  t.same(result, { segments: 1, messages: 1 })
  t.same(texts(store, 'room'), ['m3', 'm4', 'm5'], "b.wal's messages all stay")
})
