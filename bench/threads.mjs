// @ts-check
// Picks the default thread counts: runs the durable-send and hot-pull scenarios of bench/run.mjs
// for each SHARDS x HTTP_THREADS combination, in one run, and prints req/s and p99 for each.
//
//   npm run build && node bench/threads.mjs      (BENCH_GENERATOR=wrk recommended; BENCH_DURATION=5)

import { spawnSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { root } from './lib.mjs'
const combos = (process.env.COMBOS ?? '1x1,2x1,1x2,2x2').split(',').map((c) => c.split('x').map(Number))
const rows = []
for (const [shards, http] of combos) {
  const out = `bench/results/threads-${shards}x${http}.tmp`
  const r = spawnSync(process.execPath, ['bench/run.mjs'], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, BENCH_SHARDS: String(shards), BENCH_HTTP_THREADS: String(http), BENCH_SCENARIOS: process.env.BENCH_SCENARIOS ?? 'send-1-chat,pull-hot', BENCH_OUT: out },
  })
  if (r.status !== 0) throw new Error(`bench failed for ${shards}x${http}`)
  const report = JSON.parse(readFileSync(join(root, `${out}.json`), 'utf8'))
  rmSync(join(root, `${out}.json`))
  rmSync(join(root, `${out}.svg`), { force: true })
  for (const res of report.results) rows.push({ shards, http, scenario: res.scenario, reqPerSec: res.pullchat.reqPerSec, p99: res.pullchat.latencyMsP99, ratio: res.ratio })
}
console.log('SHARDS HTTP_THREADS scenario        req/s    p99 ms  ratio to ceiling')
for (const r of rows) console.log(`${String(r.shards).padStart(6)} ${String(r.http).padStart(12)} ${r.scenario.padEnd(15)} ${String(r.reqPerSec).padStart(7)} ${String(r.p99).padStart(9)}  ${r.ratio}`)
