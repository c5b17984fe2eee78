// A log's fdatasyncs, on a thread of its own.
//
// Node runs an asynchronous fdatasync on libuv's thread pool: four threads by default, which wait
// on one condition variable and are woken in turn, so that each group-commit round's sync runs on
// a different thread than the round before, and which every shard of the process shares. Measured
// here (2-core VM, fresh servers alternated, wrk at 64 connections, sends across 10k chats;
// docs/performance.md, "ninth session"): with a thread of the log's own, throughput x1.025-1.042
// in four batches and a median p99 of 3.2-3.9 ms against 4.0-4.2; in the machine's fastest hour,
// x0.997 and x1.024 (`COMPARE_FRESH=1 node bench/compare.mjs`). A pool of one thread
// (UV_THREADPOOL_SIZE=1) helped p99 as much, but a process cannot choose it for itself once
// started, and it would serialise the syncs of every shard in the process. A thread that also
// owns the write (the shard's thread handing records over through a ring in shared memory, the
// log's thread starting each round as the last sync returns) was built and measured too: sends
// x0.97-1.03, mixed load x0.90-0.915, more CPU per request (docs/performance.md, tenth session).
//
// The protocol: the writer's thread stores the fd and bumps a request counter in shared memory,
// then wakes this thread (Atomics.notify, a futex wake, as libuv's pool is woken); this thread
// syncs and posts the result back, which wakes the writer's event loop (as libuv's pool does with
// its async handle). One request is in the thread at a time; others wait here, in order.

import { Worker } from 'node:worker_threads'

/** Int32 slots of the shared control block. */
export const REQUESTS = 0 // requests posted so far (the thread serves each once)
export const FD = 1 // the fd of the latest request
export const STOP = 2 // 1: the thread ends after the request it is serving
export const CONTROL_INTS = 3

/** What a sync thread is started with. */
export interface SyncThreadData {
  readonly control: SharedArrayBuffer
  /** Requests already served: the thread waits for the next. */
  readonly served: number
}

/**
 * What the thread posts back per request: how long the fdatasync call took on the thread, in ms
 * (the disk's part of a round, without the hand-off to the thread and back), or the error
 * fdatasyncSync threw.
 */
export type SyncReply = number | SyncFailure
/** A failed fdatasync, as the thread posts it (an Error's own fields do not survive postMessage). */
export interface SyncFailure {
  readonly code?: string
  readonly errno?: number
  readonly syscall?: string
  readonly message: string
}
/** What the thread posts once, before it waits for its first request. */
export const READY = 'ready'

/** `callMs`: how long the fdatasync call itself took on the thread (when it returned). */
export type SyncCallback = (err: NodeJS.ErrnoException | null, callMs?: number) => void

const THREAD_URL = new URL('./sync-thread-main.js', import.meta.url)

function errnoError(reply: SyncFailure): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(reply.message)
  if (reply.code !== undefined) err.code = reply.code
  if (reply.errno !== undefined) err.errno = reply.errno
  if (reply.syscall !== undefined) err.syscall = reply.syscall
  return err
}

export class SyncThread {
  private readonly control = new Int32Array(new SharedArrayBuffer(CONTROL_INTS * 4))
  private readonly url: URL
  private worker: Worker | null = null
  /** Requests in order; the first is in the thread. */
  private readonly queue: { readonly fd: number; readonly cb: SyncCallback }[] = []
  private stopping = false
  private booted = false
  private readonly bootWaiters: { resolve: () => void; reject: (err: Error) => void }[] = []

  /** `url`: the thread's body (tests give one that misbehaves). */
  constructor(url: URL = THREAD_URL) {
    this.url = url
  }

  /** Starts the thread now rather than at the first sync (which would then wait for it). */
  start(): void {
    if (this.worker === null && !this.stopping) this.spawn()
  }

  /**
   * Resolves once the thread runs and waits for requests (a thread takes tens of milliseconds to
   * boot, which a first sync would otherwise wait for); rejects if it ends before that.
   */
  ready(): Promise<void> {
    if (this.booted) return Promise.resolve()
    this.start()
    const worker = this.worker
    if (worker === null) return Promise.reject(new Error('the log\'s sync thread is stopped'))
    worker.ref() // until it is up
    return new Promise((resolve, reject) => this.bootWaiters.push({ resolve, reject }))
  }

  /** fdatasync(fd) on the thread; `cb` runs on this thread's event loop with its error or null. */
  fdatasync(fd: number, cb: SyncCallback): void {
    if (this.stopping) {
      setImmediate(cb, Object.assign(new Error('the log\'s sync thread is stopped'), { code: 'ECANCELED' }))
      return
    }
    this.queue.push({ fd, cb })
    if (this.queue.length === 1) this.post(fd)
  }

  /**
   * Takes no more requests; those already taken are served, then the thread ends. Idempotent.
   */
  stop(): void {
    if (this.stopping) return
    this.stopping = true
    if (this.queue.length === 0) this.end()
  }

  private spawn(): Worker {
    // A thread started again (after one ended) serves requests from the next one on.
    const workerData: SyncThreadData = { control: this.control.buffer as SharedArrayBuffer, served: Atomics.load(this.control, REQUESTS) }
    const worker = new Worker(this.url, { workerData, name: 'wal-sync' })
    worker.on('message', (reply: SyncReply | typeof READY) => (reply === READY ? this.booting(null) : this.answered(reply)))
    // The thread ending with requests unanswered (a bug, or resource limits): their syncs are
    // failed, which the writer treats as any failed fdatasync (fatal; nothing acknowledged).
    worker.on('error', (err) => {
      this.booting(err)
      this.failAll(err)
    })
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = null
      const err = new Error(`the log's sync thread exited (code ${code}) before answering`)
      this.booting(err)
      this.failAll(err)
    })
    worker.unref()
    this.worker = worker
    return worker
  }

  private post(fd: number): void {
    const worker = this.worker ?? this.spawn()
    // Keeps the event loop alive while a sync is out, not while the thread idles.
    worker.ref()
    Atomics.store(this.control, FD, fd)
    Atomics.add(this.control, REQUESTS, 1)
    Atomics.notify(this.control, REQUESTS)
  }

  private answered(reply: SyncReply): void {
    const served = this.queue.shift()
    if (served === undefined) return
    const next = this.queue[0]
    if (next !== undefined) this.post(next.fd)
    else if (this.stopping) this.end()
    else this.worker?.unref()
    if (typeof reply === 'number') served.cb(null, reply)
    else served.cb(errnoError(reply))
  }

  /** The thread is up (err null), or ended before it was: then it takes no more syncs. */
  private booting(err: Error | null): void {
    if (this.booted) return
    this.booted = err === null
    if (err !== null) this.stopping = true
    else if (this.queue.length === 0) this.worker?.unref()
    for (const w of this.bootWaiters.splice(0)) {
      if (err === null) w.resolve()
      else w.reject(err)
    }
  }

  private end(): void {
    Atomics.store(this.control, STOP, 1)
    Atomics.notify(this.control, REQUESTS)
    this.worker?.unref()
  }

  private failAll(err: Error): void {
    const waiting = this.queue.splice(0)
    if (waiting.length === 0) return
    const cause: NodeJS.ErrnoException = Object.assign(new Error(err.message, { cause: err }), { code: 'EIO' })
    this.stopping = true
    for (const w of waiting) w.cb(cause)
  }
}
