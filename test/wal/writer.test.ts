// WalWriter: group commit (leader/follower rounds bounded by batchBytesMax), segment rolling,
// preallocated zeros ahead of the rounds, fsync policies, and faults injected through the `io` shim: ENOSPC and other failed writes
// (the round fails, the file is cut back, writes resume), a failed fdatasync (fatal, never
// retried), backpressure; and what a shard answers when its log cannot take a message.

import { appendFileSync, closeSync, openSync, readFileSync, readdirSync, statSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Errors } from '../../src/errors.js'
import type { SendResponse } from '../../src/rpc/index.js'
import { encodeMessage } from '../../src/store/message-record.js'
import { recoverStore } from '../../src/store/recover.js'
import { Shard } from '../../src/store/shard.js'
import { ShardStore } from '../../src/store/shard-store.js'
import {
  FORMAT_VERSION,
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  WalBackpressureError,
  WalStoppedError,
  WalSyncError,
  PREALLOCATE_BYTES_MAX,
  crc32,
  decodeHeader,
  listSegments,
  realIo,
  resumeState,
  scanSegment,
  segmentName,
  type WalIo,
} from '../../src/wal/index.js'
import { EMPTY_STATE, appendAll, layout, messages, openWriter, payloadOf, readBack, setFormatVersion, writeLog, type Msg, type RecordLoc, type SegLoc } from './helpers.js'

// ---------------------------------------------------------------------------------------------
// The shim: counts calls, holds fdatasyncs, injects failures

function errno(code: string, syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected fault, ${syscall}`), { code, syscall })
}

class TestIo implements WalIo {
  /** Bytes of each write call, in order. */
  readonly writes: number[] = []
  syncs = 0
  /** Writes, fdatasyncs returning, and (from the tests) callbacks, in the order they happened. */
  readonly events: string[] = []
  /** While set, fdatasyncs wait in `held` until release(). */
  holdSyncs = false
  private held: (() => void)[] = []
  /** While set, writes fail with this code after writing `partialBytes` of the buffer for real. */
  failWrite: { readonly code: string; readonly partialBytes: number } | null = null
  /** While set, fdatasyncs (when they run) fail with this error. */
  failSync: NodeJS.ErrnoException | null = null
  /** While set, writes of nothing but zeros (preallocation) write half their bytes, then fail with this code. */
  failZeroWrites: string | null = null

  write(fd: number, buf: Buffer, position: number, cb: (err: NodeJS.ErrnoException | null, written: number) => void): void {
    this.writes.push(buf.length)
    this.events.push(`write ${buf.length}`)
    if (this.failZeroWrites !== null && buf.every((b) => b === 0)) {
      writeSync(fd, buf, 0, buf.length >> 1, position)
      cb(errno(this.failZeroWrites, 'write'), 0)
      return
    }
    const fail = this.failWrite
    if (fail === null) {
      realIo.write(fd, buf, position, cb)
      return
    }
    if (fail.partialBytes > 0) writeSync(fd, buf, 0, Math.min(fail.partialBytes, buf.length), position)
    setImmediate(() => cb(errno(fail.code, 'write'), 0))
  }

  fdatasync(fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void {
    this.syncs++
    const run = () => {
      const fail = this.failSync
      if (fail !== null) {
        this.events.push('sync failed')
        cb(fail)
        return
      }
      realIo.fdatasync(fd, (err) => {
        this.events.push('synced')
        cb(err)
      })
    }
    if (this.holdSyncs) this.held.push(run)
    else setImmediate(run)
  }

  get heldSyncs(): number {
    return this.held.length
  }

  release(): void {
    const held = this.held
    this.held = []
    for (const run of held) run()
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(1)
  }
}

/** Bytes `msgs` take in the log. */
const recordBytes = (msgs: readonly Msg[]) => msgs.reduce((sum, m) => sum + RECORD_HEADER_BYTES + payloadOf(m).length, 0)

/** Appends one message; its callback pushes `cb <label>` (or the error) to `io.events`. */
function appendTracked(writer: ReturnType<typeof openWriter>, io: TestIo, m: Msg, label: string, errors?: (NodeJS.ErrnoException | null)[]): void {
  writer.append(encodeMessage(m.chat, m.sender, m.text, m.sendTime), (err) => {
    io.events.push(err === null ? `cb ${label}` : `cb ${label} ${err.code}`)
    errors?.push(err)
  })
}

/** Settles with 'timeout' unless `p` settles within `ms`. */
const within = <T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> => Promise.race([p, sleep(ms).then(() => 'timeout' as const)])

// ---------------------------------------------------------------------------------------------
// Group commit

t.test('appends made in one synchronous burst go out in one write and one fdatasync', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const writer = openWriter(dir, EMPTY_STATE, { io })
  const msgs = messages(0, 20)
  const done = appendAll(writer, msgs)
  t.same(io.writes, [], 'nothing is written while the burst is still being appended')
  await done
  t.same(io.writes, [recordBytes(msgs)], 'one write of all 20 records')
  t.equal(io.syncs, 1, 'one fdatasync')
  t.equal(writer.lastLsn, 20)
  await writer.close()
  t.same(readBack(dir).msgs, msgs, 'all read back in order')
})

// uWS drains the microtask queue after each request's callback; appends made in one turn of the
// event loop must still share a round, or every send is a write of its own (unsafe-none and
// interval have no sync in flight to batch them).
for (const fsync of [{ kind: 'always' }, { kind: 'interval', ms: 60_000 }, { kind: 'unsafe-none' }] as const) {
  t.test(`${fsync.kind}: appends made across microtask checkpoints within one turn of the event loop go out in one round`, async (t) => {
    const dir = t.testdir()
    const io = new TestIo()
    const writer = openWriter(dir, EMPTY_STATE, { io, fsync })
    const msgs = messages(0, 4)
    const acked: number[] = []
    for (const [i, m] of msgs.entries()) {
      writer.append(encodeMessage(m.chat, m.sender, m.text, m.sendTime), (err) => {
        if (err === null) acked.push(i)
      })
      await Promise.resolve() // a microtask checkpoint between one request's callback and the next
    }
    t.same(io.writes, [], 'nothing is written before the turn ends')
    await until('all four to be acked', () => acked.length === 4)
    t.same(io.writes, [recordBytes(msgs)], 'one write of all four records')
    t.same(acked, [0, 1, 2, 3], 'acked in order')
    await writer.close()
    t.same(readBack(dir).msgs, msgs, 'all read back in order')
  })
}

t.test('appends made while a sync is in flight go in the next round, written before the finished round is acked; callbacks wait for the fdatasync that covers them', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const rounds: [number, number][] = []
  const waits: number[] = []
  const writer = openWriter(dir, EMPTY_STATE, {
    io,
    onRound: (records, bytes, _fsyncMs, waitMs) => {
      rounds.push([records, bytes])
      waits.push(waitMs)
    },
  })
  const [a, b, c] = messages(0, 3) as [Msg, Msg, Msg]
  io.holdSyncs = true

  appendTracked(writer, io, a, 'A')
  await until('the first round to reach fdatasync', () => io.heldSyncs === 1)
  appendTracked(writer, io, b, 'B')
  appendTracked(writer, io, c, 'C')
  await sleep(20)
  t.same(io.writes, [recordBytes([a])], 'B and C are not written while A is being synced')
  t.notOk(io.events.includes('cb A'), "A's callback waits for its fdatasync")

  io.release()
  await until('the second round to reach fdatasync', () => io.heldSyncs === 1)
  t.same(
    io.events,
    [`write ${recordBytes([a])}`, 'synced', `write ${recordBytes([b, c])}`, 'cb A'],
    "after A's sync, B and C go out in one write, and then A is acked (its callback runs while their round syncs)",
  )

  io.holdSyncs = false
  io.release()
  await until('B and C to be acked', () => io.events.includes('cb C'))
  t.same(io.events.slice(4), ['synced', 'cb B', 'cb C'], 'B and C acked after their sync')
  t.equal(io.syncs, 2, 'two rounds, two fdatasyncs')
  t.same(rounds, [
    [1, recordBytes([a])],
    [2, recordBytes([b, c])],
  ], 'onRound reports each round')
  // B waited through the 20 ms sleep (and the rest of A's round) before its round began.
  t.ok((waits[1] as number) >= 19, `the second round's oldest record waited ${waits[1]} ms, at least the 20 ms that A's sync was held`)
  t.ok((waits[0] as number) >= 0 && (waits[0] as number) < (waits[1] as number), 'A waited less: its round began as soon as it was appended')
  await writer.close()
  t.same(readBack(dir).msgs, [a, b, c])
})

t.test('beforeCallbacks: told each durable round\'s record count before its first callback; not for a failed round', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const events: string[] = []
  const fatals: Error[] = []
  const writer = openWriter(dir, EMPTY_STATE, { io, beforeCallbacks: (n) => events.push(`round of ${n}`), onFatal: (err) => fatals.push(err) })
  const track = (m: Msg): void => writer.append(encodeMessage(m.chat, m.sender, m.text, m.sendTime), (err) => events.push(`${m.text}${err === null ? '' : ' failed'}`))
  const [a, b, c, d, e] = messages(0, 5) as [Msg, Msg, Msg, Msg, Msg]
  io.holdSyncs = true
  track(a)
  await until('the first round to reach fdatasync', () => io.heldSyncs === 1)
  track(b)
  track(c)
  io.release()
  await until('the second round to reach fdatasync', () => io.heldSyncs === 1)
  t.same(events, ['round of 1', a.text], 'the first round: its count, then its callback')
  io.release()
  await until('b and c', () => events.length === 5)
  t.same(events.slice(2), ['round of 2', b.text, c.text], 'the second: its count, then both callbacks in order')
  io.holdSyncs = false
  io.failSync = errno('EIO', 'fdatasync')
  track(d)
  track(e)
  await until('the failed round', () => events.length === 7)
  t.same(events.slice(5), [`${d.text} failed`, `${e.text} failed`], 'a failed round: callbacks only')
  t.equal(fatals.length, 1)
  await writer.close()
})

t.test('a round carries at most batchBytesMax bytes, and at least one record', async (t) => {
  const root = t.testdir({ a: {}, b: {} })
  const msgs = messages(0, 7, () => 50)
  const size = recordBytes(msgs.slice(0, 1))
  t.equal(recordBytes(msgs), 7 * size, 'fixture: records of one size')

  const io = new TestIo()
  const writer = openWriter(join(root, 'a'), EMPTY_STATE, { io, batchBytesMax: 2 * size + Math.floor(size / 2) })
  await appendAll(writer, msgs)
  t.same(io.writes, [2 * size, 2 * size, 2 * size, size], 'rounds of two records: a third would pass the limit')
  t.equal(io.syncs, 4)
  await writer.close()
  t.same(readBack(join(root, 'a')).msgs, msgs, 'read back in order')

  const io2 = new TestIo()
  const writer2 = openWriter(join(root, 'b'), EMPTY_STATE, { io: io2, batchBytesMax: 10 })
  await appendAll(writer2, msgs)
  t.same(io2.writes, Array(7).fill(size), 'a record larger than batchBytesMax goes alone')
  await writer2.close()
  t.same(readBack(join(root, 'b')).msgs, msgs, 'read back in order')
})

t.test('a burst of ~2.4 MB in one turn: rounds take batchBytesMax of it each, every byte once, in order', async (t) => {
  const dir = t.testdir()
  const msgs = messages(0, 20_000) // ~2.4 MB of records, in one synchronous burst
  const io = new TestIo()
  const batch = 256 * 1024
  const writer = openWriter(dir, EMPTY_STATE, { io, batchBytesMax: batch, segmentBytes: 64 * 1024 * 1024 })
  await appendAll(writer, msgs)
  t.ok(io.writes.length >= Math.ceil(recordBytes(msgs) / batch), `${io.writes.length} rounds`)
  t.ok(io.writes.every((n) => n <= batch), 'no round above batchBytesMax')
  t.equal(io.writes.reduce((a, b) => a + b, 0), recordBytes(msgs), 'every byte written once')
  // And after the burst, appends go on as usual.
  const more = messages(20_000, 3)
  await appendAll(writer, more)
  await writer.close()
  const back = readBack(dir)
  t.same(back.msgs, [...msgs, ...more], 'read back in order')
  t.same(back.lsns, Array.from({ length: msgs.length + more.length }, (_, i) => i + 1), 'LSNs contiguous')
})

t.test("each round's first record carries the round mark, and no other record does (format 2)", async (t) => {
  const dir = t.testdir()
  const msgs = messages(0, 7, () => 50)
  const size = recordBytes(msgs.slice(0, 1))
  const writer = openWriter(dir, EMPTY_STATE, { batchBytesMax: 2 * size + Math.floor(size / 2) })
  await appendAll(writer, msgs)
  await appendAll(writer, messages(7, 1, () => 50))
  await writer.close()
  const [seg] = layout(dir)
  t.equal(readFileSync((seg as SegLoc).path).readUInt16LE(8), FORMAT_VERSION, 'written in the current format')
  t.same((seg as SegLoc).records.map((r) => r.roundStart), [true, false, true, false, true, false, true, true], 'rounds of two, two, two, one, then one more')
  t.same(readBack(dir).msgs, messages(0, 8, () => 50), 'read back in order')
})

t.test('a segment of format 1 is resumed without round marks; the segment after the next roll has them', async (t) => {
  const dir = t.testdir()
  const msgs = messages(0, 4, () => 50)
  const size = recordBytes(msgs.slice(0, 1))
  const opts = { segmentBytes: SEGMENT_HEADER_BYTES + 6 * size, batchBytesMax: 1 }
  await writeLog(dir, msgs.slice(0, 2), opts)
  setFormatVersion(join(dir, segmentName(1)), 1) // what format 1 wrote: version 1, no marks
  t.same((layout(dir)[0] as SegLoc).records.map((r) => r.roundStart), [false, false], 'fixture: no marks')
  const back = readBack(dir)
  t.same(back.msgs, msgs.slice(0, 2), 'format 1 read back')
  const writer = openWriter(dir, resumeState(back.log), opts)
  const more = messages(2, 8, () => 50)
  await appendAll(writer, more)
  await writer.close()
  const segs = layout(dir)
  t.equal(segs.length, 2, 'rolled once')
  t.same(segs.map((s) => readFileSync(s.path).readUInt16LE(8)), [1, FORMAT_VERSION], 'the first segment stays format 1, the new one is current')
  t.same(segs.map((s) => s.records.map((r) => r.roundStart)), [Array(6).fill(false), Array(4).fill(true)], 'no marks in format 1; a round per record after the roll')
  t.same(readBack(dir).msgs, [...msgs.slice(0, 2), ...more], 'everything read back in order')
})

// ---------------------------------------------------------------------------------------------
// Segments

t.test('segments roll at segmentBytes: named by their first LSN, each with a valid header, read back across', async (t) => {
  const dir = t.testdir()
  const msgs = messages(0, 10, () => 50)
  const size = recordBytes(msgs.slice(0, 1))
  // Three records fill a segment; one record per round, so the fourth starts a new one.
  const writer = openWriter(dir, EMPTY_STATE, { shard: 2, segmentBytes: SEGMENT_HEADER_BYTES + 3 * size, batchBytesMax: 1 })
  await appendAll(writer, msgs)
  t.equal(writer.currentSegment, join(dir, segmentName(10)), 'writing to the newest segment')
  await writer.close()

  const names = readdirSync(dir).sort()
  t.same(names, [1, 4, 7, 10].map(segmentName), 'one segment per three records, named by first LSN')
  for (const name of names) t.match(name, /^\d{20}\.wal$/, `${name}: 20 digits`)
  t.equal(segmentName(4), '00000000000000000004.wal')
  for (const [i, first] of [1, 4, 7, 10].entries()) {
    const buf = readFileSync(join(dir, names[i] as string))
    t.same(decodeHeader(buf), { version: FORMAT_VERSION, shard: 2, firstLsn: first }, `${names[i]}: header`)
    t.equal(buf.length, SEGMENT_HEADER_BYTES + (first === 10 ? 1 : 3) * size, `${names[i]}: size`)
  }
  const back = readBack(dir, 2)
  t.same(back.msgs, msgs, 'recovery reads across segments in order')
  t.same(back.lsns, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  t.equal(back.log.torn, null)
})

t.test('a round is never split across segments: one larger than segmentBytes fills a segment of its own', async (t) => {
  const dir = t.testdir()
  const msgs = messages(0, 10, () => 50)
  const size = recordBytes(msgs.slice(0, 1))
  const writer = openWriter(dir, EMPTY_STATE, { segmentBytes: SEGMENT_HEADER_BYTES + 3 * size })
  await appendAll(writer, msgs.slice(0, 5)) // more than a segment holds, into the fresh first one
  await appendAll(writer, msgs.slice(5, 6)) // the segment is full: roll
  await appendAll(writer, msgs.slice(6)) // 4 more: roll again rather than split
  await writer.close()
  t.same(readdirSync(dir).sort(), [1, 6, 7].map(segmentName))
  t.equal(statSync(join(dir, segmentName(1))).size, SEGMENT_HEADER_BYTES + 5 * size, 'the whole first round in the first segment')
  t.equal(statSync(join(dir, segmentName(7))).size, SEGMENT_HEADER_BYTES + 4 * size, 'the whole last round in a segment of its own')
  t.same(readBack(dir).msgs, msgs)
})

t.test("answeredSegment: a round's callbacks see the segment its records are in, though the next round has started a new one", async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const msgs = messages(0, 4, () => 50)
  const [a, b, c, d] = msgs as [Msg, Msg, Msg, Msg]
  const size = recordBytes([a])
  const writer = openWriter(dir, EMPTY_STATE, { io, segmentBytes: SEGMENT_HEADER_BYTES + 3 * size })
  const first = join(dir, segmentName(1))
  const second = join(dir, segmentName(3))
  const seen: string[] = []
  const track = (m: Msg, label: string) =>
    writer.append(payloadOf(m), (err) => {
      t.equal(err, null)
      seen.push(`${label} ${writer.answeredSegment === first ? 'first' : writer.answeredSegment === second ? 'second' : writer.answeredSegment} (current ${writer.currentSegment === second ? 'second' : 'first'})`)
    })
  io.holdSyncs = true
  track(a, 'A')
  track(b, 'B')
  await until('A and B to reach fdatasync', () => io.heldSyncs === 1)
  track(c, 'C') // with A and B, more than the segment holds: their round rolls
  track(d, 'D')
  await sleep(5)
  io.release()
  await until('C and D to reach fdatasync', () => io.heldSyncs === 1)
  io.holdSyncs = false
  io.release()
  await until('D to be acked', () => seen.length === 4)
  t.same(seen, ['A first (current second)', 'B first (current second)', 'C second (current second)', 'D second (current second)'])
  await writer.close()
  t.same(readdirSync(dir).sort(), [segmentName(1), segmentName(3)], 'A and B in the first segment, C and D in the second')
  t.same(readBack(dir).msgs, msgs)
})

// ---------------------------------------------------------------------------------------------
// Preallocation

const PREALLOCATE = { preallocateBytesMax: PREALLOCATE_BYTES_MAX }

t.test('preallocation: zeros written after a round, synced with it; recovery reads them as clean, and appending resumes over them', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const writer = openWriter(dir, EMPTY_STATE, { io, ...PREALLOCATE })
  const first = messages(0, 20)
  await appendAll(writer, first)
  const end = SEGMENT_HEADER_BYTES + recordBytes(first)
  t.same(io.writes, [recordBytes(first), 64 * 1024], 'the round, then 64 KiB of zeros after it')
  t.equal(io.syncs, 1, 'one fdatasync for both')
  const path = writer.currentSegment
  t.equal(statSync(path).size, end + 64 * 1024, 'the file holds the records and the zeros')
  t.ok(readFileSync(path).subarray(end).every((b) => b === 0), 'zeros after the records')
  // Half the next extension (64 KiB doubled) is more than the zeros left: the second round extends by 128 KiB.
  const second = messages(20, 1)
  await appendAll(writer, second)
  t.same(io.writes.slice(2), [recordBytes(second), 128 * 1024], 'the next extension doubles')
  await appendAll(writer, messages(21, 1))
  t.equal(io.writes.length, 5, 'no extension while half the next one is still ahead')
  await writer.close()

  const written = messages(0, 22)
  const back = readBack(dir)
  t.same(back.msgs, written, 'every record read back')
  t.equal(back.log.torn, null, 'the zeros are no torn tail')
  t.equal(back.log.lastSegmentBytes, SEGMENT_HEADER_BYTES + recordBytes(written), 'appending resumes after the records')
  t.equal(back.log.lastSegmentCapacity, statSync(path).size, 'over the zeros, up to the end of the file')

  const size = statSync(path).size
  const io2 = new TestIo()
  const again = openWriter(dir, resumeState(back.log), { io: io2, ...PREALLOCATE })
  const more = messages(22, 3)
  await appendAll(again, more)
  await again.close()
  t.same(io2.writes, [recordBytes(more)], 'one write, into the zeros: none added')
  t.equal(statSync(path).size, size, 'the file did not grow')
  const all = readBack(dir)
  t.same(all.msgs, [...written, ...more], 'the new records follow the old ones')
  t.equal(all.log.torn, null)
})

t.test('preallocation: extensions double up to preallocateBytesMax, also above the default', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const writer = openWriter(dir, EMPTY_STATE, { io, segmentBytes: 8 * 1024 * 1024, preallocateBytesMax: 1024 * 1024 })
  const big = messages(0, 8000, () => 150) // ~1.6 MB
  for (let i = 0; i < big.length; i += 200) await appendAll(writer, big.slice(i, i + 200))
  const zeroWrites = io.writes.filter((n) => n >= 64 * 1024)
  t.same(zeroWrites.slice(0, 5), [64, 128, 256, 512, 1024].map((k) => k * 1024), 'doubling to the maximum')
  await writer.close()
  t.same(readBack(dir).msgs, big)
})

t.test('preallocation: never past segmentBytes; a sealed segment is cut to its records', async (t) => {
  const dir = t.testdir()
  const segmentBytes = 256 * 1024
  const writer = openWriter(dir, EMPTY_STATE, { segmentBytes, batchBytesMax: 8 * 1024, ...PREALLOCATE })
  const msgs = messages(0, 3000, () => 150)
  for (let i = 0; i < msgs.length; i += 100) await appendAll(writer, msgs.slice(i, i + 100))
  t.ok(statSync(writer.currentSegment).size <= segmentBytes, 'the segment being written is no longer than segmentBytes')
  await writer.close()
  const segs = listSegments(dir)
  t.ok(segs.length >= 3, `${segs.length} segments`)
  for (const seg of segs.slice(0, -1)) {
    const buf = readFileSync(seg.path)
    const scan = scanSegment(buf, false, FORMAT_VERSION, () => {})
    t.same([scan.outcome.kind, scan.goodEnd], ['clean', buf.length], `${seg.name}: sealed, cut to its records`)
    t.ok(buf.length <= segmentBytes, `${seg.name}: no longer than segmentBytes`)
  }
  const back = readBack(dir)
  t.same(back.msgs, msgs, 'every record read back in order')
  t.equal(back.log.torn, null)
})

t.test('preallocation: a zero write that fails (ENOSPC) stops it in that segment; rounds go on, nothing is lost', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  io.failZeroWrites = 'ENOSPC'
  const failures: (string | undefined)[] = []
  const writer = openWriter(dir, EMPTY_STATE, { io, ...PREALLOCATE, onPreallocateFailed: (err) => failures.push(err.code) })
  const msgs = messages(0, 30)
  for (let i = 0; i < msgs.length; i += 10) await appendAll(writer, msgs.slice(i, i + 10))
  t.same(io.writes, [recordBytes(msgs.slice(0, 10)), 64 * 1024, recordBytes(msgs.slice(10, 20)), recordBytes(msgs.slice(20))], 'one failed extension, then plain appends')
  t.equal(io.syncs, 3, 'every round synced')
  t.same(failures, ['ENOSPC'], 'the failure reported once')
  await writer.close()
  const back = readBack(dir)
  t.same(back.msgs, msgs, 'every record read back')
  t.equal(back.log.torn, null, 'the half-written zeros are a clean tail')
})

t.test('preallocation: zeros half-written by a failed extension are cut when the segment is sealed', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  io.failZeroWrites = 'ENOSPC'
  const writer = openWriter(dir, EMPTY_STATE, { io, segmentBytes: 128 * 1024, ...PREALLOCATE, onPreallocateFailed: () => {} })
  const first = messages(0, 1)
  await appendAll(writer, first) // its extension writes 32 of 64 KiB, then fails
  const rest = messages(1, 800, () => 150) // one round too large for the segment's rest: a roll
  await appendAll(writer, rest)
  await writer.close()
  const back = readBack(dir)
  t.same(back.msgs, [...first, ...rest], 'every record read back; the sealed segment is no longer than its records')
  t.equal(listSegments(dir).length, 2, 'two segments')
})

t.test('preallocation: a round torn over the zeros by a crash is cut; appending resumes there', async (t) => {
  const dir = t.testdir()
  const msgs = messages(0, 10)
  await writeLog(dir, msgs, PREALLOCATE)
  const path = join(dir, segmentName(1))
  const end = SEGMENT_HEADER_BYTES + recordBytes(msgs)
  const size = statSync(path).size
  t.ok(size > end + 64 * 1024 - 1, 'zeros after the records')
  // The first half of one more record reached the disk, the rest of the round did not.
  const record = Buffer.concat([Buffer.alloc(8), payloadOf(messages(10, 1)[0] as Msg)])
  record.writeUInt32LE(record.length - 8, 0)
  record.writeUInt32LE(crc32(record.subarray(8)), 4)
  const fd = openSync(path, 'r+')
  writeSync(fd, record, 0, record.length >> 1, end)
  closeSync(fd)
  const back = readBack(dir)
  t.same(back.msgs, msgs, 'the acknowledged records')
  t.same(back.log.torn && { offset: back.log.torn.offset, reason: back.log.torn.reason, bytes: back.log.torn.bytes }, { offset: end, reason: 'checksum mismatch', bytes: size - end }, 'a torn tail at the half record')
  const writer = openWriter(dir, resumeState(back.log), PREALLOCATE)
  const more = messages(10, 5)
  await appendAll(writer, more)
  await writer.close()
  const all = readBack(dir)
  t.same(all.msgs, [...msgs, ...more], 'the new records where the torn one was')
  t.equal(all.log.torn, null, 'clean after resuming')
})

// A power cut in the middle of a round's fdatasync can persist its pages in any order. Over
// preallocated zeros, a page that did not make it reads as zeros.
t.test('preallocation: a page of the last round that never reached the disk, with later pages of that round there, cuts the round there; the search for them crosses zero pages', async (t) => {
  const dir = t.testdir()
  const msgs = messages(0, 80, () => 120)
  await writeLog(dir, msgs) // one burst: one round
  const [seg] = layout(dir) as [SegLoc]
  t.ok(seg.size > 3 * 4096, `fixture: ${seg.size} bytes`)
  t.same(seg.records.filter((r) => r.roundStart).length, 1, 'fixture: one round')
  appendFileSync(seg.path, Buffer.alloc(64 * 1024)) // the preallocated zeros after the records
  const fd = openSync(seg.path, 'r+')
  writeSync(fd, Buffer.alloc(4096), 0, 4096, 4096) // one whole page of the round lost
  closeSync(fd)
  const k = seg.records.findIndex((r) => r.end > 4096)
  const damaged = seg.records[k] as RecordLoc
  const back = readBack(dir)
  t.same(back.msgs, msgs.slice(0, k), 'the records before the lost page')
  t.same(back.log.torn && { offset: back.log.torn.offset, reason: back.log.torn.reason }, { offset: damaged.offset, reason: 'checksum mismatch in the last round, whose later records are cut with it' })
})

t.test('preallocation: a page lost from a round that a later round follows is refused: that round was durable', async (t) => {
  const dir = t.testdir()
  const msgs = messages(0, 80, () => 120)
  const writer = openWriter(dir, EMPTY_STATE)
  await appendAll(writer, msgs.slice(0, 70))
  await appendAll(writer, msgs.slice(70))
  await writer.close()
  const [seg] = layout(dir) as [SegLoc]
  t.same(seg.records.flatMap((r, i) => (r.roundStart ? [i] : [])), [0, 70], 'fixture: two rounds')
  t.ok(seg.records[70]!.offset > 8192, 'fixture: the second round starts after the page that is lost')
  appendFileSync(seg.path, Buffer.alloc(64 * 1024)) // the preallocated zeros after the records
  const fd = openSync(seg.path, 'r+')
  writeSync(fd, Buffer.alloc(4096), 0, 4096, 4096)
  closeSync(fd)
  const damaged = seg.records.find((r) => r.end > 4096) as RecordLoc
  const nextValid = seg.records.find((r) => r.offset >= 8192) as RecordLoc
  t.throws(() => readBack(dir), { name: 'WalCorruptError', offset: damaged.offset, reason: `checksum mismatch, followed by a valid record at offset ${nextValid.offset}` })
})

// ---------------------------------------------------------------------------------------------
// Fsync policies

t.test('fsync interval: acks after the write, fdatasyncs on a timer', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const writer = openWriter(dir, EMPTY_STATE, { io, fsync: { kind: 'interval', ms: 40 } })
  const t0 = Date.now()
  await appendAll(writer, messages(0, 5))
  t.equal(io.writes.length, 1, 'written')
  t.equal(io.syncs, 0, 'acked before any fdatasync')
  await until('the timer to fdatasync', () => io.syncs === 1)
  t.ok(Date.now() - t0 >= 30, `synced by the timer after ${Date.now() - t0} ms`)
  await sleep(150)
  t.equal(io.syncs, 1, 'no fdatasync while nothing new was written')
  await appendAll(writer, messages(5, 5))
  t.equal(io.syncs, 1, 'acked before the next fdatasync')
  await until('the timer to fdatasync again', () => io.syncs === 2)
  await writer.close()
  t.same(readBack(dir).msgs, messages(0, 10))
})

t.test('fsync unsafe-none: acks after the write, never fdatasyncs before close', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const writer = openWriter(dir, EMPTY_STATE, { io, fsync: { kind: 'unsafe-none' }, segmentBytes: 1000, batchBytesMax: 300 })
  await appendAll(writer, messages(0, 20))
  t.ok(io.writes.length > 1, `${io.writes.length} writes`)
  t.ok(readdirSync(dir).length > 1, 'several segments')
  await sleep(100)
  t.equal(io.syncs, 0, 'no fdatasync')
  await writer.close()
  t.equal(io.syncs, 0, 'still none through the shim (close syncs directly)')
  t.same(readBack(dir).msgs, messages(0, 20))
})

/**
 * An interval-synced writer whose segment rolls while a timer fdatasync of it is held queued (a
 * slow thread pool): two records in the first segment, the sync held, two more that roll.
 */
async function rollWithHeldSync(dir: string): Promise<{ io: TestIo; writer: ReturnType<typeof openWriter>; fatals: Error[]; msgs: Msg[] }> {
  const io = new TestIo()
  const fatals: Error[] = []
  const msgs = messages(0, 4, () => 50)
  const size = recordBytes(msgs.slice(0, 1))
  const writer = openWriter(dir, EMPTY_STATE, {
    io,
    fsync: { kind: 'interval', ms: 5 },
    segmentBytes: SEGMENT_HEADER_BYTES + 2 * size,
    batchBytesMax: 1,
    onFatal: (err) => fatals.push(err),
  })
  await appendAll(writer, msgs.slice(0, 2))
  io.holdSyncs = true
  await until('a timer fdatasync', () => io.heldSyncs === 1)
  await appendAll(writer, msgs.slice(2)) // rolls: the first segment's fd is synced and closed
  return { io, writer, fatals, msgs }
}

t.test('fsync interval: a timer fdatasync still running when its segment rolls, or the log closes, is no error', async (t) => {
  const dir = t.testdir()
  const { io, writer, fatals, msgs } = await rollWithHeldSync(dir)
  t.equal(writer.currentSegment, join(dir, segmentName(3)), 'rolled')
  io.release() // the queued fdatasync runs on the closed fd
  await until('the next timer fdatasync', () => io.heldSyncs === 1 || fatals.length > 0)
  t.same(fatals, [], 'no fatal error from the sync of the rolled segment')
  await writer.close()
  io.release() // and this one after close()
  await sleep(30)
  t.same(fatals, [], 'no fatal error from the sync after close()')
  t.same(readBack(dir).msgs, msgs)
})

t.test('fsync interval: an EIO from a timer fdatasync of a segment rolled meanwhile is still fatal', async (t) => {
  const { io, writer, fatals } = await rollWithHeldSync(t.testdir())
  io.failSync = errno('EIO', 'fdatasync')
  io.release()
  await until('onFatal', () => fatals.length > 0)
  t.equal((fatals[0] as NodeJS.ErrnoException).code, 'EIO', 'the error may be the only report of lost pages (fsyncgate)')
  t.equal(await within(writer.close(), 2000), undefined, 'close() settles')
})

// ---------------------------------------------------------------------------------------------
// Faults

for (const partialBytes of [0, 100]) {
  t.test(`ENOSPC${partialBytes > 0 ? ' after a partial write' : ''}: the round fails and is cut off, writes resume, LSNs stay contiguous`, async (t) => {
    const dir = t.testdir()
    const io = new TestIo()
    const writer = openWriter(dir, EMPTY_STATE, { io })
    const [before, failed, after] = [messages(0, 3), messages(3, 3), messages(6, 3)] as [Msg[], Msg[], Msg[]]
    await appendAll(writer, before)
    const durable = statSync(writer.currentSegment).size

    io.failWrite = { code: 'ENOSPC', partialBytes }
    const errors: (NodeJS.ErrnoException | null)[] = []
    failed.forEach((m, i) => appendTracked(writer, io, m, `failed ${i}`, errors))
    await until('the failed round to be answered', () => errors.length === 3)
    t.same(errors.map((e) => e?.code), ['ENOSPC', 'ENOSPC', 'ENOSPC'], "every callback of the round gets the error")
    t.equal(io.syncs, 1, 'no fdatasync for a failed write')
    t.equal(statSync(writer.currentSegment).size, durable, 'the file is cut back to its durable size')
    t.equal(writer.lastLsn, 3, 'no LSN used by the failed round')
    const mid = readBack(dir)
    t.same(mid.msgs, before, 'recovery now: the earlier records, none of the failed round')
    t.equal(mid.log.torn, null, 'and no torn tail')

    // Still no space: the next round fails too.
    await t.rejects(appendAll(writer, after.slice(0, 1)), { code: 'ENOSPC' })
    io.failWrite = null
    await appendAll(writer, after)
    t.equal(writer.lastLsn, 6, 'LSNs continue from the last durable record')
    await writer.close()
    const back = readBack(dir)
    t.same(back.msgs, [...before, ...after], 'everything acknowledged, in order, and nothing else')
    t.same(back.lsns, [1, 2, 3, 4, 5, 6], 'LSNs contiguous')
    t.equal(back.log.torn, null)
  })
}

t.test('a write failing on a new segment: the round fails, later appends go to that segment', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const msgs = messages(0, 6, () => 50)
  const size = recordBytes(msgs.slice(0, 1))
  const writer = openWriter(dir, EMPTY_STATE, { io, segmentBytes: SEGMENT_HEADER_BYTES + 2 * size, batchBytesMax: 1 })
  await appendAll(writer, msgs.slice(0, 2))
  io.failWrite = { code: 'EIO', partialBytes: 10 }
  await t.rejects(appendAll(writer, msgs.slice(2, 3)), { code: 'EIO' })
  t.equal(writer.currentSegment, join(dir, segmentName(3)), 'rolled before the write')
  t.equal(statSync(writer.currentSegment).size, SEGMENT_HEADER_BYTES, 'the new segment cut back to its header')
  io.failWrite = null
  await appendAll(writer, msgs.slice(3))
  await writer.close()
  const back = readBack(dir)
  t.same(back.msgs, [...msgs.slice(0, 2), ...msgs.slice(3)])
  t.same(back.lsns, [1, 2, 3, 4, 5])
})

t.test('a failed fdatasync is fatal: onFatal once, every waiting append answered and none acked, later appends throw', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const fatals: Error[] = []
  const writer = openWriter(dir, EMPTY_STATE, { io, onFatal: (err) => fatals.push(err) })
  const [a, b, c, d] = messages(0, 4) as [Msg, Msg, Msg, Msg]
  await appendAll(writer, [a])

  const eio = errno('EIO', 'fdatasync')
  io.failSync = eio
  io.holdSyncs = true
  const results: { label: string; err: Error | null }[] = []
  const track = (m: Msg, label: string): void => writer.append(encodeMessage(m.chat, m.sender, m.text, m.sendTime), (err) => results.push({ label, err }))
  track(b, 'B')
  await until('the round to reach fdatasync', () => io.heldSyncs === 1)
  track(c, 'C') // waits for the next round
  io.release()
  await until('onFatal', () => fatals.length > 0)
  await sleep(50)
  t.equal(fatals.length, 1, 'onFatal called exactly once')
  t.equal(fatals[0], eio, 'with the fdatasync error')
  t.same(results.map((r) => r.label), ['B', 'C'], 'both answered, in log order')
  const byLabel = new Map(results.map((r) => [r.label, r.err]))
  t.type(byLabel.get('B'), WalSyncError, 'B, in the failed round: WalSyncError (may or may not be on disk)')
  t.equal((byLabel.get('B') as WalSyncError).code, 'EIO')
  t.equal((byLabel.get('B') as WalSyncError).cause, eio)
  t.type(byLabel.get('C'), WalStoppedError, 'C, never written: WalStoppedError')
  t.equal(io.syncs, 2, 'the failed fdatasync is not retried')
  t.equal(io.writes.length, 2, 'and nothing more is written')
  t.throws(() => writer.append(encodeMessage(d.chat, d.sender, d.text, d.sendTime), () => t.fail('called')), WalStoppedError, 'append throws WalStoppedError')
  t.equal(await within(writer.close(), 2000), undefined, 'close() still settles')
  t.equal(fatals.length, 1, 'still once')
  // What survived is for recovery at restart to say: A was synced; B was written, not synced.
  t.same(readBack(dir).msgs.slice(0, 1), [a])
})

t.test('a failed timer fdatasync (fsync interval) is fatal once', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const fatals: Error[] = []
  const writer = openWriter(dir, EMPTY_STATE, { io, fsync: { kind: 'interval', ms: 10 }, onFatal: (err) => fatals.push(err) })
  io.failSync = errno('EIO', 'fdatasync')
  await appendAll(writer, messages(0, 2))
  await until('onFatal', () => fatals.length > 0)
  await sleep(60)
  t.equal(fatals.length, 1, 'once, though the timer had more rounds to go')
  t.equal(io.syncs, 1, 'never retried')
  t.throws(() => writer.append(Buffer.from('x'), () => {}), { name: 'WalStoppedError', message: /EIO/ })
  t.equal(await within(writer.close(), 2000), undefined, 'close() still settles')
})

t.test('pendingBytesMax: append throws WalBackpressureError once more is buffered', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const msgs = messages(0, 8, () => 50)
  const size = recordBytes(msgs.slice(0, 1))
  const writer = openWriter(dir, EMPTY_STATE, { io, pendingBytesMax: 3 * size })
  io.holdSyncs = true
  const acked: string[] = []
  const append = (m: Msg) => writer.append(encodeMessage(m.chat, m.sender, m.text, m.sendTime), (err) => acked.push(err === null ? m.text : `error ${err.code}`))
  append(msgs[0] as Msg)
  await until('the first round to reach fdatasync', () => io.heldSyncs === 1)
  // The round in flight does not count; the check is made before adding, so the buffer may
  // pass the limit by the one record that crosses it.
  for (const m of msgs.slice(1, 5)) append(m)
  const err = t.throws(() => append(msgs[5] as Msg), WalBackpressureError) as Error | undefined
  t.equal(err?.message, `${4 * size} bytes are waiting to be written to the log`)
  io.holdSyncs = false
  io.release()
  await until('the buffer to drain', () => acked.length === 5)
  append(msgs[6] as Msg)
  await until('the next append', () => acked.length === 6)
  await writer.close()
  t.same(acked, [0, 1, 2, 3, 4, 6].map((i) => (msgs[i] as Msg).text), 'every accepted append acked')
  t.same(readBack(dir).msgs, [0, 1, 2, 3, 4, 6].map((i) => msgs[i]), 'the refused one is not in the log')
})

// ---------------------------------------------------------------------------------------------
// A shard over a log that runs out of space

t.test('shard: a send the log cannot take is answered WAL_NO_SPACE and stored nowhere; sends succeed once space frees', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const writer = openWriter(dir, EMPTY_STATE, { io, pendingBytesMax: 1000 })
  const shard = new Shard(0, writer, new ShardStore())
  // Called at once (not in a Promise executor), so that what send() throws reaches the caller.
  const send = (chat: string, text: string): Promise<SendResponse> => {
    let reply!: (res: SendResponse) => void
    const replied = new Promise<SendResponse>((resolve) => (reply = resolve))
    shard.send({ message: { chat, text, sender: 'alice', send_time: 0 } }, reply)
    return replied
  }
  const pull = (chat: string) => {
    const res = shard.pull({ chat, cursor: 0, limit: 100, reverse: false })
    t.equal(res.code, 0, `pull ${chat}: ok`)
    return JSON.parse(Buffer.from(res.messages).toString('utf8')) as { text: string; send_time: number }[]
  }

  const one = await send('room', 'one')
  t.equal(one.code, 0, 'a send before the fault is acked')

  io.failWrite = { code: 'ENOSPC', partialBytes: 7 }
  t.equal(Errors.WAL_NO_SPACE.statusCode, 503)
  t.equal(Errors.WAL_NO_SPACE.code, 'IM_ERR_WAL_NO_SPACE')
  t.same(await send('room', 'two'), { code: Errors.WAL_NO_SPACE.wireId, msg: `${Errors.WAL_NO_SPACE.message} (ENOSPC)`, send_time: 0 }, 'no space: the whole reply')
  t.same(await send('lobby', 'never'), { code: Errors.WAL_NO_SPACE.wireId, msg: `${Errors.WAL_NO_SPACE.message} (ENOSPC)`, send_time: 0 })
  t.same(pull('room').map((m) => m.text), ['one'], 'pull works and shows only the acknowledged message')
  t.same(pull('lobby'), [], 'a chat whose only send failed is empty')
  t.equal(shard.store.stats().messages, 1, 'the store holds nothing of the failed sends')

  io.failWrite = { code: 'EIO', partialBytes: 0 }
  t.same(await send('room', 'three'), { code: Errors.WAL_WRITE.wireId, msg: `${Errors.WAL_WRITE.message} (EIO)`, send_time: 0 }, 'another write error: WAL_WRITE')

  io.failWrite = null
  const four = await send('room', 'four')
  t.equal(four.code, 0, 'acked once the fault clears')
  t.ok(four.send_time > one.send_time)
  t.same(pull('room'), [
    { chat: 'room', text: 'one', sender: 'alice', send_time: one.send_time },
    { chat: 'room', text: 'four', sender: 'alice', send_time: four.send_time },
  ], 'exactly the acknowledged ones, in order')

  // Backpressure becomes OVERLOADED.
  io.holdSyncs = true
  const held = send('room', 'five')
  await until('the round to reach fdatasync', () => io.heldSyncs === 1)
  const waiting: Promise<SendResponse>[] = []
  t.throws(() => {
    for (let i = 0; i < 100; i++) waiting.push(send('room', `more ${i}`))
  }, { name: 'PullchatError', code: 'IM_ERR_OVERLOADED', statusCode: 503, message: /^\d+ bytes are waiting to be written to the log$/ }, 'a send past pendingBytesMax throws OVERLOADED')
  t.ok(waiting.length > 0 && waiting.length < 100, `${waiting.length} sends buffered before the limit`)
  io.holdSyncs = false
  io.release()
  t.equal((await held).code, 0)
  for (const p of waiting) t.equal((await p).code, 0)
  await writer.close()

  const recovered = new ShardStore()
  recoverStore(dir, 0, recovered)
  t.equal(recovered.pull('room', 0, 1000, false).json.toString(), shard.store.pull('room', 0, 1000, false).json.toString(), 'the log holds exactly what was acknowledged')
  t.equal(recovered.stats().messages, shard.store.stats().messages)
})
