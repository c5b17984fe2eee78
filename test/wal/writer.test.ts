// WalWriter: group commit (leader/follower rounds bounded by batchBytesMax), segment rolling,
// fsync policies, and faults injected through the `io` shim: ENOSPC and other failed writes
// (the round fails, the file is cut back, writes resume), a failed fdatasync (fatal, never
// retried), backpressure; and what a shard answers when its log cannot take a message.

import assert from 'node:assert/strict'
import { readFileSync, readdirSync, statSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Errors, PullchatError } from '../../src/errors.js'
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
  decodeHeader,
  realIo,
  segmentName,
  type WalIo,
} from '../../src/wal/index.js'
import { EMPTY_STATE, appendAll, messages, openWriter, payloadOf, readBack, type Msg } from './helpers.js'

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
  /** While set, fdatasyncs fail with this error. */
  failSync: NodeJS.ErrnoException | null = null

  write(fd: number, buf: Buffer, position: number, cb: (err: NodeJS.ErrnoException | null, written: number) => void): void {
    this.writes.push(buf.length)
    this.events.push(`write ${buf.length}`)
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
    const fail = this.failSync
    const run = () => {
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

t.test('appends made while a sync is in flight go in the next round; callbacks wait for the fdatasync that covers them', async (t) => {
  const dir = t.testdir()
  const io = new TestIo()
  const rounds: [number, number][] = []
  const writer = openWriter(dir, EMPTY_STATE, { io, onRound: (records, bytes) => rounds.push([records, bytes]) })
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
  t.same(io.events, [`write ${recordBytes([a])}`, 'synced', 'cb A', `write ${recordBytes([b, c])}`], 'A acked after its sync; B and C then go out in one write')

  io.holdSyncs = false
  io.release()
  await until('B and C to be acked', () => io.events.includes('cb C'))
  t.same(io.events.slice(4), ['synced', 'cb B', 'cb C'], 'B and C acked after their sync')
  t.equal(io.syncs, 2, 'two rounds, two fdatasyncs')
  t.same(rounds, [
    [1, recordBytes([a])],
    [2, recordBytes([b, c])],
  ], 'onRound reports each round')
  await writer.close()
  t.same(readBack(dir).msgs, [a, b, c])
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
