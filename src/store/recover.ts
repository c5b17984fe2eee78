// Rebuilding a shard's store from its log at start-up, in two phases:
//
//   scanSegments (any thread)  reads and verifies a run of the log's segments, checks every
//                              record (a message, its send_time after its chat's previous one in
//                              the run) and appends each message's JSON to its chat's extents
//                              in an arena of its own, as live sends do (a ChatLog per chat of
//                              the run, chat-log.ts). It lists per record its chat (an
//                              index into the run's chat ids, in first-seen order), send_time and
//                              segment, for the observer. Plain data and ArrayBuffers: it can
//                              cross threads without a copy (recover-task.ts).
//   joinScans                  checks that the runs follow on from each other (LSNs, and each
//                              chat's send_times across them) and maps every run's chats onto one
//                              shard's.
//   applyScan    (the thread that will serve the shard)  joins the runs' arenas into the store's
//                              and gives each chat its extents: no checksum, no string, no copy
//                              (but for small chats read in several runs, merged into one extent).
//
// Why: a worker would otherwise replay its shards' logs one after another, and each log from its
// first segment to its last. It scans the runs of every shard's log in parallel on helper threads
// (piscina) and applies each shard as its runs arrive (docs/performance.md, "Recovery"). When a
// run is corrupt, or runs do not join, recovery reads the whole log again in one pass, so that
// the error it reports is the first in log order, exactly as a single pass finds it.
// `recoverStore` does all of it in the calling thread.

import { WalCorruptError, joinLogParts, listSegments, readSegments, splitSegments, type LogPart, type RecoveredLog, type SegmentFile } from '../wal/index.js'
import { CHAT_ID_FROM, readStoredMessage, storedJsonFrom, type MessageRecord } from './message-record.js'
import { ChatIds } from './chat-ids.js'
import { Arena, type ArenaState } from './arena.js'
import { ChatLog } from './chat-log.js'
import type { ShardStore } from './shard-store.js'

export interface Recovery {
  readonly log: RecoveredLog
  readonly records: number
  /** Time of both phases, ms. */
  readonly ms: number
  /** Time of the first phase (the longest run's scanSegments), ms. */
  readonly scanMs: number
  /**
   * Oldest messages left out of memory because their chat already held its limit (a log written
   * by a version that let a chat grow past it; this one refuses such sends before logging them).
   */
  readonly overLimit: number
}

export interface RecoveryObserver {
  /** A record was replayed into the store. */
  onRecord?(chat: string, sendTime: number, segment: string): void
  /** The chat's oldest message was dropped to make room (see Recovery.overLimit). */
  onDropOldest?(chat: string): void
}

/** What scanSegments found in a run of segments: plain data and ArrayBuffers. */
export interface ShardScan {
  readonly log: LogPart
  /** Chat ids, in the order their first record in the run came. */
  readonly chats: readonly string[]
  /** Per chat: the send_time of its first and of its last record in the run. */
  readonly chatFirst: Float64Array
  readonly chatLast: Float64Array
  readonly records: number
  /**
   * Whether the three per-record columns below were kept: only an observer (retention's index of
   * which segment holds which chat's messages) reads them, and without one they would be 16 bytes
   * of fresh memory per record (scanSegments's `perRecord`). Empty when not kept.
   */
  readonly perRecord: boolean
  /** Per record, in log order: its chat's index in `chats`. */
  readonly chat: Int32Array
  readonly sendTime: Float64Array
  /** Per record: its segment's index in `segments`. */
  readonly segment: Int32Array
  /** The paths of the segments that hold records, in log order. */
  readonly segments: readonly string[]
  /**
   * Every chat's messages in the run, in extents (chat-log.ts) of `arena`: chat c's are
   * extentSlot/extentHp[extentFirst[c], extentFirst[c + 1]), oldest first.
   */
  readonly arena: ArenaState
  readonly extentFirst: Int32Array
  readonly extentSlot: Int32Array
  readonly extentHp: Int32Array
  readonly ms: number
}

/** A shard's scans joined (joinScans): what applyScan takes. */
export interface JoinedScan {
  readonly log: RecoveredLog
  readonly scans: readonly ShardScan[]
  /** The shard's chat ids, and per scan, each of its chats' index here. */
  readonly chats: readonly string[]
  readonly chatOf: readonly Int32Array[]
  readonly ms: number
}

/** Phase 1 over a whole log (`perRecord`: see scanSegments). Throws WalCorruptError. */
export function scanShard(dir: string, shard: number, perRecord = true): ShardScan {
  return scanSegments(listSegments(dir), shard, true, perRecord)
}

/** Records appended together after their chats' tails are read ahead (scanSegments). */
const APPEND_BATCH = 32
/** A sum of what the scans read ahead: kept, so that the compiler keeps the reads. */
let readAhead = 0

/**
 * Phase 1 over a run of consecutive segments (readSegments: `holdsLast` when the run ends with the
 * log's last segment). `perRecord`: keep each record's chat, send_time and segment for an observer
 * of applyScan (ShardScan.perRecord). Throws WalCorruptError.
 */
export function scanSegments(files: readonly SegmentFile[], shard: number, holdsLast: boolean, perRecord = true): ShardScan {
  const t0 = performance.now()
  const arena = new Arena()
  const chatIndex = new Map<string, number>()
  const ids = new ChatIds() // a record's chat by its id's bytes, without a string (chat-ids.ts)
  const chats: string[] = []
  const logs: ChatLog[] = [] // per chat: its messages of the run, in extents of `arena`
  const first: number[] = [] // per chat: its first send_time in the run
  const last: number[] = [] // per chat: the newest send_time so far
  const cols = new Columns()
  let records = 0
  const segments: string[] = [] // a segment's records come together, in log order
  // Checked records wait in a batch of APPEND_BATCH before they are appended, so that their chats'
  // tail extents are read ahead together (ChatLog.prefetchTails): records of chats written in turn
  // each find their chat's extent out of cache, and the misses of a batch then overlap. Nothing in
  // an append can fail for a record that passed the checks, so errors come in log order as before.
  // Per record queued: its chat's log, its send_time, and its JSON (payload from jsonFrom), or for
  // a version 1 record the message.
  const queueLogs: ChatLog[] = []
  const queueTime = new Float64Array(APPEND_BATCH)
  const queuePayload: Buffer[] = []
  const queueFrom = new Int32Array(APPEND_BATCH)
  const queueV1: (MessageRecord | null)[] = []
  let queued = 0
  const appendQueued = (): void => {
    readAhead += ChatLog.prefetchTails(queueLogs, queued)
    for (let i = 0; i < queued; i++) {
      const chatLog = queueLogs[i] as ChatLog
      // A chat past the most any chat holds (a log of an earlier version): its oldest go, as applyScan's limit would drop them.
      if (chatLog.full) chatLog.dropOldest(1)
      const v1 = queueV1[i] ?? null
      if (v1 === null) {
        const payload = queuePayload[i] as Buffer
        chatLog.appendJson(queueTime[i] as number, payload, queueFrom[i] as number, payload.length)
      } else {
        chatLog.append(queueTime[i] as number, v1.text, v1.sender)
        queueV1[i] = null
      }
    }
    queued = 0
  }
  /** The index of chat `chat`, first seen (or not) in a record with this send_time. */
  const chatNamed = (chat: string, sendTime: number): number => {
    let c = chatIndex.get(chat)
    if (c === undefined) {
      c = chats.length
      chatIndex.set(chat, c)
      chats.push(chat)
      logs.push(new ChatLog(chat, arena))
      first.push(sendTime)
      last.push(0)
    }
    return c
  }
  const log = readSegments(files, shard, holdsLast, (payload, lsn, file, offset) => {
    const jsonFrom = storedJsonFrom(payload)
    let c: number
    let sendTime: number
    let v1: MessageRecord | null = null
    if (jsonFrom >= 0) {
      sendTime = payload.readDoubleLE(1)
      c = ids.find(payload, CHAT_ID_FROM, jsonFrom)
      if (c < 0) {
        c = chatNamed(payload.toString('utf8', CHAT_ID_FROM, jsonFrom), sendTime)
        ids.add(payload, CHAT_ID_FROM, jsonFrom, c)
      }
    } else {
      const m = readStoredMessage(payload)
      if (m === null || m.message === null) throw new WalCorruptError(file, offset, `record ${lsn} has a valid checksum but is not a message`)
      v1 = m.message
      sendTime = m.sendTime
      c = chatNamed(m.chat, sendTime)
    }
    const prev = last[c] as number
    if (sendTime <= prev) {
      throw new WalCorruptError(file, offset, `record ${lsn}: send_time ${sendTime} does not follow ${prev} in chat ${JSON.stringify(chats[c])}`)
    }
    last[c] = sendTime
    const q = queued++
    queueLogs[q] = logs[c] as ChatLog
    queueTime[q] = sendTime
    queuePayload[q] = payload
    queueFrom[q] = jsonFrom
    queueV1[q] = v1
    if (queued === APPEND_BATCH) appendQueued()
    if (segments.at(-1) !== file) segments.push(file)
    records++
    if (perRecord) cols.push(c, sendTime, segments.length - 1)
  }, appendQueued)
  const extentFirst = new Int32Array(chats.length + 1)
  const slots: number[] = []
  const hps: number[] = []
  for (let c = 0; c < chats.length; c++) {
    extentFirst[c] = slots.length
    ;(logs[c] as ChatLog).extentList(slots, hps)
  }
  extentFirst[chats.length] = slots.length
  return {
    log,
    chats,
    chatFirst: Float64Array.from(first),
    chatLast: Float64Array.from(last),
    records,
    perRecord,
    chat: cols.chat.subarray(0, cols.n),
    sendTime: cols.sendTime.subarray(0, cols.n),
    segment: cols.segment.subarray(0, cols.n),
    segments,
    arena: arena.export(),
    extentFirst,
    extentSlot: Int32Array.from(slots),
    extentHp: Int32Array.from(hps),
    ms: performance.now() - t0,
  }
}

/**
 * Joins the scans of consecutive runs of one log, in log order (the last holding its last
 * segment), or returns null when they do not follow on from each other: a gap in LSNs, or a chat
 * whose send_times go back across runs. The caller then reads the whole log in one pass
 * (scanShard), which throws the error a single pass meets first.
 */
export function joinScans(scans: readonly ShardScan[]): JoinedScan | null {
  let log: RecoveredLog
  try {
    log = joinLogParts(scans.map((s) => s.log))
  } catch (err) {
    if (err instanceof WalCorruptError) return null
    throw err
  }
  const index = new Map<string, number>()
  const chats: string[] = []
  const last: number[] = []
  const chatOf: Int32Array[] = []
  for (const scan of scans) {
    const of = new Int32Array(scan.chats.length)
    for (let c = 0; c < scan.chats.length; c++) {
      const id = scan.chats[c] as string
      let g = index.get(id)
      if (g === undefined) {
        g = chats.length
        index.set(id, g)
        chats.push(id)
        last.push(0)
      } else if ((scan.chatFirst[c] as number) <= (last[g] as number)) {
        return null
      }
      last[g] = scan.chatLast[c] as number
      of[c] = g
    }
    chatOf.push(of)
  }
  return {
    log,
    scans,
    chats,
    chatOf,
    ms: Math.max(0, ...scans.map((s) => s.ms)),
  }
}

/** A scan of a whole log (scanShard), as the join of its one run: that always joins. */
export function wholeScan(scan: ShardScan): JoinedScan {
  const joined = joinScans([scan])
  if (joined === null) throw new Error('a scan of a whole log did not join')
  return joined
}

/**
 * Phase 2: hands a joined scan's extents to an empty store, chat by chat, without a copy (a chat
 * read in several runs gets their extents chained, or merged when small: ChatLog.adoptExtents).
 */
export function applyScan(store: ShardStore, joined: JoinedScan, observer: RecoveryObserver = {}): Recovery {
  const t0 = performance.now()
  const { bases } = store.adoptArenas(joined.scans.map((s) => s.arena))
  const chats = joined.chats.length
  // Per chat, its extents in run order.
  const slots: number[][] = Array.from({ length: chats }, () => [])
  const hps: number[][] = Array.from({ length: chats }, () => [])
  joined.scans.forEach((scan, k) => {
    const of = joined.chatOf[k] as Int32Array
    for (let c = 0; c < scan.chats.length; c++) {
      const g = of[c] as number
      for (let e = scan.extentFirst[c] as number; e < (scan.extentFirst[c + 1] as number); e++) {
        ;(slots[g] as number[]).push((bases[k] as number) + (scan.extentSlot[e] as number))
        ;(hps[g] as number[]).push(scan.extentHp[e] as number)
      }
    }
  })
  let overLimit = 0
  for (let c = 0; c < chats; c++) {
    const chat = joined.chats[c] as string
    store.adoptExtents(chat, slots[c] as number[], hps[c] as number[])
    // A log written by a version that let a chat grow past its limit: keep the newest messages,
    // as retention would (the log itself is left as it is).
    const over = (store.get(chat)?.count ?? 0) - store.chatMessagesMax
    if (over > 0) {
      store.dropOldest(chat, over)
      overLimit += over
    }
  }
  // What the observer sees is in log order, as a replay one record after another would give.
  if (observer.onRecord !== undefined || observer.onDropOldest !== undefined) {
    if (!joined.scans.every((s) => s.perRecord)) throw new Error('an observer needs scans that kept their per-record columns')
    const held = new Int32Array(chats)
    joined.scans.forEach((scan, k) => {
      const of = joined.chatOf[k] as Int32Array
      for (let i = 0; i < scan.records; i++) {
        const c = of[scan.chat[i] as number] as number
        const chat = joined.chats[c] as string
        if (held[c] === store.chatMessagesMax) observer.onDropOldest?.(chat)
        else held[c]++
        observer.onRecord?.(chat, scan.sendTime[i] as number, scan.segments[scan.segment[i] as number] as string)
      }
    })
  }
  return { log: joined.log, records: joined.log.records, ms: joined.ms + (performance.now() - t0), scanMs: joined.ms, overLimit }
}

/**
 * All phases in the calling thread, the log read as `parts` runs (one by default). Throws
 * WalCorruptError, the same one whatever `parts` is.
 */
export function recoverStore(dir: string, shard: number, store: ShardStore, observer: RecoveryObserver = {}, parts = 1): Recovery {
  const runs = splitSegments(listSegments(dir), parts)
  const perRecord = observer.onRecord !== undefined || observer.onDropOldest !== undefined
  let joined: JoinedScan | null = null
  try {
    joined = joinScans(runs.map((run, k) => scanSegments(run, shard, k === runs.length - 1, perRecord)))
  } catch (err) {
    if (!(err instanceof WalCorruptError)) throw err
  }
  return applyScan(store, joined ?? wholeScan(scanShard(dir, shard, perRecord)), observer)
}

/** The ArrayBuffers a scan can hand to another thread without a copy. */
export function scanTransferList(scan: ShardScan): ArrayBuffer[] {
  const buffers = [scan.chat, scan.sendTime, scan.segment, scan.chatFirst, scan.chatLast, scan.extentFirst, scan.extentSlot, scan.extentHp].map((a) => a.buffer as ArrayBuffer)
  for (const c of scan.arena.chunks) if (c !== null) buffers.push(c)
  for (const o of scan.arena.orders) if (o !== null) buffers.push(o.buffer as ArrayBuffer)
  return buffers
}

/** Growable per-record columns (doubling). */
class Columns {
  n = 0
  chat = new Int32Array(1024)
  sendTime = new Float64Array(1024)
  segment = new Int32Array(1024)

  push(chat: number, sendTime: number, segment: number): void {
    if (this.n === this.chat.length) this.grow()
    const i = this.n++
    this.chat[i] = chat
    this.sendTime[i] = sendTime
    this.segment[i] = segment
  }

  private grow(): void {
    const cap = this.chat.length * 2
    const grown = <T extends Int32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(cap)
      b.set(a)
      return b
    }
    this.chat = grown(this.chat, (n) => new Int32Array(n))
    this.sendTime = grown(this.sendTime, (n) => new Float64Array(n))
    this.segment = grown(this.segment, (n) => new Int32Array(n))
  }
}
