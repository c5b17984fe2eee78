// The common send body read without decoding its text (src/http/send-body.ts): what it reads, it
// reads as the general path (JSON.parse and the field checks) would; what it does not, it leaves to
// the general path; and the literals it hands on are exactly what the record would have written.

import assert from 'node:assert/strict'
import fc from 'fast-check'
import t from 'tap'
import { holds } from '../helpers/fast-check.js'
import { DEFAULTS } from '../../src/config.js'
import { PullchatError } from '../../src/errors.js'
import { sendFields, type ParsedRequest } from '../../src/http/handlers.js'
import { readSendBody } from '../../src/http/send-body.js'
import { sendStrings } from '../../src/rpc/index.js'
import { encodeSend, encodeSendBytes, recordPrefix } from '../../src/store/message-record.js'

const request = (body: Uint8Array, contentType = 'application/json', query = ''): ParsedRequest => ({ method: 'POST', path: '/api/send', query, contentType, body })

// What sendFields gives, or the error it throws, as plain data to compare.
function outcome(req: ParsedRequest, fast: boolean): unknown {
  try {
    const f = sendFields(req, DEFAULTS, fast)
    const text = f.bytes === null ? f.text : sendStrings(f.bytes).text
    const sender = f.bytes === null ? f.sender : sendStrings(f.bytes).sender
    assert.equal(sender, f.sender, 'the sender literal spells the decoded sender')
    return { chat: f.chat, sender: f.sender, text }
  } catch (err) {
    if (!(err instanceof PullchatError)) throw err
    return { code: err.code, message: err.message }
  }
}

t.test('the common body is read, in any key order and spacing, ASCII or not', async (t) => {
  const cases: Array<[string, { chat: string; text: string; sender: string }]> = [
    ['{"chat":"a:b","text":"hi","sender":"a"}', { chat: 'a:b', text: 'hi', sender: 'a' }],
    [' \r\n\t{ "sender" : "b" ,\n"text":"x y","chat" :"b:a" } \n', { chat: 'b:a', text: 'x y', sender: 'b' }],
    ['{"chat":"sala","text":"héllo 😀 世界 \u2028 \u007f","sender":"łukasz"}', { chat: 'sala', text: 'héllo 😀 世界 \u2028 \u007f', sender: 'łukasz' }],
    // A text or sender that starts with U+FEFF keeps it (a decoder left to its default drops it as a BOM).
    ['{"chat":"a:b","text":"\ufeffhi","sender":"\ufeffa"}', { chat: 'a:b', text: '\ufeffhi', sender: '\ufeffa' }],
  ]
  // (Messages name cases by number: U+2028 in a message would break TAP's lines.)
  for (const [i, [body, want]] of cases.entries()) {
    const bytes = Buffer.from(body)
    const read = readSendBody(bytes)
    if (read === null) {
      t.fail(`case ${i} not read`)
      continue
    }
    t.same({ chat: read.chat, sender: read.sender, text: sendStrings(read).text }, want, `case ${i}`)
    t.equal(sendStrings(read).sender, want.sender, 'the sender literal decodes to the sender')
    t.equal(read.textBytes, Buffer.byteLength(want.text), 'textBytes is the text in UTF-8')
    t.equal(Buffer.from(bytes.subarray(read.textFrom, read.textTo)).toString(), JSON.stringify(want.text), 'the text literal is what JSON.stringify writes')
  }
  // A Uint8Array that is not a Buffer (the adapter hands Buffers; tests and other callers may not).
  const plain = new Uint8Array(Buffer.from('xx{"chat":"r","text":"t","sender":"s"}')).subarray(2)
  t.same(readSendBody(plain) && { chat: readSendBody(plain)?.chat, sender: readSendBody(plain)?.sender }, { chat: 'r', sender: 's' })
})

t.test('anything else is left to the general path', async (t) => {
  const others = [
    '', ' ', '[]', 'null', '"x"', '{}', '{"chat":"a:b","text":"hi"}',
    '{"chat":"a:b","text":"hi","sender":"a","send_time":1}', // another key (the general path ignores it)
    '{"chat":"a:b","text":"hi","sender":"a","chat":"c"}', // a key twice (JSON.parse keeps the last)
    '{"chat":"a:b","text":"","sender":"a"}', // empty: the general path names the missing field
    '{"chat":"a:b","text":"say \\"hi\\"","sender":"a"}', // an escape
    '{"chat":"a:b","text":"\\ud800","sender":"a"}', // a lone surrogate, escaped
    '{"ch\\u0061t":"a:b","text":"hi","sender":"a"}', // an escape in a key
    '{"chat":"a:b","text":"a\tb","sender":"a"}', // a raw control character (invalid JSON)
    '{"chat":"a:b","text":42,"sender":"a"}', '{"chat":"a:b","text":null,"sender":"a"}', '{"chat":"a:b","text":["hi"],"sender":"a"}',
    '{"chat":"a:b","text":"hi","sender":"a"}x', '{"chat":"a:b","text":"hi","sender":"a",}', '{"chat":"a:b","text":"hi","sender":"a"',
    '{"chat":"a:b","text":"hi" "sender":"a"}', '{"chat":"a:b","text":"hi","sender":"a"}}', '{"chat""a:b","text":"hi","sender":"a"}',
    '\ufeff{"chat":"a:b","text":"hi","sender":"a"}', // a byte order mark (TextDecoder drops it: the general path reads it)
    '\u000b{"chat":"a:b","text":"hi","sender":"a"}', // not JSON whitespace
  ]
  for (const body of others) t.equal(readSendBody(Buffer.from(body)), null, JSON.stringify(body))
  // Bytes that are not UTF-8: an overlong '/', an encoded surrogate, a cut sequence, a stray continuation.
  for (const bad of [[0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe4, 0xb8], [0x80]]) {
    const body = Buffer.concat([Buffer.from('{"chat":"a:b","text":"'), Buffer.from(bad), Buffer.from('","sender":"a"}')])
    t.equal(readSendBody(body), null, `bytes ${bad.map((b) => b.toString(16)).join(' ')}`)
    t.match(outcome(request(body), true), { code: 'IM_ERR_INVALID_ENCODING' }, 'and the general path refuses them')
  }
})

t.test('a query string or a type the general path would not read as JSON keeps the body from being read here', async (t) => {
  const body = Buffer.from('{"chat":"a:b","text":"hi","sender":"a"}')
  t.equal(sendFields(request(body), DEFAULTS).bytes !== null, true, 'read here')
  t.equal(sendFields(request(body, 'application/json', 'chat=c:d'), DEFAULTS).bytes, null, 'a query string: the general path merges it')
  t.equal(sendFields(request(body, 'application/x-www-form-urlencoded'), DEFAULTS).bytes !== null, true, "a form that starts with '{' is JSON to the general path too")
  t.match(outcome(request(body, 'text/csv'), true), { code: 'IM_ERR_UNSUPPORTED_MEDIA_TYPE' })
})

t.test('text at and just over the limit, in bytes of UTF-8, both ways', async (t) => {
  const max = DEFAULTS.textBytesMax
  for (const text of ['x'.repeat(max), 'x'.repeat(max + 1), 'é'.repeat(max / 2), `${'é'.repeat(max / 2)}x`, '😀'.repeat(max / 4), `x${'😀'.repeat(max / 4)}`]) {
    const req = request(Buffer.from(JSON.stringify({ chat: 'a:b', text, sender: 'a' })))
    const fast = outcome(req, true)
    t.same(fast, outcome(req, false), `${Buffer.byteLength(text)} bytes`)
    t.equal('code' in (fast as object), Buffer.byteLength(text) > max)
  }
})

// Strings of characters JSON.stringify leaves alone or escapes, ASCII and not.
const unit = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', 'Z', '0', ' ', ':', '/', '{', '}', ',', '\u007f') },
  { weight: 2, arbitrary: fc.constantFrom('é', '世', '😀', '\u2028', '\ufeff') },
  { weight: 1, arbitrary: fc.constantFrom('"', '\\', '\n', '\u0001', '\ud800', '\udc00') },
)
const str = fc.string({ unit, minLength: 0, maxLength: 12 })
const space = fc.constantFrom('', '', ' ', '\n', '\t', '\r\n ', '\u000b')
const key = fc.constantFrom('chat', 'text', 'sender', 'chat', 'text', 'sender', 'send_time', 'Chat', 'ch\\u0061t')
const value = fc.oneof({ weight: 8, arbitrary: str.map((s) => JSON.stringify(s)) }, { weight: 1, arbitrary: fc.constantFrom('1', 'null', 'true', '["a"]', '{"a":"b"}', '"\\u0041"') })
// A body: members from the keys above in any order, sometimes repeated or missing, with spacing
// (JSON's and not), and now and then a byte changed, cut or added.
const body = fc
  .record({
    members: fc.array(fc.tuple(key, value, space, space, space, space), { minLength: 0, maxLength: 5 }),
    lead: space,
    trail: space,
    mutate: fc.option(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'cut', 'insert')), { freq: 5 }),
  })
  .map(({ members, lead, trail, mutate }) => {
    const text = `${lead}{${members.map(([k, v, s1, s2, s3, s4]) => `${s1}"${k}"${s2}:${s3}${v}${s4}`).join(',')}}${trail}`
    const bytes = Buffer.from(text)
    if (mutate === null) return bytes
    const [at, byte, how] = mutate
    const i = at % (bytes.length + 1)
    if (how === 'cut') return bytes.subarray(0, i)
    if (how === 'insert') return Buffer.concat([bytes.subarray(0, i), Buffer.from([byte]), bytes.subarray(i)])
    if (i < bytes.length) bytes[i] = byte
    return bytes
  })
// The three fields, each a string JSON.stringify writes without escapes, in any order and spacing.
const plainStr = fc.string({ unit: fc.constantFrom('a', 'Z', ' ', ':', 'é', '世', '😀', '\u2028', '\u007f'), minLength: 1, maxLength: 12 })
const plainBody = fc
  .record({ chat: plainStr, text: plainStr, sender: plainStr, order: fc.constantFrom([0, 1, 2], [2, 1, 0], [1, 0, 2], [1, 2, 0]), s: space.filter((x) => x !== '\u000b') })
  .map(({ chat, text, sender, order, s }) => {
    const members = [`"chat":${s}${JSON.stringify(chat)}`, `"text":${JSON.stringify(text)}`, `${s}"sender"${s}:${JSON.stringify(sender)}${s}`]
    return { fields: { chat, text, sender }, bytes: Buffer.from(`${s}{${order.map((k) => members[k]).join(`,${s}`)}}`) }
  })

t.test('on any body, reading it here gives the fields or errors of the general path', (t) =>
  holds(
    t,
    fc.property(body, fc.constantFrom('application/json', 'text/plain', '', 'application/x-www-form-urlencoded'), (bytes, type) => {
      const req = request(bytes, type)
      assert.deepEqual(outcome(req, true), outcome(req, false))
      const read = readSendBody(bytes)
      if (read === null) return true
      // Read here: the body is JSON, an object of the three non-empty strings.
      const parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as Record<string, unknown>
      assert.deepEqual(Object.keys(parsed).sort(), ['chat', 'sender', 'text'])
      const { text, sender } = sendStrings(read)
      assert.deepEqual({ chat: read.chat, text, sender }, { chat: parsed.chat, text: parsed.text, sender: parsed.sender })
      // The literals are what the record would write for these strings.
      assert.deepEqual(Buffer.from(bytes.subarray(read.textFrom, read.textTo)), Buffer.from(JSON.stringify(text)))
      assert.deepEqual(Buffer.from(bytes.subarray(read.senderFrom, read.senderTo)), Buffer.from(JSON.stringify(sender)))
      assert.equal(read.textBytes, Buffer.byteLength(text))
      return true
    }),
    { numRuns: 2000 },
  ),
)

t.test('a body of the three fields without escapes is always read here, and its record is the one the strings make', (t) =>
  holds(
    t,
    fc.property(plainBody, fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), ({ fields, bytes }, sendTime) => {
      const read = readSendBody(bytes)
      assert.ok(read !== null, 'read here')
      assert.deepEqual({ chat: read.chat, sender: read.sender, text: sendStrings(read).text }, fields)
      const prefix = recordPrefix(fields.chat)
      assert.deepEqual(encodeSendBytes(prefix, 0, prefix.length, sendTime, read), encodeSend(prefix, 0, prefix.length, sendTime, fields.text, fields.sender))
      return true
    }),
    { numRuns: 1000 },
  ),
)
