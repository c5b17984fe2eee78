// Records whose checksum is good but that cannot be replayed (not a message; a send_time out of
// order): recovery refuses naming the segment and the record's offset, and repair cuts there.

import t from 'tap'
import { ShardStore, encodeMessageV1, messageRecordChecker, recoverStore } from '../../src/store/index.js'
import { WalCorruptError, listSegments, repairLog } from '../../src/wal/index.js'
import { appendAll, assertStore, layout, messages, openWriter, payloadOf, type Msg } from './helpers.js'

function appendRaw(writer: ReturnType<typeof openWriter>, payload: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => writer.append(payload, (err) => (err === null ? resolve() : reject(err))))
}

const cases: Array<[string, (before: readonly Msg[]) => Uint8Array, RegExp]> = [
  ['not a message', () => Buffer.from('plain bytes, valid checksum'), /has a valid checksum but is not a message/],
  ['send_time out of order', (before) => payloadOf({ ...(before.at(-1) as Msg), text: 'replayed', sendTime: 1 }), /does not follow/],
  ['version 2, chat id length past the end', (before) => {
    const p = payloadOf(before.at(-1) as Msg)
    p.writeUInt16LE(60_000, 9)
    return p
  }, /has a valid checksum but is not a message/],
  ['version 2, JSON object cut short', (before) => payloadOf(before.at(-1) as Msg).subarray(0, -1), /has a valid checksum but is not a message/],
  ['version 2, send_time not an integer', (before) => {
    const p = payloadOf(before.at(-1) as Msg)
    p.writeDoubleLE(1.5, 1)
    return p
  }, /has a valid checksum but is not a message/],
  ['msgpack that is not a version 1 message', () => encodeMessageV1('a:b', 'a', 'hi', 1).subarray(0, 3), /has a valid checksum but is not a message/],
]

for (const [name, bad, why] of cases) {
  t.test(name, async (t) => {
    const dir = t.testdir()
    const before = messages(0, 20)
    const after = messages(20, 10)
    const writer = openWriter(dir)
    await appendAll(writer, before)
    await appendRaw(writer, bad(before))
    await appendAll(writer, after)
    await writer.close()
    const segment = listSegments(dir)[0]?.path as string
    const badAt = layout(dir)[0]?.records[before.length]?.offset // where the bad record starts, by its length fields

    const err = (() => {
      try {
        recoverStore(dir, 0, new ShardStore())
      } catch (e) {
        return e
      }
      return null
    })()
    t.ok(err instanceof WalCorruptError, 'recovery refuses')
    t.equal((err as WalCorruptError).file, segment, 'names the segment file')
    t.equal((err as WalCorruptError).offset, badAt, "names the bad record's offset")
    t.match((err as Error).message, why)

    const actions = repairLog(dir, 0, messageRecordChecker())
    t.equal(actions.length, 1)
    t.match(actions[0], { file: segment, action: 'truncated', offset: badAt })
    const store = new ShardStore()
    recoverStore(dir, 0, store)
    assertStore(store, before)
  })
}
