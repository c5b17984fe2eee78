// @ts-check
// `npm run profile`: flamegraphs of pullchat under load.
//
// pullchat does its work on worker threads (each an HTTP front end and its shards). The default
// draws 0x's flamegraphs, one per thread: 0x samples with V8's --prof, and its launcher keeps the
// log of one isolate (whichever it finds first: the main thread's, where pullchat handles no
// requests), so this script runs the server with --prof itself, which writes a log per isolate
// (every thread's), and renders each with `0x --visualize-only`. PROFILER=cpu-prof uses Node's
// --cpu-prof instead, which writes one profile per thread, and draws each as a flamegraph SVG
// (bench/flame.mjs).
// 0x's -P cannot see uWS listening (it watches Node's `net`), so either way this script starts
// the server on a known port and drives the load itself.
//
//   npm run profile     (PROFILE_SECONDS=10, PROFILE_KIND=pull|send, PROFILE_PORT=18999,
//                        PROFILER=0x|cpu-prof, BENCH_GENERATOR=autocannon|wrk)
// Output: bench/results/profile/ (0x-<thread>-<n>/flamegraph.html per thread; with cpu-prof,
// thread-*.svg, thread-*.folded, *.cpuprofile)

import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import autocannon from 'autocannon'
import { flamegraphSvg, foldedStacks } from './flame.mjs'
import { SERVER_NODE_FLAGS } from './lib.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const seconds = Number(process.env.PROFILE_SECONDS ?? 10)
const kind = process.env.PROFILE_KIND ?? 'pull'
const port = Number(process.env.PROFILE_PORT ?? 18999)
const profiler = process.env.PROFILER ?? '0x'
if (profiler !== 'cpu-prof' && profiler !== '0x') throw new Error(`PROFILER=${profiler}: 0x (the default) or cpu-prof`)
const dataDir = mkdtempSync(join(tmpdir(), 'pullchat-profile-'))
const outDir = join(root, 'bench/results/profile')
rmSync(outDir, { recursive: true, force: true })
mkdirSync(outDir, { recursive: true })

const env = { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info' }
// --prof writes isolate-<address>-<pid>-v8.log per isolate into the working directory.
const logDir = profiler === '0x' ? mkdtempSync(join(tmpdir(), 'pullchat-prof-logs-')) : ''
const proc =
  profiler === '0x'
    ? spawn(process.execPath, ['--prof', ...SERVER_NODE_FLAGS, join(root, 'dist/cluster.js')], { cwd: logDir, env, stdio: ['ignore', 'pipe', 'inherit'] })
    : spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', outDir, ...SERVER_NODE_FLAGS, 'dist/cluster.js'], { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] })
await new Promise((resolve, reject) => {
  let out = ''
  proc.stdout?.on('data', (c) => {
    out += c.toString()
    if (out.includes('"msg":"listening"')) resolve(undefined)
  })
  proc.on('exit', (code) => reject(new Error(`profiled server exited ${code}: ${out}`)))
})

const body = JSON.stringify({ chat: 'alice:bob', text: 'hello world, a typical short chat message', sender: 'alice' })
for (let i = 0; i < 50; i++) await fetch(`http://127.0.0.1:${port}/api/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
const path = kind === 'send' ? '/api/send' : '/api/pull?chat=alice:bob&limit=10'
console.log(`profiling with ${profiler}: ${kind} load for ${seconds} s on :${port}`)
if (process.env.BENCH_GENERATOR === 'wrk') {
  const script = join(dataDir, 'send.lua')
  writeFileSync(script, `wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\nwrk.body = ${JSON.stringify(body)}\n`)
  spawnSync('wrk', ['-t2', '-c64', `-d${seconds}s`, ...(kind === 'send' ? ['-s', script] : []), `http://127.0.0.1:${port}${path}`], { stdio: 'inherit' })
} else {
  const r = await autocannon({ url: `http://127.0.0.1:${port}${path}`, connections: 64, duration: seconds, ...(kind === 'send' ? { method: 'POST', headers: { 'content-type': 'application/json' }, body } : {}) })
  console.log(`${Math.round(r.requests.average)} req/s, p99 ${r.latency.p99} ms, non-2xx ${r.non2xx}`)
}
proc.removeAllListeners('exit')
const done = new Promise((r) => proc.once('exit', r))
// One SIGINT: the server shuts down gracefully and Node writes each thread's profile on exit.
proc.kill('SIGINT')
await done

/**
 * Which of pullchat's threads an isolate's --prof log is from, by the code it compiled: a worker
 * (HTTP and shards), a log's sync thread, a recovery helper, or the main thread.
 * @param {string} log
 */
function threadOf(log) {
  const dist = pathToFileURL(join(root, 'dist')).href
  if (log.includes(`${dist}/store/recover-task.js`)) return 'recovery'
  if (log.includes(`${dist}/wal/sync-thread-main.js`)) return 'wal-sync'
  if (log.includes(`${dist}/worker.js`)) return 'worker'
  if (log.includes(`${dist}/cluster.js`)) return 'main'
  return 'thread'
}

if (profiler === '0x') {
  const logs = readdirSync(logDir).filter((f) => /^isolate-.*-v8\.log$/.test(f)).sort()
  if (logs.length === 0) throw new Error(`no --prof logs in ${logDir}`)
  /** @type {Map<string, number>} */
  const seen = new Map()
  for (const f of logs) {
    const text = readFileSync(join(logDir, f), 'utf8')
    const thread = threadOf(text)
    const n = seen.get(thread) ?? 0
    seen.set(thread, n + 1)
    const folder = join(outDir, `0x-${thread}-${n}`)
    mkdirSync(folder)
    writeFileSync(join(folder, f), text)
    const ticks = text.split('\n').filter((line) => line.startsWith('tick,')).length
    const r = spawnSync(join(root, 'node_modules/.bin/0x'), ['--visualize-only', folder], { cwd: root, encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`0x --visualize-only ${folder} failed: ${r.stderr}`)
    console.log(`${folder}/flamegraph.html: ${thread} thread, ${ticks} samples`)
  }
}
rmSync(dataDir, { recursive: true, force: true })
if (logDir !== '') rmSync(logDir, { recursive: true, force: true })

if (profiler !== '0x') {
  const files = readdirSync(outDir).filter((f) => f.endsWith('.cpuprofile')).sort()
  files.forEach((f, i) => {
    const folded = foldedStacks(JSON.parse(readFileSync(join(outDir, f), 'utf8')))
    const total = [...folded.values()].reduce((a, b) => a + b, 0)
    // Samples are wall-clock: a thread blocked in Atomics.wait is sampled as running the function
    // that waits, not as idle. So each log's sync thread (src/wal/sync-thread-main.ts: its
    // top-level loop, "(anonymous)") and recovery's idle helper threads (piscina's
    // atomicsWaitLoop) show as busy here: /proc or `node bench/cpu.mjs` gives their CPU.
    const busy = [...folded].filter(([k]) => !k.endsWith('(idle)')).reduce((a, [, v]) => a + v, 0)
    writeFileSync(join(outDir, `thread-${i}.folded`), [...folded].map(([k, v]) => `${k} ${v}`).join('\n') + '\n')
    writeFileSync(join(outDir, `thread-${i}.svg`), flamegraphSvg(folded, `${f}: ${kind} load, busy ${((busy / total) * 100).toFixed(0)}% of ${(total / 1e6).toFixed(1)} s`))
    // Top self time, for the terminal.
    /** @type {Map<string, number>} */
    const self = new Map()
    for (const [k, v] of folded) {
      const leaf = k.split(';').at(-1) ?? k
      self.set(leaf, (self.get(leaf) ?? 0) + v)
    }
    const top = [...self].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, 5)
    console.log(`thread-${i}.svg (${f}): busy ${((busy / total) * 100).toFixed(0)}%; top: ${top.map(([k, v]) => `${k.split(' ')[0]} ${((v / total) * 100).toFixed(1)}%`).join(', ')}`)
  })
}
console.log(`profiles: ${outDir} (wall-clock samples: threads blocked in Atomics.wait, as the log's sync thread, count as busy)`)
