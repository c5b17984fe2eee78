// The on-disk format of a shard's write-ahead log. docs/wal.md describes it in prose; the two
// must agree.
//
// A log is a directory of segment files named `<first LSN, 20 digits>.wal`. The LSN (log sequence
// number) counts records from 1 within a shard's log, across segments.
//
// Segment header, 32 bytes:
//   0..7    magic "PCHATWAL"
//   8..9    format version, u16 LE (2; this build also reads 1)
//   10..11  shard index, u16 LE
//   12..15  reserved, zero
//   16..23  LSN of the segment's first record, u64 LE
//   24..27  CRC-32 of bytes 0..23, u32 LE
//   28..31  reserved, zero (outside the CRC: recovery refuses a header where they are not zero)
// Record, 8 + n bytes, back to back after the header:
//   0..3    payload length n, u32 LE, 1 <= n <= RECORD_PAYLOAD_BYTES_MAX; in version 2, the top bit
//           (ROUND_START) is set on the first record of each group-commit round
//   4..7    CRC-32 (zlib.crc32, IEEE polynomial) of the payload, u32 LE; inverted (every bit
//           flipped) on a record that starts a round, so that the mark is checked too
//   8..     payload: the caller's bytes (the store's message records: src/store/message-record.ts)
//
// Version 1 had no round marks. A crash can tear only the last round (with FSYNC=always no round
// is written before the previous one is durable), and the marks let recovery tell such a round,
// whatever order its pages reached the disk in, from damage to records before it (reader.ts).
//
// This module knows bytes only: nothing about chats or HTTP.

import { crc32 } from 'node:zlib'

export const SEGMENT_MAGIC = Buffer.from('PCHATWAL', 'latin1')
/** The version new segments are written in. */
export const FORMAT_VERSION = 2
/** The first version with round marks. */
export const ROUND_MARKS_VERSION = 2
/** In a record's length word: this record starts a round. */
export const ROUND_START = 0x8000_0000
/**
 * In a header's refusal: a later pullchat wrote the segment. That is no damage, and nothing for
 * `repair` to cut; the release that wrote it reads it.
 */
export const LATER_FORMAT = 'written by a later pullchat'
export const SEGMENT_HEADER_BYTES = 32
export const RECORD_HEADER_BYTES = 8
export const RECORD_PAYLOAD_BYTES_MAX = 1024 * 1024 // 1 MiB: far above any valid message
export const SEGMENT_SUFFIX = '.wal'

export interface SegmentHeader {
  readonly version: number
  readonly shard: number
  readonly firstLsn: number
}

export function segmentName(firstLsn: number): string {
  return String(firstLsn).padStart(20, '0') + SEGMENT_SUFFIX
}

/** The first LSN encoded in a segment's file name, or null if the name is not a segment's. */
export function parseSegmentName(name: string): number | null {
  const m = /^(\d{20})\.wal$/.exec(name)
  if (m === null) return null
  const lsn = Number(m[1])
  return Number.isSafeInteger(lsn) && lsn >= 1 ? lsn : null
}

export function encodeHeader(shard: number, firstLsn: number): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_BYTES)
  SEGMENT_MAGIC.copy(b, 0)
  b.writeUInt16LE(FORMAT_VERSION, 8)
  b.writeUInt16LE(shard, 10)
  b.writeBigUInt64LE(BigInt(firstLsn), 16)
  b.writeUInt32LE(crc32(b.subarray(0, 24)), 24)
  return b
}

/** Decodes a segment header; returns a reason string when it is not a valid one. */
export function decodeHeader(b: Uint8Array): SegmentHeader | string {
  if (b.length < SEGMENT_HEADER_BYTES) return `header is ${b.length} bytes, expected ${SEGMENT_HEADER_BYTES}`
  const buf = Buffer.from(b.buffer, b.byteOffset, SEGMENT_HEADER_BYTES)
  if (!buf.subarray(0, 8).equals(SEGMENT_MAGIC)) return 'bad magic'
  if (buf.readUInt32LE(24) !== crc32(buf.subarray(0, 24))) return 'header checksum mismatch'
  const version = buf.readUInt16LE(8)
  if (version > FORMAT_VERSION) return `format version ${version}, ${LATER_FORMAT} (this one reads versions 1 to ${FORMAT_VERSION})`
  if (version < 1) return `unsupported format version ${version}`
  // Bytes 28..31 are outside the checksum: reserved, written as zeros, so anything else is damage.
  if (buf.readUInt32LE(28) !== 0) return 'reserved header bytes 28..31 are not zero'
  return { version, shard: buf.readUInt16LE(10), firstLsn: Number(buf.readBigUInt64LE(16)) }
}

/** Frames one payload as a record (header + payload) in a new buffer. */
export function encodeRecord(payload: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payload.length)
  b.writeUInt32LE(payload.length, 0)
  b.writeUInt32LE(crc32(payload), 4)
  b.set(payload, RECORD_HEADER_BYTES)
  return b
}

/** Marks an encoded record (encodeRecord's buffer) as the first of its round, in place. */
export function markRoundStart(record: Buffer): void {
  record.writeUInt32LE((record.readUInt32LE(0) | ROUND_START) >>> 0, 0)
  record.writeUInt32LE(~record.readUInt32LE(4) >>> 0, 4)
}

export { crc32 }
