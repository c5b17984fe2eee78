// Frames on the RPC channel.
//
// A frame is a 6-byte header followed by a msgpack payload:
//   byte 0      magic 0x50 ('P')
//   byte 1      format version (1)
//   bytes 2..5  payload length, unsigned 32-bit little-endian
//   payload     msgpack array of entries (a batch: every request or reply for one shard that one
//               thread produced in one event-loop turn)
//
// Request entries:  [OP_SEND, id, chat, text, sender]
//                   [OP_PULL, id, chat, cursor, limit, reverse]
// Reply entries:    [id, 0, send_time]                                  (send ok)
//                   [id, 0, messagesJson, hasMore, nextCursor, count]   (pull ok)
//                   [id, errorWireId, message]                          (any error)
//
// Over a MessagePort each message is exactly one frame (`decodeFrame`); `FrameDecoder` accepts a
// byte stream split anywhere, for transports that do not keep message boundaries. Anything
// malformed is rejected with IM_ERR_RPC_FRAME, never with a crash or a partial batch.

import { Packr } from 'msgpackr'
import { Errors, PullchatError } from '../errors.js'

export const FRAME_MAGIC = 0x50
export const FRAME_VERSION = 1
export const FRAME_HEADER_BYTES = 6
export const FRAME_PAYLOAD_BYTES_MAX = 256 * 1024 * 1024 // 256 MiB

export const OP_SEND = 1
export const OP_PULL = 2

export type SendEntry = [typeof OP_SEND, number, string, string, string]
export type PullEntry = [typeof OP_PULL, number, string, number, number, boolean]
export type RequestEntry = SendEntry | PullEntry

export type SendOkEntry = [number, 0, number]
export type PullOkEntry = [number, 0, Uint8Array, boolean, number, number]
export type ErrorEntry = [number, number, string]
export type ReplyEntry = SendOkEntry | PullOkEntry | ErrorEntry

const packr = new Packr({ useRecords: false, moreTypes: false })

function frameError(why: string): PullchatError {
  return new PullchatError(Errors.RPC_FRAME, `malformed RPC frame: ${why}`)
}

/** Encodes a batch into a frame that owns its own ArrayBuffer (safe to transfer). */
export function encodeFrame(entries: readonly unknown[]): Uint8Array {
  // pack() returns a view into a reused buffer: copy it out before anyone else packs.
  const payload = packr.pack(entries)
  if (payload.length > FRAME_PAYLOAD_BYTES_MAX) throw frameError(`payload of ${payload.length} bytes exceeds the limit`)
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length)
  frame[0] = FRAME_MAGIC
  frame[1] = FRAME_VERSION
  new DataView(frame.buffer).setUint32(2, payload.length, true)
  frame.set(payload, FRAME_HEADER_BYTES)
  return frame
}

function payloadLength(bytes: Uint8Array, at: number): number {
  if (bytes[at] !== FRAME_MAGIC) throw frameError(`bad magic 0x${(bytes[at] ?? 0).toString(16)}`)
  if (bytes[at + 1] !== FRAME_VERSION) throw frameError(`unsupported version ${bytes[at + 1]}`)
  const len = new DataView(bytes.buffer, bytes.byteOffset + at + 2, 4).getUint32(0, true)
  if (len > FRAME_PAYLOAD_BYTES_MAX) throw frameError(`payload of ${len} bytes exceeds the limit`)
  return len
}

function decodePayload(payload: Uint8Array): unknown[] {
  let value: unknown
  try {
    value = packr.unpack(payload)
  } catch (err) {
    throw frameError((err as Error).message)
  }
  if (!Array.isArray(value)) throw frameError('payload is not an array')
  return value
}

/** Decodes one whole frame into its entries (not yet validated: see isRequestEntry & co). */
export function decodeFrame(frame: Uint8Array): unknown[] {
  if (!(frame instanceof Uint8Array)) throw frameError('not bytes')
  if (frame.length < FRAME_HEADER_BYTES) throw frameError(`only ${frame.length} bytes`)
  const len = payloadLength(frame, 0)
  if (len !== frame.length - FRAME_HEADER_BYTES) {
    throw frameError(`header says ${len} payload bytes, frame has ${frame.length - FRAME_HEADER_BYTES}`)
  }
  return decodePayload(frame.subarray(FRAME_HEADER_BYTES))
}

/** Reassembles frames from a byte stream cut at arbitrary points. */
export class FrameDecoder {
  private buffered: Uint8Array = new Uint8Array(0)

  /** Adds bytes; returns the batches of every frame completed by them. Throws on a bad frame. */
  push(chunk: Uint8Array): unknown[][] {
    const bytes = this.buffered.length === 0 ? chunk : concat(this.buffered, chunk)
    const out: unknown[][] = []
    let at = 0
    while (bytes.length - at >= FRAME_HEADER_BYTES) {
      const len = payloadLength(bytes, at)
      if (bytes.length - at - FRAME_HEADER_BYTES < len) break
      const start = at + FRAME_HEADER_BYTES
      out.push(decodePayload(bytes.subarray(start, start + len)))
      at = start + len
    }
    // Reject a bad magic or version as soon as it arrives, not when a whole header has.
    const rest = bytes.length - at
    if (rest >= 1 && bytes[at] !== FRAME_MAGIC) throw frameError(`bad magic 0x${(bytes[at] ?? 0).toString(16)}`)
    if (rest >= 2 && bytes[at + 1] !== FRAME_VERSION) throw frameError(`unsupported version ${bytes[at + 1]}`)
    this.buffered = bytes.slice(at)
    return out
  }

  /** Bytes held that do not yet form a whole frame. */
  get pending(): number {
    return this.buffered.length
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

const isId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

export function isRequestEntry(e: unknown): e is RequestEntry {
  if (!Array.isArray(e) || !isId(e[1])) return false
  if (e[0] === OP_SEND) return e.length === 5 && typeof e[2] === 'string' && typeof e[3] === 'string' && typeof e[4] === 'string'
  if (e[0] === OP_PULL) return e.length === 6 && typeof e[2] === 'string' && isCount(e[3]) && isCount(e[4]) && typeof e[5] === 'boolean'
  return false
}

/** The id of an entry that failed validation, when one can be read, so its caller can be answered. */
export function entryId(e: unknown): number | undefined {
  return Array.isArray(e) && isId(e[1]) ? e[1] : undefined
}

export function isSendOk(e: unknown): e is SendOkEntry {
  return Array.isArray(e) && e.length === 3 && isId(e[0]) && e[1] === 0 && isCount(e[2])
}

export function isPullOk(e: unknown): e is PullOkEntry {
  return Array.isArray(e) && e.length === 6 && isId(e[0]) && e[1] === 0 && e[2] instanceof Uint8Array && typeof e[3] === 'boolean' && isCount(e[4]) && isCount(e[5])
}

export function isErrorEntry(e: unknown): e is ErrorEntry {
  return Array.isArray(e) && e.length === 3 && isId(e[0]) && typeof e[1] === 'number' && e[1] !== 0 && typeof e[2] === 'string'
}
