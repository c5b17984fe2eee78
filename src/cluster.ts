// The entry point: starts and supervises the threads.
//
//   main thread (this file)   starts T worker threads, wires every worker to every shard that
//                             another worker hosts (a MessageChannel per caller and shard),
//                             restarts workers that die, and shuts everything down on
//                             SIGTERM/SIGINT. It handles no requests.
//   workers (src/worker.ts)   each a uWS front end on the shared port (src/http/) and the host of
//                             shards s with s mod T == its index (src/store/, src/wal/); a chat
//                             goes to shardOf(chat, S), called in-process or over src/rpc/.
//
// Start-up: every worker recovers its shards (in parallel), is wired to the others as it becomes
// ready, and only then listens. Shutdown: every front end stops listening and answers what is in
// flight (its calls to other workers' shards included), then every shard syncs its log and
// stops, then the process exits 0. A worker that dies takes its shards with it; callers get 503
// for them until the restarted worker has recovered them.

import { mkdirSync } from 'node:fs'
import net from 'node:net'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { MessageChannel, Worker } from 'node:worker_threads'
import { ConfigError, formatFsync, helpText, parseConfig, settleCounts, type Config } from './config.js'
import { createLogger, errorFields, type Logger } from './log.js'
import { METRICS_CONTENT_TYPE, MetricsCollector, PREFIX, createThreadRegistry } from './metrics/index.js'
import { Counter } from 'prom-client'
import http from 'node:http'
import { EXIT_CONFIG, EXIT_FAILURE } from './store/index.js'
import { lockDataDir, readShardCount, recordShardCount } from './wal/index.js'
import type { WorkerData } from './worker.js'

export interface ClusterHandle {
  /** The port every worker listens on (the bound one when config.port was 0). */
  readonly port: number
  readonly config: Config
  /** The live worker thread that hosts shard i, for tests and tools. */
  shardWorker(i: number): Worker | null
  /** Resolves when shard i (its worker) has been restarted `n` times in total. */
  shardRestarted(i: number, n: number): Promise<void>
  /**
   * Graceful stop: stop listening, answer in-flight requests (for up to `drainMs`, by default
   * SHUTDOWN_TIMEOUT_MS), sync and close every shard's log, end the threads.
   */
  stop(drainMs?: number): Promise<void>
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
const FATAL_DRAIN_MS = 1000 // after a fatal log failure, how long requests in flight may take

/** The module every worker thread runs. */
const workerUrl = new URL('./worker.js', import.meta.url)

/**
 * The worker's next message of `type`; rejects when it reports a fatal stop, when it sends
 * `failure.type` (rejecting with `failure.message`), or when it exits first.
 */
function once<T>(worker: Worker, type: string, failure?: { readonly type: string; readonly message: string }): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: { type: string; exitCode?: number; message?: string }): void => {
      if (msg?.type === 'fatal') {
        cleanup()
        reject(new StartupError(msg.message ?? 'fatal error', msg.exitCode ?? EXIT_FAILURE))
        return
      }
      if (failure !== undefined && msg?.type === failure.type) {
        cleanup()
        reject(new Error(failure.message))
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
  readonly shards: readonly number[]
  restarts: number
  consecutive: number
  startedAt: number
  waiters: { n: number; resolve: () => void }[]
}

// uWS binds with SO_REUSEPORT so that worker threads can share a port; the price is that a second
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

/** Which worker hosts shard `shard` when there are `threads` workers. */
export const hostOf = (shard: number, threads: number): number => shard % threads

export async function startCluster(config: Config, log: Logger = createLogger('main', config.logLevel)): Promise<ClusterHandle> {
  mkdirSync(config.dataDir, { recursive: true })
  let lock: ReturnType<typeof lockDataDir>
  try {
    lock = lockDataDir(config.dataDir, (pid) => log.warn('took over a stale lock', { dataDir: resolve(config.dataDir), pid }))
  } catch (err) {
    throw new StartupError((err as Error).message, EXIT_FAILURE)
  }
  try {
    // SHARDS and THREADS at 0 (auto) settle here: the data directory decides the shard count.
    const recorded = readShardCount(config.dataDir)
    config = settleCounts(config, recorded)
    if (recorded === null) recordShardCount(config.dataDir, config.shards)
  } catch (err) {
    lock.release()
    throw new StartupError((err as Error).message, EXIT_FAILURE)
  }
  if (config.fsync.kind !== 'always') {
    log.warn('sends are acknowledged before they are durable', { fsync: formatFsync(config.fsync) })
  }
  const registry = createThreadRegistry('main')
  const shardRestarts = new Counter({ name: `${PREFIX}shard_restarts_total`, help: 'Shards restarted after their worker thread died, by shard', labelNames: ['shard'] as const, registers: [registry] })
  const workerRestarts = new Counter({ name: `${PREFIX}worker_restarts_total`, help: 'Worker threads restarted after dying, by worker', labelNames: ['worker'] as const, registers: [registry] })
  for (let i = 0; i < config.shards; i++) shardRestarts.inc({ shard: String(i) }, 0)
  for (let i = 0; i < config.threads; i++) workerRestarts.inc({ worker: String(i) }, 0)
  const collector = new MetricsCollector(registry)
  const scrape = (): Promise<string> => collector.collect(slots.flatMap((s) => (s.worker === null ? [] : [s.worker])))
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
  const slots: Slot[] = Array.from({ length: config.threads }, (_, t) => ({
    worker: null,
    shards: Array.from({ length: config.shards }, (_, s) => s).filter((s) => hostOf(s, config.threads) === t),
    restarts: 0,
    consecutive: 0,
    startedAt: 0,
    waiters: [],
  }))

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

  // One channel from a worker that calls `shard` to the worker that hosts it.
  const connect = (caller: Worker, host: Worker, shard: number): void => {
    const { port1, port2 } = new MessageChannel()
    host.postMessage({ type: 'serve', shard, port: port2 }, [port2])
    caller.postMessage({ type: 'shard-port', shard, port: port1 }, [port1])
  }

  // Wires a worker that just became ready to every live worker, both ways. Runs in the same task
  // that marked it live, so that of two workers coming up together exactly one wires the pair.
  const wire = (t: number): void => {
    const self = slots[t] as Slot
    const w = self.worker as Worker
    slots.forEach((other, u) => {
      if (u === t || other.worker === null) return
      for (const s of other.shards) connect(w, other.worker, s)
      for (const s of self.shards) connect(other.worker, w, s)
    })
  }

  const startWorker = async (t: number): Promise<void> => {
    const slot = slots[t] as Slot
    const data: WorkerData = { index: t, config, shards: slot.shards }
    const worker = new Worker(workerUrl, { workerData: data, name: `worker-${t}` })
    worker.on('error', (err) => {
      if (!(err as { fatal?: boolean }).fatal) log.error('worker thread failed', { worker: t, ...errorFields(err) })
    })
    worker.on('message', (msg: { type: string; id?: number; exitCode?: number; message?: string }) => {
      if (msg.type === 'metrics-request') {
        scrape()
          .then((text) => worker.postMessage({ type: 'metrics-response', id: msg.id, text }))
          .catch((err: Error) => worker.postMessage({ type: 'metrics-response', id: msg.id, error: err.message }))
        return
      }
      if (msg.type !== 'fatal' || slot.worker !== worker) return
      // An environmental stop after start-up (failed fdatasync): no restart, the process exits.
      // The failed shard already refuses sends (its log answers every waiting append); the
      // caller of startCluster stops the rest. Never Worker.terminate() a worker with open
      // sockets: libuv would abort the process.
      stopping = true
      onFatal({ exitCode: msg.exitCode ?? EXIT_FAILURE, message: msg.message ?? 'fatal error' })
    })
    const ready = once<{ records: number; ms: number }>(worker, 'ready')
    worker.on('exit', (code) => {
      if (slot.worker !== worker) return
      slot.worker = null
      if (stopping) return
      log.error('worker thread exited; restarting', { worker: t, shards: slot.shards, code })
      for (const other of slots) {
        for (const s of slot.shards) other.worker?.postMessage({ type: 'shard-down', shard: s })
      }
      setTimeout(() => {
        if (stopping) return
        startWorker(t)
          .then(() => listen(t))
          .then(() => {
            noteRestart(slot)
            workerRestarts.inc({ worker: String(t) })
            for (const s of slot.shards) shardRestarts.inc({ shard: String(s) })
            log.info('worker thread restarted', { worker: t, shards: slot.shards, restarts: slot.restarts })
          })
          .catch((err) => log.error('worker restart failed', { worker: t, ...errorFields(err) }))
      }, backoff(slot)).unref()
    })
    const recovered = await ready
    slot.worker = worker
    slot.startedAt = Date.now()
    wire(t)
    recoveredRecords += recovered.records
    recoveryMs = Math.max(recoveryMs, recovered.ms)
  }
  let recoveredRecords = 0
  let recoveryMs = 0

  const listen = async (t: number): Promise<void> => {
    const worker = (slots[t] as Slot).worker
    if (worker === null) throw new Error(`worker ${t} exited before listening`)
    const listening = once<{ port: number }>(worker, 'listening', { type: 'listen-failed', message: `cannot listen on ${config.host}:${boundPort}` })
    worker.postMessage({ type: 'listen', port: boundPort })
    boundPort = (await listening).port
  }

  const terminateAll = async (): Promise<void> => {
    stopping = true
    await Promise.all(slots.map((s) => s.worker?.terminate()))
    lock.release()
  }

  try {
    await Promise.all(slots.map((_, t) => startWorker(t)))
    for (let t = 0; t < slots.length; t++) await listen(t)
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
  const stop = (drainMs = config.shutdownTimeoutMs): Promise<void> => (stopped ??= stopAll(drainMs))
  const stopAll = async (drainMs: number): Promise<void> => {
    stopping = true
    metricsServer?.close()
    const phase = (msg: { type: 'stop-http'; timeoutMs: number } | { type: 'stop' }, reply: string): Promise<unknown> =>
      Promise.all(
        slots.map(async (s) => {
          const w = s.worker
          if (w === null) return
          const replied = once(w, reply)
          w.postMessage(msg)
          await replied.catch(() => {})
        }),
      )
    // Front ends first (they answer what is in flight, their calls to every shard included), then
    // the shards (they sync their logs).
    await phase({ type: 'stop-http', timeoutMs: drainMs }, 'http-stopped')
    await phase({ type: 'stop' }, 'stopped')
    await Promise.all(slots.map((s) => s.worker?.terminate()))
    lock.release()
  }

  return {
    port: boundPort,
    config,
    shardWorker: (i) => slots[hostOf(i, config.threads)]?.worker ?? null,
    shardRestarted: (i, n) =>
      new Promise<void>((resolve) => {
        const slot = slots[hostOf(i, config.threads)] as Slot
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
    shards: cluster.config.shards,
    threads: cluster.config.threads,
    dataDir: resolve(config.dataDir),
    pid: process.pid,
  })
  let signalled = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      // Exiting now would end workers with open sockets, which aborts the process; the
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
    // Close every front end's sockets first (a thread ending with open sockets aborts the
    // process), giving requests in flight a second to be answered; the failed log already
    // answers every send that was waiting for it. Give up after 5 s.
    const timeout = setTimeout(() => process.exit(exitCode), 5000)
    cluster.stop(FATAL_DRAIN_MS).finally(() => {
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
