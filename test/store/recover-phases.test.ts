// Recovery in two phases (src/store/recover.ts): the scan, which may run on another thread, and
// its application to the store that will serve. Whatever thread scans, the store that comes out
// must be the one that direct appends build; a corrupt log must be reported the same way.

import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { availableParallelism } from 'node:os'
import t from 'tap'
import { holds } from '../helpers/fast-check.js'
import { applyScan as applyJoined, recoverStore, scanShard, wholeScan, type ShardScan } from '../../src/store/recover.js'
import { ShardStore } from '../../src/store/shard-store.js'
import { WalCorruptError, listSegments, realIo, shardDir } from '../../src/wal/index.js'
import { appendAll, layout, messages, openWriter, payloadOf, writeLog, type Msg } from '../wal/helpers.js'

/** applyScan of one whole-log scan (a single run always joins). */
const applyScan = (store: ShardStore, scan: ShardScan, observer = {}): ReturnType<typeof applyJoined> => applyJoined(store, wholeScan(scan), observer)

/** The store that appending `msgs` directly builds. */
function direct(msgs: readonly Msg[], options = {}): ShardStore {
  const store = new ShardStore(options)
  for (const m of msgs) store.append(m.chat, m.sendTime, m.text, m.sender)
  return store
}

/** Every page a client could ask of every chat, as text. */
function pages(store: ShardStore, chats: Iterable<string>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const chat of chats) {
    for (const reverse of [false, true]) {
      for (const limit of [1, 7, 1000]) out[`${chat} ${reverse} ${limit}`] = store.pull(chat, 0, limit, reverse).json.toString()
    }
  }
  return out
}

t.test('scan then apply builds the store that direct appends build, over several segments', async (t) => {
  const dir = t.testdir()
  const msgs = messages(0, 3000)
  await writeLog(dir, msgs, { segmentBytes: 64 * 1024, batchBytesMax: 8 * 1024 })
  t.ok(listSegments(dir).length > 3, 'several segments')
  const chats = new Set(msgs.map((m) => m.chat))
  const want = direct(msgs)

  const scan = scanShard(dir, 0)
  t.equal(scan.records, msgs.length)
  t.same(scan.chats, [...chats], 'chats in first-seen order')
  const seen: { chat: string; sendTime: number; segment: string }[] = []
  const store = new ShardStore()
  const r = applyScan(store, scan, { onRecord: (chat, sendTime, segment) => seen.push({ chat, sendTime, segment }) })
  t.equal(r.records, msgs.length)
  t.equal(r.overLimit, 0)
  t.ok(r.ms >= r.scanMs && r.scanMs > 0)
  t.same(pages(store, chats), pages(want, chats), 'every page')
  const { bytes: got, ...rest } = store.stats()
  const { bytes: built, ...wantRest } = want.stats()
  t.same(rest, wantRest)
  t.ok(got <= built, 'indexes sized once are no larger than grown ones')

  // The observer sees each record once, in log order, with the segment that holds it.
  t.same(seen.map((s) => s.sendTime), msgs.map((m) => m.sendTime))
  const segOf = new Map<number, string>()
  // Each record's send_time read on its own: the framing (layout), then the version 2 payload's field.
  for (const seg of layout(dir)) {
    const buf = readFileSync(seg.path)
    for (const r of seg.records) segOf.set(buf.readDoubleLE(r.offset + 8 + 1), seg.path)
  }
  t.same(seen.filter((s) => segOf.get(s.sendTime) !== s.segment), [], 'every record attributed to its own segment')
})

t.test('a scan without per-record columns builds the same store, and refuses an observer', async (t) => {
  const dir = t.testdir()
  const msgs = messages(0, 2000)
  await writeLog(dir, msgs, { segmentBytes: 64 * 1024, batchBytesMax: 8 * 1024 })
  const chats = new Set(msgs.map((m) => m.chat))
  const lean = scanShard(dir, 0, false)
  t.equal(lean.perRecord, false)
  t.equal(lean.records, msgs.length, 'records counted all the same')
  t.same([lean.chat.length, lean.sendTime.length, lean.segment.length], [0, 0, 0], 'no per-record columns')
  const store = new ShardStore()
  t.equal(applyScan(store, lean).records, msgs.length)
  t.same(pages(store, chats), pages(direct(msgs), chats), 'every page')
  t.throws(() => applyScan(new ShardStore(), scanShard(dir, 0, false), { onRecord: () => {} }), /per-record columns/)
  // recoverStore keeps the columns exactly when its observer needs them.
  const seen: number[] = []
  recoverStore(dir, 0, new ShardStore(), { onRecord: (_c, sendTime) => seen.push(sendTime) }, 3)
  t.same(seen, msgs.map((m) => m.sendTime))
})

t.test('a recovered store takes new messages as a store that never stopped does', async (t) => {
  // Each chat's last extent, adopted from the scans (merged when small, chained otherwise), is
  // where its next append goes: the ChatLog reads its header then (ChatLog.loadTail).
  // Five large chats (chained extents), and 700 small ones (merged when read in several runs).
  for (const chatsOf of [5, 700]) {
    const spread = (msgs: Msg[]): Msg[] => msgs.map((m) => ({ ...m, chat: `chat-${m.sendTime % chatsOf}` }))
    const dir = t.testdir()
    const before = spread(messages(0, 3000))
    await writeLog(dir, before, { segmentBytes: 64 * 1024, batchBytesMax: 8 * 1024 })
    const after = spread(messages(3000, 3000))
    const chats = new Set([...before, ...after].map((m) => m.chat))
    t.equal(chats.size, chatsOf)
    const want = direct([...before, ...after])
    for (const parts of [1, 2, 3]) {
      const store = new ShardStore()
      recoverStore(dir, 0, store, {}, parts)
      for (const m of after) store.append(m.chat, m.sendTime, m.text, m.sender)
      t.same(pages(store, chats), pages(want, chats), `${chatsOf} chats recovered in ${parts} run(s), then appended to: every page`)
    }
  }
})

t.test('applyScan only into an empty store', async (t) => {
  const dir = t.testdir()
  await writeLog(dir, messages(0, 10))
  const store = direct(messages(100, 1))
  t.throws(() => applyScan(store, scanShard(dir, 0)), /only an empty store can be recovered into/)
})

t.test('scans on helper threads (piscina) give the same stores; a corrupt log comes back as data', async (t) => {
  const { scanShards, applyScan: apply, ShardStore: DistStore } = (await import('../../dist/store/index.js')) as typeof import('../../src/store/index.js')
  const dataDir = t.testdir()
  const all = messages(0, 2000)
  const byShard = [all.filter((_, i) => i % 2 === 0), all.filter((_, i) => i % 2 === 1)]
  for (const [s, msgs] of byShard.entries()) {
    mkdirSync(shardDir(dataDir, s))
    await writeLog(shardDir(dataDir, s), msgs, { shard: s, segmentBytes: 64 * 1024, batchBytesMax: 8 * 1024 })
  }
  const results = await Promise.all(scanShards(dataDir, [0, 1]))
  for (const [s, msgs] of byShard.entries()) {
    const r = results[s]
    if (r?.scan === undefined) {
      t.fail(`shard ${s} scanned`)
      continue
    }
    const store = new DistStore()
    apply(store, r.scan)
    t.equal(r.scan.log.records, msgs.length, `shard ${s}: every record`)
    const chats = new Set(msgs.map((m) => m.chat))
    t.same(pages(store as unknown as ShardStore, chats), pages(direct(msgs), chats), `shard ${s}: every page`)
  }

  // Corrupt the middle of shard 1's first segment: its records after the damage are intact.
  const seg = listSegments(shardDir(dataDir, 1))[0]?.path as string
  const bytes = readFileSync(seg)
  bytes[200] = (bytes[200] as number) ^ 0xff
  writeFileSync(seg, bytes)
  let inThread: WalCorruptError | null = null
  try {
    recoverStore(shardDir(dataDir, 1), 1, new ShardStore())
  } catch (err) {
    inThread = err as WalCorruptError
  }
  t.type(inThread, WalCorruptError, 'in this thread: WalCorruptError')
  const [good, bad] = await Promise.all(scanShards(dataDir, [0, 1]))
  t.ok(good?.scan !== undefined, 'the healthy shard still scans')
  t.same(bad?.corrupt, { file: inThread?.file, offset: inThread?.offset, reason: inThread?.reason }, 'on a helper thread: the same file, offset and reason, as data')
})

t.test('one shard on helper threads: its log scanned in runs, joined into the store one pass builds', async (t) => {
  const { scanShards, applyScan: apply, ShardStore: DistStore } = (await import('../../dist/store/index.js')) as typeof import('../../src/store/index.js')
  const dataDir = t.testdir()
  const msgs = messages(0, 3000)
  mkdirSync(shardDir(dataDir, 0))
  await writeLog(shardDir(dataDir, 0), msgs, { segmentBytes: 32 * 1024, batchBytesMax: 8 * 1024 })
  const [r] = await Promise.all(scanShards(dataDir, [0]))
  if (r?.scan === undefined) return t.fail('scanned')
  t.equal(r.scan.scans.length, Math.min(availableParallelism(), listSegments(shardDir(dataDir, 0)).length), 'one run per core')
  const store = new DistStore()
  apply(store, r.scan)
  const chats = new Set(msgs.map((m) => m.chat))
  t.same(pages(store as unknown as ShardStore, chats), pages(direct(msgs), chats), 'every page')
})

// A log read in runs (each on its own thread at start-up) must recover exactly what one pass does:
// the same store, the same log state to resume from, or the same refusal, naming the same file,
// offset and reason, even when the defect is only visible across runs (a chat whose send_time
// goes back in a later run, a segment missing between runs).

type Defect = { kind: 'none' } | { kind: 'flip'; segment: number; at: number } | { kind: 'drop-segment'; segment: number } | { kind: 'replay'; at: number; of: number }

const defect: fc.Arbitrary<Defect> = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.record({ kind: fc.constant('flip' as const), segment: fc.nat(), at: fc.nat() }),
  fc.record({ kind: fc.constant('drop-segment' as const), segment: fc.nat() }),
  fc.record({ kind: fc.constant('replay' as const), at: fc.nat(), of: fc.nat() }),
)

type Outcome = { error: { file: string; offset: number; message: string } } | { log: unknown; pages: Record<string, string>; stats: unknown; bytes: number }

function outcome(dir: string, parts: number, chats: Iterable<string>): Outcome {
  const store = new ShardStore()
  try {
    const r = recoverStore(dir, 0, store, {}, parts)
    const { bytes, ...stats } = store.stats()
    return { log: r.log, pages: pages(store, chats), stats, bytes }
  } catch (err) {
    if (!(err instanceof WalCorruptError)) throw err
    return { error: { file: err.file, offset: err.offset, message: err.message } }
  }
}

t.test('property: a log read in 1 to 5 runs recovers the same store, or refuses with the same error', async (t) => {
  const root = t.testdir()
  let run = 0
  const property = fc.asyncProperty(
    fc.integer({ min: 1, max: 400 }),
    fc.constantFrom(1024, 4096, 16 * 1024),
    defect,
    async (count, segmentBytes, d) => {
      const dir = join(root, String(run++))
      mkdirSync(dir)
      try {
        const msgs = messages(0, count)
        // fdatasync through libuv rather than a sync thread per writer: under tap each thread boots
        // the TypeScript loader (~0.7 s), which left time for a few dozen cases. Recovery is the subject.
        const opts = { segmentBytes, batchBytesMax: 2048, io: realIo }
        if (d.kind === 'replay') {
          // An earlier message of some chat written again later: its send_time goes back.
          const at = d.at % (count + 1)
          const writer = openWriter(dir, undefined, opts)
          await appendAll(writer, msgs.slice(0, at))
          if (at > 0) {
            const old = msgs[d.of % at] as Msg
            await new Promise<void>((resolve, reject) => writer.append(payloadOf(old), (err) => (err === null ? resolve() : reject(err))))
          }
          await appendAll(writer, msgs.slice(at))
          await writer.close()
        } else {
          await writeLog(dir, msgs, opts)
        }
        const segs = listSegments(dir)
        if (d.kind === 'flip') {
          const seg = segs[d.segment % segs.length] as (typeof segs)[number]
          const bytes = readFileSync(seg.path)
          const at = d.at % bytes.length
          bytes[at] = (bytes[at] as number) ^ 0x5a
          writeFileSync(seg.path, bytes)
        } else if (d.kind === 'drop-segment' && segs.length >= 3) {
          unlinkSync((segs[1 + (d.segment % (segs.length - 2))] as (typeof segs)[number]).path)
        }
        const chats = new Set(msgs.map((m) => m.chat))
        const one = outcome(dir, 1, chats)
        for (let parts = 2; parts <= 5; parts++) {
          const what = `${JSON.stringify(d)}, ${segs.length} segments, ${parts} runs`
          const got = outcome(dir, parts, chats)
          if ('bytes' in got && 'bytes' in one) {
            // Each run's extents are carved from chunks of their own (arena.ts, Arena.join).
            assert.ok(got.bytes <= one.bytes + (parts - 1) * 1024 * 1024, `${what}: bytes held ${got.bytes} against ${one.bytes}`)
            assert.deepStrictEqual({ ...got, bytes: 0 }, { ...one, bytes: 0 }, what)
          } else assert.deepStrictEqual(got, one, what)
        }
        return true
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    },
  )
  await holds(t, property, { numRuns: 150 })
})
