// @ts-check
// Shared by the benchmarks: starting and stopping a server process, its CPU use, running wrk, and
// writing a data directory of N messages in the real log format (fast: no HTTP, no fsync).

import { spawn, spawnSync } from 'node:child_process'
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, watch, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { shardOf } from '../dist/rpc/index.js'
import { encodeMessage } from '../dist/store/index.js'
import { WalWriter, listSegments, shardDir } from '../dist/wal/index.js'
import { autoShards } from '../dist/config.js'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/**
 * Node flags for a benchmark's own process, which must not compete for the cores with the servers
 * it measures. Left to itself V8 marks the harness's heap on four helper threads at once, and its
 * memory reducer collects ~8 s after start whether or not anything allocates: a `perf sched` trace
 * of a quick run found the bench process running ~113 ms on five threads inside pullchat's second
 * half of the first scenario (docs/performance.md, fifteenth session).
 */
export const HARNESS_NODE_FLAGS = ['--single-threaded-gc', '--no-memory-reducer']

/** Runs this script again under HARNESS_NODE_FLAGS, unless it already is, and exits with its status. */
export function runAsQuietHarness() {
  if (HARNESS_NODE_FLAGS.every((f) => process.execArgv.includes(f))) return
  const r = spawnSync(process.execPath, [...process.execArgv, ...HARNESS_NODE_FLAGS, ...process.argv.slice(1)], { stdio: 'inherit' })
  process.exit(r.status ?? 1)
}

/** The shard count the server gives a new data directory here (SHARDS=0, auto): preloaded stores match it. */
export const DEFAULT_SHARDS = autoShards()
/**
 * The node flags `npm start` runs the server with (its script in package.json, the one place they
 * are written): the benchmarks start the server the same way.
 */
export const SERVER_NODE_FLAGS = startFlags()

function startFlags() {
  const start = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts?.start ?? ''
  const m = /\bnode((?: --\S+)*) dist\/cluster\.js/.exec(start)
  if (m === null) throw new Error(`package.json's start script does not run node ... dist/cluster.js: ${start}`)
  return (m[1] ?? '').trim().split(' ').filter((f) => f !== '')
}

/**
 * Starts `node <args>` in the repository and resolves once it logs that it listens, with its port
 * and everything it printed until then.
 * @param {string[]} args @param {Record<string,string>} extraEnv
 * @returns {Promise<{ proc: import('node:child_process').ChildProcess, port: number, output: string }>}
 */
export function startProcess(args, extraEnv, ready = /"port":(\d+)|"listening":(\d+)/) {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    const onData = (/** @type {Buffer} */ c) => {
      out += c.toString()
      const m = ready.exec(out)
      if (m && /listening/.test(out)) {
        proc.stdout?.off('data', onData)
        resolve({ proc, port: Number(m[1] ?? m[2]), output: out })
      }
    }
    proc.stdout?.on('data', onData)
    proc.stderr?.on('data', (c) => (out += c.toString()))
    proc.on('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}:\n${out}`)))
  })
}

/** @param {import('node:child_process').ChildProcess} proc */
export async function stopProcess(proc) {
  if (proc.exitCode !== null) return
  proc.removeAllListeners('exit')
  const done = new Promise((r) => proc.once('exit', r))
  proc.kill('SIGTERM')
  await Promise.race([done, new Promise((r) => setTimeout(r, 10_000))])
  if (proc.exitCode === null) proc.kill('SIGKILL')
}

/** CPU seconds a process and its threads used so far (Linux /proc). */
export function cpuSeconds(/** @type {number | undefined} */ pid) {
  const t = cpuTimes(pid)
  return t.user + t.system
}

/**
 * CPU seconds a process and its threads used so far, in user mode and in the kernel (Linux /proc:
 * utime and stime). The kernel's part of a server's CPU is its system calls, its sockets and the
 * work the hypervisor makes of them: a slower kernel and slower JavaScript tell apart here.
 */
export function cpuTimes(/** @type {number | undefined} */ pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return { user: Number(f[11]) / 100, system: Number(f[12]) / 100 }
  } catch {
    return { user: NaN, system: NaN }
  }
}

const WRK_CHUNK = 10_000

/** Percentiles at which wrk summaries report latency (`q`): every 1 to 90, then finer to 99.99. */
export const LATENCY_GRID = [
  ...Array.from({ length: 90 }, (_, i) => i + 1),
  ...Array.from({ length: 199 }, (_, i) => +(90.05 + i * 0.05).toFixed(2)),
  99.99,
]

/**
 * The `p`th percentile of two loads' latencies together, from each one's request count `n` and its
 * latencies at LATENCY_GRID (`q`): the least grid latency at which at least p% of all requests
 * were answered, counting for each load the share of its grid points at or under it. Exact to the
 * grid's step (0.05 percentile points above 90). Null when a load has no grid.
 * @param {{ n: number, q: number[] | undefined }[]} loads @param {number} p
 */
export function joinedPercentile(loads, p) {
  if (loads.some((l) => l.q === undefined || l.q.length !== LATENCY_GRID.length)) return null
  const total = loads.reduce((sum, l) => sum + l.n, 0)
  const at = (/** @type {number[]} */ q, /** @type {number} */ x) => {
    let share = 0
    for (let k = 0; k < q.length; k++) if (/** @type {number} */ (q[k]) <= x) share = /** @type {number} */ (LATENCY_GRID[k]) / 100
    return share
  }
  const candidates = loads.flatMap((l) => /** @type {number[]} */ (l.q)).sort((a, b) => a - b)
  for (const x of candidates) {
    if (loads.reduce((sum, l) => sum + l.n * at(/** @type {number[]} */ (l.q), x), 0) >= (p / 100) * total) return x
  }
  return candidates.at(-1) ?? null
}

/**
 * A wrk Lua script that sends `requests` (each a `wrk.format(...)` expression) in turn, and with
 * `summary` prints a line `JSON{...}` at the end: p50/p99/p99.9 in ms, non-2xx, errors, and the
 * latency at each of LATENCY_GRID's percentiles (`q`, ms), from which two runs' latencies can be
 * joined (joinedPercentile).
 *
 * Run through runWrk (or runWrkAsync), wrk's threads start sending together. wrk sets up its
 * threads one after another, each with its own copy of the script, starts each as soon as it is
 * set up, and starts its clock only after the last: the requests the first thread completes while
 * the second loads its script are counted, and the time is not. A script of 100k requests takes
 * ~0.9 s to load, and the ceiling's rate came out at ~155k/s from it against ~125k/s from a script
 * of one request (3 s loads, docs/performance.md, eighteenth session): a load over many chats
 * looked faster than the same load over one. So each thread, before its first request, marks
 * itself ready in a directory the harness names (wrk's script arguments: the directory and the
 * thread count) and waits until every thread has: they start as wrk's clock does. Run by hand
 * without the arguments, the script sends at once, as wrk would.
 * @param {string[]} requests @param {boolean} [summary]
 */
export function wrkScript(requests, summary = false) {
  // LuaJIT allows at most 65536 constants per function: the requests are built by functions of
  // WRK_CHUNK each, so that a load can cycle through 100k chats (each request a distinct string).
  const chunks = []
  for (let k = 0; k < requests.length; k += WRK_CHUNK) chunks.push(`function() return {${requests.slice(k, k + WRK_CHUNK).join(',\n')}} end`)
  let lua =
    `local reqs = {}\nlocal chunks = {${chunks.join(',\n')}}\n` +
    // setup() runs in wrk's main thread for each thread in turn, before the thread's init().
    `local ffi = require("ffi")\nffi.cdef[[int usleep(unsigned int usec); unsigned long pthread_self(void);]]\n` +
    `local count = 0\nsetup = function(thread) count = count + 1 thread:set("tid", count) end\n` +
    `local barrier, threads, started, main = nil, 0, true, nil\n` +
    // init() also runs on wrk's main thread, which calls the first thread's request() once to check
    // it: that call must not wait.
    `init = function(args)\n main = ffi.C.pthread_self()\n for _, f in ipairs(chunks) do for _, r in ipairs(f()) do reqs[#reqs + 1] = r end end\n` +
    ` if args[1] ~= nil then barrier, threads, started = args[1], tonumber(args[2]), false end\nend\n` +
    `local function ready(k) local f = io.open(barrier .. "/" .. k, "r") if f == nil then return false end f:close() return true end\n` +
    `local function start()\n if ffi.C.pthread_self() == main then return end\n local f = assert(io.open(barrier .. "/" .. tid, "w")) f:close()\n` +
    // At most 150k naps (~30-40 s): a thread whose connections all fail never asks for a request, and the others
    // must not wait for it forever (their event loops are blocked while they wait; wrk then reports
    // what it got, nothing if its duration has passed).
    ` local k, waits = 1, 0\n while k <= threads and waits < 150000 do if ready(k) then k = k + 1 else ffi.C.usleep(200) waits = waits + 1 end end\n started = true\nend\n` +
    `local i = 0\nrequest = function() if not started then start() end i = i % #reqs + 1 return reqs[i] end\n`
  if (summary) {
    lua +=
      `local grid = {${LATENCY_GRID.join(',')}}\n` +
      `done = function(summary, latency, requests)\n local q = {}\n for k, p in ipairs(grid) do q[k] = string.format("%f", latency:percentile(p)/1000) end\n` +
      ` io.write(string.format("JSON{\\"p50\\":%f,\\"p99\\":%f,\\"p999\\":%f,\\"non2xx\\":%d,\\"errors\\":%d,\\"q\\":[%s]}\\n", ` +
      `latency:percentile(50)/1000, latency:percentile(99)/1000, latency:percentile(99.9)/1000, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, table.concat(q, ",")))\nend\n`
  }
  return lua
}

/**
 * Writes the machine's dirty pages back now (sync(1)), so that the kernel does not write them back
 * in the middle of a measurement. After `npm install` some 400 MB wait ~30 s in the page cache,
 * and their writeback came in the first send scenarios of a fresh clone's bench, whose p99s were
 * then 11-17 ms: the log's fdatasyncs queue behind it (docs/performance.md, eleventh session).
 * Here it takes well under a second.
 */
export function flushPendingWrites() {
  spawnSync('sync')
}

/** Whether wrk is on the PATH. */
export const hasWrk = () => spawnSync('wrk', ['--version']).error === undefined

/** Exits with a message unless wrk is installed; `who` is the benchmark asking. */
export function requireWrk(/** @type {string} */ who) {
  if (hasWrk()) return
  console.error(`${who} needs wrk (apt-get install wrk)`)
  process.exit(2)
}

/**
 * An X-Request-Id header for wrk.format's table (pullchat and the ceiling ignore it): what makes a
 * script's requests to one chat distinct strings, so that wrk walks as many of them as a script
 * over many chats (bench/scale.mjs).
 */
const requestIdHeader = (/** @type {string} */ id) => `["X-Request-Id"]="${id}"`

/** `n` request ids of one width: "0", ..., or "00000" to "99999" for 100k. */
export const requestIds = (/** @type {number} */ n) => Array.from({ length: n }, (_, i) => String(i).padStart(String(n - 1).length, '0'))

/** A `wrk.format(...)` expression for `GET /api/pull?<query>`, with `id` as its X-Request-Id if given. */
export const wrkPull = (/** @type {string} */ query, /** @type {string | undefined} */ id = undefined) =>
  `wrk.format("GET", "/api/pull?${query}"${id === undefined ? '' : `, {${requestIdHeader(id)}}`})`

/**
 * A `wrk.format(...)` expression for a `POST /api/send` of the bench text to `chat` by `sender`,
 * with `id` as its X-Request-Id if given.
 */
export const wrkSend = (/** @type {string} */ chat, /** @type {string} */ sender, /** @type {string | undefined} */ id = undefined) =>
  `wrk.format("POST", "/api/send", {["Content-Type"]="application/json"${id === undefined ? '' : `, ${requestIdHeader(id)}`}}, ${JSON.stringify(JSON.stringify({ chat, text: BENCH_TEXT, sender }))})`

/**
 * Runs wrk (two threads) with a Lua script against 127.0.0.1:`port`. Returns its requests per
 * second and, for a script from `wrkScript(.., true)`, its summary (null otherwise).
 * @param {number} port @param {string} script
 * @param {{ connections: number, seconds: number, latency?: boolean }} load
 */
export function runWrk(port, script, load) {
  const barrier = mkdtempSync(join(tmpdir(), 'pullchat-wrk-'))
  try {
    const r = spawnSync('wrk', wrkArgs(port, script, load, barrier), { encoding: 'utf8' })
    return wrkResult(r.stdout, r.stderr)
  } finally {
    rmSync(barrier, { recursive: true, force: true })
  }
}

/**
 * runWrk without blocking this thread, for loads that run side by side (two servers warmed at once).
 * `onStart(pid)`, if given, is called when wrk's threads are all ready and start sending (wrkScript's
 * barrier, watched with inotify: nothing polls during the load), with wrk's pid: a measurement's
 * window for CPU then excludes wrk's setup, in which the server has nothing to do.
 * @param {number} port @param {string} script @param {{ connections: number, seconds: number, latency?: boolean }} load
 * @param {(pid: number) => void} [onStart]
 * @returns {Promise<ReturnType<typeof wrkResult>>}
 */
export function runWrkAsync(port, script, load, onStart) {
  return new Promise((resolve, reject) => {
    const barrier = mkdtempSync(join(tmpdir(), 'pullchat-wrk-'))
    /** @type {import('node:fs').FSWatcher | null} */
    let watcher = null
    const done = () => {
      watcher?.close()
      rmSync(barrier, { recursive: true, force: true })
    }
    const proc = spawn('wrk', wrkArgs(port, script, load, barrier), { stdio: ['ignore', 'pipe', 'pipe'] })
    if (onStart !== undefined) {
      watcher = watch(barrier, () => {
        if (watcher === null || readdirSync(barrier).length < WRK_THREADS) return
        watcher.close()
        watcher = null
        onStart(proc.pid ?? 0)
      })
    }
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (c) => (stdout += c))
    proc.stderr.on('data', (c) => (stderr += c))
    proc.on('error', (err) => {
      done()
      reject(err)
    })
    proc.on('close', () => {
      done()
      resolve(wrkResult(stdout, stderr))
    })
  })
}

// wrk's threads (the bench has always run two).
const WRK_THREADS = 2

/**
 * wrk's arguments; after `--`, the script's (wrkScript): the directory in which its threads wait
 * for each other, and how many there are.
 * @param {number} port @param {string} script @param {{ connections: number, seconds: number, latency?: boolean }} load @param {string} barrier
 */
const wrkArgs = (port, script, { connections, seconds, latency = false }, barrier) =>
  [`-t${WRK_THREADS}`, `-c${connections}`, `-d${seconds}s`, ...(latency ? ['--latency'] : []), '-s', script, `http://127.0.0.1:${port}`, '--', barrier, String(WRK_THREADS)]

/**
 * @param {string} stdout @param {string} stderr
 * @returns {{ reqPerSec: number, summary: { p50: number, p99: number, p999: number, non2xx: number, errors: number, q?: number[] } | null, output: string }}
 */
function wrkResult(stdout, stderr) {
  const summary = /JSON(\{.*\})/.exec(stdout)?.[1]
  return { reqPerSec: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN), summary: summary === undefined ? null : JSON.parse(summary), output: `${stdout}${stderr}` }
}

/**
 * The machine's CPU seconds so far (Linux /proc/stat, all cores): `busy` running anything (user,
 * nice, system, irq, softirq), `idle` with nothing to run (idle, iowait), and `steal`, taken by
 * the hypervisor for other guests while this machine had work to run. NaNs where /proc is not
 * there.
 */
export function machineCpuSeconds() {
  try {
    const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number)
    const [user = NaN, nice = NaN, system = NaN, idle = NaN, iowait = NaN, irq = NaN, softirq = NaN, steal = NaN] = f
    return { busy: (user + nice + system + irq + softirq) / 100, idle: (idle + iowait) / 100, steal: steal / 100 }
  } catch {
    return { busy: NaN, idle: NaN, steal: NaN }
  }
}

/** CPU seconds used by this process's children that have exited and been waited for (Linux /proc). */
export function childrenCpuSeconds() {
  try {
    const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ') ?? []
    return (Number(f[13]) + Number(f[14])) / 100
  } catch {
    return NaN
  }
}

/**
 * CPU ticks (1/100 s) and context switches of each thread of a process (Linux /proc), by thread id,
 * and from schedstat (where the kernel keeps it) the nanoseconds it spent runnable but waiting for a
 * CPU (`waitNs`) and how many times it was put on one (`slices`).
 * @param {number | undefined} pid
 * @returns {Map<string, { user: number, sys: number, voluntary: number, involuntary: number, waitNs: number, slices: number }>}
 */
export function threadTicks(pid) {
  const out = new Map()
  let tids = []
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return out
  }
  for (const tid of tids) {
    try {
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8')
      const ctxt = (/** @type {string} */ k) => Number(new RegExp(`^${k}_ctxt_switches:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0)
      let sched = [NaN, NaN, NaN]
      try {
        sched = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number)
      } catch {
        // a kernel without CONFIG_SCHED_INFO
      }
      out.set(tid, { user: Number(f[11]), sys: Number(f[12]), voluntary: ctxt('voluntary'), involuntary: ctxt('nonvoluntary'), waitNs: Number(sched[1]), slices: Number(sched[2]) })
    } catch {
      // the thread ended meanwhile
    }
  }
  return out
}

/** The benchmarks' message text. */
export const BENCH_TEXT = 'hello world, a typical short chat message'
/** The one chat that "hot chat" loads pull, and the messages it is preloaded with. */
export const HOT_CHAT = 'hot'
export const HOT_MESSAGES = 1000

/** The c-th of the benchmarks' many chats: a direct chat between u<c> and u<c+1>. */
export const benchChat = (/** @type {number} */ c) => `u${c}:u${c + 1}`

/**
 * The one chat of bench/scale.mjs's chats comparisons: a direct chat of the shape of the `chats`
 * many chats' ids (`benchChat`: most of them `u<d>:u<d>` with as many digits as `chats - 1` has),
 * and none of them (its numbers have leading zeros): `u00000:u00001` by `u00000` for 100k chats.
 * So the one chat and the many differ in how many they are, not in their ids' length or kind
 * (HOT_CHAT is shorter and has no members, and a page of its messages is ~10 bytes a message smaller).
 */
export function oneChatLike(/** @type {number} */ chats) {
  const digits = Math.max(2, String(Math.max(chats - 1, 0)).length)
  const sender = `u${'0'.repeat(digits)}`
  return { chat: `${sender}:u${'1'.padStart(digits, '0')}`, sender }
}

/**
 * `n` chat ids (by default every one of the `chats`) in a stride prime to the chat count, so that
 * consecutive requests go to chats far apart, for loads over many chats.
 */
export function spreadChats(/** @type {number} */ chats, n = chats) {
  return Array.from({ length: n }, (_, i) => benchChat((i * 7919) % chats))
}

/**
 * bench/scale.mjs's loads as wrk requests (`wrk.format` expressions), each `chats` distinct
 * requests, request i with X-Request-Id i (one width): the one chat's (oneChatLike) as many
 * strings as the many chats', so that wrk does the same work for both (bench/scale.mjs, at the
 * top). The many chats' loads: every chat, each request to a chat far from the previous one's
 * (spreadChats), sent by the chat's first member.
 */
export function scaleLoads(/** @type {number} */ chats) {
  const ids = requestIds(chats)
  const spread = spreadChats(chats)
  const one = oneChatLike(chats)
  return {
    one,
    spread,
    hot: ids.map((id) => wrkPull(`chat=${one.chat}&limit=10`, id)),
    many: spread.map((chat, i) => wrkPull(`chat=${chat}&limit=10`, ids[i])),
    sendOne: ids.map((id) => wrkSend(one.chat, one.sender, id)),
    sendMany: spread.map((chat, i) => wrkSend(chat, chat.split(':')[0] ?? chat, ids[i])),
  }
}

/**
 * The benchmarks' store: the hot chat's `hotMessages` (HOT_CHAT's by 'loader', unless `hot` names
 * another chat and its sender), then `messages` more over `chats` chats (`benchChat`), written in
 * turn as live traffic interleaves them, or with `grouped` one chat after another (each chat's
 * messages next to each other). Send times end an hour ago.
 * @param {string} dataDir @param {number} shards
 * @param {{ hotMessages?: number, messages?: number, chats?: number, grouped?: boolean, hot?: { chat: string, sender: string } }} [what]
 */
export function writeBenchStore(dataDir, shards, { hotMessages = HOT_MESSAGES, messages = 0, chats = 1, grouped = false, hot = { chat: HOT_CHAT, sender: 'loader' } } = {}) {
  const t0 = Date.now() * 1000 - 3_600_000_000
  const perChat = Math.ceil(messages / chats)
  return writeDataDir(dataDir, shards, hotMessages + messages, (i) => {
    if (i < hotMessages) return [hot.chat, hot.sender, BENCH_TEXT, t0 + i]
    const k = i - hotMessages
    const c = grouped ? Math.floor(k / perChat) : k % chats
    return [benchChat(c), `u${c}`, BENCH_TEXT, t0 + i]
  })
}

/**
 * Writes a data directory for `shards` shards holding `count` messages, message i being
 * `messageAt(i)` = [chat, sender, text, send_time], each in its chat's shard: what a server that
 * was sent them would have on disk.
 * @param {string} dataDir @param {number} shards @param {number} count
 * @param {(i: number) => [string, string, string, number]} messageAt
 */
export async function writeDataDir(dataDir, shards, count, messageAt) {
  writeFileSync(join(dataDir, 'pullchat.json'), JSON.stringify({ format: 1, shards }) + '\n')
  const writers = Array.from({ length: shards }, (_, i) => {
    const dir = shardDir(dataDir, i)
    mkdirSync(dir, { recursive: true })
    return new WalWriter(
      { dir, shard: i, segmentBytes: 64 << 20, batchBytesMax: 4 << 20, pendingBytesMax: 8 * 2 ** 30, fsync: { kind: 'unsafe-none' }, onFatal: (e) => { throw e } },
      { lastLsn: 0, lastSegment: null },
    )
  })
  let pending = 0
  /** @type {() => void} */
  let wake = () => {}
  for (let i = 0; i < count; i++) {
    const [chat, sender, text, t] = messageAt(i)
    pending++
    writers[shardOf(chat, shards)]?.append(encodeMessage(chat, sender, text, t), (err) => {
      if (err) throw err
      if (--pending === 0) wake()
    })
    if (pending > 50_000) await new Promise((r) => (wake = () => r(undefined)))
  }
  if (pending > 0) await new Promise((r) => (wake = () => r(undefined)))
  await Promise.all(writers.map((w) => w.close()))
  // On disk, as a server that acknowledged them under FSYNC=always would have left them: otherwise
  // the server's start-up would pay for writing them out (recovery syncs what it reads).
  for (let i = 0; i < shards; i++) {
    for (const seg of listSegments(shardDir(dataDir, i))) {
      const fd = openSync(seg.path, 'r')
      fsyncSync(fd)
      closeSync(fd)
    }
  }
}
