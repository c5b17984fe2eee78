// A worker thread: one HTTP front end and the shards this thread hosts.
//
// Shard s lives in worker s mod THREADS. The front end hashes each chat to its shard and calls it
// through a ShardCaller: directly when this thread hosts the shard (rpc/in-process.ts), over the
// msgpack RPC channel when another worker does (rpc/client.ts -> rpc/server.ts in that worker).
//
// Lifecycle, driven by the cluster (src/cluster.ts):
//   start     recover every hosted shard from its log        -> { type: 'ready', records, ms }
//   wiring    'shard-port' / 'shard-down' for shards hosted elsewhere (this thread calls them),
//             'serve' for a hosted shard (another thread calls it over the port)
//   'listen'  bind the shared port                              -> 'listening' | 'listen-failed'
//   'stop-http'  stop listening, answer what is in flight        -> 'http-stopped'
//   'stop'    sync and close every hosted shard's log            -> 'stopped'
//   'crash'   fail as a bug escaping a handler does (tests and drills: a worker with open sockets
//             cannot be ended with Worker.terminate(), which makes libuv abort the process)
// and { type: 'fatal', exitCode, message } when a shard cannot go on (corrupt log at start-up,
// failed fdatasync): the process must then exit with that code.

import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import type { Config } from './config.js'
import { createFrontEnd, type Backend } from './http/index.js'
import { createLogger, errorFields } from './log.js'
import { answerCollect, createHttpMetrics, createShardMetrics, createThreadRegistry } from './metrics/index.js'
import { InProcessClient, ShardClient, ShardEndpoint, shardOf, type ShardCaller } from './rpc/index.js'
import { openShard, prefaultChunks, retains, scanShards, spareBytes, type HostedShard } from './store/index.js'

export interface WorkerData {
  readonly index: number
  readonly config: Config
  /** The shards this worker hosts. */
  readonly shards: readonly number[]
}

export type WorkerControl =
  | { readonly type: 'shard-port'; readonly shard: number; readonly port: MessagePort }
  | { readonly type: 'shard-down'; readonly shard: number }
  | { readonly type: 'serve'; readonly shard: number; readonly port: MessagePort }
  | { readonly type: 'listen'; readonly port: number }
  | { readonly type: 'stop-http'; readonly timeoutMs: number }
  | { readonly type: 'stop' }
  | { readonly type: 'crash'; readonly message: string }
  | { readonly type: 'metrics-collect'; readonly id: number }
  | { readonly type: 'metrics-response'; readonly id: number; readonly text?: string; readonly error?: string }

/** Exit code of a worker that crashed on a bug (EX_SOFTWARE); the cluster restarts it. */
const EXIT_BUG = 70

const data = workerData as WorkerData
const { config } = data
const name = `worker-${data.index}`
const log = createLogger(name, config.logLevel)
if (parentPort === null) throw new Error('worker.ts must run in a worker thread')
const control = parentPort

const registry = createThreadRegistry(name)
const shardMetrics = createShardMetrics(registry, spareBytes)
const hosted = new Map<number, HostedShard>()
const onFatal = (exitCode: number, message: string): void => control.postMessage({ type: 'fatal', exitCode, message })
// Every hosted shard's log is scanned at once on helper threads; each is applied here as its scan
// arrives (src/store/recover.ts). A corrupt log throws ShardFatalError: the thread ends unserved.
const recoveryStart = performance.now()
for (const [i, scan] of scanShards(config.dataDir, data.shards, retains(config)).entries()) {
  const s = data.shards[i] as number
  hosted.set(s, openShard(s, config, createLogger(`shard-${s}`, config.logLevel), shardMetrics, onFatal, await scan))
}
const recoveryMs = performance.now() - recoveryStart
// STORE_PREFAULT_BYTES: memory for the shards' messages written now, before serving, rather than
// page by page under load (README "Memory"); not in a worker that hosts no shard.
if (config.storePrefaultBytes > 0 && data.shards.length > 0) {
  const t0 = performance.now()
  prefaultChunks(config.storePrefaultBytes)
  log.info('store memory written ahead', { bytes: spareBytes(), ms: Math.round(performance.now() - t0) })
}

// One caller per shard: the shard itself when this worker hosts it, a client of the RPC channel
// otherwise (wired by the cluster with 'shard-port').
const callers: ShardCaller[] = Array.from({ length: config.shards }, (_, s) => {
  const h = hosted.get(s)
  return h !== undefined ? new InProcessClient(s, h.shard) : new ShardClient(s, config.rpcInflightMax, (seconds) => metrics.rpcRoundTrip(s, seconds))
})
const clientOf = (shard: number): ShardClient | null => {
  const c = callers[shard]
  return c instanceof ShardClient ? c : null
}
const metrics = createHttpMetrics(registry, config.shards, () => callers.map((c) => c.inflight))
const callerFor = (chat: string): ShardCaller => callers[shardOf(chat, config.shards)] as ShardCaller
const backend: Backend = {
  send: (chat, text, sender, cb) => callerFor(chat).send(chat, text, sender, cb),
  sendBytes: (chat, fields, cb) => callerFor(chat).sendBytes(chat, fields, cb),
  pull: (chat, cursor, limit, reverse, cb) => callerFor(chat).pull(chat, cursor, limit, reverse, cb),
}

// GET /metrics: the main thread merges every thread's registry (src/metrics/collect.ts).
let scrapeId = 0
const scrapes = new Map<number, (err: Error | null, text: string) => void>()
const scrape = (cb: (err: Error | null, text: string) => void): void => {
  const id = ++scrapeId
  scrapes.set(id, cb)
  control.postMessage({ type: 'metrics-request', id })
}
const frontEnd = createFrontEnd(config, backend, metrics, scrape, log)
const endpoints = new Set<ShardEndpoint>()

// A bug that escapes a handler must not take the process down with it: a thread that ends with
// open sockets makes libuv abort the whole process. Close every socket, then end this thread; the
// cluster restarts it, and its shards recover from their logs.
process.on('uncaughtException', (err) => {
  log.error('worker thread crashed; closing its sockets', errorFields(err))
  try {
    frontEnd.closeNow()
  } finally {
    setImmediate(() => process.exit(EXIT_BUG))
  }
})

async function stopShards(): Promise<void> {
  await Promise.all([...hosted.values()].map((h) => h.close()))
  // Replies of the last round go out before the ports close.
  for (const e of endpoints) e.close()
  for (let s = 0; s < config.shards; s++) clientOf(s)?.detach()
}

control.on('message', (msg: WorkerControl) => {
  if (answerCollect(control, registry, msg)) return
  switch (msg.type) {
    case 'metrics-response': {
      const cb = scrapes.get(msg.id)
      scrapes.delete(msg.id)
      cb?.(msg.error === undefined ? null : new Error(msg.error), msg.text ?? '')
      break
    }
    case 'shard-port':
      clientOf(msg.shard)?.attach(msg.port)
      break
    case 'shard-down':
      clientOf(msg.shard)?.detach()
      break
    case 'serve': {
      const h = hosted.get(msg.shard)
      if (h === undefined) {
        msg.port.close()
        break
      }
      const endpoint = new ShardEndpoint(msg.port, h.shard, {
        onBadFrame: (err) => log.error('dropped a malformed RPC frame', { shard: msg.shard, code: err.code, detail: err.message }),
      })
      endpoints.add(endpoint)
      msg.port.on('close', () => endpoints.delete(endpoint))
      break
    }
    case 'listen':
      frontEnd.listen(config.host, msg.port).then(
        (port) => control.postMessage({ type: 'listening', port }),
        (err: Error) => {
          log.error('cannot listen', { host: config.host, port: msg.port, err: err.message })
          frontEnd.closeNow()
          setImmediate(() => control.postMessage({ type: 'listen-failed' }))
        },
      )
      break
    case 'stop-http':
      void frontEnd.stop(msg.timeoutMs).then((unanswered) => control.postMessage({ type: 'http-stopped', unanswered }))
      break
    case 'stop':
      // The main thread ends this thread on 'stopped': first let the log lines written so far
      // reach it (a worker's stdout is a stream to the main thread; terminating cuts it).
      void stopShards()
        .then(flushStdio)
        .then(() => control.postMessage({ type: 'stopped' }))
      break
    case 'crash':
      setImmediate(() => {
        throw new Error(msg.message)
      })
      break
  }
})

/** Resolves once the main thread has taken everything written to this thread's stdout and stderr. */
function flushStdio(): Promise<unknown> {
  const flushed = (stream: NodeJS.WriteStream) => new Promise<void>((done) => stream.write('', () => done()))
  return Promise.all([flushed(process.stdout), flushed(process.stderr)])
}

let records = 0
for (const h of hosted.values()) records += h.records
// A shard's first sends would otherwise wait for its log's sync thread to boot.
await Promise.all([...hosted.values()].map((h) => h.ready))
control.postMessage({ type: 'ready', records, ms: recoveryMs })
