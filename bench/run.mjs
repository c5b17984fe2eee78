// @ts-check
// The benchmark suite: for each scenario, the ceiling (bench/ceiling.mjs: bare uWS, fixed replies)
// and then pullchat (node dist/cluster.js, default settings: durable sends, FSYNC=always, fresh
// data directory) under the same load, side by side in one run, with the ratio to the ceiling.
//
// Both servers are up together, and each is measured twice, in the order ceiling, pullchat,
// pullchat, ceiling, for half the duration each time: this machine's speed drifts within a
// minute, and a ratio of two measurements taken one after the other took the drift with it (one
// quick run had sends at 0.45 of a ceiling measured 10 s before them, with pullchat's CPU per
// send 14% above the other runs'). In that order a steady drift weighs on both sides alike.
// Rates are the mean of the two halves, latency percentiles those of both halves' requests
// together (lib.mjs, joinedPercentile), errors the sum. Each half is in the results (`halves`). BENCH_ORDER=sequential measures each once, ceiling first, as before.
// Before that, both servers get the scenario's load for BENCH_WARMUP seconds, not counted
// (warmUp). With each measurement come the CPU its server used (and of that, in the kernel) and
// the generator's, what else ran on the machine meanwhile (`other`, +-0.03 is /proc's tick), what
// the hypervisor took (`steal`) and what no one used (`idle`).
//
//   npm run bench          quick: 5 s per measurement, smaller preloads (under 2 minutes)
//   npm run bench:full     15 s per measurement, 1M messages preloaded in 100k chats
//
// Settings (env): BENCH_CONNECTIONS (64), BENCH_DURATION (s), BENCH_PIPELINING (1),
// BENCH_WORKERS (autocannon worker threads, 2), BENCH_GENERATOR (wrk where installed, else autocannon),
// BENCH_SCENARIOS (comma list of names, run in that order), BENCH_SHARDS / BENCH_THREADS (pullchat's SHARDS and THREADS),
// BENCH_ORDER (abba | sequential), BENCH_WARMUP (whole seconds of the scenario's load each server
// gets before it is measured, not counted; 1, 0 for none).
// Results: bench/results/latest-<mode>.json, and bench/results/chart-<mode>.svg; with BENCH_OUT=<path>,
// <path>.json and <path>.svg. At the end the run is judged against issue 5's targets
// (bench/targets.mjs): printed, and kept as `targets` in the JSON. The exit code does not depend on it.

import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, cpus, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import autocannon from 'autocannon'
import { renderChart } from './chart.mjs'
import { formatVerdict, judgeTargets } from './targets.mjs'
import { runAsQuietHarness, BENCH_TEXT, DEFAULT_SHARDS, SERVER_NODE_FLAGS, HOT_CHAT, childrenCpuSeconds, cpuTimes, flushPendingWrites, hasWrk, joinedPercentile, machineCpuSeconds, root, runWrkAsync, spreadChats, startProcess, stopProcess, wrkScript, writeBenchStore } from './lib.mjs'

runAsQuietHarness()

const full = process.argv.includes('--full') || process.env.BENCH_MODE === 'full'
const mode = full ? 'full' : 'quick'
const env = process.env
const S = {
  connections: Number(env.BENCH_CONNECTIONS ?? 64),
  duration: Number(env.BENCH_DURATION ?? (full ? 15 : 5)),
  pipelining: Number(env.BENCH_PIPELINING ?? 1),
  workers: Number(env.BENCH_WORKERS ?? 2),
  // wrk where it is installed: autocannon, a Node program, saturates before the ceiling does on
  // two cores (the ceiling's rate is then the generator's), which flatters every ratio.
  generator: env.BENCH_GENERATOR ?? (hasWrk() ? 'wrk' : 'autocannon'),
  shards: env.BENCH_SHARDS,
  threads: env.BENCH_THREADS,
  preloadMessages: full ? 1_000_000 : 200_000,
  preloadChats: full ? 100_000 : 20_000,
  order: env.BENCH_ORDER ?? 'abba',
  // Seconds of the scenario's load that each server gets, uncounted, before it is measured.
  warmup: Number(env.BENCH_WARMUP ?? 1),
}
if (S.generator !== 'wrk' && S.generator !== 'autocannon') throw new Error(`BENCH_GENERATOR must be wrk or autocannon, not ${S.generator}`)
if (S.order !== 'abba' && S.order !== 'sequential') throw new Error(`BENCH_ORDER must be abba or sequential, not ${S.order}`)
if (!(Number.isInteger(S.warmup) && S.warmup >= 0)) throw new Error(`BENCH_WARMUP must be a whole number of seconds (wrk takes no less), not ${env.BENCH_WARMUP}`)
// wrk takes whole seconds.
const halfSeconds = Math.max(1, Math.round(S.duration / 2))

// ---------------------------------------------------------------------------------------------
// Scenarios: the same request list goes to the ceiling and to pullchat.

/** @typedef {{ method: 'GET' | 'POST', path: string, headers?: Record<string,string>, body?: string }} Req */
/** @typedef {{ name: string, what: string, requests: Req[], connections?: number, amount?: number, gen?: { kind: string, n: number } }} Scenario */

const json = { 'content-type': 'application/json' }
/** @param {string} chat @param {string} sender */
const send = (chat, sender) => /** @type {Req} */ ({ method: 'POST', path: '/api/send', headers: json, body: JSON.stringify({ chat, text: BENCH_TEXT, sender }) })
/** @param {string} q */
const pull = (q) => /** @type {Req} */ ({ method: 'GET', path: `/api/pull?${q}` })

/** @type {Scenario[]} */
const scenarios = [
  { name: 'send-1-chat', what: 'durable send, one chat', requests: [send('alice:bob', 'alice')] },
  {
    name: 'send-10k-chats',
    what: 'durable send across 10k chats',
    requests: Array.from({ length: 10_000 }, (_, i) => send(`s${i}:t${i}`, `s${i}`)),
    gen: { kind: 'send-many', n: 10_000 },
  },
  { name: 'pull-hot', what: 'pull limit 10, hot chat', requests: [pull(`chat=${HOT_CHAT}&limit=10`)] },
  { name: 'pull-reverse', what: 'pull reverse limit 10, hot chat', requests: [pull(`chat=${HOT_CHAT}&limit=10&reverse=true`)] },
  {
    name: 'pull-many-chats',
    what: `pull limit 10 over ${S.preloadChats / 1000}k chats, ${S.preloadMessages / 1e6}M messages`,
    requests: spreadChats(S.preloadChats).map((chat) => pull(`chat=${chat}&limit=10`)),
    gen: { kind: 'pull-many', n: S.preloadChats },
  },
  {
    name: 'mixed-90-10',
    what: '90% pull / 10% send',
    requests: Array.from({ length: 10 }, (_, i) => (i === 0 ? send(HOT_CHAT, 'mixer') : pull(`chat=${HOT_CHAT}&limit=10`))),
  },
  {
    name: 'many-connections',
    // wrk has no request budget: it runs for the duration like every other scenario.
    what: `1000 connections${S.generator === 'wrk' ? '' : ', 20 requests each'}, pull limit 10`,
    requests: [pull(`chat=${HOT_CHAT}&limit=10`)],
    connections: 1000,
    amount: 20_000,
  },
]
// BENCH_SCENARIOS=a,b: those scenarios, in that order.
const selected = env.BENCH_SCENARIOS === undefined ? scenarios : env.BENCH_SCENARIOS.split(',').map((name) => {
  const sc = scenarios.find((s) => s.name === name)
  if (sc === undefined) throw new Error(`BENCH_SCENARIOS: no scenario ${name}; they are ${scenarios.map((s) => s.name).join(', ')}`)
  return sc
})

// ---------------------------------------------------------------------------------------------
// Processes

// ---------------------------------------------------------------------------------------------
// Load

/** @param {number} port @param {Scenario} sc @param {number} seconds @param {number | undefined} amount */
async function loadAutocannon(port, sc, seconds, amount) {
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  // Many distinct requests are generated in the workers (bench/ac-setup.cjs), not shipped to them.
  if (sc.gen) Object.assign(process.env, { BENCH_GEN: sc.gen.kind, BENCH_GEN_N: String(sc.gen.n) })
  const requests = sc.gen ? [{ ...sc.requests[0], setupRequest: join(root, 'bench/ac-setup.cjs') }] : sc.requests
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: sc.connections ?? S.connections,
    pipelining: S.pipelining,
    workers: S.workers > 1 ? S.workers : undefined,
    ...(amount ? { amount } : { duration: seconds }),
    requests,
  })
  const wall = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  if (env.BENCH_DEBUG) console.log({ total: result.requests.total, duration: result.duration, sent: result.requests.sent, wall })
  return {
    // Over the time autocannon itself measured: `wall` also holds its workers' start-up.
    reqPerSec: Math.round(result.requests.total / result.duration),
    latencyMsP50: result.latency.p50,
    latencyMsP99: result.latency.p99,
    latencyMsP999: /** @type {any} */ (result.latency).p99_9 ?? null,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    requests: result.requests.total,
    generatorCpuCores: +((cpu.user + cpu.system) / 1e6 / wall).toFixed(2),
    seconds: +wall.toFixed(2),
  }
}

/** Each scenario's wrk script, written once (warm-ups and halves run the same requests), in one directory. */
const wrkScripts = /** @type {Map<string, string>} */ (new Map())
let wrkScriptDir = ''
/** @param {Scenario} sc @returns {string} */
function wrkScriptFor(sc) {
  let script = wrkScripts.get(sc.name)
  if (script !== undefined) return script
  if (wrkScriptDir === '') wrkScriptDir = mkdtempSync(join(tmpdir(), 'pullchat-wrk-'))
  script = join(wrkScriptDir, `${sc.name}.lua`)
  const reqs = sc.requests.map((r) => `wrk.format(${JSON.stringify(r.method)}, ${JSON.stringify(r.path)}, ${JSON.stringify(r.headers ?? {}).replace(/"([^"]+)":/g, '["$1"]=')}, ${r.body ? JSON.stringify(r.body) : 'nil'})`)
  writeFileSync(script, wrkScript(reqs, true))
  wrkScripts.set(sc.name, script)
  return script
}

/**
 * `start` is called as wrk's threads start sending (lib.mjs, wrkScript): the window of `seconds`
 * (and the generator's CPU) runs from then, not from wrk's start, whose setup (loading a copy of
 * the script per thread, ~0.1-0.5 s for 10k-20k requests) leaves the server idle.
 * @param {number} port @param {Scenario} sc @param {number} seconds @param {() => void} start
 */
async function loadWrk(port, sc, seconds, start) {
  const script = wrkScriptFor(sc)
  const conns = sc.connections ?? S.connections
  let t0 = performance.now()
  const cpu0 = childrenCpuSeconds()
  let setupCpu = 0
  const { reqPerSec: rps, summary } = await runWrkAsync(port, script, { connections: conns, seconds, latency: true }, (pid) => {
    t0 = performance.now()
    const w = cpuTimes(pid)
    setupCpu = Number.isNaN(w.user + w.system) ? 0 : w.user + w.system
    start()
  })
  const wall = (performance.now() - t0) / 1000
  const generatorCpuCores = +((childrenCpuSeconds() - cpu0 - setupCpu) / wall).toFixed(2)
  const j = summary ?? /** @type {Partial<NonNullable<typeof summary>>} */ ({})
  return { reqPerSec: Math.round(rps), latencyMsP50: j.p50, latencyMsP99: j.p99, latencyMsP999: j.p999, errors: j.errors, timeouts: 0, non2xx: j.non2xx, requests: Math.round(rps * seconds), generatorCpuCores, seconds: +wall.toFixed(2), latencyGrid: j.q }
}

/** The scenario's load for `seconds` from the chosen generator (`amount`: autocannon's request budget); `start` is called as the load starts. @param {number} port @param {Scenario} sc @param {number} seconds @param {number | undefined} amount @param {() => void} [start] */
const load = (port, sc, seconds, amount, start = () => {}) => {
  if (S.generator === 'wrk') return loadWrk(port, sc, seconds, start)
  start()
  return loadAutocannon(port, sc, seconds, amount)
}

/** One measurement of `part` (1: the whole duration, 0.5: a half). @param {number} port @param {Scenario} sc @param {number | undefined} pid @param {number} part */
async function measure(port, sc, pid, part) {
  // From when the load starts (wrk's threads all set up): load() calls `start` then.
  let c0 = cpuTimes(pid)
  let m0 = machineCpuSeconds()
  const start = () => {
    c0 = cpuTimes(pid)
    m0 = machineCpuSeconds()
  }
  const seconds = part === 1 ? S.duration : halfSeconds
  const amount = sc.amount === undefined ? undefined : Math.round(sc.amount * part)
  const r = await load(port, sc, seconds, amount, start)
  const m1 = machineCpuSeconds()
  const c1 = cpuTimes(pid)
  const serverCpuCores = +((c1.user + c1.system - c0.user - c0.system) / r.seconds).toFixed(2)
  // Of which in the kernel: a slow phase of the machine that makes a send dearer shows here
  // whether it is the kernel's work (system calls, sockets, the hypervisor's part in them) or
  // the JavaScript's that got slower.
  const serverSysCores = +((c1.system - c0.system) / r.seconds).toFixed(2)
  // What else ran meanwhile (the bench's own process outside the load, other programs), and what
  // the hypervisor took: where a tail that neither the server nor the generator explains came from.
  const otherCpuCores = +((m1.busy - m0.busy) / r.seconds - serverCpuCores - r.generatorCpuCores).toFixed(2)
  const stealCores = +((m1.steal - m0.steal) / r.seconds).toFixed(2)
  // What no one used: the cores' spare time (sends leave some: the log's rounds are waited for).
  const idleCores = +((m1.idle - m0.idle) / r.seconds).toFixed(2)
  return { ...r, serverCpuCores, serverSysCores, otherCpuCores, stealCores, idleCores }
}

/** @typedef {Awaited<ReturnType<typeof measure>>} Measurement */

/**
 * The scenario's load for S.warmup seconds, not counted: both servers start anew for each
 * scenario, and pullchat's first second (code not yet optimised, the log's first segment) ran at
 * ~0.8 of its rate with about twice its p99 (fresh servers, 1 s windows of sends; the ceiling's
 * ~0.96). Both servers are warmed at once, each by its own generator (so each at about half its
 * rate), which keeps the quick run under two minutes. What each gave is kept beside the
 * measurement (`warmup`), rate and p99.
 * @param {number} port @param {Scenario} sc
 */
async function warmUp(port, sc) {
  if (S.warmup === 0) return null
  const r = await load(port, sc, S.warmup, undefined)
  return { seconds: S.warmup, reqPerSec: r.reqPerSec, latencyMsP99: r.latencyMsP99, errors: r.errors, non2xx: r.non2xx }
}

/** A measurement as the results keep it: without wrk's percentile grid (JSON leaves out undefined). @param {Measurement} m */
const withoutGrid = (m) => ({ ...m, latencyGrid: undefined })

/**
 * Two halves as one measurement: mean rates, summed counts, and the latency percentiles of all
 * their requests together (joinedPercentile, from wrk's grids; without grids, autocannon's, the
 * worse half's). The halves are kept, without their grids.
 * @param {Measurement} a @param {Measurement} b
 */
function joinHalves(a, b) {
  const mean = (/** @type {number} */ x, /** @type {number} */ y) => +((x + y) / 2).toFixed(2)
  const worse = (/** @type {number | null | undefined} */ x, /** @type {number | null | undefined} */ y) => (x == null || y == null ? (x ?? y) : Math.max(x, y))
  const loads = [a, b].map((h) => ({ n: h.requests, q: /** @type {any} */ (h).latencyGrid }))
  const percentile = (/** @type {number} */ p, /** @type {number | null | undefined} */ x, /** @type {number | null | undefined} */ y) => {
    const joined = joinedPercentile(loads, p)
    return joined === null ? worse(x, y) : +joined.toFixed(3)
  }
  return {
    reqPerSec: Math.round((a.reqPerSec + b.reqPerSec) / 2),
    latencyMsP50: percentile(50, a.latencyMsP50, b.latencyMsP50),
    latencyMsP99: percentile(99, a.latencyMsP99, b.latencyMsP99),
    latencyMsP999: percentile(99.9, a.latencyMsP999, b.latencyMsP999),
    errors: (a.errors ?? 0) + (b.errors ?? 0),
    timeouts: (a.timeouts ?? 0) + (b.timeouts ?? 0),
    non2xx: (a.non2xx ?? 0) + (b.non2xx ?? 0),
    requests: a.requests + b.requests,
    generatorCpuCores: mean(a.generatorCpuCores, b.generatorCpuCores),
    seconds: +(a.seconds + b.seconds).toFixed(2),
    serverCpuCores: mean(a.serverCpuCores, b.serverCpuCores),
    serverSysCores: mean(a.serverSysCores, b.serverSysCores),
    otherCpuCores: mean(a.otherCpuCores, b.otherCpuCores),
    stealCores: mean(a.stealCores, b.stealCores),
    idleCores: mean(a.idleCores, b.idleCores),
    halves: [withoutGrid(a), withoutGrid(b)],
  }
}

// ---------------------------------------------------------------------------------------------

/** The preloaded store's data directory: written once, copied for each scenario that pulls. */
let storeTemplate = ''
/** @param {string} dataDir @param {number} shards */
async function preloadedStore(dataDir, shards) {
  if (storeTemplate === '') {
    storeTemplate = mkdtempSync(join(env.BENCH_DIR ?? tmpdir(), 'pullchat-bench-store-'))
    await writeBenchStore(storeTemplate, shards, { messages: S.preloadMessages, chats: S.preloadChats })
  }
  cpSync(storeTemplate, dataDir, { recursive: true })
}

/** prom-client's event-loop monitor's interval (its default `eventLoopMonitoringPrecision`, 10 ms). */
const EVENT_LOOP_MONITOR_S = 0.01

const results = []
console.log(`pullchat bench (${mode}): ${cpus().length} cores (${cpus()[0]?.model}), load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
if (env.BENCH_GENERATOR === undefined && S.generator === 'autocannon') console.log('wrk not found (apt-get install wrk): autocannon, which saturates before the ceiling on a small machine; see "cpu ... gen" below')
console.log(`generator ${S.generator}${S.generator === 'autocannon' ? ` (${S.workers} workers)` : ''}, ${S.connections} connections, pipelining ${S.pipelining}, ${S.order === 'abba' ? `each server measured twice for ${halfSeconds} s (ceiling, pullchat, pullchat, ceiling)` : `${S.duration} s per measurement`}`)
for (const sc of selected) {
  const ceiling = await startProcess(['bench/ceiling.mjs', '0'], {})
  const dataDir = mkdtempSync(join(env.BENCH_DIR ?? tmpdir(), 'pullchat-bench-'))
  const shards = Number(S.shards ?? DEFAULT_SHARDS)
  if (sc.name.startsWith('pull') || sc.name.startsWith('mixed') || sc.name.startsWith('many')) await preloadedStore(dataDir, shards)
  const serverEnv = { PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...(S.shards ? { SHARDS: S.shards } : {}), ...(S.threads ? { THREADS: S.threads } : {}) }
  // Whatever was written before (npm install, the build, the store just copied) goes to disk now, not mid-measurement.
  flushPendingWrites()
  const server = await startProcess([...SERVER_NODE_FLAGS, 'dist/cluster.js'], { ...serverEnv, LOG_LEVEL: 'info' })
  const [ceilingWarmup, pullchatWarmup] = await Promise.all([warmUp(ceiling.port, sc), warmUp(server.port, sc)])
  // The server's metrics are counted from its start: what it says of the measurement is the
  // difference from here (the warm-up excluded).
  const metricsBefore = pullchatWarmup === null ? '' : await fetch(`http://127.0.0.1:${server.port}/metrics`).then((r) => r.text())
  /** @type {Measurement} */
  let c = await measure(ceiling.port, sc, ceiling.proc.pid, S.order === 'abba' ? 0.5 : 1)
  /** @type {Measurement} */
  let p = await measure(server.port, sc, server.proc.pid, S.order === 'abba' ? 0.5 : 1)
  if (S.order === 'abba') {
    p = joinHalves(p, await measure(server.port, sc, server.proc.pid, 0.5))
    c = joinHalves(c, await measure(ceiling.port, sc, ceiling.proc.pid, 0.5))
  }
  await stopProcess(ceiling.proc)
  // What the server says it answered in the measurement, by status: explains any non-2xx the generator saw.
  const metricsText = await fetch(`http://127.0.0.1:${server.port}/metrics`).then((r) => r.text()).catch(() => '')
  /** @type {Record<string, number>} */
  const statuses = {}
  for (const [text, sign] of /** @type {const} */ ([[metricsText, 1], [metricsBefore, -1]])) {
    for (const m of text.matchAll(/^pullchat_http_requests_total\{route="\/api\/[a-z]+",method="[A-Z]+",status="(\d+)"[^}]*\} (\d+)/gm)) {
      statuses[m[1] ?? '?'] = (statuses[m[1] ?? '?'] ?? 0) + sign * Number(m[2])
    }
  }
  Object.assign(p, { serverStatuses: statuses })
  // Where durable sends wait (docs/performance.md, "Durable sends"): the log's rounds, from the
  // server's own metrics, summed over shards.
  /** The samples of `name` (one per shard), those of the histogram bucket `le` if given. */
  const samples = (/** @type {string} */ text, /** @type {string} */ name, /** @type {string | undefined} */ le = undefined) =>
    [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].filter((m) => le === undefined || m[0].includes(`le="${le}"`))
  const sum = (/** @type {string} */ text, /** @type {string} */ name, /** @type {string | undefined} */ le) => samples(text, name, le).reduce((n, m) => n + Number(m[1]), 0)
  /** Over the measurement: at its end, less before it. */
  const total = (/** @type {string} */ name, /** @type {string | undefined} */ le = undefined) => sum(metricsText, name, le) - sum(metricsBefore, name, le)
  /**
   * Of the observations of histogram `name`, the share over `le` seconds (one of its buckets'
   * bounds), or null if there are none or no bucket has that bound.
   */
  const shareOver = (/** @type {string} */ name, /** @type {string} */ le) => {
    const count = total(`${name}_count`)
    if (count === 0 || samples(metricsText, `${name}_bucket`, le).length === 0) return null
    return +((count - total(`${name}_bucket`, le)) / count).toFixed(4)
  }
  const rounds = total('pullchat_wal_batch_records_count')
  /** The mean of histogram `name`'s observations, in ms (0 if none). */
  const meanMs = (/** @type {string} */ name) => +((total(`${name}_sum`) / Math.max(1, total(`${name}_count`))) * 1000).toFixed(3)
  const fsyncOver = (/** @type {string} */ le) => shareOver('pullchat_wal_fsync_duration_seconds', le)
  const log = rounds === 0 ? null : {
    rounds,
    recordsPerRound: +(total('pullchat_wal_batch_records_sum') / rounds).toFixed(1),
    fsyncMsMean: meanMs('pullchat_wal_fsync_duration_seconds'),
    // The same fdatasyncs' calls alone, on the log's sync thread: the rest of fsyncMsMean is the
    // hand-off to that thread and back (threads waiting for a core), not the disk.
    fsyncCallMsMean: meanMs('pullchat_wal_fdatasync_call_seconds'),
    oldestWaitMsMean: meanMs('pullchat_wal_wait_seconds'),
    // The disk's tail, as the shard sees it (from handing the fdatasync over to its callback): a
    // send waits for the round in flight and then its own, so a round over 4 ms in every ~200
    // puts about 1% of sends over 4 ms, whatever the request path costs.
    fsyncOver2ms: fsyncOver('0.002'),
    fsyncOver4ms: fsyncOver('0.004'),
    // Stalls of tens of milliseconds (the host's), which a p99.9 shows and the ceiling never has.
    fsyncOver16ms: fsyncOver('0.016'),
    // The calls' own tail: what of the tail above is the disk's, the rest being the hand-off.
    fsyncCallOver2ms: shareOver('pullchat_wal_fdatasync_call_seconds', '0.002'),
    fsyncCallOver4ms: shareOver('pullchat_wal_fdatasync_call_seconds', '0.004'),
  }
  Object.assign(p, { log })
  // The same tail as the server saw it, from each request's handler to its reply (both halves'
  // requests, every route): stalls that wrk sees and these do not are outside the handlers (the
  // socket queues, the thread not running, the generator), not the request path or the log.
  const requests = 'pullchat_http_request_duration_seconds'
  Object.assign(p, { inServer: { requests: total(`${requests}_count`), over5ms: shareOver(requests, '0.005'), over25ms: shareOver(requests, '0.025') } })
  // Whether the worker threads themselves stopped: prom-client's event-loop monitor (Node's
  // monitorEventLoopDelay, a timer every 10 ms in each thread, reset by each scrape) over the
  // measurement, the warm-up excluded. Each interval less the 10 ms it was due after is how late
  // the thread's loop ran the timer: a long turn, a collection, the thread waiting for a core, the
  // VM not run (a stall shorter than 10 ms can fall between two timers unseen). A tail that wrk
  // sees and neither this nor the handlers' times show is in the sockets or the generator.
  /** Worker threads' `pullchat_nodejs_eventloop_lag_<stat>_seconds`, less the monitor's interval, in ms: the largest over workers. */
  const loopLate = (/** @type {string} */ stat) => {
    const late = samples(metricsText, `pullchat_nodejs_eventloop_lag_${stat}_seconds`).filter((m) => m[0].includes('thread="worker-')).map((m) => Number(m[1]) - EVENT_LOOP_MONITOR_S)
    return metricsBefore === '' || late.length === 0 ? null : +(Math.max(0, ...late) * 1000).toFixed(2)
  }
  Object.assign(p, { workerLoopLateMs: { p99: loopLate('p99'), max: loopLate('max') } })
  await stopProcess(server.proc)
  rmSync(dataDir, { recursive: true, force: true })

  const row = { scenario: sc.name, what: sc.what, ceiling: withoutGrid(c), pullchat: withoutGrid(p), ratio: +(p.reqPerSec / c.reqPerSec).toFixed(3), warmup: { ceiling: ceilingWarmup, pullchat: pullchatWarmup } }
  results.push(row)
  const fmt = (/** @type {Measurement} */ r) => `${String(r.reqPerSec).padStart(7)} req/s  p50 ${r.latencyMsP50} ms  p99 ${r.latencyMsP99} ms  p99.9 ${r.latencyMsP999} ms  err ${r.errors}  non2xx ${r.non2xx}  cpu server ${r.serverCpuCores} (kernel ${r.serverSysCores}) gen ${r.generatorCpuCores} other ${r.otherCpuCores} steal ${r.stealCores} idle ${r.idleCores}`
  console.log(`\n${sc.name}: ${sc.what}`)
  console.log(`  ceiling   ${fmt(c)}`)
  console.log(`  pullchat  ${fmt(p)}`)
  // The halves in the order they ran: a stall of the whole machine shows in both servers' halves
  // at once (the ceiling has no log and no store).
  const ph = /** @type {any} */ (p).halves
  const ch = /** @type {any} */ (c).halves
  if (ph !== undefined && ch !== undefined) console.log(`  p99 by half, in the order run (ceiling, pullchat, pullchat, ceiling): ${[ch[0], ph[0], ph[1], ch[1]].map((h) => h.latencyMsP99).join(', ')} ms`)
  const warm = (/** @type {Awaited<ReturnType<typeof warmUp>>} */ w) => (w === null ? 'none' : `${w.reqPerSec} req/s, p99 ${w.latencyMsP99} ms`)
  if (S.warmup > 0) console.log(`  warm-up, ${S.warmup} s, both servers at once, not counted: ceiling ${warm(ceilingWarmup)}; pullchat ${warm(pullchatWarmup)}`)
  console.log(`  ratio to ceiling: ${row.ratio}; pullchat answered by status: ${JSON.stringify(/** @type {any} */ (p).serverStatuses)}`)
  const pct = (/** @type {number | null} */ x) => (x === null ? '?' : `${(x * 100).toFixed(2)}%`)
  if (log !== null) console.log(`  pullchat's log: ${log.rounds} group-commit rounds of ${log.recordsPerRound} records, fdatasync ${log.fsyncMsMean} ms (the call itself ${log.fsyncCallMsMean} ms), oldest record's wait for its round ${log.oldestWaitMsMean} ms (means); fdatasyncs over 2 ms ${pct(log.fsyncOver2ms)} (calls ${pct(log.fsyncCallOver2ms)}), over 4 ms ${pct(log.fsyncOver4ms)} (calls ${pct(log.fsyncCallOver4ms)}), over 16 ms ${pct(log.fsyncOver16ms)}`)
  const inServer = /** @type {any} */ (p).inServer
  const late = /** @type {any} */ (p).workerLoopLateMs
  console.log(`  in pullchat's handlers (arrival to reply): requests over 5 ms ${pct(inServer.over5ms)}, over 25 ms ${pct(inServer.over25ms)}; the worker's event loop late by ${late.p99 ?? '?'} ms at p99, ${late.max ?? '?'} ms at most (a 10 ms timer)`)
}
if (storeTemplate !== '') rmSync(storeTemplate, { recursive: true, force: true })
if (wrkScriptDir !== '') {
  if (env.BENCH_KEEP_SCRIPTS) console.log(`wrk scripts kept: ${wrkScriptDir}`)
  else rmSync(wrkScriptDir, { recursive: true, force: true })
}

mkdirSync(join(root, 'bench/results'), { recursive: true })
const report = { mode, date: new Date().toISOString(), machine: { cores: cpus().length, model: cpus()[0]?.model, node: process.version }, settings: S, results }
const targets = judgeTargets(report)
const out = env.BENCH_OUT ?? `bench/results/latest-${mode}`
const chart = env.BENCH_OUT ? `${out}.svg` : `bench/results/chart-${mode}.svg`
writeFileSync(resolve(root, `${out}.json`), JSON.stringify({ ...report, targets }, null, 2) + '\n')
writeFileSync(resolve(root, chart), renderChart(report))
console.log(`\n${formatVerdict(targets).join('\n')}`)
console.log(`\nwrote ${out}.json and ${chart}`)
