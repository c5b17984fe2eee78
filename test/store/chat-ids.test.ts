// ChatIds (src/store/chat-ids.ts): recovery's scans find a record's chat by its id's bytes. Against
// a Map keyed by the bytes' hex: every sequence added is found with its chat, wherever it lies in
// its source buffer, and no other sequence is, through the table's growth and hash collisions.

import assert from 'node:assert/strict'
import fc from 'fast-check'
import t from 'tap'
import { holds } from '../helpers/fast-check.js'
import { ChatIds } from '../../src/store/chat-ids.js'

/** `bytes` inside a larger buffer, at `pad`: what find() and add() get from a record. */
const inBuffer = (bytes: Uint8Array, pad: number): { src: Buffer; from: number; to: number } => {
  const src = Buffer.alloc(pad + bytes.length + 3, 0x7a)
  src.set(bytes, pad)
  return { src, from: pad, to: pad + bytes.length }
}

t.test('finds each id added, with its chat, and no other: against a Map', (t) =>
  holds(
    t,
    fc.property(
      // Short ids over few byte values: many share prefixes, lengths and (in a small table) slots.
      fc.array(fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 6, max: 3 }), fc.nat(5)), { maxLength: 1500 }),
      (ops) => {
        const ids = new ChatIds()
        const model = new Map<string, number>()
        for (const [bytes, pad] of ops) {
          const key = Buffer.from(bytes).toString('hex')
          const { src, from, to } = inBuffer(bytes, pad)
          const found = ids.find(src, from, to)
          assert.equal(found, model.get(key) ?? -1, `find ${key}`)
          if (found === -1) {
            // Chats are named by one sequence or several (an alias of an earlier chat).
            const chat = model.size % 7 === 3 && model.size > 0 ? (model.get([...model.keys()][0] as string) as number) : model.size
            ids.add(src, from, to, chat)
            model.set(key, chat)
          }
        }
        for (const [key, chat] of model) {
          const b = Buffer.from(key, 'hex')
          assert.equal(ids.find(b, 0, b.length), chat, `after all, ${key}`)
        }
      },
    ),
  ),
)

t.test('thousands of ids like a shard\'s chats, through every growth', async (t) => {
  const ids = new ChatIds()
  const n = 50_000
  let early = 0
  for (let c = 0; c < n; c++) {
    const b = Buffer.from(`user${c}:user${c + 1}`)
    if (ids.find(b, 0, b.length) !== -1) early++
    ids.add(b, 0, b.length, c)
  }
  t.equal(early, 0, 'no chat found before it was added')
  let wrong = 0
  for (let c = 0; c < n; c++) {
    const b = Buffer.from(`user${c}:user${c + 1}`)
    if (ids.find(b, 0, b.length) !== c) wrong++
  }
  t.equal(wrong, 0, 'every chat found as itself')
  const unknown = Buffer.from(`user${n}:user${n + 1}`)
  t.equal(ids.find(unknown, 0, unknown.length), -1)
  const prefix = Buffer.from('user1:user')
  t.equal(ids.find(prefix, 0, prefix.length), -1, 'a prefix of a known id is not that id')
})
