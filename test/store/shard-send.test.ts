// A shard takes a send as strings (Shard.send) or as the JSON literals of the request's body
// (Shard.sendBytes, the front end's common case): the two log the same record, store the same
// message, answer the same, and refuse the same.

import assert from 'node:assert/strict'
import fc from 'fast-check'
import t from 'tap'
import { holds } from '../helpers/fast-check.js'
import { readSendBody } from '../../src/http/send-body.js'
import type { SendResponse } from '../../src/rpc/index.js'
import { Shard, type MessageLog } from '../../src/store/shard.js'
import { ShardStore } from '../../src/store/shard-store.js'
import type { AppendCallback } from '../../src/wal/index.js'

class RecordingLog implements MessageLog {
  readonly appended: Buffer[] = []
  readonly callbacks: AppendCallback[] = []
  append(payload: Uint8Array, cb: AppendCallback): void {
    this.appended.push(Buffer.from(payload))
    this.callbacks.push(cb)
  }
}

function shard(chatMessagesMax?: number): { shard: Shard; log: RecordingLog; replies: SendResponse[] } {
  const log = new RecordingLog()
  let now = 1_795_577_316_000_000
  const s = new Shard(0, log, new ShardStore(chatMessagesMax === undefined ? {} : { chatMessagesMax }), { clock: () => now++ })
  return { shard: s, log, replies: [] }
}

const unit = fc.constantFrom('a', 'Z', ' ', ':', 'é', '世', '😀', '\u2028', '\u007f')
const field = fc.string({ unit, minLength: 1, maxLength: 10 })

t.test('sends as strings and as literals log, store and answer the same', (t) =>
  holds(
    t,
    fc.property(fc.array(fc.record({ chat: fc.constantFrom('a:b', 'room', 'é:世'), text: field, sender: field }), { minLength: 1, maxLength: 20 }), (sends) => {
      const a = shard()
      const b = shard()
      for (const m of sends) {
        a.shard.send({ message: { ...m, send_time: 0 } }, (r) => a.replies.push(r))
        const fields = readSendBody(Buffer.from(JSON.stringify({ chat: m.chat, text: m.text, sender: m.sender })))
        assert.ok(fields !== null)
        b.shard.sendBytes(m.chat, fields, (r) => b.replies.push(r))
      }
      assert.deepEqual(b.log.appended, a.log.appended, 'the same records')
      for (const s of [a, b]) for (const cb of s.log.callbacks) cb(null)
      assert.deepEqual(b.replies, a.replies, 'the same answers')
      for (const chat of ['a:b', 'room', 'é:世']) {
        assert.deepEqual(b.shard.pull({ chat, cursor: 0, limit: 100, reverse: false }), a.shard.pull({ chat, cursor: 0, limit: 100, reverse: false }), chat)
      }
      return true
    }),
  ),
)

t.test('as literals, a full chat refuses before the log, and a failed append stores nothing', async (t) => {
  const { shard: s, log, replies } = shard(2)
  const body = (text: string) => readSendBody(Buffer.from(JSON.stringify({ chat: 'room', text, sender: 'alice' })))
  const send = (text: string): void => {
    const fields = body(text)
    if (fields === null) throw new Error('not the common body')
    s.sendBytes('room', fields, (r) => replies.push(r))
  }
  send('one')
  send('two')
  t.throws(() => send('three'), { code: 'IM_ERR_CHAT_FULL' })
  t.equal(log.appended.length, 2, 'the refused send was not logged')
  log.callbacks[0]?.(Object.assign(new Error('EIO'), { code: 'EIO' }))
  log.callbacks[1]?.(null)
  t.same(replies.map((r) => r.code === 0), [false, true])
  t.same(JSON.parse(s.pull({ chat: 'room', cursor: 0, limit: 10, reverse: false }).messages.toString()).map((m: { text: string }) => m.text), ['two'])
  const empty = { bytes: Buffer.from('""'), textFrom: 0, textTo: 2, senderFrom: 0, senderTo: 2 }
  t.throws(() => s.sendBytes('room', empty, () => t.fail('answered')), { code: 'IM_ERR_MISSING_FIELD' }, 'empty literals are refused as empty strings are')
})

t.test('reading ahead for durable sends: the list of chats in the log follows the answers and stays short', async (t) => {
  const { shard: s, log, replies } = shard()
  const landing = (): number => (s as unknown as { landing: unknown[]; landed: number }).landing.length - (s as unknown as { landed: number }).landed
  let answered = 0
  for (let round = 0; round < 300; round++) {
    // Ten sends to ten chats, then their round is durable: the log says so, then answers them in order.
    for (let i = 0; i < 10; i++) s.send({ message: { chat: `c${i}:d${round % 7}`, text: `m${round}`, sender: `c${i}`, send_time: 0 } }, (r) => replies.push(r))
    t.equal(landing(), 10, `round ${round}: ten sends waiting`) // (reported only when it fails)
    s.readAheadDurable(10)
    for (const cb of log.callbacks.splice(0, 10)) cb(null)
    answered += 10
    if (landing() !== 0) break
  }
  t.equal(answered, 3000)
  t.equal(landing(), 0, 'none waiting once all are answered')
  t.ok((s as unknown as { landing: unknown[] }).landing.length < 1100, 'the list is cut back as answers come')
  t.equal(replies.length, 3000, 'every send answered')
  t.ok(replies.every((r) => r.code === 0), 'all stored')
  t.equal(s.pull({ chat: 'c3:d1', cursor: 0, limit: 1000, reverse: false }).count, 43, 'every message of a chat is there')
  s.readAheadDurable(5) // more than are waiting: reads what there is
})
