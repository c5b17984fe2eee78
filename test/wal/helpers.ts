// Shared by the WAL tests: message records to log, a writer with test defaults, an independent
// parse of a clean log's layout (where each record sits), reading a log back, and (re-exported)
// the writer state a shard's host derives from a recovery.

import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
export { resumeState } from '../../src/wal/index.js'
import { decodeMessage, encodeMessage } from '../../src/store/message-record.js'
import type { ShardStore } from '../../src/store/shard-store.js'
import {
  RECORD_HEADER_BYTES,
  ROUND_START,
  SEGMENT_HEADER_BYTES,
  crc32,
  WalWriter,
  listSegments,
  readLog,
  type RecoveredLog,
  type WriterOptions,
  type WriterState,
} from '../../src/wal/index.js'

export interface Msg {
  readonly chat: string
  readonly sender: string
  readonly text: string
  readonly sendTime: number
}

/**
 * `count` messages numbered from `from`: distinct texts, spread over a few chats, send_times
 * increasing with the number (so each chat's are increasing too). `textBytes(i)` sets the length
 * of message i's filler.
 */
export function messages(from: number, count: number, textBytes: (i: number) => number = (i) => 40 + ((i * 37) % 60)): Msg[] {
  const out: Msg[] = []
  for (let i = from; i < from + count; i++) {
    out.push({ chat: `chat-${i % 5}`, sender: `user-${i % 3}`, text: `message ${i}: ${'abcdefghij'.repeat(20).slice(0, textBytes(i))}`, sendTime: 1_000_000 + i })
  }
  return out
}

/** The record payload the store would log for `m` (a copy: encodeMessage reuses its buffer). */
export const payloadOf = (m: Msg): Buffer => Buffer.from(encodeMessage(m.chat, m.sender, m.text, m.sendTime))

export const EMPTY_STATE: WriterState = { lastLsn: 0, lastSegment: null }

export type TestWriterOptions = Partial<Omit<WriterOptions, 'dir'>>

/**
 * A writer with test defaults: shard 0, 1 MiB segments, fsync always, fatal errors thrown, and no
 * preallocation, so that a segment file is exactly its records (writer.test.ts tests preallocation).
 */
export function openWriter(dir: string, state: WriterState = EMPTY_STATE, opts: TestWriterOptions = {}): WalWriter {
  return new WalWriter(
    {
      shard: 0,
      segmentBytes: 1024 * 1024,
      batchBytesMax: 1024 * 1024,
      pendingBytesMax: 16 * 1024 * 1024,
      fsync: { kind: 'always' },
      preallocateBytesMax: 0,
      // Thrown from an I/O callback: an uncaught exception, which fails the test.
      onFatal: (err) => {
        throw err
      },
      ...opts,
      dir,
    },
    state,
  )
}

/** Appends `msgs` in one burst; resolves when every callback succeeded, rejects on the first error. */
export function appendAll(writer: WalWriter, msgs: readonly Msg[]): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = msgs.length
    if (left === 0) resolve()
    for (const m of msgs) {
      writer.append(encodeMessage(m.chat, m.sender, m.text, m.sendTime), (err) => {
        if (err !== null) reject(err)
        else if (--left === 0) resolve()
      })
    }
  })
}

/** Writes `msgs` with a fresh writer and closes it. */
export async function writeLog(dir: string, msgs: readonly Msg[], opts: TestWriterOptions = {}, state: WriterState = EMPTY_STATE): Promise<void> {
  const writer = openWriter(dir, state, opts)
  await appendAll(writer, msgs)
  await writer.close()
}

export interface RecordLoc {
  readonly lsn: number
  readonly path: string
  readonly offset: number
  readonly end: number
  /** Whether the record starts a group-commit round (the mark in its length word). */
  readonly roundStart: boolean
}

export interface SegLoc {
  readonly path: string
  readonly name: string
  readonly firstLsn: number
  readonly size: number
  readonly records: readonly RecordLoc[]
}

/**
 * Where every record of a clean log sits, parsed from the length fields alone (not with the
 * reader under test, so that a reader bug cannot hide in the expectations); a segment may end in
 * preallocated zeros.
 */
export function layout(dir: string): SegLoc[] {
  return listSegments(dir).map((seg) => {
    const buf = readFileSync(seg.path)
    const records: RecordLoc[] = []
    let at = SEGMENT_HEADER_BYTES
    let lsn = seg.firstLsn
    while (at < buf.length) {
      const word = buf.readUInt32LE(at)
      if (word === 0) break // preallocated zeros after the records
      const end = at + RECORD_HEADER_BYTES + (word & ~ROUND_START)
      assert.ok(end <= buf.length, `layout: ${seg.path} is not a clean log`)
      records.push({ lsn: lsn++, path: seg.path, offset: at, end, roundStart: (word & ROUND_START) !== 0 })
      at = end
    }
    return { path: seg.path, name: seg.name, firstLsn: seg.firstLsn, size: buf.length, records }
  })
}

/**
 * Rewrites a segment's header with format `version` (its checksum recomputed). To 1, the records'
 * round marks go too, as format 1 wrote them: a data directory from before the marks.
 */
export function setFormatVersion(path: string, version: number): void {
  const buf = readFileSync(path)
  buf.writeUInt16LE(version, 8)
  buf.writeUInt32LE(crc32(buf.subarray(0, 24)), 24)
  if (version === 1) {
    for (let at = SEGMENT_HEADER_BYTES; at + RECORD_HEADER_BYTES <= buf.length; ) {
      const word = buf.readUInt32LE(at)
      if (word === 0) break
      const len = word & ~ROUND_START
      if (len !== word) {
        buf.writeUInt32LE(len, at)
        buf.writeUInt32LE(~buf.readUInt32LE(at + 4) >>> 0, at + 4)
      }
      at += RECORD_HEADER_BYTES + len
    }
  }
  writeFileSync(path, buf)
}

export interface ReadBack {
  readonly log: RecoveredLog
  readonly msgs: Msg[]
  readonly payloads: Buffer[]
  readonly lsns: number[]
}

/** Reads a log with readLog, keeping every record in order. Throws what readLog throws. */
export function readBack(dir: string, shard = 0): ReadBack {
  const msgs: Msg[] = []
  const payloads: Buffer[] = []
  const lsns: number[] = []
  const log = readLog(dir, shard, (payload, lsn) => {
    const m = decodeMessage(payload)
    assert.ok(m !== null, `record ${lsn} is not a message`)
    msgs.push(m)
    payloads.push(Buffer.from(payload))
    lsns.push(lsn)
  })
  return { log, msgs, payloads, lsns }
}

const wire = (m: Msg) => ({ chat: m.chat, text: m.text, sender: m.sender, send_time: m.sendTime })

/** Throws unless `store` holds exactly `msgs`, each chat's in order. */
export function assertStore(store: ShardStore, msgs: readonly Msg[]): void {
  const chats = new Map<string, Msg[]>()
  for (const m of msgs) {
    const list = chats.get(m.chat) ?? []
    list.push(m)
    chats.set(m.chat, list)
  }
  assert.equal(store.stats().messages, msgs.length, 'messages in the store')
  for (const [chat, list] of chats) {
    const page = store.pull(chat, 0, 100_000, false)
    assert.equal(page.json.toString('utf8'), JSON.stringify(list.map(wire)), `chat ${chat}`)
  }
}
