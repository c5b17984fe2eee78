// Appending to a log with group commit.
//
// Appends are buffered. When no write is in flight, the records buffered during that turn of the
// event loop go out as one write followed by one fdatasync (policy `always`); records appended
// while a round is in flight wait for the next round,
// which starts as soon as the previous one's fdatasync completes, before that round's callbacks
// run (so the disk works while they do): leader/follower, no timer, no artificial delay. The
// write is a synchronous copy into the page cache; the fdatasync runs on the writer's own thread
// (sync-thread.ts), while this one goes on taking appends and answering the rounds before. Each
// round carries at most `batchBytesMax` bytes. An append's callback runs once the round that
// carries it is durable under the policy:
//   always       after the fdatasync that covers it (the default)
//   interval:N   after the write; a timer fdatasyncs every N ms (like Redis appendfsync everysec)
//   unsafe-none  after the write; synced only when a segment is sealed (roll) and at close
//
// Preallocation: rounds overwrite zeros the writer wrote ahead of them, not the end of the file.
// An fdatasync after an append must also commit the file's new size through ext4's journal; one
// after an overwrite of written blocks flushes the data alone, in about half the time here
// (docs/performance.md). So when a round's end comes near the zeros' end, the writer writes more
// zeros after it in the same round (64 KiB, doubling per extension up to 256 KiB, never past
// segmentBytes), and the round's fdatasync covers both. Larger extensions raised sends' p99 here
// (docs/performance.md): their round's sync writes them all back. A segment is cut to its
// records when it is sealed; the last segment's zero tail is clean to recovery (reader.ts), and
// appending resumes at its start. Zeros rather than fallocate: Node has no fallocate, and an fallocated (unwritten)
// extent needs a journal commit at its first write anyway. (PostgreSQL's wal_init_zero, etcd's
// preallocated segments.)
//
// Each round's first record carries the round mark (format.ts), so that recovery knows which
// records a crash can have torn: those of the last round only, as no round is written before the
// previous one's fdatasync returned.
//
// Failures:
// - A failed write (ENOSPC, EIO...) fails that round's callbacks and cuts the segment back to its
//   last durable size, so the log never holds a partial round. Later rounds try again, so writes
//   resume when space frees. If the cut itself fails, the log is in an unknown state: fatal.
// - A failed fdatasync is never retried (the kernel may have dropped the dirty pages and cleared
//   the error: "fsyncgate"); it is fatal, and recovery from the log at restart decides what
//   survived. Fatal errors go to `onFatal`; the process must exit. Every append still waiting is
//   answered at once, none as durable: the round whose sync failed with a WalSyncError (its
//   records may or may not be on disk), records not yet written with a WalStoppedError (they are
//   not). Later appends throw WalStoppedError.

import { performance } from 'node:perf_hooks' // the global is a getter, called on every use
import { closeSync, fdatasync, fdatasyncSync, fsyncSync, ftruncateSync, openSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { FORMAT_VERSION, ROUND_MARKS_VERSION, SEGMENT_HEADER_BYTES, encodeHeader, encodeRecord, markRoundStart, segmentName } from './format.js'
import type { RecoveredLog } from './reader.js'
import { syncDir } from './sync.js'
import { SyncThread } from './sync-thread.js'

export type FsyncPolicy = { readonly kind: 'always' } | { readonly kind: 'interval'; readonly ms: number } | { readonly kind: 'unsafe-none' }

/**
 * The file operations the writer uses: swapped in tests to inject faults (ENOSPC, EIO). Without
 * one, a writer writes as realIo does and runs its fdatasyncs on a thread of its own (SyncThread).
 */
export interface WalIo {
  write(fd: number, buf: Buffer, position: number, cb: (err: NodeJS.ErrnoException | null, written: number) => void): void
  /** `callMs`, when the io can tell: how long the fdatasync call itself took, without any hand-off. */
  fdatasync(fd: number, cb: (err: NodeJS.ErrnoException | null, callMs?: number) => void): void
}

export const realIo: WalIo = {
  // The write only copies into the page cache (microseconds): done synchronously it saves a trip
  // through libuv's thread pool per round, which is most of a round's latency after the sync.
  // (The fdatasync here goes through that pool; a writer's own is on its SyncThread.)
  write: (fd, buf, position, cb) => {
    let written: number
    try {
      written = writeSync(fd, buf, 0, buf.length, position)
    } catch (err) {
      cb(err as NodeJS.ErrnoException, 0)
      return
    }
    cb(null, written)
  },
  fdatasync: (fd, cb) => fdatasync(fd, cb),
}

/** The largest zero extension written ahead of the rounds (see the top of this file). */
export const PREALLOCATE_BYTES_MAX = 256 * 1024
const PREALLOCATE_BYTES_MIN = 64 * 1024
let zeros: Buffer | null = null
/** Segments this writer creates are in FORMAT_VERSION. */
const NEW_SEGMENTS_MARK_ROUNDS = FORMAT_VERSION >= ROUND_MARKS_VERSION

export interface WriterOptions {
  readonly dir: string
  readonly shard: number
  readonly segmentBytes: number
  readonly batchBytesMax: number
  /** Bytes buffered (not yet written) beyond which appends are refused. */
  readonly pendingBytesMax: number
  readonly fsync: FsyncPolicy
  /** Zeros written ahead of the rounds at most per extension; 0 turns preallocation off. Default PREALLOCATE_BYTES_MAX. */
  readonly preallocateBytesMax?: number
  /** Default: realIo's writes, and fdatasync on the writer's own SyncThread (sync-thread.ts). */
  readonly io?: WalIo
  /** Called when writing zeros ahead failed (once per segment: preallocation stops there). */
  readonly onPreallocateFailed?: (err: NodeJS.ErrnoException) => void
  /** Called once with an error the log cannot continue after. */
  readonly onFatal: (err: Error) => void
  /**
   * Called after each durable round with its record count, bytes, fdatasync time (from asking for
   * it to its callback), how long its oldest record waited in the buffer for the round to begin
   * (records left over from a round capped by batchBytesMax count from that round's start), and
   * how long the fdatasync call itself took where it ran (`callMs`: on the sync thread; undefined
   * when the io does not say, or no sync ran). The difference of the two is the hand-off.
   */
  readonly onRound?: (records: number, bytes: number, fsyncMs: number, waitMs: number, callMs?: number) => void
  /**
   * A round's `records` appends are durable, and their callbacks, in append order, run next: a
   * caller that touches some state per record can read it ahead for all of them first.
   */
  readonly beforeCallbacks?: (records: number) => void
}

export interface WriterState {
  /** LSN of the last record already in the log (0 for an empty log). */
  readonly lastLsn: number
  /**
   * The segment to append to, if any, its valid size and its format version; `capacity` is its
   * length when zeros follow its records (recovery's lastSegmentCapacity), which appending then
   * overwrites.
   */
  readonly lastSegment: { readonly path: string; readonly bytes: number; readonly version: number; readonly capacity?: number } | null
}

/**
 * The state to resume appending from after recovery: a last segment whose header was never
 * written (a crash right after creating it) is deleted and a new one started; otherwise appending
 * resumes in the last segment after its records, over its preallocated zeros if it has some.
 */
export function resumeState(log: RecoveredLog): WriterState {
  let last = log.segments.at(-1)
  if (last !== undefined && log.torn?.file === last.path && log.torn.offset === 0) {
    unlinkSync(last.path)
    last = undefined
  }
  return {
    lastLsn: log.lastLsn,
    lastSegment: last === undefined ? null : { path: last.path, bytes: log.lastSegmentBytes, version: log.lastSegmentVersion, capacity: log.lastSegmentCapacity },
  }
}

export type AppendCallback = (err: NodeJS.ErrnoException | null) => void

/** Thrown by append() when more than pendingBytesMax is buffered. */
export class WalBackpressureError extends Error {
  constructor(bytes: number) {
    super(`${bytes} bytes are waiting to be written to the log`)
    this.name = 'WalBackpressureError'
  }
}

/** An append that cannot be taken, or was never written, because the log failed or is closing. */
export class WalStoppedError extends Error {
  constructor(why: string) {
    super(`the log is stopped: ${why}`)
    this.name = 'WalStoppedError'
  }
}

/** The answer to appends whose round's fdatasync failed: they may or may not be on disk. */
export class WalSyncError extends Error {
  readonly code: string | undefined
  constructor(cause: NodeJS.ErrnoException) {
    super(`fdatasync failed: ${cause.message}`, { cause })
    this.name = 'WalSyncError'
    this.code = cause.code
  }
}

export class WalWriter {
  private readonly opts: WriterOptions
  private readonly io: WalIo
  /** Where this writer's fdatasyncs run, unless the options gave an io. */
  private readonly syncThread: SyncThread | null
  private fd: number
  private segmentPath: string
  /** The segment of the round whose callbacks run (or ran last): see answeredSegment. */
  private answeredPath: string
  /** Bytes of the current segment that are written (and durable, under `always`). */
  private size: number
  /**
   * How far the current segment's file reaches, at most: records, then zeros written ahead (after
   * a failed extension, maybe only some of them). Rounds below it overwrite; sealing cuts it.
   */
  private capacity: number
  /**
   * Whether the current segment's format marks each round's first record (format.ts): every
   * segment this writer creates; one of format 1 that it resumes gets no marks.
   */
  private marksRounds: boolean
  /** The next zero extension's length; doubles within a segment. */
  private extendBytes = PREALLOCATE_BYTES_MIN
  /** An extension failed (ENOSPC...): none more in this segment. Rounds still append. */
  private extendFailed = false
  private readonly preallocateMax: number
  /** LSN of the last record written to the log (records are numbered by position). */
  private lsn: number
  private buffered: Buffer[] = []
  private callbacks: AppendCallback[] = []
  private bufferedBytes = 0
  /** When the oldest buffered record was appended (performance.now()). */
  private oldestAt = 0
  private inFlight = false
  private scheduled = false
  private failed: Error | null = null
  private closing: (() => void) | null = null
  private dirtySinceSync = false
  private timer: NodeJS.Timeout | null = null
  private readonly startRound = (): void => this.round()

  constructor(opts: WriterOptions, state: WriterState) {
    this.opts = opts
    if (opts.io !== undefined || opts.fsync.kind === 'unsafe-none') {
      this.io = opts.io ?? realIo
      this.syncThread = null
    } else {
      const thread = new SyncThread()
      thread.start() // so that the first round does not wait for the thread to boot
      this.syncThread = thread
      this.io = { write: realIo.write, fdatasync: (fd, cb) => thread.fdatasync(fd, cb) }
    }
    this.preallocateMax = opts.preallocateBytesMax ?? PREALLOCATE_BYTES_MAX
    this.lsn = state.lastLsn
    if (state.lastSegment === null) {
      const created = this.createSegment(state.lastLsn + 1)
      this.fd = created.fd
      this.segmentPath = created.path
      this.size = SEGMENT_HEADER_BYTES
      this.capacity = SEGMENT_HEADER_BYTES
      this.marksRounds = NEW_SEGMENTS_MARK_ROUNDS
    } else {
      this.segmentPath = state.lastSegment.path
      this.fd = openSync(this.segmentPath, 'r+')
      this.marksRounds = state.lastSegment.version >= ROUND_MARKS_VERSION
      this.size = state.lastSegment.bytes
      this.capacity = Math.max(this.size, state.lastSegment.capacity ?? 0)
      if (this.capacity === this.size) {
        // Cut a torn tail recovery found, durably, before appending after it.
        ftruncateSync(this.fd, this.size)
        fsyncSync(this.fd)
      }
    }
    this.answeredPath = this.segmentPath
    if (opts.fsync.kind === 'interval') {
      this.timer = setInterval(() => this.periodicSync(), opts.fsync.ms)
      this.timer.unref()
    }
  }

  /** Resolves once the log can sync at once: its sync thread, if it has one, is up (sync-thread.ts). */
  ready(): Promise<void> {
    return this.syncThread === null ? Promise.resolve() : this.syncThread.ready()
  }

  /** LSN of the last record written to the log. */
  get lastLsn(): number {
    return this.lsn
  }

  /** The segment appended to now (the newest). */
  get currentSegment(): string {
    return this.segmentPath
  }

  /**
   * The segment holding the records whose callbacks are running, or ran last. Not always
   * currentSegment: the next round starts, and may start a new segment, before a finished round's
   * callbacks run.
   */
  get answeredSegment(): string {
    return this.answeredPath
  }

  /** Buffers a record; `cb` runs when it is durable under the policy, or with the error. */
  append(payload: Uint8Array, cb: AppendCallback): void {
    if (this.failed !== null) throw new WalStoppedError(this.failed.message)
    if (this.closing !== null) throw new WalStoppedError('closing')
    if (this.bufferedBytes > this.opts.pendingBytesMax) throw new WalBackpressureError(this.bufferedBytes)
    const record = encodeRecord(payload)
    if (this.buffered.length === 0) this.oldestAt = performance.now()
    this.buffered.push(record)
    this.callbacks.push(cb)
    this.bufferedBytes += record.length
    if (!this.inFlight && !this.scheduled) {
      // Start once this turn of the event loop has read every request that was ready (setImmediate
      // runs after the poll phase), so that they all go out in one round. A microtask would start a
      // round per request: uWS drains microtasks after each callback. With `always` a round in
      // flight batches the appends anyway; without it, that is one write per send, and the sends
      // of `unsafe-none` ran at 0.74x of `always`'s (docs/performance.md).
      this.scheduled = true
      setImmediate(this.startRound)
    }
  }

  /** Deletes a sealed segment (retention) and syncs the directory. Never the current one. */
  removeSealed(path: string): void {
    if (path === this.segmentPath) throw new Error(`${path} is the segment being written`)
    unlinkSync(path)
    syncDir(this.opts.dir)
  }

  /** Flushes, syncs and closes. Resolves when everything appended before is durable. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.closing = () => {
        if (this.timer !== null) clearInterval(this.timer)
        if (this.failed === null) {
          try {
            fdatasyncSync(this.fd)
          } catch (err) {
            this.fatal(err as Error)
          }
        }
        closeSync(this.fd)
        this.syncThread?.stop()
        resolve()
      }
      if (!this.inFlight && !this.scheduled) this.round()
    })
  }

  private round(): void {
    this.scheduled = false
    if (this.inFlight) return
    if (this.failed !== null) {
      // Nothing more goes to the log, but close() still releases the file.
      if (this.closing !== null) this.closing()
      return
    }
    if (this.buffered.length === 0) {
      if (this.closing !== null) this.closing()
      return
    }
    // Take up to batchBytesMax (at least one record).
    let take = 0
    let bytes = 0
    while (take < this.buffered.length && (take === 0 || bytes + (this.buffered[take] as Buffer).length <= this.opts.batchBytesMax)) {
      bytes += (this.buffered[take] as Buffer).length
      take++
    }
    const records = take === this.buffered.length ? this.buffered : this.buffered.slice(0, take)
    const cbs = take === this.callbacks.length ? this.callbacks : this.callbacks.slice(0, take)
    this.buffered = take === this.buffered.length ? [] : this.buffered.slice(take)
    this.callbacks = take === this.callbacks.length ? [] : this.callbacks.slice(take)
    this.bufferedBytes -= bytes
    const startedAt = performance.now()
    const waitMs = startedAt - this.oldestAt
    this.oldestAt = startedAt
    if (this.size > SEGMENT_HEADER_BYTES && this.size + bytes > this.opts.segmentBytes) {
      try {
        this.roll(this.lsn + 1)
      } catch (err) {
        this.finishRound(cbs, err as NodeJS.ErrnoException)
        return
      }
    }
    this.inFlight = true
    if (this.marksRounds) markRoundStart(records[0] as Buffer)
    const buf = records.length === 1 ? (records[0] as Buffer) : Buffer.concat(records, bytes)
    const position = this.size
    const segment = this.segmentPath
    this.io.write(this.fd, buf, position, (err, written) => {
      if (err === null && written !== buf.length) {
        err = Object.assign(new Error(`short write: ${written} of ${buf.length} bytes`), { code: 'EIO' }) as NodeJS.ErrnoException
      }
      if (err !== null) {
        this.undoWrite(position)
        this.finishRound(cbs, err)
        return
      }
      this.size = position + buf.length
      this.capacity = Math.max(this.capacity, this.size)
      this.lsn += records.length
      this.preallocate()
      if (this.opts.fsync.kind !== 'always') {
        this.dirtySinceSync = true
        this.opts.onRound?.(records.length, buf.length, 0, waitMs)
        this.finishRound(cbs, null, segment)
        return
      }
      const t0 = performance.now()
      this.io.fdatasync(this.fd, (syncErr, callMs) => {
        if (syncErr !== null) {
          // Nothing the round carried is acknowledged; whether it reached the disk is unknown.
          this.inFlight = false
          this.fatal(syncErr, cbs)
          if (this.closing !== null) this.round()
          return
        }
        this.opts.onRound?.(records.length, buf.length, performance.now() - t0, waitMs, callMs)
        this.finishRound(cbs, null, segment)
      })
    })
  }

  // Called after a round's records are written: if the zeros ahead run short, write more behind
  // them before the round's fdatasync, which then makes them durable too.
  private preallocate(): void {
    if (this.preallocateMax === 0 || this.extendFailed || this.size + this.extendBytes / 2 <= this.capacity) return
    const from = this.capacity
    const to = Math.min(this.opts.segmentBytes, from + this.extendBytes)
    if (to <= from) return
    if (zeros === null || zeros.length < to - from) zeros = Buffer.alloc(Math.max(to - from, PREALLOCATE_BYTES_MAX))
    this.io.write(this.fd, zeros.subarray(0, to - from), from, (err, written) => {
      // However many of the zeros were written, they are a clean tail, and the file reaches `to` at
      // most. On failure just stop preallocating in this segment and let rounds append.
      this.capacity = to
      if (err !== null || written !== to - from) {
        this.extendFailed = true
        this.opts.onPreallocateFailed?.(err ?? Object.assign(new Error(`short write: ${written} of ${to - from} bytes`), { code: 'EIO' }))
        return
      }
      this.extendBytes = Math.min(this.preallocateMax, this.extendBytes * 2)
    })
  }

  // The next round's write (and fdatasync) goes out first, then this round's callbacks run while
  // the disk works; appends they make wait for the round after.
  // `segment`: where a durable round's records are.
  private finishRound(cbs: AppendCallback[], err: NodeJS.ErrnoException | null, segment?: string): void {
    this.inFlight = false
    if (this.buffered.length > 0) this.round()
    if (segment !== undefined) this.answeredPath = segment
    if (err === null) this.opts.beforeCallbacks?.(cbs.length)
    for (const cb of cbs) cb(err)
    if (!this.inFlight && (this.buffered.length > 0 || this.closing !== null)) this.round()
  }

  // A failed write may have put part of the round on disk: cut it off so the log never holds a
  // record nobody was told about ahead of records that follow.
  private undoWrite(position: number): void {
    this.capacity = position
    try {
      ftruncateSync(this.fd, position)
      fdatasyncSync(this.fd)
    } catch (err) {
      this.fatal(err as Error)
    }
  }

  private periodicSync(): void {
    if (!this.dirtySinceSync || this.failed !== null) return
    this.dirtySinceSync = false
    const fd = this.fd
    const t0 = performance.now()
    this.io.fdatasync(fd, (err, callMs) => {
      // A roll or close() may have closed the fd before a busy sync thread ran this sync; they
      // fdatasync the segment themselves first. A closed (or meanwhile reused) fd is no error
      // then; EIO and the like always are.
      const fdGone = err !== null && (err.code === 'EBADF' || err.code === 'EINVAL') && (fd !== this.fd || this.closing !== null)
      if (err === null) this.opts.onRound?.(0, 0, performance.now() - t0, 0, callMs)
      else if (!fdGone) this.fatal(err)
    })
  }

  private createSegment(firstLsn: number): { fd: number; path: string } {
    const path = join(this.opts.dir, segmentName(firstLsn))
    const fd = openSync(path, 'wx')
    try {
      writeSync(fd, encodeHeader(this.opts.shard, firstLsn), 0, SEGMENT_HEADER_BYTES, 0)
      fsyncSync(fd)
      syncDir(this.opts.dir)
    } catch (err) {
      closeSync(fd)
      unlinkSync(path)
      throw err
    }
    return { fd, path }
  }

  private roll(firstLsn: number): void {
    // Seal the current segment: cut its preallocated zeros (recovery allows them in the last
    // segment only), then sync: its records are already durable under `always`, but not the cut.
    // A failed sync is never retried, here either: fatal.
    const cut = this.capacity > this.size
    if (cut) ftruncateSync(this.fd, this.size)
    if (cut || this.opts.fsync.kind !== 'always') {
      try {
        fdatasyncSync(this.fd)
      } catch (err) {
        this.fatal(err as Error)
        throw err
      }
    }
    this.capacity = this.size
    const next = this.createSegment(firstLsn)
    closeSync(this.fd)
    this.fd = next.fd
    this.segmentPath = next.path
    this.size = SEGMENT_HEADER_BYTES
    this.capacity = SEGMENT_HEADER_BYTES
    this.marksRounds = NEW_SEGMENTS_MARK_ROUNDS
    this.extendBytes = PREALLOCATE_BYTES_MIN
    this.extendFailed = false
  }

  /** `syncFailed`: the callbacks of the round whose fdatasync failed with `err`. */
  private fatal(err: Error, syncFailed: AppendCallback[] = []): void {
    if (this.failed !== null) return
    this.failed = err
    if (this.timer !== null) clearInterval(this.timer)
    this.syncThread?.stop() // no sync is asked for after this
    this.opts.onFatal(err)
    if (syncFailed.length > 0) {
      const unknown = new WalSyncError(err as NodeJS.ErrnoException)
      for (const cb of syncFailed) cb(unknown)
    }
    // Records not yet written never will be: answer them now rather than never.
    const waiting = this.callbacks
    this.buffered = []
    this.callbacks = []
    this.bufferedBytes = 0
    const stopped = new WalStoppedError(err.message)
    for (const cb of waiting) cb(stopped)
  }
}
