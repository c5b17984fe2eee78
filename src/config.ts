// The one place that reads the environment and the command line.
//
// Every option has a default, an env var and a CLI flag; values are validated with errors that
// name the option, and the result is frozen and passed explicitly (to worker threads through
// `workerData`, so it must stay a plain, cloneable object). Nothing else reads `process.env`.

import { availableParallelism } from 'node:os'
import type { FsyncPolicy } from './wal/writer.js'

export type { FsyncPolicy }

export interface Config {
  readonly port: number
  readonly host: string
  readonly dataDir: string
  /** Shards; 0 (auto) until startCluster settles it against the data directory (settleCounts). */
  readonly shards: number
  /**
   * Worker threads, each serving HTTP and hosting the shards s with s mod threads == its index;
   * 0 (auto) until settled with the shards.
   */
  readonly threads: number
  readonly bodyBytesMax: number
  readonly textBytesMax: number
  readonly memberBytesMax: number
  readonly pullLimitDefault: number
  readonly pullLimitMax: number
  readonly rpcInflightMax: number
  readonly shutdownTimeoutMs: number
  readonly logLevel: LogLevel
  readonly fsync: FsyncPolicy
  readonly segmentBytes: number
  readonly walBatchBytesMax: number
  readonly walPendingBytesMax: number
  readonly retentionMs: number
  readonly retentionBytes: number
  readonly metricsPort: number
  /** Bytes of memory each worker thread that hosts shards writes at start-up for their messages (0: none; README "Memory"). */
  readonly storePrefaultBytes: number
}

export function formatFsync(p: FsyncPolicy): string {
  return p.kind === 'interval' ? `interval:${p.ms}` : p.kind
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent']

interface OptionSpec {
  readonly key: keyof Config
  readonly env: string
  readonly flag: string
  readonly help: string
  readonly parse: (raw: string, name: string) => Config[keyof Config]
}

export const DEFAULTS: Config = Object.freeze({
  port: 8080,
  host: '0.0.0.0',
  dataDir: './data',
  // 0 = auto: the data directory's own count; for a new one, one per worker thread THREADS=auto
  // would start here (autoShards). A data directory keeps its count for life (pullchat.json).
  shards: 0,
  threads: 0, // 0 = auto: one per core but one (for the log's fdatasyncs, GC and the kernel), at most SHARDS
  bodyBytesMax: 64 * 1024, // 64 KiB per request body
  textBytesMax: 16 * 1024, // 16 KiB of UTF-8 per message text
  memberBytesMax: 128, // bytes of UTF-8 per member id, sender or room name
  pullLimitDefault: 10, // messages per page when limit is absent or 0
  pullLimitMax: 1000, // larger limits are clamped to this
  rpcInflightMax: 65536, // requests awaiting a reply, per worker thread per shard hosted by another
  shutdownTimeoutMs: 10_000, // grace period for in-flight requests on SIGTERM
  logLevel: 'info',
  fsync: { kind: 'always' } as FsyncPolicy, // acknowledge a send after the fdatasync that covers it
  segmentBytes: 64 * 1024 * 1024, // 64 MiB per log segment
  walBatchBytesMax: 1024 * 1024, // 1 MiB written per group-commit round at most
  walPendingBytesMax: 64 * 1024 * 1024, // 64 MiB waiting for the disk before sends get 503
  retentionMs: 0, // 0 = keep messages forever
  retentionBytes: 0, // 0 = no limit on log bytes per shard
  metricsPort: 0, // 0 = /metrics only on the service port
  storePrefaultBytes: 0, // 0 = the store's memory is written for the first time as messages arrive
})

export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

function int(min: number, max: number) {
  return (raw: string, name: string): number => {
    const trimmed = raw.trim()
    if (!/^\d+$/.test(trimmed)) throw new ConfigError(`${name} must be an integer, got ${JSON.stringify(raw)}`)
    const n = Number(trimmed)
    if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`)
    return n
  }
}

function nonEmpty(raw: string, name: string): string {
  if (raw.trim() === '') throw new ConfigError(`${name} must not be empty`)
  return raw
}

function logLevel(raw: string, name: string): LogLevel {
  const v = raw.trim().toLowerCase() as LogLevel
  if (!LOG_LEVELS.includes(v)) throw new ConfigError(`${name} must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(raw)}`)
  return v
}

function fsyncPolicy(raw: string, name: string): FsyncPolicy {
  const v = raw.trim().toLowerCase()
  if (v === 'always') return { kind: 'always' }
  if (v === 'unsafe-none') return { kind: 'unsafe-none' }
  const m = /^interval:(\d+)$/.exec(v)
  if (m !== null && Number(m[1]) >= 1 && Number(m[1]) <= 60_000) return { kind: 'interval', ms: Number(m[1]) }
  throw new ConfigError(`${name} must be always, interval:<ms> (1..60000) or unsafe-none, got ${JSON.stringify(raw)}`)
}

const OPTIONS: readonly OptionSpec[] = [
  { key: 'port', env: 'PORT', flag: 'port', help: 'TCP port to serve on (0 picks a free one)', parse: int(0, 65535) },
  { key: 'host', env: 'HOST', flag: 'host', help: 'address to bind', parse: nonEmpty },
  { key: 'dataDir', env: 'DATA_DIR', flag: 'data-dir', help: 'data directory', parse: nonEmpty },
  { key: 'shards', env: 'SHARDS', flag: 'shards', help: "shards; fixed for a data directory (0 = auto: the directory's count, or for a new one, one per core but one, whatever THREADS is)", parse: int(0, 256) },
  { key: 'threads', env: 'THREADS', flag: 'threads', help: 'worker threads, each serving HTTP and hosting shards (0 = auto)', parse: int(0, 256) },
  { key: 'bodyBytesMax', env: 'BODY_BYTES_MAX', flag: 'body-bytes-max', help: 'largest request body in bytes', parse: int(1024, 64 * 1024 * 1024) },
  { key: 'textBytesMax', env: 'TEXT_BYTES_MAX', flag: 'text-bytes-max', help: 'longest message text in UTF-8 bytes', parse: int(1, 16 * 1024 * 1024) },
  { key: 'memberBytesMax', env: 'MEMBER_BYTES_MAX', flag: 'member-bytes-max', help: 'longest member id, sender or room name in UTF-8 bytes', parse: int(1, 4096) },
  { key: 'pullLimitDefault', env: 'PULL_LIMIT_DEFAULT', flag: 'pull-limit-default', help: 'page size when limit is absent or 0', parse: int(1, 100_000) },
  { key: 'pullLimitMax', env: 'PULL_LIMIT_MAX', flag: 'pull-limit-max', help: 'larger limits are clamped to this', parse: int(1, 100_000) },
  { key: 'rpcInflightMax', env: 'RPC_INFLIGHT_MAX', flag: 'rpc-inflight-max', help: 'requests in flight from one thread to a shard in another before 503', parse: int(1, 1 << 24) },
  { key: 'shutdownTimeoutMs', env: 'SHUTDOWN_TIMEOUT_MS', flag: 'shutdown-timeout-ms', help: 'grace period for in-flight requests on SIGTERM, ms', parse: int(0, 600_000) },
  { key: 'logLevel', env: 'LOG_LEVEL', flag: 'log-level', help: LOG_LEVELS.join('|'), parse: logLevel },
  { key: 'fsync', env: 'FSYNC', flag: 'fsync', help: 'always | interval:<ms> | unsafe-none (see README "Durability")', parse: fsyncPolicy },
  { key: 'segmentBytes', env: 'WAL_SEGMENT_BYTES', flag: 'wal-segment-bytes', help: 'log segment size before rolling', parse: int(64 * 1024, 1024 * 1024 * 1024) },
  { key: 'walBatchBytesMax', env: 'WAL_BATCH_BYTES_MAX', flag: 'wal-batch-bytes-max', help: 'bytes per group-commit write at most', parse: int(4096, 256 * 1024 * 1024) },
  { key: 'walPendingBytesMax', env: 'WAL_PENDING_BYTES_MAX', flag: 'wal-pending-bytes-max', help: 'bytes waiting for the disk before sends get 503', parse: int(4096, 4 * 1024 * 1024 * 1024) },
  { key: 'retentionMs', env: 'RETENTION_MS', flag: 'retention-ms', help: 'drop sealed segments older than this, ms (0 = never)', parse: int(0, Number.MAX_SAFE_INTEGER) },
  { key: 'metricsPort', env: 'METRICS_PORT', flag: 'metrics-port', help: 'also serve /metrics on this port (0 = only on PORT)', parse: int(0, 65535) },
  { key: 'retentionBytes', env: 'RETENTION_BYTES', flag: 'retention-bytes', help: 'drop oldest sealed segments above this many log bytes per shard (0 = no limit)', parse: int(0, Number.MAX_SAFE_INTEGER) },
  { key: 'storePrefaultBytes', env: 'STORE_PREFAULT_BYTES', flag: 'store-prefault-bytes', help: "memory each worker thread that hosts shards writes at start-up for their messages, in bytes (0 = none; see README \"Memory\")", parse: int(0, 2 ** 40) },
]

// Options of earlier releases that no longer exist: naming them is an error that says what replaced
// them, rather than a setting silently ignored.
const REMOVED: readonly { readonly env: string; readonly flag: string; readonly why: string }[] = [
  { env: 'HTTP_THREADS', flag: 'http-threads', why: 'every worker thread now serves HTTP and hosts shards: use THREADS (--threads)' },
]

export interface ParsedArgs {
  readonly config: Config
  readonly help: boolean
}

/**
 * Builds the config from defaults, then env vars, then CLI flags (`--port 8080` or
 * `--port=8080`); later sources win. Throws ConfigError naming the option on bad input.
 */
export function parseConfig(
  argv: readonly string[] = process.argv.slice(2),
  env: Readonly<Record<string, string | undefined>> = process.env,
  overrides: Partial<Config> = {},
): ParsedArgs {
  const out: Record<string, unknown> = { ...DEFAULTS }
  for (const r of REMOVED) {
    if (env[r.env] !== undefined && env[r.env] !== '') throw new ConfigError(`${r.env} is no longer an option: ${r.why}`)
  }
  for (const opt of OPTIONS) {
    const raw = env[opt.env]
    if (raw !== undefined && raw !== '') out[opt.key] = opt.parse(raw, opt.env)
  }
  let help = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '--help' || arg === '-h') {
      help = true
      continue
    }
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)} (see --help)`)
    const eq = arg.indexOf('=')
    const flag = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
    const opt = OPTIONS.find((o) => o.flag === flag)
    const removed = REMOVED.find((r) => r.flag === flag)
    if (removed !== undefined) throw new ConfigError(`--${flag} is no longer an option: ${removed.why}`)
    if (opt === undefined) throw new ConfigError(`unknown option --${flag} (see --help)`)
    let value: string
    if (eq !== -1) value = arg.slice(eq + 1)
    else {
      const next = argv[i + 1]
      if (next === undefined) throw new ConfigError(`--${flag} needs a value`)
      value = next
      i++
    }
    out[opt.key] = opt.parse(value, `--${flag}`)
  }
  Object.assign(out, overrides)
  const config = out as unknown as Config
  if (config.pullLimitDefault > config.pullLimitMax) {
    throw new ConfigError(`PULL_LIMIT_DEFAULT (${config.pullLimitDefault}) must not exceed PULL_LIMIT_MAX (${config.pullLimitMax})`)
  }
  return { config: Object.freeze(config), help }
}

/**
 * THREADS=0: one worker per core but one, at least one and at most one per shard. The core left
 * over runs the log's fdatasyncs, V8's collector threads and the kernel's network work; on the
 * 2-core reference machine one worker served more than two (README "Threads").
 */
export function autoThreads(shards: number, cores = availableParallelism()): number {
  return Math.min(shards, autoShards(cores))
}

/**
 * SHARDS=0 for a new data directory: one shard per worker that THREADS=0 starts. More shards than
 * workers only cost: each shard has its own log, so a worker hosting two runs twice the
 * group-commit rounds, each half as full (docs/performance.md, "One shard per worker").
 */
export function autoShards(cores = availableParallelism()): number {
  return Math.max(1, cores - 1)
}

/**
 * The configuration with its shard and thread counts settled: `recordedShards` is the data
 * directory's count (null for a new directory). A SHARDS that differs from it is an error.
 */
export function settleCounts(config: Config, recordedShards: number | null): Config {
  const shards = recordedShards ?? (config.shards === 0 ? autoShards() : config.shards)
  if (config.shards !== 0 && config.shards !== shards) {
    throw new ConfigError(
      `data directory ${config.dataDir} holds ${shards} shards but the server was started with SHARDS=${config.shards}; ` +
        `chats are placed by hash mod shard count, so start with --shards ${shards} or without --shards (changing it needs a migration)`,
    )
  }
  return Object.freeze({ ...config, shards, threads: config.threads === 0 ? autoThreads(shards) : config.threads })
}

export function helpText(): string {
  const lines = [
    'pullchat: a pull-mode instant-messaging backend',
    '',
    'usage: node dist/cluster.js [options]   (or npm start -- [options])',
    '       node dist/repair.js [--data-dir DIR]   (or npm run repair): cut a corrupt log at its last good record',
    '',
    'options (flag / env var, default):',
  ]
  for (const opt of OPTIONS) {
    const def = opt.key === 'fsync' ? formatFsync(DEFAULTS.fsync) : opt.key === 'threads' || opt.key === 'shards' ? 'auto' : String(DEFAULTS[opt.key])
    lines.push(`  --${opt.flag.padEnd(22)} ${opt.env.padEnd(22)} ${def.padEnd(10)} ${opt.help}`)
  }
  lines.push('  --help                   print this and exit')
  return lines.join('\n')
}
