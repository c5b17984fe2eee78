// The data directory as a whole: a lock so that one server at a time uses it, and a small
// metadata file recording the shard count (chats are placed by hash mod shard count, so the
// count may not change under existing data).
//
//   DATA_DIR/LOCK            {"pid":..,"started":..,"pidStart":..} while a server runs
//   DATA_DIR/pullchat.json   {"format":1,"shards":S}
//   DATA_DIR/shard-<i>/      one log per shard (see format.ts)

import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { syncDir } from './sync.js'

export const LOCK_FILE = 'LOCK'
export const META_FILE = 'pullchat.json'
export const META_FORMAT = 1

export class DataDirError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'DataDirError'
  }
}

export function shardDir(dataDir: string, shard: number): string {
  return join(dataDir, `shard-${shard}`)
}

/**
 * When the process `pid` started, in clock ticks since boot (Linux /proc/<pid>/stat, field 22), or
 * null where that cannot be read. A pid and its start time name one process: after the holder
 * dies, its pid can be reused by another process, which has a different start time.
 */
export function processStartTime(pid: number | 'self'): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return fields[19] ?? null
  } catch {
    return null
  }
}

function alive(pid: number, pidStart: string | null): boolean {
  if (pid === process.pid) return false // a lock left by an earlier life of this pid (containers: pid 1)
  try {
    process.kill(pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  // The pid is in use: by the lock's holder, unless it was reused after the holder died.
  if (pidStart === null) return true
  const now = processStartTime(pid)
  return now === null || now === pidStart
}

export interface DataDirLock {
  release(): void
}

/** Takes the directory's lock; refuses if a live process holds it, takes over a stale one. */
export function lockDataDir(dataDir: string, onStale: (pid: number) => void = () => {}): DataDirLock {
  mkdirSync(dataDir, { recursive: true })
  const path = join(dataDir, LOCK_FILE)
  const content = JSON.stringify({ pid: process.pid, started: new Date().toISOString(), pidStart: processStartTime('self') }) + '\n'
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx')
      writeSync(fd, content)
      fsyncSync(fd)
      closeSync(fd)
      syncDir(dataDir)
      let released = false
      return {
        release: () => {
          if (released) return
          released = true
          try {
            unlinkSync(path)
          } catch {
            // already gone
          }
        },
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    let pid = NaN
    let pidStart: string | null = null
    try {
      const held = JSON.parse(readFileSync(path, 'utf8'))
      pid = Number(held.pid)
      // Locks written before pidStart was recorded have none: then the pid alone decides.
      if (typeof held.pidStart === 'string') pidStart = held.pidStart
    } catch {
      // unreadable or half-written: treat as stale
    }
    if (Number.isInteger(pid) && pid > 0 && alive(pid, pidStart)) {
      throw new DataDirError(`data directory ${dataDir} is in use by process ${pid} (lock file ${path}); stop that server first`)
    }
    onStale(pid)
    unlinkSync(path)
  }
  throw new DataDirError(`cannot take the lock ${path}`)
}

/** The shard count a data directory was created with, or null for a new directory. */
export function readShardCount(dataDir: string): number | null {
  const path = join(dataDir, META_FILE)
  let meta: { format?: unknown; shards?: unknown }
  try {
    meta = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new DataDirError(`cannot read ${path}: ${(err as Error).message}`)
  }
  if (meta.format !== META_FORMAT) throw new DataDirError(`${path}: unsupported data format ${JSON.stringify(meta.format)}`)
  if (!Number.isInteger(meta.shards) || (meta.shards as number) < 1) throw new DataDirError(`${path}: bad shard count ${JSON.stringify(meta.shards)}`)
  return meta.shards as number
}

/** Records a new data directory's shard count, durably (readShardCount reads it back). */
export function recordShardCount(dataDir: string, shards: number): void {
  const path = join(dataDir, META_FILE)
  const tmp = `${path}.tmp`
  writeFileSync(tmp, JSON.stringify({ format: META_FORMAT, shards }) + '\n')
  const fd = openSync(tmp, 'r')
  fsyncSync(fd)
  closeSync(fd)
  renameSync(tmp, path)
  syncDir(dataDir)
}
