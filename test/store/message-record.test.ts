// Log records of messages: version 2 (the message's JSON) round-trips exactly and matches what the
// store serves; version 1 (msgpack, written by earlier releases) still replays, alone or mixed.

import assert from 'node:assert/strict'
import fc from 'fast-check'
import t from 'tap'
import { holds } from '../helpers/fast-check.js'
import { ChatLog } from '../../src/store/chat-log.js'
import { CHAT_ID_FROM, RecordPrefixes, decodeMessage, encodeMessage, encodeMessageV1, encodeSend, messageRecordChecker, readStoredMessage, recordPrefix, storedJsonFrom } from '../../src/store/message-record.js'
import { ShardStore, recoverStore } from '../../src/store/index.js'
import { appendAll, messages, openWriter } from '../wal/helpers.js'

// Well-formed Unicode (the HTTP layer refuses lone surrogates), JSON's special characters included.
const str = (minLength: number) => fc.string({ unit: fc.oneof(fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), fc.constantFrom('"', '\\', '\n', '\u2028', '😀')), minLength, maxLength: 40 })
const message = fc.record({ chat: str(1), sender: str(1), text: str(0), sendTime: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }) })

t.test('version 2 round-trips any message, and its JSON is what a pull serves', (t) =>
  holds(
    t,
    fc.property(message, (m) => {
      const record = encodeMessage(m.chat, m.sender, m.text, m.sendTime)
      assert.equal(record[0], 0x02, 'version byte')
      assert.deepEqual(decodeMessage(record), { ...m })
      const stored = readStoredMessage(record)
      assert.ok(stored !== null && stored.json !== null)
      assert.equal(stored.chat, m.chat)
      assert.equal(stored.sendTime, m.sendTime)
      const json = stored.json.toString('utf8', stored.jsonFrom)
      // What recovery's scans read instead (no string): the same checks, the id as bytes.
      assert.equal(storedJsonFrom(record), stored.jsonFrom)
      assert.deepEqual(record.subarray(CHAT_ID_FROM, stored.jsonFrom), Buffer.from(m.chat))
      assert.equal(storedJsonFrom(encodeMessageV1(m.chat, m.sender, m.text, m.sendTime)), -1, 'a version 1 record is not read by storedJsonFrom')
      assert.deepEqual(JSON.parse(json), { chat: m.chat, text: m.text, sender: m.sender, send_time: m.sendTime })
      // The stored JSON is JSON.stringify's, byte for byte (what a pull page concatenates).
      assert.equal(json, JSON.stringify({ chat: m.chat, text: m.text, sender: m.sender, send_time: m.sendTime }))
      // The send path's encoder (a chat's prefix written once, pieces written in place) makes the same bytes.
      const log = new ChatLog(m.chat)
      assert.deepEqual(log.encodeSend(m.sendTime, m), record, 'the chat\'s encoder')
      assert.deepEqual(log.encodeSend(m.sendTime, m), record, 'again: its prefix is not changed by use')
      const prefix = recordPrefix(m.chat)
      assert.deepEqual(encodeSend(prefix, 0, prefix.length, m.sendTime, m.text, m.sender), record, 'encodeSend')
      assert.deepEqual(decodeMessage(encodeMessageV1(m.chat, m.sender, m.text, m.sendTime)), { ...m }, 'version 1 too')
    }),
  ),
)

t.test('record prefixes side by side: each stays its chat\'s as the buffer grows, and encodes its records', (t) =>
  holds(
    t,
    fc.property(fc.array(message, { minLength: 1, maxLength: 60 }), fc.integer({ min: 0, max: 200 }), (ms, longIds) => {
      const prefixes = new RecordPrefixes()
      // Long ids (a few KiB each) make the buffer grow past its first 16 KiB.
      const chats = ms.map((m, i) => (i < longIds ? m.chat.repeat(Math.ceil(400 / m.chat.length)) : m.chat))
      const ranges = chats.map((chat) => {
        const from = prefixes.add(chat)
        return [from, prefixes.used] as const
      })
      ms.forEach((m, i) => {
        const [from, to] = ranges[i] as readonly [number, number]
        const chat = chats[i] as string
        assert.deepEqual(prefixes.bytes.subarray(from, to), recordPrefix(chat), 'its bytes')
        assert.deepEqual(encodeSend(prefixes.bytes, from, to, m.sendTime, m.text, m.sender), encodeMessage(chat, m.sender, m.text, m.sendTime), 'its records')
      })
      assert.equal(prefixes.used, chats.reduce((n, chat) => n + recordPrefix(chat).length, 0), 'nothing between them')
    }),
    { numRuns: 200 },
  ),
)

t.test('a version 2 record whose JSON does not start with its own chat is not a message, to recovery or repair', async (t) => {
  // A pull confirms its chat from its messages' first bytes (chat-log.ts, extentIsChat).
  for (const [chat, other] of [
    ['a:b', 'a:c'],
    ['x"y\\z', 'x"y\\Z'],
    ['é:ü', 'é:ö'],
  ] as const) {
    const record = encodeMessage(chat, 'a', 'hi', 5)
    t.ok(readStoredMessage(record) !== null, `${chat}: as written, it replays`)
    const edited = Buffer.from(record.toString('utf8').replace(`"chat":${JSON.stringify(chat)}`, `"chat":${JSON.stringify(other)}`))
    t.equal(edited.length, record.length, `${chat}: the edit keeps the length`)
    t.equal(readStoredMessage(edited), null, `${chat}: its JSON names another chat than its header`)
    t.equal(storedJsonFrom(edited), -1, `${chat}: nor to recovery's scans`)
    t.equal(decodeMessage(edited), null)
    t.match(messageRecordChecker()(edited), /not a message/)
  }
  const record = encodeMessage('a:b', 'a', 'hi', 5)
  const unquoted = Buffer.from(record.toString('latin1').replace('"chat":"a:b"', '"chat":[a:b]'), 'latin1')
  t.equal(readStoredMessage(unquoted), null, 'the id, unquoted, is not the id')
  t.equal(storedJsonFrom(unquoted), -1)
})

t.test('repair refuses a version 2 record whose JSON is not what the store would write', async (t) => {
  const record = encodeMessage('a:b', 'a', 'hi', 5)
  const spaced = Buffer.from(record.toString('latin1').replace('"text":', '"text": '), 'latin1')
  t.equal(decodeMessage(spaced), null, 'equivalent JSON spelled differently is refused too')
})

t.test('a log written by an earlier release (version 1), then by this one, replays into the same store', async (t) => {
  const dir = t.testdir()
  const old = messages(0, 300)
  const current = messages(300, 300)
  const writer = openWriter(dir)
  await new Promise<void>((resolve, reject) => {
    let left = old.length
    for (const m of old) writer.append(encodeMessageV1(m.chat, m.sender, m.text, m.sendTime), (err) => (err !== null ? reject(err) : --left === 0 && resolve()))
  })
  await appendAll(writer, current)
  await writer.close()

  const recovered = new ShardStore()
  const r = recoverStore(dir, 0, recovered)
  t.equal(r.records, 600)
  const direct = new ShardStore()
  for (const m of [...old, ...current]) direct.append(m.chat, m.sendTime, m.text, m.sender)
  for (const chat of new Set([...old, ...current].map((m) => m.chat))) {
    for (const reverse of [false, true]) {
      t.equal(recovered.pull(chat, 0, 1000, reverse).json.toString(), direct.pull(chat, 0, 1000, reverse).json.toString(), `${chat} reverse=${reverse}`)
    }
  }
  const { bytes: recoveredBytes, ...recoveredRest } = recovered.stats()
  const { bytes: directBytes, ...directRest } = direct.stats()
  t.same(recoveredRest, directRest, 'same chats, messages and JSON bytes')
  t.ok(recoveredBytes <= directBytes, `recovery sizes each chat's index once (${recoveredBytes} <= ${directBytes} bytes)`)
})

t.test('recovery keeps one chat per id string, also when two records spell it in different bytes', async (t) => {
  // Recovery's scans find a chat by its id's bytes (chat-ids.ts); a chat is still its id's string.
  // A record whose id is a byte that is not UTF-8 (0xff, read as U+FFFD) names the chat "\ufffd",
  // whose own records spell it EF BF BD. No release writes such a record; a log may still hold one.
  const crafted = (sendTime: number): Buffer => {
    const head = Buffer.alloc(12)
    head[0] = 0x02
    head.writeDoubleLE(sendTime, 1)
    head.writeUInt16LE(1, 9)
    head[11] = 0xff
    return Buffer.concat([head, Buffer.from('{"chat":"'), Buffer.from([0xff]), Buffer.from(`","text":"x","sender":"a","send_time":${sendTime}}`)])
  }
  t.equal(readStoredMessage(crafted(2))?.chat, '\ufffd', 'the crafted record names "\\ufffd"')
  const write = async (payloads: Buffer[]): Promise<string> => {
    const dir = t.testdir()
    const writer = openWriter(dir)
    await new Promise<void>((resolve, reject) => {
      let left = payloads.length
      for (const p of payloads) writer.append(p, (err) => (err !== null ? reject(err) : --left === 0 && resolve()))
    })
    await writer.close()
    return dir
  }
  const inOrder = await write([encodeMessage('\ufffd', 'a', 'x', 1), crafted(2), encodeMessage('\ufffd', 'a', 'x', 3)])
  const store = new ShardStore()
  t.equal(recoverStore(inOrder, 0, store).records, 3)
  t.equal(store.stats().chats, 1, 'one chat')
  t.same(JSON.parse(store.pull('\ufffd', 0, 10, false).json.toString()).map((m: { send_time: number }) => m.send_time), [1, 2, 3])
  // The same chat: a send_time that goes back across the two spellings is refused.
  const backwards = await write([encodeMessage('\ufffd', 'a', 'x', 2), crafted(1)])
  t.throws(() => recoverStore(backwards, 0, new ShardStore()), /send_time 1 does not follow 2/)
})
