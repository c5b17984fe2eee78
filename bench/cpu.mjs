// @ts-check
// Where the CPU goes: pullchat (and the ceiling, for comparison) under one load, with the CPU time
// of every thread read from /proc, the generator's own CPU, and CPU microseconds per request.
//
// Why this and not only profiles: per-thread --cpu-prof profiles sample wall-clock time, so a
// thread that is runnable but preempted (two cores shared by five busy threads and the generator)
// shows up as time in whatever it was doing, or as idle. /proc's user and system ticks count only
// time on a CPU, and the involuntary context switches say how often a thread was preempted; how
// long each thread waited for a CPU when it could have run comes from /proc's schedstat.
//
//   npm run build && node bench/cpu.mjs      (CPU_SCENARIO=pull-hot|pull-many|pull-missing-room|
//                                            pull-missing-many|send|send-many, CPU_SECONDS=5,
//                                            CPU_CHATS=20000, CPU_LAYOUT=interleaved|grouped, SHARDS and other server
//                                            settings from the environment; wrk is required:
//                                            apt-get install wrk)
//
// CPU_PERF=<file> also records where pullchat's threads spend their CPU with Linux perf
// (apt-get install linux-perf), JavaScript functions named: CPU time like /proc, unlike
// --cpu-prof's wall-clock samples. Read it with
//   perf report -i <file> --no-children -g none --sort pid,sym
// perf slows the server down; compare profiles with each other, not with unprofiled rates.

import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runAsQuietHarness, DEFAULT_SHARDS, SERVER_NODE_FLAGS, HOT_CHAT, childrenCpuSeconds, requireWrk, runWrk, spreadChats, startProcess, stopProcess, threadTicks, writeBenchStore, wrkPull, wrkScript, wrkSend } from './lib.mjs'

runAsQuietHarness()

const scenario = process.env.CPU_SCENARIO ?? 'pull-hot'
const seconds = Number(process.env.CPU_SECONDS ?? 5)
// Chats of the many-chats scenarios (10 messages each); the scale target's figure is 100k.
const CHATS = Number(process.env.CPU_CHATS ?? 20_000)
// How the many chats' messages were written: in turn (each chat's messages among the others', as
// live traffic writes them) or one chat after another (each chat's messages next to each other).
const grouped = process.env.CPU_LAYOUT === 'grouped'
const perfFile = process.env.CPU_PERF

/** Samples every thread of `pid` for the load's duration (software clock: no PMU in a VM). */
function startPerf(/** @type {number | undefined} */ pid, /** @type {string} */ file) {
  return spawn('perf', ['record', '-e', 'cpu-clock', '-F', '999', '-g', '-p', String(pid), '-o', file, '--', 'sleep', String(seconds)], { stdio: 'ignore' })
}

requireWrk('bench/cpu.mjs')

const post = (/** @type {string} */ chat) => wrkSend(chat, chat.split(':')[0] ?? chat)
const requests = {
  'pull-hot': [wrkPull(`chat=${HOT_CHAT}&limit=10`)],
  'pull-many': spreadChats(CHATS).map((chat) => wrkPull(`chat=${chat}&limit=10`)),
  // Chats that do not exist: empty pages, the same request path otherwise.
  'pull-missing-room': [wrkPull('chat=nobody&limit=10')],
  'pull-missing-many': Array.from({ length: 10_000 }, (_, i) => wrkPull(`chat=v${i}:w${i}&limit=10`)),
  send: [post('alice:bob')],
  // As the bench's send-10k-chats: new chats spread over the shards.
  'send-many': Array.from({ length: 10_000 }, (_, i) => post(`s${i}:t${i}`)),
}[scenario]
if (requests === undefined) throw new Error(`unknown CPU_SCENARIO ${scenario}`)

const dir = mkdtempSync(join(tmpdir(), 'pullchat-cpu-bench-'))
const script = join(dir, 'load.lua')
writeFileSync(script, wrkScript(requests))
const dataDir = join(dir, 'data')
mkdirSync(dataDir)
if (scenario.startsWith('pull')) {
  // The hot chat's 1000 messages, then 10 messages in each of CHATS chats.
  await writeBenchStore(dataDir, Number(process.env.SHARDS ?? DEFAULT_SHARDS), { messages: 10 * CHATS, chats: CHATS, grouped })
}

/** @param {string} name @param {string[]} args @param {Record<string, string>} env */
async function measure(name, args, env) {
  const server = await startProcess(args, env)
  const before = threadTicks(server.proc.pid)
  const gen0 = childrenCpuSeconds()
  const perf = perfFile !== undefined && name === 'pullchat' ? startPerf(server.proc.pid, perfFile) : null
  const t0 = performance.now()
  const { reqPerSec: rps } = runWrk(server.port, script, { connections: 64, seconds })
  const wall = (performance.now() - t0) / 1000
  if (perf !== null) await new Promise((r) => perf.on('exit', r))
  const gen = childrenCpuSeconds() - gen0
  const after = threadTicks(server.proc.pid)
  await stopProcess(server.proc)
  const requestsDone = rps * seconds
  const threads = []
  for (const [tid, a] of after) {
    const b = before.get(tid) ?? { user: 0, sys: 0, voluntary: 0, involuntary: 0, waitNs: 0, slices: 0 }
    const user = (a.user - b.user) / 100
    const sys = (a.sys - b.sys) / 100
    const slices = a.slices - b.slices
    // Runnable but not running: woken (or preempted) and waiting for a core.
    const waitedForCpu = { seconds: +((a.waitNs - b.waitNs) / 1e9).toFixed(3), usPerSlice: +((a.waitNs - b.waitNs) / 1e3 / slices).toFixed(1) }
    if (user + sys >= 0.05) threads.push({ tid, user, sys, voluntary: a.voluntary - b.voluntary, involuntary: a.involuntary - b.involuntary, waitedForCpu })
  }
  threads.sort((x, y) => y.user + y.sys - (x.user + x.sys))
  const user = threads.reduce((s, t) => s + t.user, 0)
  const sys = threads.reduce((s, t) => s + t.sys, 0)
  const us = (/** @type {number} */ s) => +((s / requestsDone) * 1e6).toFixed(1)
  const row = { name, reqPerSec: Math.round(rps), serverCores: +((user + sys) / wall).toFixed(2), generatorCores: +(gen / wall).toFixed(2), cpuUsPerRequest: { total: us(user + sys), user: us(user), sys: us(sys) }, threads }
  console.log(`${name}: ${row.reqPerSec} req/s, server ${row.serverCores} cores (${row.cpuUsPerRequest.total} µs CPU per request: ${row.cpuUsPerRequest.user} user, ${row.cpuUsPerRequest.sys} system), generator ${row.generatorCores} cores`)
  for (const t of threads) {
    const waited = Number.isNaN(t.waitedForCpu.seconds) ? '' : `; waited for a CPU ${t.waitedForCpu.seconds.toFixed(2)} s, ${t.waitedForCpu.usPerSlice} µs a time`
    console.log(`  thread ${t.tid}: user ${t.user.toFixed(2)} s, system ${t.sys.toFixed(2)} s, ${t.voluntary} voluntary and ${t.involuntary} involuntary context switches${waited}`)
  }
  return row
}

try {
  const ceiling = await measure('ceiling', ['bench/ceiling.mjs', '0'], {})
  // With perf, V8 writes /tmp/perf-<pid>.map so that perf can name JIT-compiled functions.
  const flags = perfFile !== undefined ? ['--perf-basic-prof-only-functions'] : []
  const pullchat = await measure('pullchat', [...flags, ...SERVER_NODE_FLAGS, 'dist/cluster.js'], { PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info' })
  console.log(JSON.stringify({ scenario, seconds, ceiling, pullchat }))
} finally {
  rmSync(dir, { recursive: true, force: true })
}
