// What a store puts in a log record, and reading it back.
//
// Version 2 (written since 2026-11-25) carries the message's JSON as pulls return it, so that
// replaying a record is a copy into the store:
//   0        0x02, the version
//   1..8     send_time in µs, f64 LE (a safe integer)
//   9..10    n, the chat id's UTF-8 length, u16 LE
//   11..     the chat id, n bytes of UTF-8
//   11+n..   the message as a JSON object {"chat":..,"text":..,"sender":..,"send_time":..}
// Version 1 payloads are msgpack [chat, sender, text, send_time]; they start with 0x94 (a msgpack
// array of 4), never 0x02, and are still read, so logs written by earlier releases replay.

import { Packr } from 'msgpackr'
import { copyBytes } from '../bytes.js'
import { uintDigits, writeUint } from '../digits.js'
import { QUOTE, jsonKeeps } from '../json-bytes.js'
import type { SendBytes } from '../rpc/send-bytes.js'

const packr = new Packr({ useRecords: false, moreTypes: false })

const VERSION_2 = 0x02
const HEADER_BYTES = 11
const CHAT_BYTES_MAX = 0xffff
const OPEN_BRACE = 0x7b // {
const CLOSE_BRACE = 0x7d // }

export interface MessageRecord {
  readonly chat: string
  readonly sender: string
  readonly text: string
  readonly sendTime: number
}

/** A record as recovery needs it: where the message's JSON object is, if the record has one. */
export interface StoredMessage {
  readonly chat: string
  readonly sendTime: number
  /** The record (version 2) whose bytes [jsonFrom, payload end) are the JSON object, or null (version 1). */
  readonly json: Buffer | null
  readonly jsonFrom: number
  /** For a version 1 record, the message. */
  readonly message: MessageRecord | null
}

/** The JSON object a pull returns for a message. */
export function messageJson(chat: string, sender: string, text: string, sendTime: number): string {
  return `{"chat":${JSON.stringify(chat)},"text":${JSON.stringify(text)},"sender":${JSON.stringify(sender)},"send_time":${sendTime}}`
}

/** Encodes a version 2 record from the message's JSON object (from messageJson). */
export function encodeMessageJson(chat: string, sendTime: number, json: string): Buffer {
  const chatBytes = Buffer.byteLength(chat)
  if (chatBytes > CHAT_BYTES_MAX) throw new RangeError(`chat id of ${chatBytes} bytes does not fit a record`)
  const out = Buffer.allocUnsafe(HEADER_BYTES + chatBytes + Buffer.byteLength(json))
  out[0] = VERSION_2
  out.writeDoubleLE(sendTime, 1)
  out.writeUInt16LE(chatBytes, 9)
  out.write(chat, HEADER_BYTES)
  out.write(json, HEADER_BYTES + chatBytes)
  return out
}

const SENDER_KEY = Buffer.from(',"sender":')
const SEND_TIME_KEY = Buffer.from(',"send_time":')

/**
 * What every version 2 record of a chat starts with (its send_time's 8 bytes left to fill): the
 * version, the chat id's length and bytes, and `{"chat":<the id as JSON>,"text":`. A chat's is
 * written once, into its thread's RecordPrefixes, and encodeSend copies it into each record.
 */
export function recordPrefix(chat: string): Buffer {
  const chatBytes = Buffer.byteLength(chat)
  if (chatBytes > CHAT_BYTES_MAX) throw new RangeError(`chat id of ${chatBytes} bytes does not fit a record`)
  const head = `{"chat":${JSON.stringify(chat)},"text":`
  const out = Buffer.alloc(HEADER_BYTES + chatBytes + Buffer.byteLength(head))
  out[0] = VERSION_2
  out.writeUInt16LE(chatBytes, 9)
  out.write(chat, HEADER_BYTES)
  out.write(head, HEADER_BYTES + chatBytes)
  return out
}

/**
 * Chats' record prefixes side by side in one buffer, each written once and kept: a chat knows its
 * own by where it starts and ends. A Buffer of its own per chat was two objects on V8's heap (the
 * view and its ArrayBuffer) that every mark-compact visited, ~180 bytes a chat: with 100k chats
 * sent to, about a third of the worker's heap (docs/performance.md, nineteenth session).
 */
export class RecordPrefixes {
  /** The prefixes; a larger buffer replaces it as they grow, so read it after add(). */
  bytes: Buffer = Buffer.allocUnsafeSlow(16 * 1024)
  private end = 0

  /** Bytes of prefixes written. */
  get used(): number {
    return this.end
  }

  /** Writes the chat's prefix; returns where it starts (it ends at `used`). */
  add(chat: string): number {
    // Made on its own and copied in: once per chat, on its first send.
    const prefix = recordPrefix(chat)
    if (this.end + prefix.length > this.bytes.length) {
      const bytes = Buffer.allocUnsafeSlow(Math.max(2 * this.bytes.length, this.end + prefix.length))
      bytes.set(this.bytes.subarray(0, this.end))
      this.bytes = bytes
    }
    const at = this.end
    this.bytes.set(prefix, at)
    this.end += prefix.length
    return at
  }
}

/**
 * The version 2 record encodeMessage makes, byte for byte, from the chat's record prefix, the bytes
 * `prefix[from, to)` (recordPrefix, RecordPrefixes): the send path's encoder. It writes the JSON's
 * pieces straight into the record, send_time's digits by hand (src/digits.ts), instead of building
 * the object's string and then copying it.
 */
export function encodeSend(prefix: Uint8Array, from: number, to: number, sendTime: number, text: string, sender: string): Buffer {
  const textJson = JSON.stringify(text)
  const senderJson = JSON.stringify(sender)
  const textBytes = Buffer.byteLength(textJson)
  const out = startRecord(prefix, from, to, sendTime, textBytes, Buffer.byteLength(senderJson))
  const n = to - from
  out.write(textJson, n)
  const at = n + textBytes + SENDER_KEY.length
  endRecord(out, at + out.write(senderJson, at), sendTime)
  return out
}

/**
 * encodeSend for a send whose text and sender are the JSON literals a request carried
 * (src/rpc/send-bytes.ts): the literals are JSON.stringify's output already, so they are copied as
 * they are, and the record is the one encodeSend makes of the strings they spell.
 */
export function encodeSendBytes(prefix: Uint8Array, from: number, to: number, sendTime: number, fields: SendBytes): Buffer {
  const { bytes, textFrom, textTo, senderFrom, senderTo } = fields
  const out = startRecord(prefix, from, to, sendTime, textTo - textFrom, senderTo - senderFrom)
  const n = to - from
  copyRange(bytes, textFrom, textTo, out, n)
  endRecord(out, copyRange(bytes, senderFrom, senderTo, out, n + (textTo - textFrom) + SENDER_KEY.length), sendTime)
  return out
}

// A send's record with everything but the text's and the sender's JSON in place: the chat's
// prefix (prefix[from, to)), the send_time, and `,"sender":` after the text's `textBytes`.
// endRecord finishes it.
function startRecord(prefix: Uint8Array, from: number, to: number, sendTime: number, textBytes: number, senderBytes: number): Buffer {
  const n = to - from
  const out = Buffer.allocUnsafe(n + textBytes + SENDER_KEY.length + senderBytes + SEND_TIME_KEY.length + uintDigits(sendTime) + 1)
  copyRange(prefix, from, to, out, 0)
  out.writeDoubleLE(sendTime, 1)
  // TypedArray.set, not Buffer.copy: copy() makes a view of its source per call (docs/performance.md).
  out.set(SENDER_KEY, n + textBytes)
  return out
}

// Writes `,"send_time":<digits>}` after the sender's JSON, which ends at `at`.
function endRecord(out: Buffer, at: number, sendTime: number): void {
  out.set(SEND_TIME_KEY, at)
  out[writeUint(out, at + SEND_TIME_KEY.length, sendTime)] = CLOSE_BRACE
}

// Copies src[from, to) to out at `at`; returns where it ends. Short ranges byte by byte: a view
// for TypedArray.set (copyBytes) costs more than the copy.
function copyRange(src: Uint8Array, from: number, to: number, out: Uint8Array, at: number): number {
  if (to - from > 64) return copyBytes(src, from, to, out, at)
  for (let i = from; i < to; i++) out[at++] = src[i] as number
  return at
}

/** Where the JSON object starts in a version 2 record. */
export function jsonOffset(record: Buffer): number {
  return HEADER_BYTES + record.readUInt16LE(9)
}

/** Encodes a message as a version 2 record. */
export function encodeMessage(chat: string, sender: string, text: string, sendTime: number): Buffer {
  return encodeMessageJson(chat, sendTime, messageJson(chat, sender, text, sendTime))
}

/** Encodes a message as a version 1 record (msgpack), as releases before version 2 wrote them. */
export function encodeMessageV1(chat: string, sender: string, text: string, sendTime: number): Buffer {
  return Buffer.from(packr.pack([chat, sender, text, sendTime]))
}

/** Reads a record for replay, checking its framing but not parsing its JSON; null when it is not a message. */
export function readStoredMessage(payload: Buffer): StoredMessage | null {
  if (payload[0] !== VERSION_2) {
    const message = decodeV1(payload)
    return message === null ? null : { chat: message.chat, sendTime: message.sendTime, json: null, jsonFrom: 0, message }
  }
  const jsonFrom = storedJsonFrom(payload)
  if (jsonFrom < 0) return null
  return { chat: payload.toString('utf8', CHAT_ID_FROM, jsonFrom), sendTime: payload.readDoubleLE(1), json: payload, jsonFrom, message: null }
}

/** Where a version 2 record's chat id starts: its UTF-8 bytes run to where its JSON does (storedJsonFrom). */
export const CHAT_ID_FROM = HEADER_BYTES

/**
 * readStoredMessage's checks of a version 2 record, without reading its chat id into a string
 * (recovery's scans find a chat by its id's bytes, chat-ids.ts): where the record's JSON object
 * starts, or -1 when the record is not a version 2 message (a version 1 record answers -1 too).
 * Its send_time is then `payload.readDoubleLE(1)`, and its chat id the bytes [CHAT_ID_FROM, answer).
 */
export function storedJsonFrom(payload: Buffer): number {
  if (payload[0] !== VERSION_2 || payload.length < HEADER_BYTES + 2) return -1
  const sendTime = payload.readDoubleLE(1)
  const jsonFrom = jsonOffset(payload)
  if (!Number.isSafeInteger(sendTime) || sendTime < 1 || jsonFrom + 2 > payload.length) return -1
  if (payload[jsonFrom] !== OPEN_BRACE || payload[payload.length - 1] !== CLOSE_BRACE) return -1
  return namesChat(payload, jsonFrom) ? jsonFrom : -1
}

/** What every message's JSON starts with, before its chat's id as a JSON string. */
export const CHAT_KEY = Buffer.from('{"chat":')

/**
 * Whether a version 2 record's JSON starts `{"chat":<its chat's id as JSON>`, as every message the
 * store holds must: a pull confirms its chat from those bytes (chat-log.ts, extentIsChat). The
 * id's bytes are in the record's header (from HEADER_BYTES to jsonFrom). Up to its first character
 * that JSON escapes (most ids have none), an id appears in the JSON as those bytes.
 */
function namesChat(payload: Buffer, jsonFrom: number): boolean {
  for (let i = 0; i < CHAT_KEY.length; i++) if (payload[jsonFrom + i] !== CHAT_KEY[i]) return false
  const at = jsonFrom + CHAT_KEY.length + 1 // past the id's opening quote
  if (payload[at - 1] !== QUOTE) return false
  const idBytes = jsonFrom - HEADER_BYTES
  for (let i = 0; i < idBytes; i++) {
    const b = payload[HEADER_BYTES + i] as number
    if (!jsonKeeps(b)) {
      const key = Buffer.from(`{"chat":${JSON.stringify(payload.toString('utf8', HEADER_BYTES, jsonFrom))}`)
      return payload.length >= jsonFrom + key.length && payload.compare(key, 0, key.length, jsonFrom, jsonFrom + key.length) === 0
    }
    if (payload[at + i] !== b) return false
  }
  return payload[at + idBytes] === QUOTE
}

/** Decodes a record fully (either version), checking every field; null when it is not a message. */
export function decodeMessage(payload: Buffer): MessageRecord | null {
  const stored = readStoredMessage(payload)
  if (stored === null || stored.json === null) return stored?.message ?? null
  let v: unknown
  try {
    v = JSON.parse(stored.json.toString('utf8', stored.jsonFrom))
  } catch {
    return null
  }
  if (typeof v !== 'object' || v === null) return null
  const { chat, text, sender, send_time: sendTime } = v as Record<string, unknown>
  if (chat !== stored.chat || sendTime !== stored.sendTime || typeof text !== 'string' || typeof sender !== 'string') return null
  // The JSON must be exactly what the store would have written, or pulls would differ from it.
  if (messageJson(chat, sender, text, sendTime) !== stored.json.toString('utf8', stored.jsonFrom)) return null
  return { chat, sender, text, sendTime }
}

function decodeV1(payload: Uint8Array): MessageRecord | null {
  let v: unknown
  try {
    v = packr.unpack(payload)
  } catch {
    return null
  }
  if (!Array.isArray(v) || v.length !== 4) return null
  const [chat, sender, text, sendTime] = v as unknown[]
  if (typeof chat !== 'string' || typeof sender !== 'string' || typeof text !== 'string') return null
  if (typeof sendTime !== 'number' || !Number.isSafeInteger(sendTime) || sendTime < 1) return null
  return { chat, sender, text, sendTime }
}

/**
 * A checker for `repair`: says why a checksum-valid record cannot be replayed (not a message, or
 * a send_time that does not follow its chat's previous one), or null when it can. Stateful: feed
 * it one shard's records in log order.
 */
export function messageRecordChecker(): (payload: Buffer) => string | null {
  const last = new Map<string, number>()
  return (payload) => {
    const m = decodeMessage(payload)
    if (m === null) return 'a record with a valid checksum that is not a message'
    const prev = last.get(m.chat) ?? 0
    if (m.sendTime <= prev) return `send_time ${m.sendTime} does not follow ${prev} in its chat`
    last.set(m.chat, m.sendTime)
    return null
  }
}
