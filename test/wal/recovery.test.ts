// WAL recovery as a table of corruption cases run through one helper (etcd repair_test.go), and a
// property test that every damaged log lands in exactly the outcome an independent oracle
// predicts (TigerBeetle): clean, torn tail (a strict prefix survives) or refusal.
//
// The helper writes a log with a real WalWriter, damages the files, recovers into a fresh store
// and checks the outcome; unless recovery refused, it then resumes writing exactly as a shard
// worker does, appends more, recovers again from scratch and checks that everything reads back
// in order, exactly once.
//
// The property test is time-boxed. A failure's message holds fast-check's seed and path; replay
// it with FC_SEED=<seed> FC_PATH=<path> npx tap test/wal/recovery.test.ts

import assert from 'node:assert/strict'
import { appendFileSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { holds as holdsProperty } from '../helpers/fast-check.js'
import { recoverStore } from '../../src/store/recover.js'
import { ShardStore } from '../../src/store/shard-store.js'
import { SEGMENT_HEADER_BYTES, WalCorruptError, encodeHeader, listSegments, readSegments, realIo, segmentName, type RecoveredLog } from '../../src/wal/index.js'
import {
  appendAll,
  assertStore,
  layout,
  messages,
  openWriter,
  payloadOf,
  readBack,
  resumeState,
  setFormatVersion,
  writeLog,
  type Msg,
  type RecordLoc,
  type SegLoc,
  type TestWriterOptions,
} from './helpers.js'

// ---------------------------------------------------------------------------------------------
// Damaging files

function flipBit(path: string, offset: number, bit: number): void {
  const buf = readFileSync(path)
  assert.ok(offset < buf.length, `flipBit: offset ${offset} is past the end of ${path}`)
  buf[offset] = (buf[offset] as number) ^ (1 << bit)
  writeFileSync(path, buf)
}

function zeroRange(path: string, from: number, length: number): void {
  const buf = readFileSync(path)
  buf.fill(0, from, Math.min(buf.length, from + length))
  writeFileSync(path, buf)
}

function writeAt(path: string, offset: number, bytes: Uint8Array): void {
  const buf = readFileSync(path)
  buf.set(bytes, offset)
  writeFileSync(path, buf)
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n)
  return b
}

/** Every file in `dir` with its bytes: recovery must leave them all as they were. */
function snapshot(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  for (const name of readdirSync(dir).sort()) out.set(name, readFileSync(join(dir, name)))
  return out
}

// ---------------------------------------------------------------------------------------------
// The helper

const N = 24 // records written before the damage; about 140 bytes each, ~3.4 KB
const M = 7 // records appended after recovery
const SMALL_SEGMENT_BYTES = 700 // about 4 records: the log spans ~6 segments
// Rounds of about two records, so segments roll between rounds of the one burst of appends.
const BATCH_BYTES_MAX = 300

/** What a case gets to damage: the clean log's layout. */
class Ctx {
  readonly dir: string
  readonly segs: readonly SegLoc[]
  readonly records: readonly RecordLoc[]
  constructor(dir: string, segs: readonly SegLoc[]) {
    this.dir = dir
    this.segs = segs
    this.records = segs.flatMap((s) => s.records)
  }

  get lastSeg(): SegLoc {
    return this.segs.at(-1) as SegLoc
  }

  /** The last record of the log. */
  get last(): RecordLoc {
    return this.records.at(-1) as RecordLoc
  }

  /** A record in the middle of the (last) segment, with several after it. */
  get mid(): RecordLoc {
    const recs = this.lastSeg.records
    return recs[Math.floor(recs.length / 2)] as RecordLoc
  }

  /** Indexes (in `records`) of the first record of the last round, and of the round before it. */
  get rounds(): { readonly last: number; readonly previous: number } {
    const starts = this.records.flatMap((r, i) => (r.roundStart ? [i] : []))
    assert.ok(starts.length >= 2, `fixture: ${starts.length} rounds, want at least 2`)
    return { last: starts.at(-1) as number, previous: starts.at(-2) as number }
  }

  rec(i: number): RecordLoc {
    return this.records.at(i) as RecordLoc
  }

  seg(i: number): SegLoc {
    return this.segs.at(i) as SegLoc
  }

  /** The record holding byte `offset` of the last segment. */
  recordAt(offset: number): RecordLoc {
    const r = this.lastSeg.records.find((x) => x.offset <= offset && offset < x.end)
    assert.ok(r !== undefined, `no record holds offset ${offset}`)
    return r
  }
}

interface At {
  readonly file: string
  readonly offset: number
}

type Expect =
  /** Everything (or, for damage recovery cannot see, the first `survivors`) reads back. */
  | { readonly kind: 'clean'; readonly survivors?: (c: Ctx) => number }
  /** The tail is cut at `at`; the first `survivors` records remain. */
  | { readonly kind: 'torn'; readonly survivors: (c: Ctx) => number; readonly at: (c: Ctx) => At; readonly reason: RegExp }
  /** Recovery throws WalCorruptError naming `at`. */
  | { readonly kind: 'refuse'; readonly at: (c: Ctx) => At; readonly reason: RegExp }

interface Case {
  readonly name: string
  /** Write a log of several segments (SMALL_SEGMENT_BYTES each). */
  readonly segmented?: boolean
  /** The writer's WAL_BATCH_BYTES_MAX (default BATCH_BYTES_MAX: a round per record). */
  readonly batchBytesMax?: number
  readonly mutate: (c: Ctx) => void
  readonly expect: Expect
}

function writerOptions(segmented: boolean, batchBytesMax = BATCH_BYTES_MAX): TestWriterOptions {
  return { segmentBytes: segmented ? SMALL_SEGMENT_BYTES : 1024 * 1024, batchBytesMax }
}

/** Recovers into a fresh store; checks the log read back record by record against `want`. */
function recoverExpecting(dir: string, want: readonly Msg[]): RecoveredLog {
  const store = new ShardStore()
  const { log, records } = recoverStore(dir, 0, store)
  assertStore(store, want)
  assert.equal(records, want.length, 'records recovered')
  assert.equal(log.lastLsn, want.length, 'lastLsn')
  const back = readBack(dir)
  assert.deepEqual(back.msgs, [...want], 'records in log order')
  assert.deepEqual(back.lsns, want.map((_, i) => i + 1), 'LSNs 1..n, each once')
  return log
}

async function runCase(t: Test, c: Case): Promise<void> {
  const dir = t.testdir()
  const opts = writerOptions(c.segmented === true, c.batchBytesMax)
  const originals = messages(0, N)
  await writeLog(dir, originals, opts)
  const ctx = new Ctx(dir, layout(dir))
  assert.equal(ctx.records.length, N, 'fixture: every record written')
  if (c.segmented === true) assert.ok(ctx.segs.length >= 4, `fixture: ${ctx.segs.length} segments, want at least 4`)
  else assert.equal(ctx.segs.length, 1, 'fixture: one segment')

  c.mutate(ctx)
  const damaged = snapshot(dir)
  const expect = c.expect
  let recovered: RecoveredLog
  let survivors: number
  try {
    const store = new ShardStore()
    recovered = recoverStore(dir, 0, store).log
    survivors = expect.kind === 'refuse' ? -1 : (expect.survivors?.(ctx) ?? N)
    if (expect.kind !== 'refuse') assertStore(store, originals.slice(0, survivors))
  } catch (err) {
    if (expect.kind !== 'refuse' || !(err instanceof WalCorruptError)) throw err
    const at = expect.at(ctx)
    t.equal(err.file, at.file, 'the error names the file')
    t.equal(err.offset, at.offset, 'the error names the offset')
    // The message reads "... <file> at offset <n>: <reason>; run ...".
    const reason = /at offset \d+: (.*?); run /.exec(err.message)?.[1] ?? err.message
    t.match(reason, expect.reason, 'the reason')
    t.ok(err.message.includes(at.file), 'the message names the file')
    t.ok(err.message.includes(`offset ${at.offset}`), 'the message names the offset')
    // Damage is for repair to cut; a later release's log is not damage.
    if (/written by a later pullchat/.test(err.reason)) t.match(err.message, /do not run "npm run repair"/, 'no repair for a later format')
    else t.match(err.message, /; run "npm run repair" to cut the log there/, 'the message says how to repair')
    t.same(snapshot(dir), damaged, 'recovery changed no file')
    return
  }
  if (expect.kind === 'refuse') {
    t.fail(`recovered ${recovered.records} records (torn: ${JSON.stringify(recovered.torn)}); expected a refusal`)
    return
  }
  t.same(snapshot(dir), damaged, 'recovery changed no file')
  t.equal(recovered.records, survivors, `${survivors} of ${N} records recovered`)
  const want = originals.slice(0, survivors)
  recoverExpecting(dir, want)
  if (expect.kind === 'clean') {
    t.equal(recovered.torn, null, 'no torn tail')
  } else {
    const at = expect.at(ctx)
    const torn = recovered.torn
    t.ok(torn !== null, 'a torn tail is reported')
    if (torn !== null) {
      t.equal(torn.file, at.file, 'torn: file')
      t.equal(torn.offset, at.offset, 'torn: offset')
      t.match(torn.reason, expect.reason, 'torn: reason')
      t.equal(torn.bytes, (damaged.get(torn.file.slice(dir.length + 1))?.length ?? 0) - torn.offset, 'torn: bytes dropped')
      if (torn.offset > 0) t.equal(recovered.lastSegmentBytes, torn.offset, 'appending resumes where the tail was cut')
    }
  }

  // Resume as a shard's host does, append more, and read everything back from scratch.
  const more = messages(N, M)
  const writer = openWriter(dir, resumeState(recovered), opts)
  t.equal(writer.lastLsn, survivors, 'the writer resumes at the last good LSN')
  await appendAll(writer, more)
  await writer.close()
  const after = recoverExpecting(dir, [...want, ...more])
  t.equal(after.torn, null, 'clean after resuming')
  t.pass(`${survivors} survivors then ${M} new records read back in order, once each`)
}

// ---------------------------------------------------------------------------------------------
// The table

const all = (c: Ctx) => c.records.length
const lastAt = (c: Ctx): At => ({ file: c.last.path, offset: c.last.offset })
const recAt = (r: RecordLoc): At => ({ file: r.path, offset: r.offset })
const headerAt = (s: SegLoc, offset: number): At => ({ file: s.path, offset })
/** Where a new segment after the last would be, and which LSN it would start at. */
const nextSegPath = (c: Ctx) => join(c.dir, segmentName(c.records.length + 1))

const cases: Case[] = [
  // Clean logs.
  { name: 'clean log', mutate: () => {}, expect: { kind: 'clean' } },
  { name: 'clean log of several segments', segmented: true, mutate: () => {}, expect: { kind: 'clean' } },
  {
    name: 'files that are not segments are ignored',
    mutate: (c) => {
      writeFileSync(join(c.dir, 'notes.txt'), 'hello')
      writeFileSync(`${c.lastSeg.path}.broken`, Buffer.alloc(100, 0xff))
      writeFileSync(join(c.dir, '123.wal'), Buffer.alloc(100, 0xff))
    },
    expect: { kind: 'clean' },
  },

  // Torn tails: what a crash in the middle of a write leaves in the last segment.
  {
    name: 'truncated mid-record: the last record is cut',
    mutate: (c) => truncateSync(c.last.path, c.last.offset + 8 + Math.floor((c.last.end - c.last.offset - 8) / 2)),
    expect: { kind: 'torn', survivors: (c) => all(c) - 1, at: lastAt, reason: /^record length \d+ exceeds the \d+ bytes that remain$/ },
  },
  {
    name: 'truncated mid-header of the last record',
    mutate: (c) => truncateSync(c.last.path, c.last.offset + 3),
    expect: { kind: 'torn', survivors: (c) => all(c) - 1, at: lastAt, reason: /^incomplete record header \(3 bytes\)$/ },
  },
  {
    name: 'truncated right after the last record header',
    mutate: (c) => truncateSync(c.last.path, c.last.offset + 8),
    expect: { kind: 'torn', survivors: (c) => all(c) - 1, at: lastAt, reason: /exceeds the 0 bytes that remain/ },
  },
  {
    name: 'the last byte truncated',
    mutate: (c) => truncateSync(c.last.path, c.last.end - 1),
    expect: { kind: 'torn', survivors: (c) => all(c) - 1, at: lastAt, reason: /exceeds the \d+ bytes that remain/ },
  },
  {
    name: 'truncated mid-record in the last of several segments',
    segmented: true,
    mutate: (c) => truncateSync(c.last.path, c.last.offset + 20),
    expect: { kind: 'torn', survivors: (c) => all(c) - 1, at: lastAt, reason: /exceeds/ },
  },
  {
    // A shorter clean log: no checksum can tell a record that was never written.
    name: 'truncated exactly at a record boundary: a clean, shorter log',
    mutate: (c) => truncateSync(c.last.path, c.rec(-3).end),
    expect: { kind: 'clean', survivors: (c) => all(c) - 2 },
  },
  {
    name: 'the last segment truncated to its header: a clean, shorter log',
    segmented: true,
    mutate: (c) => truncateSync(c.lastSeg.path, SEGMENT_HEADER_BYTES),
    expect: { kind: 'clean', survivors: (c) => c.lastSeg.firstLsn - 1 },
  },
  {
    name: 'the tail zeroed: the last 10 bytes',
    mutate: (c) => zeroRange(c.last.path, c.last.end - 10, 10),
    expect: { kind: 'torn', survivors: (c) => all(c) - 1, at: lastAt, reason: /^checksum mismatch$/ },
  },
  {
    // Zeros from a record boundary to the end read as preallocated space: a clean, shorter log.
    name: 'the tail zeroed from a record boundary: the last 3 records',
    mutate: (c) => zeroRange(c.last.path, c.rec(-3).offset, 1 << 20),
    expect: { kind: 'clean', survivors: (c) => all(c) - 3 },
  },
  {
    name: 'the tail zeroed from the middle of the second-to-last record',
    mutate: (c) => zeroRange(c.last.path, c.rec(-2).offset + 30, 1 << 20),
    expect: { kind: 'torn', survivors: (c) => all(c) - 2, at: (c) => recAt(c.rec(-2)), reason: /^checksum mismatch$/ },
  },
  {
    name: 'zeros appended after the last record (a preallocated tail): clean, nothing lost',
    mutate: (c) => appendFileSync(c.last.path, Buffer.alloc(4096)),
    expect: { kind: 'clean', survivors: all },
  },
  {
    name: 'fewer zeros appended than a record header: clean, nothing lost',
    mutate: (c) => appendFileSync(c.last.path, Buffer.alloc(5)),
    expect: { kind: 'clean', survivors: all },
  },
  {
    name: 'garbage appended after the last record: nothing lost',
    mutate: (c) => appendFileSync(c.last.path, Buffer.alloc(20, 0xff)),
    expect: { kind: 'torn', survivors: all, at: (c) => ({ file: c.last.path, offset: c.last.end }), reason: /exceeds the maximum/ },
  },
  {
    name: "a bit flipped in the last record's payload",
    mutate: (c) => flipBit(c.last.path, c.last.end - 3, 2),
    expect: { kind: 'torn', survivors: (c) => all(c) - 1, at: lastAt, reason: /^checksum mismatch$/ },
  },
  {
    name: "a bit flipped in the last record's CRC",
    mutate: (c) => flipBit(c.last.path, c.last.offset + 5, 0),
    expect: { kind: 'torn', survivors: (c) => all(c) - 1, at: lastAt, reason: /^checksum mismatch$/ },
  },
  {
    // The top bit is the round mark (format 2), which the record's checksum covers.
    name: "the top bit flipped in the last record's length",
    mutate: (c) => flipBit(c.last.path, c.last.offset + 3, 7),
    expect: { kind: 'torn', survivors: (c) => all(c) - 1, at: lastAt, reason: /^checksum mismatch$/ },
  },
  {
    name: 'an empty last segment (a crash right after creating it)',
    mutate: (c) => writeFileSync(nextSegPath(c), Buffer.alloc(0)),
    expect: { kind: 'torn', survivors: all, at: (c) => ({ file: nextSegPath(c), offset: 0 }), reason: /^segment header never written$/ },
  },
  {
    name: 'a last segment of fewer zero bytes than a header, after several segments',
    segmented: true,
    mutate: (c) => writeFileSync(nextSegPath(c), Buffer.alloc(SEGMENT_HEADER_BYTES - 1)),
    expect: { kind: 'torn', survivors: all, at: (c) => ({ file: nextSegPath(c), offset: 0 }), reason: /^segment header never written$/ },
  },

  {
    // Created, and its size made durable, but not its data (ext4 data=writeback, for one): the
    // header's fsync never returned, so nothing was appended after it.
    name: 'a last segment of exactly a header of zeros',
    mutate: (c) => writeFileSync(nextSegPath(c), Buffer.alloc(SEGMENT_HEADER_BYTES)),
    expect: { kind: 'torn', survivors: all, at: (c) => ({ file: nextSegPath(c), offset: 0 }), reason: /^segment header never written$/ },
  },
  {
    // Longer than a header: records could have been in it, so zeros there are damage.
    name: 'a last segment of zeros, longer than a header',
    mutate: (c) => writeFileSync(nextSegPath(c), Buffer.alloc(SEGMENT_HEADER_BYTES + 1)),
    expect: { kind: 'refuse', at: (c) => ({ file: nextSegPath(c), offset: 0 }), reason: /^bad magic$/ },
  },

  // A crash that persisted the last round's pages out of order (format 2 marks where rounds
  // start): valid records after the damage, none of them the start of a round. Rounds here are
  // of ~5 records (WAL_BATCH_BYTES_MAX 1000).
  {
    name: 'a record of the last round damaged, a later record of that round intact: the round is cut from there',
    batchBytesMax: 1000,
    mutate: (c) => {
      const r = c.rec(c.rounds.last + 1)
      assert.ok(c.rounds.last + 2 < c.records.length, 'fixture: the last round holds at least 3 records')
      flipBit(r.path, r.end - 4, 1)
    },
    expect: { kind: 'torn', survivors: (c) => c.rounds.last + 1, at: (c) => recAt(c.rec(c.rounds.last + 1)), reason: /^checksum mismatch in the last round, whose later records are cut with it$/ },
  },
  {
    name: "the last round's first record still zeros (its page never reached the disk), the rest of the round there: the round is cut",
    batchBytesMax: 1000,
    mutate: (c) => {
      const r = c.rec(c.rounds.last)
      zeroRange(r.path, r.offset, r.end - r.offset)
    },
    expect: { kind: 'torn', survivors: (c) => c.rounds.last, at: (c) => recAt(c.rec(c.rounds.last)), reason: /^zero-length record in the last round/ },
  },
  {
    name: 'the start of the last round damaged, its later records intact: the round is cut',
    batchBytesMax: 1000,
    mutate: (c) => flipBit(c.rec(c.rounds.last).path, c.rec(c.rounds.last).offset + 12, 0),
    expect: { kind: 'torn', survivors: (c) => c.rounds.last, at: (c) => recAt(c.rec(c.rounds.last)), reason: /^checksum mismatch in the last round/ },
  },
  {
    name: 'a record of the round before the last damaged: the last round is intact after it, refuse',
    batchBytesMax: 1000,
    mutate: (c) => flipBit(c.rec(c.rounds.previous + 1).path, c.rec(c.rounds.previous + 1).end - 4, 1),
    expect: { kind: 'refuse', at: (c) => recAt(c.rec(c.rounds.previous + 1)), reason: /^checksum mismatch, followed by a valid record at offset \d+$/ },
  },
  {
    name: 'the last record of the round before the last damaged: refuse',
    batchBytesMax: 1000,
    mutate: (c) => flipBit(c.rec(c.rounds.last - 1).path, c.rec(c.rounds.last - 1).end - 4, 1),
    expect: { kind: 'refuse', at: (c) => recAt(c.rec(c.rounds.last - 1)), reason: /followed by a valid record/ },
  },
  {
    // A data directory from before the marks: read as it was, and appending goes on without them.
    name: 'format 1 (no round marks), clean: read whole, resumed in format 1',
    batchBytesMax: 1000,
    mutate: (c) => setFormatVersion(c.lastSeg.path, 1),
    expect: { kind: 'clean' },
  },
  {
    name: 'format 1: a record of the last round damaged, a later one intact: refuse, as format 1 cannot tell rounds apart',
    batchBytesMax: 1000,
    mutate: (c) => {
      const r = c.rec(c.rounds.last + 1)
      setFormatVersion(c.lastSeg.path, 1)
      flipBit(r.path, r.end - 4, 1)
    },
    expect: { kind: 'refuse', at: (c) => recAt(c.rec(c.rounds.last + 1)), reason: /^checksum mismatch, followed by a valid record/ },
  },

  // Corruption: recovery refuses, naming the file and offset.
  {
    name: 'a 512-byte sector zeroed mid-file, valid records after it',
    mutate: (c) => zeroRange(c.lastSeg.path, 512, 512),
    expect: { kind: 'refuse', at: (c) => recAt(c.recordAt(512)), reason: /, followed by a valid record at offset \d+$/ },
  },
  {
    name: 'a bit flipped mid-file',
    mutate: (c) => flipBit(c.mid.path, c.mid.offset + 20, 4),
    expect: { kind: 'refuse', at: (c) => recAt(c.mid), reason: /^checksum mismatch, followed by a valid record at offset \d+$/ },
  },
  {
    name: "a bit flipped in a mid-file record's length",
    mutate: (c) => flipBit(c.mid.path, c.mid.offset, 0),
    expect: { kind: 'refuse', at: (c) => recAt(c.mid), reason: /followed by a valid record/ },
  },
  {
    name: 'a record length larger than what remains, mid-file',
    mutate: (c) => writeAt(c.mid.path, c.mid.offset, u32(c.lastSeg.size - c.mid.offset - 8 + 1)),
    expect: { kind: 'refuse', at: (c) => recAt(c.mid), reason: /^record length \d+ exceeds the \d+ bytes that remain, followed by a valid record/ },
  },
  {
    name: 'a zero record length mid-file',
    mutate: (c) => writeAt(c.mid.path, c.mid.offset, u32(0)),
    expect: { kind: 'refuse', at: (c) => recAt(c.mid), reason: /^zero-length record, followed by a valid record/ },
  },
  {
    name: 'the first record damaged',
    mutate: (c) => flipBit(c.rec(0).path, c.rec(0).end - 1, 0),
    expect: { kind: 'refuse', at: (c) => recAt(c.rec(0)), reason: /^checksum mismatch, followed by a valid record/ },
  },
  {
    name: 'the second-to-last record damaged, the last intact',
    mutate: (c) => flipBit(c.rec(-2).path, c.rec(-2).offset + 12, 1),
    expect: { kind: 'refuse', at: (c) => recAt(c.rec(-2)), reason: /^checksum mismatch, followed by a valid record/ },
  },
  {
    name: 'a bit flipped in the last record of a sealed segment',
    segmented: true,
    mutate: (c) => flipBit(c.seg(1).path, (c.seg(1).records.at(-1) as RecordLoc).end - 2, 6),
    expect: { kind: 'refuse', at: (c) => recAt(c.seg(1).records.at(-1) as RecordLoc), reason: /^checksum mismatch in a sealed segment$/ },
  },
  {
    name: 'a sealed segment truncated mid-record (a torn tail, but not in the last segment)',
    segmented: true,
    mutate: (c) => truncateSync(c.seg(0).path, c.seg(0).size - 5),
    expect: { kind: 'refuse', at: (c) => recAt(c.seg(0).records.at(-1) as RecordLoc), reason: /in a sealed segment$/ },
  },
  {
    name: 'zeros appended to a sealed segment',
    segmented: true,
    mutate: (c) => appendFileSync(c.seg(1).path, Buffer.alloc(64)),
    expect: { kind: 'refuse', at: (c) => headerAt(c.seg(1), c.seg(1).size), reason: /^zeroed tail in a sealed segment$/ },
  },
  {
    name: 'a bit flipped mid-file in a sealed segment',
    segmented: true,
    mutate: (c) => flipBit(c.seg(2).path, (c.seg(2).records[1] as RecordLoc).offset + 9, 3),
    expect: { kind: 'refuse', at: (c) => recAt(c.seg(2).records[1] as RecordLoc), reason: /followed by a valid record/ },
  },
  {
    name: 'a sealed segment truncated at a record boundary: an LSN gap',
    segmented: true,
    mutate: (c) => truncateSync(c.seg(1).path, (c.seg(1).records.at(-1) as RecordLoc).offset),
    expect: { kind: 'refuse', at: (c) => headerAt(c.seg(2), 16), reason: /^LSN gap: previous segment ended at \d+, this one starts at \d+$/ },
  },
  {
    name: 'the first segment truncated to its header: an LSN gap',
    segmented: true,
    mutate: (c) => truncateSync(c.seg(0).path, SEGMENT_HEADER_BYTES),
    expect: { kind: 'refuse', at: (c) => headerAt(c.seg(1), 16), reason: /^LSN gap: previous segment ended at 0, this one starts at \d+$/ },
  },
  {
    name: 'an LSN gap: a middle segment deleted',
    segmented: true,
    mutate: (c) => unlinkSync(c.seg(2).path),
    expect: { kind: 'refuse', at: (c) => headerAt(c.seg(3), 16), reason: /^LSN gap: previous segment ended at \d+, this one starts at \d+$/ },
  },
  {
    name: 'bad header magic in the first segment',
    segmented: true,
    mutate: (c) => flipBit(c.seg(0).path, 0, 0),
    expect: { kind: 'refuse', at: (c) => headerAt(c.seg(0), 0), reason: /^bad magic$/ },
  },
  {
    name: 'bad header magic in the last segment',
    segmented: true,
    mutate: (c) => writeAt(c.lastSeg.path, 0, Buffer.from('XXXXXXXX')),
    expect: { kind: 'refuse', at: (c) => headerAt(c.lastSeg, 0), reason: /^bad magic$/ },
  },
  {
    name: "a bit flipped in a segment header's first LSN: header checksum",
    mutate: (c) => flipBit(c.lastSeg.path, 16, 1),
    expect: { kind: 'refuse', at: (c) => headerAt(c.lastSeg, 0), reason: /^header checksum mismatch$/ },
  },
  {
    name: "a bit flipped in a segment header's reserved bytes 28..31 (outside the checksum)",
    segmented: true,
    mutate: (c) => flipBit(c.seg(1).path, 29, 3),
    expect: { kind: 'refuse', at: (c) => headerAt(c.seg(1), 0), reason: /^reserved header bytes 28\.\.31 are not zero$/ },
  },
  {
    name: 'a later format version',
    mutate: (c) => setFormatVersion(c.lastSeg.path, 3),
    expect: { kind: 'refuse', at: (c) => headerAt(c.lastSeg, 0), reason: /^format version 3, written by a later pullchat \(this one reads versions 1 to 2\)$/ },
  },
  {
    name: 'format version 0',
    mutate: (c) => setFormatVersion(c.lastSeg.path, 0),
    expect: { kind: 'refuse', at: (c) => headerAt(c.lastSeg, 0), reason: /^unsupported format version 0$/ },
  },
  {
    name: 'a segment of another shard',
    segmented: true,
    mutate: (c) => writeAt(c.seg(2).path, 0, encodeHeader(3, c.seg(2).firstLsn)),
    expect: { kind: 'refuse', at: (c) => headerAt(c.seg(2), 10), reason: /^segment belongs to shard 3, not 0$/ },
  },
  {
    name: 'a segment whose name disagrees with its header',
    segmented: true,
    mutate: (c) => renameSync(c.lastSeg.path, join(c.dir, segmentName(c.lastSeg.firstLsn + 1))),
    expect: { kind: 'refuse', at: (c) => ({ file: join(c.dir, segmentName(c.lastSeg.firstLsn + 1)), offset: 16 }), reason: /^header says first LSN \d+, file name says \d+$/ },
  },
  {
    name: 'an empty segment that is not the last',
    segmented: true,
    mutate: (c) => truncateSync(c.seg(1).path, 0),
    expect: { kind: 'refuse', at: (c) => headerAt(c.seg(1), 0), reason: /^header is 0 bytes, expected 32$/ },
  },
  {
    // A header is written whole in one 32-byte write before anything else: half a header with
    // bytes in it is not what a crash leaves.
    name: 'a last segment holding part of a header',
    mutate: (c) => writeFileSync(nextSegPath(c), encodeHeader(0, c.records.length + 1).subarray(0, 20)),
    expect: { kind: 'refuse', at: (c) => ({ file: nextSegPath(c), offset: 0 }), reason: /^header is 20 bytes, expected 32$/ },
  },
]

for (const c of cases) t.test(`recovery: ${c.name} -> ${c.expect.kind}`, (t) => runCase(t, c))

// ---------------------------------------------------------------------------------------------
// Property: any single damage lands in exactly the outcome the oracle predicts

// Damage cases are cheap: more of them, in less time.
const holds = <Ts>(t: Test, property: fc.IRawProperty<Ts, boolean>, params: fc.Parameters<Ts> = {}): Promise<void> =>
  holdsProperty(t, property, { numRuns: 1000, interruptAfterTimeLimit: 10_000, ...params })

type Outcome =
  | { readonly kind: 'clean'; readonly survivors: number }
  | { readonly kind: 'torn'; readonly survivors: number; readonly file: string; readonly offset: number }
  | { readonly kind: 'refuse'; readonly file: string; readonly offset: number }

/**
 * What recovery must do with the damaged log, worked out from which bytes changed (the recovery
 * rules in src/wal/reader.ts, restated): the first segment with a damaged header, or with a
 * record changed or cut, decides. Zeros from a record's start to the end of the last segment are
 * preallocated space: clean. A cut record with nothing valid after it in the last segment is a
 * torn tail; anything else damaged is corruption. A segment cut exactly at a record
 * boundary reads as a shorter clean log, which in a sealed segment shows as an LSN gap.
 */
function predict(segs: readonly SegLoc[], before: ReadonlyMap<string, Buffer>, after: ReadonlyMap<string, Buffer>): Outcome {
  let survivors = 0
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i] as SegLoc
    const isLast = i === segs.length - 1
    const a = before.get(seg.path) as Buffer
    const b = after.get(seg.path) as Buffer
    if (isLast && b.length <= SEGMENT_HEADER_BYTES && b.every((x) => x === 0)) return { kind: 'torn', survivors, file: seg.path, offset: 0 }
    if (b.length < SEGMENT_HEADER_BYTES) return { kind: 'refuse', file: seg.path, offset: 0 }
    // Any change to the header is refused: bytes 0..27 by the checksum, the reserved 28..31 (outside
    // it) by having to be zero.
    if (!a.subarray(0, SEGMENT_HEADER_BYTES).equals(b.subarray(0, SEGMENT_HEADER_BYTES))) return { kind: 'refuse', file: seg.path, offset: 0 }
    if (i > 0 && seg.firstLsn !== survivors + 1) return { kind: 'refuse', file: seg.path, offset: 16 }
    const intact = (r: RecordLoc) => b.length >= r.end && a.subarray(r.offset, r.end).equals(b.subarray(r.offset, r.end))
    const k = seg.records.findIndex((r) => !intact(r))
    if (k === -1) {
      survivors += seg.records.length
      continue
    }
    survivors += k
    const r = seg.records[k] as RecordLoc
    if (b.length === r.offset) {
      if (isLast) return { kind: 'clean', survivors }
      continue
    }
    // Zeros from a record's start to the end of the last segment: preallocated space (or a round
    // that never reached the disk), clean.
    if (isLast && b.subarray(r.offset).every((x) => x === 0)) return { kind: 'clean', survivors }
    // Torn: nothing intact after the damage, or nothing intact that starts a round (only the last
    // round can be torn by a crash; format 2 marks where each round starts).
    const laterRound = seg.records.slice(k + 1).some((x) => intact(x) && x.roundStart)
    if (isLast && !laterRound) return { kind: 'torn', survivors, file: seg.path, offset: r.offset }
    return { kind: 'refuse', file: seg.path, offset: r.offset }
  }
  return { kind: 'clean', survivors }
}

type Damage =
  | { readonly kind: 'flip'; readonly file: number; readonly pos: number; readonly fromEnd: boolean; readonly bit: number }
  | { readonly kind: 'truncate'; readonly file: number; readonly pos: number; readonly fromEnd: boolean }
  | { readonly kind: 'cut'; readonly file: number; readonly record: number }
  | { readonly kind: 'sector'; readonly file: number; readonly sector: number }

// file -1 is the last segment, where torn tails live; otherwise any segment.
const file = fc.oneof(fc.constant(-1), fc.nat())
const damage: fc.Arbitrary<Damage> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), file, pos: fc.nat(), fromEnd: fc.boolean(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), file, pos: fc.nat(), fromEnd: fc.boolean() }),
  fc.record({ kind: fc.constant('sector' as const), file, sector: fc.nat() }),
  // A truncation exactly at a record boundary: no checksum sees it.
  fc.record({ kind: fc.constant('cut' as const), file, record: fc.nat() }),
)

/** Applies `d`; returns a description for the failure report. */
function applyDamage(segs: readonly SegLoc[], d: Damage): string {
  const seg = (d.file === -1 ? segs.at(-1) : segs[d.file % segs.length]) as SegLoc
  // Positions near the end reach the last records, where most of the interesting cases are.
  const pos = (p: number, fromEnd: boolean) => (fromEnd ? seg.size - 1 - (p % Math.min(seg.size, 200)) : p % seg.size)
  switch (d.kind) {
    case 'flip': {
      const at = pos(d.pos, d.fromEnd)
      flipBit(seg.path, at, d.bit)
      return `flip bit ${d.bit} at ${seg.name}:${at}`
    }
    case 'truncate': {
      const at = pos(d.pos, d.fromEnd)
      truncateSync(seg.path, at)
      return `truncate ${seg.name} to ${at} bytes`
    }
    case 'cut': {
      const at = (seg.records[d.record % seg.records.length] as RecordLoc).offset
      truncateSync(seg.path, at)
      return `cut ${seg.name} at the record boundary ${at}`
    }
    case 'sector': {
      const at = 512 * (d.sector % Math.ceil(seg.size / 512))
      zeroRange(seg.path, at, 512)
      return `zero ${seg.name} from ${at} for 512 bytes`
    }
  }
}

t.test('property: any single damage is clean, a torn prefix, or a refusal, exactly as predicted', async (t) => {
  const root = t.testdir()
  let run = 0
  const property = fc.asyncProperty(
    fc.array(fc.nat(150), { minLength: 1, maxLength: 24 }),
    fc.constantFrom(256, 600, 1500, 1 << 20),
    fc.constantFrom(1, 300, 1 << 20),
    damage,
    fc.integer({ min: 1, max: 4 }),
    async (textBytes, segmentBytes, batchBytesMax, d, more) => {
      const dir = join(root, String(run++))
      mkdirSync(dir)
      try {
        // fdatasync through libuv rather than a sync thread per writer: under tap each thread boots
        // the TypeScript loader (~0.7 s), which left time for a handful of cases. Recovery is the subject.
        const opts = { segmentBytes, batchBytesMax, io: realIo }
        const written = messages(0, textBytes.length, (i) => textBytes[i] as number)
        await writeLog(dir, written, opts)
        const segs = layout(dir)
        const before = new Map(segs.map((s) => [s.path, readFileSync(s.path)]))
        const what = applyDamage(segs, d)
        const after = new Map(segs.map((s) => [s.path, readFileSync(s.path)]))
        const want = predict(segs, before, after)

        let got: Outcome
        let log: RecoveredLog | null = null
        let payloads: Buffer[] = []
        try {
          const back = readBack(dir)
          log = back.log
          payloads = back.payloads
          got = log.torn === null ? { kind: 'clean', survivors: log.records } : { kind: 'torn', survivors: log.records, file: log.torn.file, offset: log.torn.offset }
        } catch (err) {
          // Nothing but WalCorruptError, and it names the file and offset.
          if (!(err instanceof WalCorruptError)) throw err
          assert.ok(err.message.includes(err.file) && err.message.includes(`offset ${err.offset}`), `${what}: message names file and offset: ${err.message}`)
          got = { kind: 'refuse', file: err.file, offset: err.offset }
        }
        assert.deepEqual(got, want, `${what}: outcome`)
        if (log === null) {
          assert.throws(() => recoverStore(dir, 0, new ShardStore()), WalCorruptError, `${what}: recoverStore refuses too`)
          return
        }

        // Never a record that was not written: a prefix, byte for byte.
        assert.ok(payloads.length <= written.length, `${what}: no extra records`)
        if (got.kind === 'torn') assert.ok(payloads.length < written.length, `${what}: a torn tail loses a record`)
        payloads.forEach((p, i) => assert.ok(p.equals(payloadOf(written[i] as Msg)), `${what}: record ${i + 1} is byte-identical to what was written`))
        const kept = written.slice(0, payloads.length)
        recoverExpecting(dir, kept)

        // Resume as a shard's host does and read everything back.
        const added = messages(written.length, more)
        const writer = openWriter(dir, resumeState(log), opts)
        await appendAll(writer, added)
        await writer.close()
        const again = recoverExpecting(dir, [...kept, ...added])
        assert.equal(again.torn, null, `${what}: clean after resuming`)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    },
  )
  await holds(t, property)
})

t.test('property oracle sanity: an undamaged log is predicted clean and whole', async (t) => {
  const dir = t.testdir()
  await writeLog(dir, messages(0, 10), { segmentBytes: 600, batchBytesMax: 1 })
  const segs = layout(dir)
  const bytes = new Map(segs.map((s) => [s.path, readFileSync(s.path)]))
  t.same(predict(segs, bytes, bytes), { kind: 'clean', survivors: 10 })
  t.ok(segs.length > 1, 'several segments')
})

t.test("readSegments: a segment's payloads stay as read until its onSegmentEnd (the next segment reuses the buffer)", async (t) => {
  const dir = t.testdir()
  await writeLog(dir, messages(0, 30), { segmentBytes: SMALL_SEGMENT_BYTES, batchBytesMax: BATCH_BYTES_MAX })
  const segs = layout(dir)
  t.ok(segs.length >= 4, `${segs.length} segments`)
  const events: string[] = []
  let held: { payload: Buffer; copy: Buffer }[] = []
  readSegments(listSegments(dir), 0, true, (payload, lsn, file) => {
    events.push(`${file}#${lsn}`)
    held.push({ payload, copy: Buffer.from(payload) })
  }, () => {
    // What a caller that keeps payloads for a while (recovery's batched appends) relies on.
    t.ok(held.every((h) => h.payload.equals(h.copy)), `${held.length} payloads intact at the segment's end`)
    held = []
    events.push('end')
  })
  const want = segs.flatMap((s) => [...s.records.map((r) => `${s.path}#${r.lsn}`), 'end'])
  t.same(events, want, "each segment's records, then its end")
})
