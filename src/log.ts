// Structured logs: one JSON object per line on stdout (stderr for warn and error), with a level, a
// time and the thread that wrote it. Quiet on the request path by design: log events, not requests.

import type { LogLevel } from './config.js'

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 }

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
}

export function createLogger(thread: string, level: LogLevel): Logger {
  const min = RANK[level]
  const write = (lvl: Exclude<LogLevel, 'silent'>, msg: string, fields?: Record<string, unknown>): void => {
    if (RANK[lvl] < min) return
    // Fields never override the level, time, thread or message.
    const entry: Record<string, unknown> = { level: lvl, time: new Date().toISOString(), thread, msg }
    if (fields !== undefined) for (const k of Object.keys(fields)) if (!(k in entry)) entry[k] = fields[k]
    const line = JSON.stringify(entry) + '\n'
    if (RANK[lvl] >= RANK.warn) process.stderr.write(line)
    else process.stdout.write(line)
  }
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  }
}

/** Error details fit for a log line. */
export function errorFields(err: unknown): Record<string, unknown> {
  if (err instanceof Error) return { err: err.message, code: (err as { code?: unknown }).code, stack: err.stack }
  return { err: String(err) }
}
