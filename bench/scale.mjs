// @ts-check
// Does throughput hold as the store grows? The issue's target: within 10% from 1k to 1M stored
// messages and from 1 to 100k chats.
//
// `npm run bench` measures the hot chat and the many chats minutes apart, and this machine's
// throughput drifts by more than 10% in that time, so its two figures cannot settle a 10% question.
// Here the loads alternate, round after round, against four servers that run side by side:
//   small: a store of 1k messages, all in one chat; pulls of that chat;
//   large: the same chat plus SCALE_MESSAGES messages in SCALE_CHATS chats (10 each, written in
//          turn, as live traffic interleaves them); pulls of the one chat, and pulls over all chats;
//   sends: a fresh store; durable sends to one chat, and durable sends over SCALE_CHATS chats (the
//          warm-up creates them), both growing the same store.
//   ceiling: bench/ceiling.mjs (bare uWS, fixed replies), under the same four scripts: what the
//          generator itself makes of one chat against many.
// The one chat is a direct chat shaped as the many chats' ids are (lib.mjs, oneChatLike:
// `u00000:u00001` for 100k chats), so that the two sides differ in how many chats they pull or send
// to, not in the ids' length or kind. Until the twenty-third session it was the quick bench's hot
// chat, `hot`: a room, shorter, its pages ~10 bytes a message smaller, and served faster (pulled
// side by side from one store, the direct chat at 0.98-0.99 of `hot`; in this script's own runs,
// alternated between the two, pulls over 100k chats at 0.90-0.92 of `hot` and 0.95-0.96 of the
// direct chat, the many chats' rate the same: docs/performance.md, twenty-third session).
// Every script cycles through SCALE_CHATS distinct requests; in the one-chat scripts they differ
// only in an X-Request-Id header, which both servers ignore. wrk on the same two cores serves a
// script of 100k distinct requests more slowly than one of a single request, whoever answers (the
// ceiling at 0.87-0.96 of its one-request rate, twenty-second session); until then the one-chat
// scripts were a single request, and that part of every chats ratio was the generator's, not the
// server's. A server whose work does not depend on the chat (the ceiling) now shows ~1 (0.93-1.03
// in the twenty-second session's runs).
// Each round runs the nine loads in a rotated order; the ratios are taken within each round and
// the median over rounds is reported. The target is read as a floor: the larger store (or the
// more chats) may serve at most 10% less; serving more is not a miss, and the verdict says which.
// The verdict is on pullchat's own rates; beside each chats comparison the script prints the
// ceiling's ratio under the same two loads (the check that the two scripts cost wrk alike), and
// pullchat's divided by it, without judging by it.
//
//   npm run build && node bench/scale.mjs   (SCALE_ROUNDS=7 SCALE_SECONDS=3 SCALE_MESSAGES=1000000
//                                            SCALE_CHATS=100000 BENCH_CONNECTIONS=64 BENCH_OUT, SHARDS,
//                                            STORE_PREFAULT_BYTES for the servers;
//                                            wrk is required: apt-get install wrk)

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { runAsQuietHarness, DEFAULT_SHARDS, SERVER_NODE_FLAGS, HOT_MESSAGES, flushPendingWrites, requireWrk, root, runWrk, scaleLoads, startProcess, stopProcess, writeBenchStore, wrkScript } from './lib.mjs'

runAsQuietHarness()

const env = process.env
const rounds = Number(env.SCALE_ROUNDS ?? 7)
const seconds = Number(env.SCALE_SECONDS ?? 3)
const messages = Number(env.SCALE_MESSAGES ?? 1_000_000)
const chats = Number(env.SCALE_CHATS ?? 100_000)
const connections = Number(env.BENCH_CONNECTIONS ?? 64)
// The servers' shard count (their default for a new data directory, unless SHARDS says otherwise):
// the data directories match it.
const shards = Number(env.SHARDS ?? DEFAULT_SHARDS)
const out = env.BENCH_OUT ?? join(root, 'bench', 'results', 'scale')
const TOLERANCE = 0.1
// The servers' STORE_PREFAULT_BYTES, if set (they inherit the environment): recorded with the results.
const prefault = Number(env.STORE_PREFAULT_BYTES ?? 0)
/** The target as a floor: a ratio at most TOLERANCE under 1 holds, and so does any higher one. */
const holds = (/** @type {number} */ ratio) => ratio >= 1 - TOLERANCE
/** The verdict in words: a ratio far above 1 holds and is said so. */
const verdictOf = (/** @type {number} */ ratio) =>
  !holds(ratio) ? `NOT held: more than ${TOLERANCE * 100}% lower`
  : ratio <= 1 + TOLERANCE ? `held: within ${TOLERANCE * 100}%`
  : `held: higher, by more than ${TOLERANCE * 100}%`

requireWrk('bench/scale.mjs')
if (!(rounds >= 1 && seconds >= 1 && messages >= chats && chats >= 1)) throw new Error('SCALE_ROUNDS, SCALE_SECONDS >= 1 and SCALE_MESSAGES >= SCALE_CHATS >= 1')

const dir = mkdtempSync(join(env.BENCH_DIR ?? tmpdir(), 'pullchat-scale-bench-'))
const scripts = {
  hot: join(dir, 'hot.lua'),
  many: join(dir, 'many.lua'),
  sendOne: join(dir, 'send-one.lua'),
  sendMany: join(dir, 'send-many.lua'),
}
// Every script is SCALE_CHATS distinct requests (lib.mjs, scaleLoads; test/bench/wrk-scripts.test.ts
// runs them through wrk).
const { one, spread, ...requests } = scaleLoads(chats)
for (const [name, file] of Object.entries(scripts)) writeFileSync(file, wrkScript(requests[/** @type {keyof typeof scripts} */ (name)], true))

/** @param {string} name @param {{ messages?: number, chats?: number }} what */
async function dataDir(name, what) {
  const d = join(dir, name)
  mkdirSync(d)
  await writeBenchStore(d, shards, { ...what, hot: one })
  return d
}

/** @param {{ name: string, port: number, script: string }} l */
function load({ name, port, script }) {
  const { reqPerSec: rps, summary: s, output } = runWrk(port, script, { connections, seconds })
  if (!Number.isFinite(rps) || s === null) throw new Error(`${name}: wrk failed:\n${output}`)
  // A load that got errors or non-2xx answers measured something other than what it names. wrk's
  // own line says which errors (a timeout is an answer that took over 2 s).
  if (s.errors !== 0 || s.non2xx !== 0) {
    const kinds = /Socket errors:.*/.exec(output)?.[0] ?? ''
    throw new Error(`${name}: wrk saw ${s.errors} errors and ${s.non2xx} non-2xx answers ${kinds}`)
  }
  return { reqPerSec: Math.round(rps), p99: s.p99 }
}

const median = (/** @type {number[]} */ xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2
}

const servers = []
try {
  console.log(`preloading: ${HOT_MESSAGES} messages in one chat (${one.chat}); and those plus ${messages} in ${chats} chats`)
  const small = await dataDir('small', {})
  const large = await dataDir('large', { messages, chats })
  const serverEnv = (/** @type {string} */ d) => ({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: d, LOG_LEVEL: 'info' })
  // Whatever was written before (npm install, the build) goes to disk now, not mid-measurement.
  flushPendingWrites()
  const a = await startProcess([...SERVER_NODE_FLAGS, 'dist/cluster.js'], serverEnv(small))
  servers.push(a)
  const b = await startProcess([...SERVER_NODE_FLAGS, 'dist/cluster.js'], serverEnv(large))
  servers.push(b)
  const sendDir = join(dir, 'sends')
  mkdirSync(sendDir)
  const c = await startProcess([...SERVER_NODE_FLAGS, 'dist/cluster.js'], serverEnv(sendDir))
  servers.push(c)
  const ceiling = await startProcess(['bench/ceiling.mjs', '0'], {})
  servers.push(ceiling)
  // What the pull loads name, checked once before them: a full page of the one chat from both
  // stores, and of one of the many chats from the large one (a page of nothing is served faster).
  for (const [port, chat] of [[a.port, one.chat], [b.port, one.chat], [b.port, spread[0]]]) {
    const res = await fetch(`http://127.0.0.1:${port}/api/pull?chat=${chat}&limit=10`)
    const page = /** @type {{ messages?: { chat: string }[] }} */ (await res.json())
    const got = page.messages?.filter((m) => m.chat === chat).length
    if (res.status !== 200 || got !== 10) throw new Error(`pulling ${chat} gave ${res.status} and ${got} of its messages, not 10`)
  }

  const loads = [
    { name: 'small-hot', what: `1 chat, ${HOT_MESSAGES} messages stored`, port: a.port, script: scripts.hot },
    { name: 'large-hot', what: `1 chat pulled, ${HOT_MESSAGES + messages} messages stored`, port: b.port, script: scripts.hot },
    { name: 'large-many', what: `${chats} chats pulled, ${HOT_MESSAGES + messages} messages stored`, port: b.port, script: scripts.many },
    { name: 'send-one', what: 'durable sends to 1 chat', port: c.port, script: scripts.sendOne },
    { name: 'send-many', what: `durable sends over ${chats} chats`, port: c.port, script: scripts.sendMany },
    { name: 'ceiling-hot', what: 'the ceiling, the one chat\'s pulls', port: ceiling.port, script: scripts.hot },
    { name: 'ceiling-many', what: `the ceiling, pulls over ${chats} chats`, port: ceiling.port, script: scripts.many },
    { name: 'ceiling-send-one', what: 'the ceiling, sends to 1 chat', port: ceiling.port, script: scripts.sendOne },
    { name: 'ceiling-send-many', what: `the ceiling, sends over ${chats} chats`, port: ceiling.port, script: scripts.sendMany },
  ]
  // Warm-up, not counted: each server's code paths compiled before the first measured round.
  for (const l of loads) load(l)

  /** @type {Record<string, { reqPerSec: number, p99: number }>[]} */
  const results = []
  for (let r = 0; r < rounds; r++) {
    /** @type {Record<string, { reqPerSec: number, p99: number }>} */
    const round = {}
    for (let k = 0; k < loads.length; k++) {
      const l = loads[(r + k) % loads.length]
      if (l === undefined) continue
      round[l.name] = load(l)
    }
    results.push(round)
    const f = (/** @type {string} */ n) => `${n} ${round[n]?.reqPerSec}/s`
    console.log(`round ${r + 1}: ${loads.map((l) => f(l.name)).join(', ')}`)
  }

  const rate = (/** @type {Record<string, { reqPerSec: number }>} */ round, /** @type {string} */ n) => round[n]?.reqPerSec ?? NaN
  /** `of`'s rate over `to`'s, in each round. @param {string} of @param {string} to */
  const ratios = (of, to) => results.map((round) => +(rate(round, of) / rate(round, to)).toFixed(3))
  const total = (/** @type {string} */ n) => results.reduce((sum, round) => sum + rate(round, n), 0)
  const comparisons = [
    { name: `stored messages ${HOT_MESSAGES / 1000}k -> ${(HOT_MESSAGES + messages) / 1e6}M (one chat pulled)`, of: 'large-hot', to: 'small-hot' },
    { name: `chats pulled 1 -> ${chats / 1000}k (same store)`, of: 'large-many', to: 'large-hot', ceiling: { of: 'ceiling-many', to: 'ceiling-hot' } },
    { name: 'both', of: 'large-many', to: 'small-hot', ceiling: { of: 'ceiling-many', to: 'ceiling-hot' } },
    { name: `durable sends, chats sent to 1 -> ${chats / 1000}k (same store)`, of: 'send-many', to: 'send-one', ceiling: { of: 'ceiling-send-many', to: 'ceiling-send-one' } },
  ].map((c) => {
    const perRound = ratios(c.of, c.to)
    const med = median(perRound)
    // Every request of the rounds over every request (the rounds are equally long): the median
    // leaves out rounds that are slow for a reason of their own, this counts them.
    const overall = +(total(c.of) / total(c.to)).toFixed(3)
    const judged = { ...c, perRound, median: +med.toFixed(3), overall, withinTarget: holds(med) }
    if (c.ceiling === undefined) return judged
    const ceilingPerRound = ratios(c.ceiling.of, c.ceiling.to)
    // pullchat's ratio over the ceiling's, round by round: both ran the same two scripts.
    const relativePerRound = perRound.map((r, i) => +(r / (ceilingPerRound[i] ?? NaN)).toFixed(3))
    return {
      ...judged,
      ceiling: { ...c.ceiling, perRound: ceilingPerRound, median: +median(ceilingPerRound).toFixed(3) },
      againstCeiling: { perRound: relativePerRound, median: +median(relativePerRound).toFixed(3) },
    }
  })
  console.log(`\n${connections} connections, ${rounds} rounds of ${seconds} s per load, ${cpus().length} cores (${cpus()[0]?.model.trim()})${prefault > 0 ? `, STORE_PREFAULT_BYTES=${prefault}` : ''}`)
  for (const l of loads) console.log(`  ${l.name.padEnd(11)} ${l.what}: median ${Math.round(median(results.map((r) => rate(r, l.name))))}/s`)
  for (const c of comparisons) {
    console.log(`  ${c.name}: ${c.of} / ${c.to} = ${c.median} (median; rounds ${c.perRound.join(', ')}; all rounds' requests ${c.overall}): ${verdictOf(c.median)}`)
    if ('againstCeiling' in c) {
      console.log(`    the ceiling under the same loads: ${c.ceiling.of} / ${c.ceiling.to} = ${c.ceiling.median}; pullchat's ratio over the ceiling's: ${c.againstCeiling.median} (median; rounds ${c.againstCeiling.perRound.join(', ')})`)
    }
  }
  const report = { date: new Date().toISOString(), machine: { cores: cpus().length, model: cpus()[0]?.model.trim() }, settings: { rounds, seconds, messages, chats, connections, shards, storePrefaultBytes: prefault }, loads: loads.map(({ name, what }) => ({ name, what })), rounds: results, comparisons }
  writeFileSync(`${out}.json`, JSON.stringify(report, null, 2) + '\n')
  console.log(`written: ${out}.json`)
} finally {
  for (const s of servers) await stopProcess(s.proc)
  rmSync(dir, { recursive: true, force: true })
}
