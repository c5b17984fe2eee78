// The common send body, read without building strings for its text.
//
// Nearly every send is `{"chat":"..","text":"..","sender":".."}`: three string fields and no
// escapes. For such a body, JSON.parse, the UTF-8 decoding before it and JSON.stringify when the
// record is written (message-record.ts) are a round trip that ends where it began: a JSON string
// literal without a backslash, in valid UTF-8, is exactly JSON.stringify of the string it spells
// (JSON.stringify escapes only '"', '\\', control characters and lone surrogates, none of which
// such a literal can hold). So the text and sender are passed on as ranges of the body, and the
// record copies them (`SendBytes`); only the chat id and sender are decoded, because they are
// checked and looked up.
//
// Anything else (another key, a key twice, a value that is not a non-empty string, an escape, a
// control character, bytes that are not UTF-8, a query string that could add fields) is not read
// here: readSendBody returns null and the request takes the general path (request-fields.ts), which
// accepts or refuses it with its own messages. What this reads, it reads as the general path would
// (test/http/send-body.test.ts compares both on generated bodies).

import { isUtf8 } from 'node:buffer'
import { BACKSLASH, QUOTE } from '../json-bytes.js'
import type { SendBytes } from '../rpc/index.js'

/** A send body read by readSendBody: the decoded chat id and sender, and where the literals are. */
export interface SendBody extends SendBytes {
  readonly chat: string
  readonly sender: string
  /** Bytes of UTF-8 in the text (its literal without the quotes). */
  readonly textBytes: number
}

const COLON = 0x3a
const COMMA = 0x2c
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d

const CHAT = 1
const TEXT = 2
const SENDER = 4

// JSON's whitespace: space, tab, line feed, carriage return.
const isSpace = (c: number | undefined): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09

// Which of the three keys bytes[from, to) spells (0 for any other).
function keyAt(b: Uint8Array, from: number, to: number): number {
  const n = to - from
  if (n === 4) {
    if (b[from] === 0x63 && b[from + 1] === 0x68 && b[from + 2] === 0x61 && b[from + 3] === 0x74) return CHAT // chat
    if (b[from] === 0x74 && b[from + 1] === 0x65 && b[from + 2] === 0x78 && b[from + 3] === 0x74) return TEXT // text
  } else if (n === 6) {
    // sender
    if (b[from] === 0x73 && b[from + 1] === 0x65 && b[from + 2] === 0x6e && b[from + 3] === 0x64 && b[from + 4] === 0x65 && b[from + 5] === 0x72) return SENDER
  }
  return 0
}

/**
 * Reads `body` if it is a JSON object of exactly the non-empty strings chat, text and sender, with
 * no escapes, in valid UTF-8; null otherwise (the general path then reads it).
 */
export function readSendBody(body: Uint8Array): SendBody | null {
  const n = body.length
  let i = 0
  let seen = 0
  let ascii = true
  let chatFrom = 0
  let chatTo = 0
  let textFrom = 0
  let textTo = 0
  let senderFrom = 0
  let senderTo = 0
  while (isSpace(body[i])) i++
  if (body[i++] !== OPEN_BRACE) return null
  for (;;) {
    while (isSpace(body[i])) i++
    if (body[i++] !== QUOTE) return null
    const keyFrom = i
    while (i < n && body[i] !== QUOTE) i++
    const key = keyAt(body, keyFrom, i) // a key with an escape or a control character is none of the three
    if (key === 0 || (seen & key) !== 0) return null
    seen |= key
    i++
    while (isSpace(body[i])) i++
    if (body[i++] !== COLON) return null
    while (isSpace(body[i])) i++
    const from = i
    if (body[i++] !== QUOTE) return null
    for (;;) {
      const c = body[i]
      if (c === undefined || c < 0x20 || c === BACKSLASH) return null
      if (c === QUOTE) break
      if (c >= 0x80) ascii = false
      i++
    }
    const to = ++i // the literal, quotes included
    if (to - from === 2) return null // empty: the general path names the missing field
    if (key === CHAT) {
      chatFrom = from
      chatTo = to
    } else if (key === TEXT) {
      textFrom = from
      textTo = to
    } else {
      senderFrom = from
      senderTo = to
    }
    while (isSpace(body[i])) i++
    const c = body[i++]
    if (c === COMMA) continue
    if (c !== CLOSE_BRACE) return null
    break
  }
  while (isSpace(body[i])) i++
  if (i !== n || seen !== (CHAT | TEXT | SENDER)) return null
  if (!ascii && !isUtf8(body)) return null
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength)
  const encoding = ascii ? 'latin1' : 'utf8'
  return {
    bytes: body,
    textFrom,
    textTo,
    senderFrom,
    senderTo,
    chat: buf.toString(encoding, chatFrom + 1, chatTo - 1),
    sender: buf.toString(encoding, senderFrom + 1, senderTo - 1),
    textBytes: textTo - textFrom - 2,
  }
}
