// @ts-check
// Two or more servers side by side, under the same loads, alternated round after round: for
// choosing settings (thread counts) and for before/after comparisons of two builds, on a machine
// whose throughput drifts by more than the differences in question within a minute.
//
// Every server starts at once, on its own copy of one preloaded store (the hot chat's 1k messages
// plus COMPARE_MESSAGES in COMPARE_CHATS chats), and stays up; each round runs every load against
// every server, the servers' order rotated from round to round (the second run of a pair tends to
// be the faster one here: docs/performance.md). Reported: each server's median req/s and p99 per
// load, and the median over rounds of its ratio to the first server.
//
//   npm run build && node bench/compare.mjs
//
// COMPARE: the servers, separated by ';', each a space-separated list of settings: environment
//   variables for the server (THREADS=2, SHARDS=1, FSYNC=...), and root=<dir> to run another
//   checkout's build (`git worktree add /tmp/old <commit> && cd /tmp/old && npm ci && npm run build`).
//   node=<flags> starts that server's node with these flags (comma-separated; `node=` for none)
//   instead of SERVER_NODE_FLAGS, those `npm start` uses (bench/lib.mjs).
//   Each build preloads its own store (with its own bench/lib.mjs), in the log format it reads.
//   The preloaded store has this build's default shard count unless SHARDS says otherwise: give a
//   build from before SHARDS=auto (a180e27 and earlier, default 2) SHARDS=2.
//   Default 'THREADS=1;THREADS=2'.
// COMPARE_FRESH=1: instead, every run starts its server anew (on an empty data directory for the
//   sends, on a copy of the store for the others), loads it for COMPARE_WARMUP seconds (2), then
//   measures and stops it: each measurement then starts from the same state, not from whatever
//   the rounds before left (a store grown by earlier sends, a heap after earlier loads).
// COMPARE_LOADS (send-1,send-10k,pull-hot,pull-many,mixed; also pull-reverse), COMPARE_ROUNDS (3), COMPARE_SECONDS (5),
// COMPARE_MESSAGES (200000), COMPARE_CHATS (20000), BENCH_CONNECTIONS (64), BENCH_OUT
// (bench/results/compare), COMPARE_DEBUG=1 (print each server's port and pid). wrk is required:
// apt-get install wrk.
//
// Control it before trusting a difference: the same build twice (COMPARE='THREADS=1 A=1;THREADS=1
// B=1') should come out within a few per cent. Before the reply buffers were reused, it did not:
// one of two identical servers could spend its run in back-to-back mark-compacts
// (docs/performance.md, "Garbage").

import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { runAsQuietHarness, DEFAULT_SHARDS, HOT_CHAT, SERVER_NODE_FLAGS, cpuSeconds, flushPendingWrites, requireWrk, root, runWrk, spreadChats, startProcess, stopProcess, writeBenchStore, wrkPull, wrkScript, wrkSend } from './lib.mjs'

runAsQuietHarness()

const env = process.env
const specs = (env.COMPARE ?? 'THREADS=1;THREADS=2').split(';').map((s) => s.trim()).filter((s) => s !== '')
const loadNames = (env.COMPARE_LOADS ?? 'send-1,send-10k,pull-hot,pull-many,mixed').split(',')
const rounds = Number(env.COMPARE_ROUNDS ?? 3)
const seconds = Number(env.COMPARE_SECONDS ?? 5)
const messages = Number(env.COMPARE_MESSAGES ?? 200_000)
const chats = Number(env.COMPARE_CHATS ?? 20_000)
const connections = Number(env.BENCH_CONNECTIONS ?? 64)
const out = resolve(root, env.BENCH_OUT ?? join('bench', 'results', 'compare'))
const fresh = env.COMPARE_FRESH === '1'
const warmup = Number(env.COMPARE_WARMUP ?? 2)

requireWrk('bench/compare.mjs')
if (specs.length < 1 || !(rounds >= 1 && seconds >= 1)) throw new Error('COMPARE needs a server; COMPARE_ROUNDS and COMPARE_SECONDS >= 1')

/** @param {string} spec */
function parseSpec(spec) {
  /** @type {Record<string, string>} */
  const settings = {}
  let dir = root
  /** @type {string[] | null} */
  let nodeFlags = null
  for (const kv of spec.split(/\s+/)) {
    const eq = kv.indexOf('=')
    if (eq < 1) throw new Error(`COMPARE: ${JSON.stringify(kv)} is not KEY=VALUE`)
    const k = kv.slice(0, eq)
    const v = kv.slice(eq + 1)
    if (k === 'root') dir = resolve(v)
    else if (k === 'node') nodeFlags = v === '' ? [] : v.split(',')
    else settings[k] = v
  }
  return { name: spec, dir, settings, nodeFlags: nodeFlags ?? SERVER_NODE_FLAGS, shards: Number(settings.SHARDS ?? DEFAULT_SHARDS) }
}
const servers = specs.map(parseSpec)

/** @type {Record<string, { what: string, requests: () => string[] }>} */
const LOADS = {
  'send-1': { what: 'durable send, one chat', requests: () => [wrkSend('alice:bob', 'alice')] },
  'send-10k': { what: 'durable send across 10k chats', requests: () => Array.from({ length: 10_000 }, (_, i) => wrkSend(`s${i}:t${i}`, `s${i}`)) },
  'pull-hot': { what: 'pull limit 10, hot chat', requests: () => [wrkPull(`chat=${HOT_CHAT}&limit=10`)] },
  'pull-reverse': { what: 'pull reverse limit 10, hot chat', requests: () => [wrkPull(`chat=${HOT_CHAT}&limit=10&reverse=true`)] },
  'pull-many': { what: `pull limit 10 over ${chats} chats`, requests: () => spreadChats(chats).map((c) => wrkPull(`chat=${c}&limit=10`)) },
  mixed: { what: '90% pull / 10% send, hot chat', requests: () => Array.from({ length: 10 }, (_, i) => (i === 0 ? wrkSend(HOT_CHAT, 'mixer') : wrkPull(`chat=${HOT_CHAT}&limit=10`))) },
}
for (const l of loadNames) if (LOADS[l] === undefined) throw new Error(`COMPARE_LOADS: unknown load ${l} (${Object.keys(LOADS).join(', ')})`)

const median = (/** @type {number[]} */ xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2
}

const dir = mkdtempSync(join(env.BENCH_DIR ?? tmpdir(), 'pullchat-compare-'))
/** @type {import('node:child_process').ChildProcess[]} */
const procs = []
try {
  // One store per build and shard count, copied for each server that uses it. Each build writes
  // its own (its bench/lib.mjs, its dist): an earlier build cannot read a later log format.
  /** @type {Map<string, string>} */
  const stores = new Map()
  const storeKey = (/** @type {{ dir: string, shards: number }} */ s) => `${s.dir}\n${s.shards}`
  const readsStore = (/** @type {string} */ l) => !l.startsWith('send')
  for (const s of servers) {
    if (stores.has(storeKey(s)) || (fresh && !loadNames.some(readsStore))) continue
    const d = join(dir, `store-${stores.size}`)
    mkdirSync(d)
    console.log(`preloading ${messages} messages in ${chats} chats (+ the hot chat) for ${s.shards} shard(s)${s.dir === root ? '' : ` with the build in ${s.dir}`}`)
    /** @type {typeof writeBenchStore} */
    const write = s.dir === root ? writeBenchStore : (await import(pathToFileURL(join(s.dir, 'bench', 'lib.mjs')).href)).writeBenchStore
    await write(d, s.shards, { messages, chats })
    stores.set(storeKey(s), d)
  }
  let started = 0
  /** Starts a server of `s` on a copy of its store, or on an empty data directory. */
  const start = async (/** @type {ReturnType<typeof parseSpec>} */ s, /** @type {boolean} */ withStore) => {
    const dataDir = join(dir, `server-${started++}`)
    if (withStore) cpSync(/** @type {string} */ (stores.get(storeKey(s))), dataDir, { recursive: true })
    else mkdirSync(dataDir)
    flushPendingWrites()
    const p = await startProcess([...s.nodeFlags, join(s.dir, 'dist', 'cluster.js')], { PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info', ...s.settings })
    procs.push(p.proc)
    if (env.COMPARE_DEBUG) console.log(`server ${started - 1}: ${s.name} on port ${p.port}, pid ${p.proc.pid}`)
    return { ...s, port: p.port, pid: p.proc.pid, proc: p.proc, dataDir }
  }
  const running = []
  if (!fresh) for (const s of servers) running.push(await start(s, true))
  /** @type {Record<string, string>} */
  const scripts = {}
  for (const l of loadNames) {
    scripts[l] = join(dir, `${l}.lua`)
    writeFileSync(scripts[l], wrkScript(LOADS[l]?.requests() ?? [], true))
  }
  /** @type {{ round: number, load: string, server: string, reqPerSec: number, p99: number, serverCores: number }[]} */
  const runs = []
  for (let r = 0; r < rounds; r++) {
    for (const l of loadNames) {
      for (let k = 0; k < servers.length; k++) {
        const s = fresh ? await start(/** @type {ReturnType<typeof parseSpec>} */ (servers[(r + k) % servers.length]), readsStore(l)) : running[(r + k) % running.length]
        if (s === undefined) continue
        if (fresh) runWrk(s.port, scripts[l] ?? '', { connections, seconds: warmup })
        const c0 = cpuSeconds(s.pid)
        const w = runWrk(s.port, scripts[l] ?? '', { connections, seconds })
        const serverCores = +((cpuSeconds(s.pid) - c0) / seconds).toFixed(2)
        if (w.summary === null || !Number.isFinite(w.reqPerSec)) throw new Error(`wrk failed:\n${w.output}`)
        if (w.summary.errors !== 0 || w.summary.non2xx !== 0) throw new Error(`${s.name}, ${l}: ${w.summary.errors} errors, ${w.summary.non2xx} non-2xx`)
        const run = { round: r + 1, load: l, server: s.name, reqPerSec: Math.round(w.reqPerSec), p99: w.summary.p99, serverCores }
        runs.push(run)
        if (fresh) {
          await stopProcess(s.proc)
          procs.splice(procs.indexOf(s.proc), 1)
          rmSync(s.dataDir, { recursive: true, force: true })
        }
        console.log(`round ${run.round} ${l.padEnd(9)} ${s.name.padEnd(24)} ${String(run.reqPerSec).padStart(7)} req/s  p99 ${run.p99.toFixed(2)} ms  server ${serverCores} cores`)
      }
    }
  }
  const first = servers[0]?.name ?? ''
  const summary = loadNames.map((l) => ({
    load: l,
    what: LOADS[l]?.what,
    servers: servers.map((s) => {
      const mine = runs.filter((x) => x.load === l && x.server === s.name)
      const ratios = mine.map((x) => x.reqPerSec / (runs.find((y) => y.load === l && y.server === first && y.round === x.round)?.reqPerSec ?? NaN))
      return { server: s.name, reqPerSecMedian: Math.round(median(mine.map((x) => x.reqPerSec))), p99Median: +median(mine.map((x) => x.p99)).toFixed(2), ratioToFirst: +median(ratios).toFixed(3) }
    }),
  }))
  console.log(`\n${connections} connections, ${rounds} rounds of ${seconds} s${fresh ? ` (a fresh server per run, ${warmup} s of warm-up)` : ''}, ${cpus().length} cores (${cpus()[0]?.model.trim()}); medians, ratio to "${first}" (median of per-round ratios)`)
  for (const row of summary) {
    for (const s of row.servers) console.log(`  ${row.load.padEnd(9)} ${s.server.padEnd(24)} ${String(s.reqPerSecMedian).padStart(7)} req/s  p99 ${s.p99Median} ms  x${s.ratioToFirst}`)
  }
  const report = { date: new Date().toISOString(), machine: { cores: cpus().length, model: cpus()[0]?.model.trim() }, settings: { specs, loads: loadNames, rounds, seconds, messages, chats, connections, fresh, ...(fresh ? { warmup } : {}) }, runs, summary }
  writeFileSync(`${out}.json`, JSON.stringify(report, null, 2) + '\n')
  console.log(`written: ${out}.json`)
} finally {
  for (const p of procs) await stopProcess(p)
  rmSync(dir, { recursive: true, force: true })
}
