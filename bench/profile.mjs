// @ts-check
// `npm run profile`: a 0x flamegraph of pullchat under load. 0x's -P cannot see uWS listening
// (it watches Node's `net`), so this starts the server under 0x on a known port, drives the load
// itself (autocannon, or wrk with BENCH_GENERATOR=wrk), then stops the server so 0x writes the
// graph. 0x samples with V8's --prof, one log per thread; it draws the main isolate's log by
// default, so the server runs here with its HTTP and shard work... on worker threads: see
// PROFILE_ISOLATE below.
//
//   npm run profile        (PROFILE_SECONDS=10, PROFILE_KIND=pull|send, PROFILE_PORT=18999)

import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const seconds = Number(process.env.PROFILE_SECONDS ?? 10)
const kind = process.env.PROFILE_KIND ?? 'pull'
const port = Number(process.env.PROFILE_PORT ?? 18999)
const dataDir = mkdtempSync(join(tmpdir(), 'pullchat-profile-'))
const outDir = join(root, 'bench/results/flamegraph')
rmSync(outDir, { recursive: true, force: true })

const zeroX = join(root, 'node_modules/.bin/0x')
const proc = spawn(zeroX, ['--output-dir', outDir, '--', process.execPath, 'dist/cluster.js'], {
  cwd: root,
  env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info' },
  stdio: ['ignore', 'pipe', 'inherit'],
})
await new Promise((resolve, reject) => {
  let out = ''
  proc.stdout?.on('data', (c) => {
    out += c.toString()
    if (out.includes('"msg":"listening"')) resolve(undefined)
  })
  proc.on('exit', (code) => reject(new Error(`0x exited ${code}: ${out}`)))
})

const body = JSON.stringify({ chat: 'alice:bob', text: 'hello world, a typical short chat message', sender: 'alice' })
for (let i = 0; i < 50; i++) await fetch(`http://127.0.0.1:${port}/api/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
const path = kind === 'send' ? '/api/send' : '/api/pull?chat=alice:bob&limit=10'
console.log(`loading ${kind} for ${seconds} s on :${port}`)
if (process.env.BENCH_GENERATOR === 'wrk') {
  const script = join(dataDir, 'send.lua')
  if (kind === 'send') {
    const { writeFileSync } = await import('node:fs')
    writeFileSync(script, `wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\nwrk.body = ${JSON.stringify(body)}\n`)
  }
  spawnSync('wrk', ['-t2', '-c64', `-d${seconds}s`, ...(kind === 'send' ? ['-s', script] : []), `http://127.0.0.1:${port}${path}`], { stdio: 'inherit' })
} else {
  const r = await autocannon({ url: `http://127.0.0.1:${port}${path}`, connections: 64, duration: seconds, ...(kind === 'send' ? { method: 'POST', headers: { 'content-type': 'application/json' }, body } : {}) })
  console.log(`${Math.round(r.requests.average)} req/s, p99 ${r.latency.p99} ms, non-2xx ${r.non2xx}`)
}
proc.removeAllListeners('exit')
const done = new Promise((r) => proc.once('exit', r))
proc.kill('SIGINT')
await done
rmSync(dataDir, { recursive: true, force: true })
console.log(`flamegraph: ${outDir}/ (${readdirSync(outDir).join(', ')})`)
