// Chat ids (parseChatId): the canonical form and the errors, by example.

import t from 'tap'
import { parseChatId } from '../../src/http/chat-id.js'
import { PullchatError } from '../../src/errors.js'

/** The id, or the error's code and message. */
function outcome(f: () => string): { id: string } | { code: string; message: string } {
  try {
    return { id: f() }
  } catch (err) {
    if (!(err instanceof PullchatError)) throw err
    return { code: err.code, message: err.message }
  }
}

t.test('the canonical id, by example', async (t) => {
  const cases: [string, number, string][] = [
    ['bob:alice', 64, 'alice:bob'],
    ['alice:bob', 64, 'alice:bob'],
    ['a:a', 64, 'a:a'],
    ['ab:a', 64, 'a:ab'],
    ['a:ab', 64, 'a:ab'],
    ['room', 64, 'room'],
    ['z:é', 64, 'z:é'],
    ['é:z', 64, 'z:é'],
    // UTF-16 code units, as JavaScript's < orders strings: U+FF5E sorts after the surrogate of 😀.
    ['～:😀', 64, '😀:～'],
    ['u00001:u00000', 64, 'u00000:u00001'],
  ]
  for (const [chat, max, id] of cases) {
    t.equal(parseChatId(chat, max).id, id, `parseChatId(${JSON.stringify(chat)})`)
  }
  t.same(parseChatId('bob:alice', 64).members, ['alice', 'bob'])
  t.equal(parseChatId('room', 64).members, null)
})

t.test('bad ids: the error and its message', async (t) => {
  const cases: [string, number, string, RegExp][] = [
    ['a:b:c', 64, 'IM_ERR_INVALID_CHAT', /more than one ':'/],
    [':b', 64, 'IM_ERR_INVALID_CHAT', /empty member id/],
    ['a:', 64, 'IM_ERR_INVALID_CHAT', /empty member id/],
    [':', 64, 'IM_ERR_INVALID_CHAT', /empty member id/],
    ['a\u0001:b', 64, 'IM_ERR_INVALID_CHAT', /^member id must not contain control characters$/],
    ['a:b\u007f', 64, 'IM_ERR_INVALID_CHAT', /^member id must not contain control characters$/],
    ['ro\u0000om', 64, 'IM_ERR_INVALID_CHAT', /^room name must not contain control characters$/],
    ['abcde:b', 4, 'IM_ERR_FIELD_TOO_LONG', /member id is longer than 4 bytes/],
    ['b:éé\u0001', 4, 'IM_ERR_FIELD_TOO_LONG', /member id is longer than 4 bytes/],
  ]
  for (const [chat, max, code, message] of cases) {
    const o = outcome(() => parseChatId(chat, max).id)
    t.ok('code' in o && o.code === code && message.test(o.message), `parseChatId(${JSON.stringify(chat)}, ${max}): ${JSON.stringify(o)}`)
  }
})
