// The entry point: starts and supervises the threads.
//
//   main thread (this file)     starts S shard workers and H HTTP workers, wires every HTTP
//                               worker to every shard with its own MessageChannel, restarts
//                               threads that die, and shuts everything down on SIGTERM/SIGINT.
//   HTTP workers (src/http/)    uWS Apps on one port; route chat -> shardOf(chat, S).
//   shard workers (src/store/)  own their chats' messages.
//
// The main thread handles no requests. Shutdown order: HTTP threads stop listening and answer
// what is in flight, then shards flush and stop, then the process exits 0.

import { mkdirSync } from 'node:fs'
import net from 'node:net'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads'
import { ConfigError, formatFsync, helpText, parseConfig, type Config } from './config.js'
import { httpWorkerUrl, type HttpControl, type HttpWorkerData } from './http/index.js'
import { createLogger, errorFields, type Logger } from './log.js'
import { METRICS_CONTENT_TYPE, MetricsCollector, PREFIX, createThreadRegistry } from './metrics/index.js'
import { Counter } from 'prom-client'
import http from 'node:http'
import { EXIT_CONFIG, EXIT_FAILURE, shardWorkerUrl, type ShardControl, type ShardWorkerData } from './store/index.js'
import { checkShardCount, lockDataDir } from './wal/index.js'

export interface ClusterHandle {
  /** The port every HTTP thread listens on (the bound one when config.port was 0). */
  readonly port: number
  readonly config: Config
  /** The live worker of shard i, for tests and tools. */
  shardWorker(i: number): Worker | null
  /** Resolves when shard i has been restarted `n` times in total. */
  shardRestarted(i: number, n: number): Promise<void>
  /** Graceful stop: stop listening, answer in-flight requests, flush shards, end threads. */
  stop(): Promise<void>
  /** Resolves with an exit code when a thread hits an environmental stop (failed fsync). */
  readonly fatal: Promise<FatalStop>
}

export interface FatalStop {
  readonly exitCode: number
  readonly message: string
}

/** A start-up failure with the exit code the process should end with. */
export class StartupError extends Error {
  readonly exitCode: number
  constructor(message: string, exitCode: number) {
    super(message)
    this.name = 'StartupError'
    this.exitCode = exitCode
  }
}

const RESTART_DELAY_MS_MIN = 50
const RESTART_DELAY_MS_MAX = 5_000
const STABLE_AFTER_MS = 10_000 // a thread that lived this long resets its restart backoff

function once<T>(worker: Worker, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: { type: string; exitCode?: number; message?: string }): void => {
      if (msg?.type === 'fatal') {
        cleanup()
        reject(new StartupError(msg.message ?? 'fatal error', msg.exitCode ?? EXIT_FAILURE))
        return
      }
      if (msg?.type !== type) return
      cleanup()
      resolve(msg as T)
    }
    const onExit = (code: number): void => {
      cleanup()
      reject(new Error(`worker exited with code ${code} before '${type}'`))
    }
    const cleanup = (): void => {
      worker.off('message', onMessage)
      worker.off('exit', onExit)
    }
    worker.on('message', onMessage)
    worker.on('exit', onExit)
  })
}

interface Slot {
  worker: Worker | null
  restarts: number
  consecutive: number
  startedAt: number
  waiters: { n: number; resolve: () => void }[]
}

// uWS binds with SO_REUSEPORT so that HTTP threads can share a port; the price is that a second
// server on the same port would bind too, and silently split traffic with the first. So the main
// thread first binds the port without SO_REUSEPORT: that fails (EADDRINUSE) if anyone is on it.
// It also picks the port when asked for 0 (Linux will not share a port it picked for port 0).
function probePort(host: string, port: number): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer()
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE' ? new Error(`${host}:${port} is already in use by another process`) : err)
    })
    server.listen({ port, host, exclusive: true }, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolvePort(port))
    })
  })
}

export async function startCluster(config: Config, log: Logger = createLogger('main', config.logLevel)): Promise<ClusterHandle> {
  mkdirSync(config.dataDir, { recursive: true })
  let lock: ReturnType<typeof lockDataDir>
  try {
    lock = lockDataDir(config.dataDir, (pid) => log.warn('took over a stale lock', { dataDir: resolve(config.dataDir), pid }))
    checkShardCount(config.dataDir, config.shards)
  } catch (err) {
    throw new StartupError((err as Error).message, EXIT_FAILURE)
  }
  if (config.fsync.kind !== 'always') {
    log.warn('sends are acknowledged before they are durable', { fsync: formatFsync(config.fsync) })
  }
  const registry = createThreadRegistry('main')
  const shardRestarts = new Counter({ name: `${PREFIX}shard_restarts_total`, help: 'Shard threads restarted after dying, by shard', labelNames: ['shard'] as const, registers: [registry] })
  const httpRestarts = new Counter({ name: `${PREFIX}http_thread_restarts_total`, help: 'HTTP threads restarted after dying', registers: [registry] })
  for (let i = 0; i < config.shards; i++) shardRestarts.inc({ shard: String(i) }, 0)
  httpRestarts.inc(0)
  const collector = new MetricsCollector(registry)
  const scrape = (): Promise<string> => collector.collect([...https, ...shards].flatMap((s) => (s.worker === null ? [] : [s.worker])))
  let stopping = false
  let onFatal: (f: FatalStop) => void = () => {}
  const fatal = new Promise<FatalStop>((r) => (onFatal = r))
  let boundPort: number
  try {
    boundPort = await probePort(config.host, config.port)
  } catch (err) {
    lock.release()
    throw new StartupError((err as Error).message, EXIT_FAILURE)
  }
  const shards: Slot[] = Array.from({ length: config.shards }, () => ({ worker: null, restarts: 0, consecutive: 0, startedAt: 0, waiters: [] }))
  const https: Slot[] = Array.from({ length: config.httpThreads }, () => ({ worker: null, restarts: 0, consecutive: 0, startedAt: 0, waiters: [] }))

  const backoff = (slot: Slot): number => {
    if (Date.now() - slot.startedAt > STABLE_AFTER_MS) slot.consecutive = 0
    const delay = Math.min(RESTART_DELAY_MS_MAX, RESTART_DELAY_MS_MIN * 2 ** slot.consecutive)
    slot.consecutive++
    return delay
  }

  const noteRestart = (slot: Slot): void => {
    slot.restarts++
    slot.waiters = slot.waiters.filter((w) => {
      if (slot.restarts < w.n) return true
      w.resolve()
      return false
    })
  }

  // Connects one HTTP worker to one shard worker with a fresh channel.
  const channel = (shardWorker: Worker): MessagePort => {
    const { port1, port2 } = new MessageChannel()
    const msg: ShardControl = { type: 'port', port: port2 }
    shardWorker.postMessage(msg, [port2])
    return port1
  }

  const startShard = async (i: number): Promise<void> => {
    const slot = shards[i] as Slot
    const data: ShardWorkerData = { shard: i, config }
    const worker = new Worker(shardWorkerUrl, { workerData: data, name: `shard-${i}` })
    worker.on('error', (err) => {
      if (!(err as { fatal?: boolean }).fatal) log.error('shard thread failed', { shard: i, ...errorFields(err) })
    })
    worker.on('message', (msg: { type: string; exitCode?: number; message?: string }) => {
      if (msg.type !== 'fatal' || slot.worker !== worker) return
      // An environmental stop after start-up (failed fdatasync): no restart, the process exits.
      // End the shard now, so that its callers get 503 at once and nothing more is acknowledged.
      stopping = true
      slot.worker = null
      void worker.terminate()
      onFatal({ exitCode: msg.exitCode ?? EXIT_FAILURE, message: msg.message ?? 'fatal error' })
    })
    const ready = once<{ records: number; ms: number }>(worker, 'ready')
    worker.on('exit', (code) => {
      if (slot.worker !== worker) return
      slot.worker = null
      if (stopping) return
      log.error('shard thread exited; restarting', { shard: i, code })
      for (const h of https) {
        const down: HttpControl = { type: 'shard-down', shard: i }
        h.worker?.postMessage(down)
      }
      const delay = backoff(slot)
      setTimeout(() => {
        if (stopping) return
        startShard(i)
          .then(() => {
            // Wire the new shard into every live HTTP thread.
            for (const h of https) {
              if (h.worker === null || slot.worker === null) continue
              const msg: HttpControl = { type: 'shard-port', shard: i, port: channel(slot.worker) }
              h.worker.postMessage(msg, [msg.port])
            }
            noteRestart(slot)
            shardRestarts.inc({ shard: String(i) })
            log.info('shard thread restarted', { shard: i, restarts: slot.restarts })
          })
          .catch((err) => log.error('shard restart failed', { shard: i, ...errorFields(err) }))
      }, delay).unref()
    })
    const recovered = await ready
    slot.worker = worker
    slot.startedAt = Date.now()
    recoveredRecords += recovered.records
    recoveryMs = Math.max(recoveryMs, recovered.ms)
  }
  let recoveredRecords = 0
  let recoveryMs = 0

  const startHttp = async (i: number): Promise<void> => {
    const slot = https[i] as Slot
    const shardPorts = shards.map((s) => {
      if (s.worker === null) {
        // The shard is restarting: hand over a closed channel; it is wired in when it is back.
        const { port1, port2 } = new MessageChannel()
        port2.close()
        return port1
      }
      return channel(s.worker)
    })
    const data: HttpWorkerData = { index: i, config, listenPort: boundPort, shardPorts }
    const worker = new Worker(httpWorkerUrl, { workerData: data, transferList: shardPorts, name: `http-${i}` })
    worker.on('error', (err) => log.error('http thread failed', { httpThread: i, ...errorFields(err) }))
    const listening = new Promise<{ port: number }>((resolve, reject) => {
      worker.on('message', (msg: { type: string; port?: number; id?: number }) => {
        if (msg.type === 'metrics-request') {
          scrape()
            .then((text) => worker.postMessage({ type: 'metrics-response', id: msg.id, text }))
            .catch((err: Error) => worker.postMessage({ type: 'metrics-response', id: msg.id, error: err.message }))
        } else if (msg.type === 'listening') resolve(msg as { port: number })
        else if (msg.type === 'listen-failed') reject(new Error(`cannot listen on ${config.host}:${boundPort}`))
      })
      worker.once('exit', (code) => reject(new Error(`http thread exited with code ${code} before listening`)))
    })
    worker.on('exit', (code) => {
      if (slot.worker !== worker) return
      slot.worker = null
      if (stopping) return
      log.error('http thread exited; restarting', { httpThread: i, code })
      setTimeout(() => {
        if (stopping) return
        startHttp(i)
          .then(() => {
            noteRestart(slot)
            httpRestarts.inc()
            log.info('http thread restarted', { httpThread: i, restarts: slot.restarts })
          })
          .catch((err) => log.error('http restart failed', { httpThread: i, ...errorFields(err) }))
      }, backoff(slot)).unref()
    })
    try {
      const { port } = await listening
      boundPort = port
    } catch (err) {
      await worker.terminate()
      throw err
    }
    slot.worker = worker
    slot.startedAt = Date.now()
  }

  const terminateAll = async (): Promise<void> => {
    stopping = true
    await Promise.all([...https, ...shards].map((s) => s.worker?.terminate()))
    lock.release()
  }

  try {
    await Promise.all(shards.map((_, i) => startShard(i)))
    for (let i = 0; i < https.length; i++) await startHttp(i)
  } catch (err) {
    await terminateAll()
    throw err instanceof StartupError ? err : new StartupError((err as Error).message, EXIT_FAILURE)
  }
  log.info('recovery done', { records: recoveredRecords, ms: Math.round(recoveryMs * 10) / 10 })

  // Optional separate port for /metrics, served by the main thread with node:http.
  let metricsServer: http.Server | null = null
  if (config.metricsPort !== 0) {
    metricsServer = http.createServer((req, res) => {
      if (req.url !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"statusCode":404,"code":"IM_ERR_NOT_FOUND","error":"Not Found","message":"only /metrics is served here"}')
        return
      }
      scrape()
        .then((text) => res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(text))
        .catch((err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(err.message))
    })
    await new Promise<void>((resolveListen, reject) => {
      metricsServer?.once('error', reject)
      metricsServer?.listen(config.metricsPort, config.host, () => resolveListen())
    }).catch(async (err: Error) => {
      await terminateAll()
      throw new StartupError(`cannot serve metrics on ${config.host}:${config.metricsPort}: ${err.message}`, EXIT_FAILURE)
    })
  }

  let stopped: Promise<void> | null = null
  const stop = (): Promise<void> => (stopped ??= stopAll())
  const stopAll = async (): Promise<void> => {
    stopping = true
    metricsServer?.close()
    const stopMsg = { type: 'stop' } as const
    const stopSlots = (slots: Slot[]): Promise<unknown> =>
      Promise.all(
        slots.map(async (s) => {
          const w = s.worker
          if (w === null) return
          const stopped = once(w, 'stopped')
          w.postMessage(stopMsg)
          await stopped.catch(() => {})
          await w.terminate()
        }),
      )
    // HTTP threads first (they answer what is in flight), then the shards (they sync their logs).
    await stopSlots(https)
    await stopSlots(shards)
    lock.release()
  }

  return {
    port: boundPort,
    config,
    shardWorker: (i) => shards[i]?.worker ?? null,
    shardRestarted: (i, n) =>
      new Promise<void>((resolve) => {
        const slot = shards[i] as Slot
        if (slot.restarts >= n) resolve()
        else slot.waiters.push({ n, resolve })
      }),
    stop,
    fatal,
  }
}

async function main(): Promise<void> {
  let config: Config
  try {
    const parsed = parseConfig()
    if (parsed.help) {
      process.stdout.write(helpText() + '\n')
      return
    }
    config = parsed.config
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`pullchat: ${err.message}\n`)
      process.exitCode = EXIT_CONFIG
      return
    }
    throw err
  }
  const log = createLogger('main', config.logLevel)
  let cluster: ClusterHandle
  try {
    cluster = await startCluster(config, log)
  } catch (err) {
    if (!(err instanceof StartupError)) throw err
    log.error('start-up failed', { err: err.message, exitCode: err.exitCode })
    process.exit(err.exitCode)
  }
  log.info('listening', {
    host: config.host,
    port: cluster.port,
    shards: config.shards,
    httpThreads: config.httpThreads,
    dataDir: resolve(config.dataDir),
    pid: process.pid,
  })
  let signalled = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      // Exiting now would end HTTP threads with open sockets, which aborts the process; the
      // shutdown in progress is bounded by SHUTDOWN_TIMEOUT_MS anyway.
      log.warn('already shutting down; SIGKILL forces it (the log makes that safe)', { signal })
      return
    }
    signalled = true
    log.info('shutting down', { signal })
    cluster
      .stop()
      .then(() => {
        log.info('stopped')
        process.exit(0)
      })
      .catch((err) => {
        log.error('shutdown failed', errorFields(err))
        process.exit(1)
      })
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  void cluster.fatal.then(({ exitCode, message }) => {
    log.error('fatal: exiting', { exitCode, err: message })
    // Close HTTP threads' sockets quickly (a thread ending with open sockets aborts the process),
    // but do not wait for anything that could be acknowledged: give up after 2 s.
    const timeout = setTimeout(() => process.exit(exitCode), 2000)
    cluster.stop().finally(() => {
      clearTimeout(timeout)
      process.exit(exitCode)
    })
  })
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err) => {
    process.stderr.write(JSON.stringify({ level: 'error', time: new Date().toISOString(), thread: 'main', msg: 'start-up failed', ...errorFields(err) }) + '\n')
    process.exit(1)
  })
}
