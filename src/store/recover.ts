// Rebuilding a shard's store from its log at start-up, in two phases:
//
//   scanShard   (any thread)  reads and verifies the log, checks every record (a message, its
//                             send_time after its chat's previous one), copies each message's JSON
//                             into a slab of its own, and lists per record: its chat (an index
//                             into the chat ids, in first-seen order), send_time, place in the
//                             slab, length and segment. Plain data and ArrayBuffers: it can cross
//                             threads without a copy (recover-task.ts).
//   applyScan   (the thread that will serve the shard)  adopts the slab and indexes the records
//                             chat by chat: no checksum, no string, no copy per record.
//
// Why two phases: a worker that hosts several shards would otherwise replay their logs one after
// another. The worker runs the scans in parallel on helper threads (piscina) and applies each as
// it arrives (docs/performance.md, "Recovery"). `recoverStore` does both in the calling thread.

import { WalCorruptError, readLog, type RecoveredLog } from '../wal/index.js'
import { messageJson, readStoredMessage } from './message-record.js'
import type { ShardStore } from './shard-store.js'
import { Slab, type SlabState } from './slab.js'

const COMMA = 0x2c // ,

export interface Recovery {
  readonly log: RecoveredLog
  readonly records: number
  /** Time of both phases, ms. */
  readonly ms: number
  /** Time of the first phase (scanShard), ms. */
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

/** What scanShard found: everything applyScan needs, as plain data and ArrayBuffers. */
export interface ShardScan {
  readonly log: RecoveredLog
  /** Chat ids, in the order their first record came. */
  readonly chats: readonly string[]
  readonly records: number
  /** Per record, in log order: its chat's index in `chats`. */
  readonly chat: Int32Array
  readonly sendTime: Float64Array
  /** Per record: where its bytes (JSON and comma) are in `slab`, and how many. */
  readonly location: Float64Array
  readonly length: Int32Array
  /** Per record: its segment's index in `segments`. */
  readonly segment: Int32Array
  /** The paths of the segments that hold records, in log order. */
  readonly segments: readonly string[]
  readonly slab: SlabState
  readonly ms: number
}

/** Phase 1: reads and verifies a shard's log into a ShardScan. Throws WalCorruptError. */
export function scanShard(dir: string, shard: number): ShardScan {
  const t0 = performance.now()
  const slab = new Slab()
  const chatIndex = new Map<string, number>()
  const chats: string[] = []
  const last: number[] = [] // per chat: the newest send_time so far
  const cols = new Columns()
  const segments: string[] = [] // a segment's records come together, in log order
  const log = readLog(dir, shard, (payload, lsn, file, offset) => {
    const m = readStoredMessage(payload)
    if (m === null) throw new WalCorruptError(file, offset, `record ${lsn} has a valid checksum but is not a message`)
    let c = chatIndex.get(m.chat)
    if (c === undefined) {
      c = chats.length
      chatIndex.set(m.chat, c)
      chats.push(m.chat)
      last.push(0)
    }
    const prev = last[c] as number
    if (m.sendTime <= prev) {
      throw new WalCorruptError(file, offset, `record ${lsn}: send_time ${m.sendTime} does not follow ${prev} in chat ${JSON.stringify(m.chat)}`)
    }
    last[c] = m.sendTime
    const v1 = m.message
    const loc = v1 === null ? slab.putBytes(m.json as Buffer, m.jsonFrom, (m.json as Buffer).length, COMMA) : slab.putString(messageJson(m.chat, v1.sender, v1.text, m.sendTime) + ',')
    if (segments.at(-1) !== file) segments.push(file)
    cols.push(c, m.sendTime, loc, slab.lastLength, segments.length - 1)
  })
  return {
    log,
    chats,
    records: cols.n,
    chat: cols.chat.subarray(0, cols.n),
    sendTime: cols.sendTime.subarray(0, cols.n),
    location: cols.location.subarray(0, cols.n),
    length: cols.length.subarray(0, cols.n),
    segment: cols.segment.subarray(0, cols.n),
    segments,
    slab: slab.export(),
    ms: performance.now() - t0,
  }
}

/** Phase 2: takes over a scan into an empty store. */
export function applyScan(store: ShardStore, scan: ShardScan, observer: RecoveryObserver = {}): Recovery {
  const t0 = performance.now()
  store.adoptSlab(scan.slab)
  // Each chat's index allocated once, at its final size: no growth, no copies.
  const counts = new Int32Array(scan.chats.length)
  for (let i = 0; i < scan.records; i++) counts[scan.chat[i] as number]++
  const logs = scan.chats.map((id, c) => store.chatLog(id, counts[c]))
  const { chat, sendTime, location, length, segment, segments } = scan
  let overLimit = 0
  for (let i = 0; i < scan.records; i++) {
    const c = chat[i] as number
    const log = logs[c] as (typeof logs)[number]
    if (log.full) {
      // Keep the newest messages, as retention would; the log itself is left as it is.
      store.dropOldest(log.chat, 1)
      observer.onDropOldest?.(log.chat)
      overLimit++
    }
    store.appendStored(log, sendTime[i] as number, location[i] as number, length[i] as number)
    observer.onRecord?.(log.chat, sendTime[i] as number, segments[segment[i] as number] as string)
  }
  return { log: scan.log, records: scan.records, ms: scan.ms + (performance.now() - t0), scanMs: scan.ms, overLimit }
}

/** Both phases in the calling thread. Throws WalCorruptError. */
export function recoverStore(dir: string, shard: number, store: ShardStore, observer: RecoveryObserver = {}): Recovery {
  return applyScan(store, scanShard(dir, shard), observer)
}

/** The ArrayBuffers a scan can hand to another thread without a copy. */
export function scanTransferList(scan: ShardScan): ArrayBuffer[] {
  const buffers = [scan.chat, scan.sendTime, scan.location, scan.length, scan.segment].map((a) => a.buffer as ArrayBuffer)
  for (const c of scan.slab.chunks) if (c !== null) buffers.push(c)
  return buffers
}

/** Growable per-record columns (doubling). */
class Columns {
  n = 0
  chat = new Int32Array(1024)
  sendTime = new Float64Array(1024)
  location = new Float64Array(1024)
  length = new Int32Array(1024)
  segment = new Int32Array(1024)

  push(chat: number, sendTime: number, location: number, length: number, segment: number): void {
    if (this.n === this.chat.length) this.grow()
    const i = this.n++
    this.chat[i] = chat
    this.sendTime[i] = sendTime
    this.location[i] = location
    this.length[i] = length
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
    this.location = grown(this.location, (n) => new Float64Array(n))
    this.length = grown(this.length, (n) => new Int32Array(n))
    this.segment = grown(this.segment, (n) => new Int32Array(n))
  }
}
