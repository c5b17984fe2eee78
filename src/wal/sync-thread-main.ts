// The body of a log's sync thread (sync-thread.ts): waits for a request in shared memory, runs
// fdatasync, posts the result (how long the call took, or its error), until told to stop. It
// allocates next to nothing and runs no event loop while it works: Atomics.wait blocks the thread
// between requests.

import { fdatasyncSync } from 'node:fs'
import { performance } from 'node:perf_hooks' // the global is a getter, called on every use
import { parentPort, workerData } from 'node:worker_threads'
import { FD, READY, REQUESTS, STOP, type SyncReply, type SyncThreadData } from './sync-thread.js'

if (parentPort === null) throw new Error('sync-thread-main.ts must run in a worker thread')
const port = parentPort
const data = workerData as SyncThreadData
const control = new Int32Array(data.control)

port.postMessage(READY)
let served = data.served
for (;;) {
  // Returns at once if a request came since the last one served.
  Atomics.wait(control, REQUESTS, served)
  const requests = Atomics.load(control, REQUESTS)
  if (requests !== served) {
    served = requests
    let reply: SyncReply
    const t0 = performance.now()
    try {
      fdatasyncSync(Atomics.load(control, FD))
      reply = performance.now() - t0
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      reply = { code: e.code, errno: e.errno, syscall: e.syscall, message: e.message }
    }
    port.postMessage(reply)
  }
  if (Atomics.load(control, STOP) !== 0) break
}
