// Entry point of an HTTP worker thread: one uWS App listening on the shared port (Linux
// SO_REUSEPORT spreads connections between threads), and one ShardClient per shard.
//
// Control messages from the cluster: { type: 'shard-port', shard, port } when a shard (re)starts,
// { type: 'shard-down', shard } when one dies, { type: 'stop' } at shutdown. It reports
// { type: 'listening', port }, { type: 'listen-failed' } and { type: 'stopped' }.

import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import uWS from 'uWebSockets.js'
import type { Config } from '../config.js'
import { createLogger, errorFields } from '../log.js'
import { answerCollect, createHttpMetrics, createThreadRegistry } from '../metrics/index.js'
import { ShardClient, shardOf } from '../rpc/index.js'
import { ROUTES, type Backend } from './handlers.js'
import { createAdapter } from './uws-adapter.js'

export interface HttpWorkerData {
  readonly index: number
  readonly config: Config
  /** The port to listen on: the configured one for the first thread, the bound one after. */
  readonly listenPort: number
  /** One port per shard, in shard order. */
  readonly shardPorts: readonly MessagePort[]
}

export type HttpControl =
  | { readonly type: 'shard-port'; readonly shard: number; readonly port: MessagePort }
  | { readonly type: 'shard-down'; readonly shard: number }
  | { readonly type: 'stop' }
  | { readonly type: 'metrics-collect'; readonly id: number }
  | { readonly type: 'metrics-response'; readonly id: number; readonly text?: string; readonly error?: string }

const data = workerData as HttpWorkerData
const { config } = data
const log = createLogger(`http-${data.index}`, config.logLevel)
if (parentPort === null) throw new Error('http-worker must run in a worker thread')
const control = parentPort

const registry = createThreadRegistry(`http-${data.index}`)
const metrics = createHttpMetrics(registry, data.shardPorts.length, () => clients.map((c) => c.inflight))

const clients: ShardClient[] = data.shardPorts.map((port, shard) => {
  const client = new ShardClient(shard, config.rpcInflightMax, (s) => metrics.rpcRoundTrip(shard, s))
  client.attach(port)
  return client
})
const shardCount = clients.length
const clientFor = (chat: string): ShardClient => clients[shardOf(chat, shardCount)] as ShardClient

const backend: Backend = {
  send: (chat, text, sender, cb) => clientFor(chat).send(chat, text, sender, cb),
  pull: (chat, cursor, limit, reverse, cb) => clientFor(chat).pull(chat, cursor, limit, reverse, cb),
}

// GET /metrics: the main thread merges every thread's registry (src/metrics/collect.ts).
let scrapeId = 0
const scrapes = new Map<number, (err: Error | null, text: string) => void>()
const scrape = (cb: (err: Error | null, text: string) => void): void => {
  const id = ++scrapeId
  scrapes.set(id, cb)
  control.postMessage({ type: 'metrics-request', id })
}

const adapter = createAdapter(ROUTES, { config, backend, counters: metrics, scrape }, log, metrics.request)
let listenSocket: uWS.us_listen_socket | null = null
// Present in the native build but missing from its type declarations.
const closeApp = (): void => (adapter.app as unknown as { close(): void }).close()

adapter.app.listen(config.host, data.listenPort, (socket) => {
  if (socket === false) {
    log.error('cannot listen', { host: config.host, port: data.listenPort })
    closeApp()
    setImmediate(() => control.postMessage({ type: 'listen-failed' }))
    return
  }
  listenSocket = socket
  control.postMessage({ type: 'listening', port: uWS.us_socket_local_port(socket) })
})

// A bug that escapes a handler must not take the process down with it: a thread that ends with
// open sockets makes libuv abort the whole process. Close every socket, then end this thread; the
// cluster restarts it.
process.on('uncaughtException', (err) => {
  log.error('http thread crashed; closing its sockets', errorFields(err))
  try {
    if (listenSocket !== null) uWS.us_listen_socket_close(listenSocket)
    listenSocket = null
    closeApp()
  } finally {
    setImmediate(() => process.exit(70))
  }
})

function stop(): void {
  if (listenSocket !== null) {
    uWS.us_listen_socket_close(listenSocket)
    listenSocket = null
  }
  adapter.drain()
  const deadline = Date.now() + config.shutdownTimeoutMs
  const poll = (): void => {
    const left = adapter.inflight()
    if (left === 0 || Date.now() >= deadline) {
      if (left > 0) log.warn('shutdown timeout with requests in flight', { inflight: left })
      // Drop idle keep-alive connections too: a thread that ends with open sockets makes libuv
      // abort the whole process. Let the loop turn once so the closes complete.
      closeApp()
      setImmediate(() => control.postMessage({ type: 'stopped', unanswered: left }))
      return
    }
    setTimeout(poll, 5)
  }
  poll()
}

control.on('message', (msg: HttpControl) => {
  if (answerCollect(control, registry, msg)) return
  if (msg.type === 'metrics-response') {
    const cb = scrapes.get(msg.id)
    scrapes.delete(msg.id)
    cb?.(msg.error === undefined ? null : new Error(msg.error), msg.text ?? '')
  } else if (msg.type === 'shard-port') clients[msg.shard]?.attach(msg.port)
  else if (msg.type === 'shard-down') clients[msg.shard]?.detach()
  else if (msg.type === 'stop') stop()
})
