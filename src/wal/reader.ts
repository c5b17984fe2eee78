// Reading a log back: verifying segments record by record, and deciding what a defect means.
//
// Recovery rules (docs/wal.md, "Recovery"):
// - The last segment may end in zeros: space the writer preallocated (or a crash's unwritten
//   round). That is clean; appending resumes at the first zero.
// - Only the last segment may end in a torn tail: an incomplete record or a bad checksum on the
//   final record, which is what a crash in the middle of a write leaves; or (format 2, whose
//   records mark where each round starts) a defect followed by valid records none of which starts
//   a round: the last round, torn by a crash that persisted its pages out of order. The tail is
//   cut at the first bad record and the cut is reported.
// - Any other defect is corruption: a bad record followed by a valid one of a later round (or, in
//   format 1, by any valid one), any defect in a sealed segment, a bad header, a gap in LSNs.
//   Recovery refuses, naming the file and offset; `repair` can cut the log there (the cut-off part
//   is kept as *.broken).
// Every input lands in exactly one of: clean, torn tail (cut), corrupt (refuse).

import { closeSync, fstatSync, openSync, readdirSync, readSync } from 'node:fs'
import { join } from 'node:path'
import {
  LATER_FORMAT,
  RECORD_HEADER_BYTES,
  RECORD_PAYLOAD_BYTES_MAX,
  ROUND_MARKS_VERSION,
  ROUND_START,
  SEGMENT_HEADER_BYTES,
  crc32,
  decodeHeader,
  parseSegmentName,
} from './format.js'
import { syncFile } from './sync.js'

export interface SegmentFile {
  readonly name: string
  readonly path: string
  readonly firstLsn: number
}

/** The segments in a log directory, oldest first. Other files are ignored. */
export function listSegments(dir: string): SegmentFile[] {
  const out: SegmentFile[] = []
  for (const name of readdirSync(dir)) {
    const firstLsn = parseSegmentName(name)
    if (firstLsn !== null) out.push({ name, path: join(dir, name), firstLsn })
  }
  return out.sort((a, b) => a.firstLsn - b.firstLsn)
}

export type ScanOutcome =
  | { readonly kind: 'clean' }
  | { readonly kind: 'torn'; readonly offset: number; readonly reason: string }
  | { readonly kind: 'corrupt'; readonly offset: number; readonly reason: string }

export interface SegmentScan {
  readonly records: number
  /** Offset just past the last good record; a clean last segment may have zeros after it. */
  readonly goodEnd: number
  readonly outcome: ScanOutcome
}

const ZEROS = Buffer.alloc(64 * 1024)

const startsRound = (word: number, rounds: boolean): boolean => rounds && word >= ROUND_START

/** The payload length a record's length word gives: the word without its round mark (version 2). */
const wordLength = (word: number, rounds: boolean): number => (startsRound(word, rounds) ? word - ROUND_START : word)

/** The payload length of the record whose length word is `word`, or -1 when no record has that word. */
function lengthOf(word: number, rounds: boolean): number {
  const len = wordLength(word, rounds)
  return len === 0 || len > RECORD_PAYLOAD_BYTES_MAX ? -1 : len
}

/** The checksum a record with this length word and payload stores. */
const storedCrc = (word: number, rounds: boolean, payload: Buffer): number => (startsRound(word, rounds) ? ~crc32(payload) >>> 0 : crc32(payload))

/** Where a well-formed record starting at `at` ends, or -1 if none starts there. */
function validRecordEnd(buf: Buffer, at: number, rounds: boolean): number {
  if (buf.length - at < RECORD_HEADER_BYTES) return -1
  const word = buf.readUInt32LE(at)
  const len = lengthOf(word, rounds)
  if (len === -1 || len > buf.length - at - RECORD_HEADER_BYTES) return -1
  const end = at + RECORD_HEADER_BYTES + len
  return buf.readUInt32LE(at + 4) === storedCrc(word, rounds, buf.subarray(at + RECORD_HEADER_BYTES, end)) ? end : -1
}

// After a defect at `at`, is there any valid record later in the file? A record can start at any
// offset once framing is lost, so every offset is tried: a crash-torn tail has none, corruption
// in the middle of a log has its later records intact.
function validRecordAfter(buf: Buffer, at: number, rounds: boolean): number {
  for (let i = at + 1; i + RECORD_HEADER_BYTES < buf.length; i++) {
    // A length of 1..RECORD_PAYLOAD_BYTES_MAX has a non-zero byte among its first three, so no
    // record starts in the first 4094 bytes of an all-zero 4 KiB block: skip a preallocated tail.
    if ((i & 4095) === 0 && i + 4096 <= buf.length && ZEROS.compare(buf, i, i + 4096, 0, 4096) === 0) {
      i += 4093
      continue
    }
    if (validRecordEnd(buf, i, rounds) !== -1) return i
  }
  return -1
}

// Whether any valid record from `from` (a valid record's offset) on starts a round: the records
// after the first one found are read in order, skipping again over bytes that are none.
function roundStartFrom(buf: Buffer, from: number, rounds: boolean): boolean {
  let at = from
  while (at !== -1) {
    const end = validRecordEnd(buf, at, rounds)
    if (end === -1) {
      at = validRecordAfter(buf, at, rounds)
      continue
    }
    if (startsRound(buf.readUInt32LE(at), rounds)) return true
    at = end
  }
  return false
}

/** Whether every byte from `from` on is zero (a preallocated tail can be megabytes: compared in blocks). */
function isZero(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i += ZEROS.length) {
    const end = Math.min(buf.length, i + ZEROS.length)
    if (ZEROS.compare(buf, i, end, 0, end - i) !== 0) return false
  }
  return true
}

/**
 * Verifies one segment's records, calling `onRecord` for each good one in order. `isLast` says
 * whether a torn tail is acceptable here; `version` is the segment's format version (round marks
 * from ROUND_MARKS_VERSION on).
 */
export function scanSegment(buf: Buffer, isLast: boolean, version: number, onRecord: (payload: Buffer, offset: number) => void): SegmentScan {
  const rounds = version >= ROUND_MARKS_VERSION
  let at = SEGMENT_HEADER_BYTES
  let records = 0
  const defect = (reason: string, tornOk: boolean): SegmentScan => {
    const later = validRecordAfter(buf, at, rounds)
    if (isLast && tornOk) {
      if (later === -1) return { records, goodEnd: at, outcome: { kind: 'torn', offset: at, reason } }
      // Valid records after the damage, none of them the start of a round: they are all of the
      // damaged record's round, the last one. Only that round can have been torn by a crash (the
      // writer starts none before the previous one is durable), in whatever order its pages
      // reached the disk; none of it was acknowledged.
      if (rounds && !roundStartFrom(buf, later, rounds)) {
        return { records, goodEnd: at, outcome: { kind: 'torn', offset: at, reason: `${reason} in the last round, whose later records are cut with it` } }
      }
    }
    const why = later === -1 ? `${reason} in a sealed segment` : `${reason}, followed by a valid record at offset ${later}`
    return { records, goodEnd: at, outcome: { kind: 'corrupt', offset: at, reason: why } }
  }
  // Zeros where the next record would start, to the end: the writer's preallocated space, or a
  // round that never reached the disk. Either way nothing was acknowledged there. A sealed segment
  // is cut to its records when the writer rolls, so zeros there are damage.
  const zeroTail = (): SegmentScan | null =>
    isZero(buf, at) ? (isLast ? { records, goodEnd: at, outcome: { kind: 'clean' } } : defect('zeroed tail', false)) : null
  while (at < buf.length) {
    const rest = buf.length - at
    if (rest < RECORD_HEADER_BYTES) return zeroTail() ?? defect(`incomplete record header (${rest} bytes)`, true)
    const word = buf.readUInt32LE(at)
    if (word === 0) return zeroTail() ?? defect('zero-length record', true)
    const len = wordLength(word, rounds)
    if (len === 0) return defect('zero-length record', true)
    if (len > RECORD_PAYLOAD_BYTES_MAX) return defect(`record length ${len} exceeds the maximum`, true)
    if (len > rest - RECORD_HEADER_BYTES) return defect(`record length ${len} exceeds the ${rest - RECORD_HEADER_BYTES} bytes that remain`, true)
    const end = at + RECORD_HEADER_BYTES + len
    const payload = buf.subarray(at + RECORD_HEADER_BYTES, end)
    if (buf.readUInt32LE(at + 4) !== storedCrc(word, rounds, payload)) return defect('checksum mismatch', true)
    onRecord(payload, at)
    records++
    at = end
  }
  return { records, goodEnd: at, outcome: { kind: 'clean' } }
}

export class WalCorruptError extends Error {
  readonly file: string
  readonly offset: number
  readonly reason: string
  constructor(file: string, offset: number, reason: string) {
    super(
      reason.includes(LATER_FORMAT)
        ? `write-ahead log cannot be read by this release: ${file} at offset ${offset}: ${reason}; run the release that wrote it (this is no damage: do not run "npm run repair", which would cut the segment off)`
        : `write-ahead log is corrupt: ${file} at offset ${offset}: ${reason}; run "npm run repair" to cut the log there (the rest is kept as *.broken)`,
    )
    this.name = 'WalCorruptError'
    this.file = file
    this.offset = offset
    this.reason = reason
  }
}

export interface RecoveredLog {
  readonly segments: readonly SegmentFile[]
  readonly records: number
  /** LSN of the last good record (0 when the log is empty). */
  readonly lastLsn: number
  /** Valid bytes in the last segment (where appending resumes), or 0 with no segment. */
  readonly lastSegmentBytes: number
  /** The last segment's length when it ends in preallocated zeros after lastSegmentBytes, else lastSegmentBytes. */
  readonly lastSegmentCapacity: number
  /** The last segment's format version (format.ts), or 0 with no segment or none readable. */
  readonly lastSegmentVersion: number
  /** Set when the last segment had a torn tail to cut at lastSegmentBytes. */
  readonly torn: { readonly file: string; readonly offset: number; readonly reason: string; readonly bytes: number } | null
}

/** Reads a whole file into `scratch.buf` (grown if too small), returning a view of the bytes read. */
function readDurably(path: string, scratch: { buf: Buffer }): Buffer {
  // fsync before reading: what recovery rebuilds from must be what is on stable storage, not
  // pages a crashed predecessor left dirty in the cache (PostgreSQL and etcd do the same).
  syncFile(path)
  const fd = openSync(path, 'r')
  try {
    const size = fstatSync(fd).size
    // One buffer for every segment: a fresh 64 MiB buffer per segment costs its page faults again.
    if (scratch.buf.length < size) scratch.buf = Buffer.allocUnsafeSlow(size)
    let n = 0
    while (n < size) {
      const r = readSync(fd, scratch.buf, n, size - n, n)
      if (r === 0) break
      n += r
    }
    return scratch.buf.subarray(0, n)
  } finally {
    closeSync(fd)
  }
}

/**
 * Reads and verifies a whole log, calling `onRecord(payload, lsn, file, offset)` for each record
 * in order. `payload` is a view into a buffer that the next segment's bytes overwrite: copy what
 * must outlive the call.
 * Throws WalCorruptError on corruption. Does not modify any file.
 */
export function readLog(dir: string, shard: number, onRecord: (payload: Buffer, lsn: number, file: string, offset: number) => void): RecoveredLog {
  const part = readSegments(listSegments(dir), shard, true, onRecord)
  return { ...logOf(part), lastLsn: part.lastLsn ?? 0 }
}

/**
 * What readSegments found in a run of consecutive segments: what readLog reports for a whole log,
 * plus the LSNs at the run's ends, so that runs read apart can be joined (joinLogParts).
 */
export interface LogPart extends Omit<RecoveredLog, 'lastLsn'> {
  /** The first segment's first LSN, or null if the run holds no readable header. */
  readonly firstLsn: number | null
  /** LSN of the run's last record (firstLsn - 1 for a run without records), or null as above. */
  readonly lastLsn: number | null
}

/**
 * readLog for a run of consecutive segments of one log (oldest first). `holdsLast` says whether the
 * run ends with the log's last segment, the only one that may end torn. Checks everything readLog
 * checks inside the run; whether the run follows the one before is joinLogParts's to check.
 * `onRecord`'s payload is a view of its segment's bytes, valid until `onSegmentEnd` returns for
 * that segment (the next segment is read into the same buffer).
 */
export function readSegments(
  segments: readonly SegmentFile[],
  shard: number,
  holdsLast: boolean,
  onRecord: (payload: Buffer, lsn: number, file: string, offset: number) => void,
  onSegmentEnd: () => void = () => {},
): LogPart {
  let firstLsn: number | null = null
  let lsn: number | null = null
  let records = 0
  let lastSegmentBytes = 0
  let lastSegmentCapacity = 0
  let lastSegmentVersion = 0
  let torn: RecoveredLog['torn'] = null
  const scratch = { buf: Buffer.alloc(0) }
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i] as SegmentFile
    const isLast = holdsLast && i === segments.length - 1
    const buf = readDurably(seg.path, scratch)
    const header = decodeHeader(buf)
    if (typeof header === 'string') {
      if (headerNeverWritten(buf, isLast)) {
        torn = { file: seg.path, offset: 0, reason: 'segment header never written', bytes: buf.length }
        lastSegmentBytes = 0
        lastSegmentCapacity = 0
        lastSegmentVersion = 0
        break
      }
      throw new WalCorruptError(seg.path, 0, header)
    }
    if (header.shard !== shard) throw new WalCorruptError(seg.path, 10, `segment belongs to shard ${header.shard}, not ${shard}`)
    if (header.firstLsn !== seg.firstLsn) throw new WalCorruptError(seg.path, 16, `header says first LSN ${header.firstLsn}, file name says ${seg.firstLsn}`)
    // The first segment may start at any LSN (retention deletes segments from the front); every
    // later one must follow on, also after one that holds no records.
    if (lsn !== null && header.firstLsn !== lsn + 1) throw lsnGap(seg.path, lsn, header.firstLsn)
    firstLsn ??= header.firstLsn
    let at = header.firstLsn - 1
    const scan = scanSegment(buf, isLast, header.version, (payload, offset) => {
      at++
      onRecord(payload, at, seg.path, offset)
    })
    lsn = at
    records += scan.records
    if (scan.outcome.kind === 'corrupt') throw new WalCorruptError(seg.path, scan.outcome.offset, scan.outcome.reason)
    // The payloads passed to onRecord are views of this segment's bytes, which the next segment's overwrite.
    onSegmentEnd()
    if (scan.outcome.kind === 'torn') torn = { file: seg.path, offset: scan.outcome.offset, reason: scan.outcome.reason, bytes: buf.length - scan.goodEnd }
    lastSegmentBytes = scan.goodEnd
    // A clean segment is records, then (the last one) zeros to its end.
    lastSegmentCapacity = scan.outcome.kind === 'clean' ? buf.length : scan.goodEnd
    lastSegmentVersion = header.version
  }
  return { segments, records, firstLsn, lastLsn: lsn, lastSegmentBytes, lastSegmentCapacity, lastSegmentVersion, torn }
}

const lsnGap = (file: string, lastLsn: number, firstLsn: number): WalCorruptError =>
  new WalCorruptError(file, 16, `LSN gap: previous segment ended at ${lastLsn}, this one starts at ${firstLsn}`)

const logOf = (part: LogPart): Omit<RecoveredLog, 'lastLsn'> => ({
  segments: part.segments,
  records: part.records,
  lastSegmentBytes: part.lastSegmentBytes,
  lastSegmentCapacity: part.lastSegmentCapacity,
  lastSegmentVersion: part.lastSegmentVersion,
  torn: part.torn,
})

/**
 * The log that consecutive runs make, read apart (readSegments, in order, the last holding the
 * log's last segment): what readLog would have returned for them read together. Throws the
 * WalCorruptError readLog would have thrown if a run does not follow on from the one before.
 */
export function joinLogParts(parts: readonly LogPart[]): RecoveredLog {
  let lastLsn: number | null = null
  for (const part of parts) {
    if (part.firstLsn === null) continue
    if (lastLsn !== null && part.firstLsn !== lastLsn + 1) throw lsnGap((part.segments[0] as SegmentFile).path, lastLsn, part.firstLsn)
    lastLsn = part.lastLsn
  }
  const last = parts.at(-1)
  const log = last === undefined ? { segments: [], records: 0, lastSegmentBytes: 0, lastSegmentCapacity: 0, lastSegmentVersion: 0, torn: null } : logOf(last)
  return {
    ...log,
    segments: parts.flatMap((p) => p.segments),
    records: parts.reduce((n, p) => n + p.records, 0),
    lastLsn: lastLsn ?? 0,
  }
}

/** `segments` in up to `parts` runs of consecutive segments, as even in count as they divide. */
export function splitSegments(segments: readonly SegmentFile[], parts: number): SegmentFile[][] {
  const n = Math.max(1, Math.min(parts, segments.length))
  return Array.from({ length: n }, (_, k) => segments.slice(Math.floor((k * segments.length) / n), Math.floor(((k + 1) * segments.length) / n)))
}

/**
 * A crash between creating a segment and syncing its header leaves an empty or short file, or
 * (size durable, data not) a header's length of zeros: no record can be in any of them. Only the
 * last segment can be such a file; recovery deletes it and starts it anew.
 */
export function headerNeverWritten(buf: Buffer, isLast: boolean): boolean {
  return isLast && buf.length <= SEGMENT_HEADER_BYTES && buf.every((b) => b === 0)
}
