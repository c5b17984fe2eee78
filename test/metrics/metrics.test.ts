// GET /metrics as Prometheus reads it: a valid exposition merged from every thread, whose counters
// move by exactly what the test did, with no chat id, user id or raw URL in any label.

import { spawnSync } from 'node:child_process'
import http from 'node:http'
import net from 'node:net'
import t from 'tap'
import { shardOf } from '../../src/rpc/shard-hash.js'
import { request, type Res, startServer } from '../helpers/server.js'
import { type Exposition, parseExposition, samplesOf, sumOf } from './exposition.js'

const SHARDS = 2
const WORKERS = 2 // worker w hosts shard w
const THREADS = ['main', ...Array.from({ length: WORKERS }, (_, i) => `worker-${i}`)]

// A fresh connection per request, so that SO_REUSEPORT spreads requests over both workers.
const fresh = new http.Agent({ keepAlive: false })

async function scrape(port: number, path = '/metrics'): Promise<{ res: Res; m: Exposition }> {
  const res = await request(port, path, { agent: fresh })
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${res.text}`)
  return { res, m: parseExposition(res.text) }
}

const hasPromtool = spawnSync('promtool', ['--version']).status === 0

// Lint findings promtool reports against prom-client's own default metrics (gauges named
// *_total). Anything else it reports is a finding against pullchat's metrics.
const PROM_CLIENT_LINT = new Set(['pullchat_nodejs_active_handles_total', 'pullchat_nodejs_active_requests_total', 'pullchat_nodejs_active_resources_total'])

t.test('the exposition is valid Prometheus text, merged from every thread', async (t) => {
  const { port } = await startServer(t, { shards: SHARDS, threads: WORKERS })
  const { res, m } = await scrape(port)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/, 'Prometheus text content type')

  // Every series names its thread, and every thread is there.
  const unlabelled = m.samples.filter((s) => s.labels.thread === undefined).map((s) => s.name)
  t.same(unlabelled, [], 'every series has a thread label')
  t.same([...new Set(m.samples.map((s) => s.labels.thread))].sort(), [...THREADS].sort(), 'one thread label per thread')
  for (const thread of THREADS) {
    t.equal(samplesOf(m, 'pullchat_nodejs_heap_size_used_bytes', { thread }).length, 1, `${thread} reports its own heap`)
    t.ok(sumOf(m, 'pullchat_nodejs_heap_size_used_bytes', { thread }) > 0, `${thread} heap is not 0`)
  }
  // Every name is prefixed, and the families the dashboard reads are typed as it assumes.
  t.same([...m.families.keys()].filter((n) => !n.startsWith('pullchat_')), [], 'every family is pullchat_ prefixed')
  const types: Record<string, string> = {
    pullchat_http_requests_total: 'counter',
    pullchat_http_request_duration_seconds: 'histogram',
    pullchat_messages_sent_total: 'counter',
    pullchat_messages_pulled_total: 'counter',
    pullchat_store_chats: 'gauge',
    pullchat_store_messages: 'gauge',
    pullchat_store_message_bytes: 'gauge',
    pullchat_store_allocated_bytes: 'gauge',
    pullchat_store_prefault_spare_bytes: 'gauge',
    pullchat_wal_appends_total: 'counter',
    pullchat_wal_bytes_total: 'counter',
    pullchat_wal_fsync_duration_seconds: 'histogram',
    pullchat_wal_fdatasync_call_seconds: 'histogram',
    pullchat_wal_batch_records: 'histogram',
    pullchat_wal_wait_seconds: 'histogram',
    pullchat_wal_segments: 'gauge',
    pullchat_wal_segment_bytes: 'gauge',
    pullchat_rpc_inflight_requests: 'gauge',
    pullchat_rpc_roundtrip_seconds: 'histogram',
    pullchat_recovery_records: 'gauge',
    pullchat_recovery_duration_seconds: 'gauge',
    pullchat_shard_restarts_total: 'counter',
    pullchat_worker_restarts_total: 'counter',
    pullchat_nodejs_eventloop_lag_p99_seconds: 'gauge',
    pullchat_nodejs_heap_size_used_bytes: 'gauge',
    pullchat_process_resident_memory_bytes: 'gauge',
  }
  for (const [name, type] of Object.entries(types)) t.equal(m.families.get(name)?.type, type, `${name} is a ${type}`)
  // Per-shard series come from the worker that hosts the shard only (a gauge summed across threads
  // would lie).
  for (let s = 0; s < SHARDS; s++) {
    for (const name of ['pullchat_store_messages', 'pullchat_wal_segments', 'pullchat_recovery_records']) {
      t.same(
        samplesOf(m, name, { shard: String(s) }).map((x) => x.labels.thread),
        [`worker-${s}`],
        `${name}{shard="${s}"} comes from worker-${s} alone`,
      )
    }
  }

  t.test('promtool check metrics finds no parse error and nothing against pullchat\'s own metrics', { skip: hasPromtool ? false : 'promtool not found (apt-get install prometheus)' }, async (t) => {
    const r = spawnSync('promtool', ['check', 'metrics'], { input: res.text, encoding: 'utf8' })
    const out = `${r.stdout}${r.stderr}`
    t.notMatch(out, /error while linting|parsing error/, 'promtool parses it')
    t.ok(r.status === 0 || r.status === 3, `promtool exit ${r.status} is 0 or 3 (lint findings)\n${out}`)
    const findings = out.split('\n').filter((l) => l.trim() !== '')
    const ours = findings.filter((l) => !PROM_CLIENT_LINT.has(l.split(' ')[0] as string))
    t.same(ours, [], 'no lint finding on pullchat\'s metrics')
  })
})

t.test('counters move by exactly what was done, across 2 workers and 2 shards', async (t) => {
  const { port } = await startServer(t, { shards: SHARDS, threads: WORKERS })
  // Distinctive ids, so that finding one in /metrics cannot be a coincidence.
  const tag = 'zq7k3m'
  const users = [`alice${tag}`, `bob${tag}`, `carol${tag}`]
  const chats = [`roomA${tag}`, `roomB${tag}`, `roomC${tag}`, `${users[0]}:${users[1]}`, `${users[1]}:${users[2]}`, `${users[0]}:${users[2]}`]
  const emptyChat = `roomEmpty${tag}`
  const badPath = `/nope${tag}`
  const perChat = [7, 3, 5, 4, 6, 2]
  const N = perChat.reduce((a, b) => a + b, 0)
  const perShard = Array.from({ length: SHARDS }, () => 0)
  chats.forEach((c, i) => (perShard[shardOf(c, SHARDS)] += perChat[i] as number))
  t.ok(perShard.every((n) => n > 0), `the chats cover both shards: ${perShard}`)

  const { m: before } = await scrape(port)
  t.equal(sumOf(before, 'pullchat_messages_sent_total'), 0, 'nothing sent yet')
  t.equal(sumOf(before, 'pullchat_store_messages'), 0, 'nothing stored yet')

  const expected = new Map<string, number>() // "route method status" -> count
  const did = (route: string, method: string, status: number): void => {
    const k = `${route} ${method} ${status}`
    expected.set(k, (expected.get(k) ?? 0) + 1)
  }
  did('/metrics', 'GET', 200) // the scrape above is counted once it is answered
  const json = { 'content-type': 'application/json' }

  // N sends, concurrently, on fresh connections.
  const sends: Promise<Res>[] = []
  chats.forEach((chat, i) => {
    const members = chat.includes(':') ? chat.split(':') : users
    for (let k = 0; k < (perChat[i] as number); k++) {
      const sender = members[k % members.length] as string
      sends.push(request(port, '/api/send', { method: 'POST', headers: json, body: JSON.stringify({ chat, text: `m${k}`, sender }), agent: fresh }))
    }
  })
  for (const r of await Promise.all(sends)) {
    t.equal(r.status, 200, 'send acknowledged')
    did('/api/send', 'POST', 200)
  }

  // M pulls returning K messages: each chat whole (GET with a JSON body), a page of 2 (POST),
  // an empty chat (query string).
  let K = 0
  const pulls: Promise<Res>[] = []
  for (const chat of chats) pulls.push(request(port, '/api/pull', { method: 'GET', headers: json, body: JSON.stringify({ chat, limit: 1000 }), agent: fresh }))
  pulls.push(request(port, '/api/pull', { method: 'POST', headers: json, body: JSON.stringify({ chat: chats[0], limit: 2 }), agent: fresh }))
  pulls.push(request(port, `/api/pull?chat=${emptyChat}`, { agent: fresh }))
  const pulled = await Promise.all(pulls)
  pulled.forEach((r, i) => {
    t.equal(r.status, 200, 'pull answered')
    K += (r.json.messages as unknown[]).length
    did('/api/pull', i === chats.length ? 'POST' : 'GET', 200)
  })
  t.equal(K, N + 2, 'the pulls returned every message once, plus a page of 2')
  const M = pulls.length

  // Errors: 400 (missing field, and a sender outside the direct chat), 404 (no such route:
  // counted as route "unknown"), 405 (known route, wrong method).
  const bad = await request(port, '/api/send', { method: 'POST', headers: json, body: JSON.stringify({ text: 'x', sender: users[0] }), agent: fresh })
  t.equal(bad.status, 400)
  did('/api/send', 'POST', 400)
  const notMember = await request(port, '/api/send', { method: 'POST', headers: json, body: JSON.stringify({ chat: chats[3], text: 'x', sender: users[2] }), agent: fresh })
  t.equal(notMember.status, 400)
  did('/api/send', 'POST', 400)
  const missing = await request(port, badPath, { agent: fresh })
  t.equal(missing.status, 404)
  did('unknown', 'GET', 404)
  const missingPost = await request(port, `${badPath}/deeper?chat=${chats[0]}`, { method: 'POST', headers: json, body: '{}', agent: fresh })
  t.equal(missingPost.status, 404)
  did('unknown', 'POST', 404)
  const wrongMethod = await request(port, '/api/send', { method: 'DELETE', agent: fresh })
  t.equal(wrongMethod.status, 405)
  did('/api/send', 'DELETE', 405)

  // The store's gauges are read at most once a second: wait for a scrape that sees every message.
  let after: Exposition | undefined
  let scrapes = 0
  const deadline = Date.now() + 5000
  for (;;) {
    const { m } = await scrape(port)
    scrapes++
    after = m
    if (sumOf(m, 'pullchat_store_messages') === N || Date.now() > deadline) break
    await new Promise((r) => setTimeout(r, 250))
  }
  // A scrape is counted once it is answered: the last one is not in its own numbers.
  for (let i = 1; i < scrapes; i++) did('/metrics', 'GET', 200)
  const m = after as Exposition

  const delta = (name: string, match: Record<string, string> = {}): number => sumOf(m, name, match) - sumOf(before, name, match)
  t.equal(delta('pullchat_messages_sent_total'), N, `messages_sent_total +${N}`)
  t.equal(delta('pullchat_messages_pulled_total'), K, `messages_pulled_total +${K}`)
  for (let w = 0; w < WORKERS; w++) {
    t.ok(delta('pullchat_messages_sent_total', { thread: `worker-${w}` }) > 0, `worker-${w} acknowledged some of the sends`)
  }
  t.equal(delta('pullchat_wal_appends_total'), N, `wal_appends_total summed over shards +${N}`)
  t.equal(sumOf(m, 'pullchat_store_messages'), N, `store_messages summed over shards = ${N}`)
  t.equal(sumOf(m, 'pullchat_store_chats'), chats.length, `store_chats summed = ${chats.length} (pulling an empty chat creates none)`)
  for (let s = 0; s < SHARDS; s++) {
    t.equal(delta('pullchat_wal_appends_total', { shard: String(s) }), perShard[s], `shard ${s}: wal_appends +${perShard[s]}`)
    t.equal(sumOf(m, 'pullchat_store_messages', { shard: String(s) }), perShard[s], `shard ${s}: store_messages = ${perShard[s]}`)
    t.ok(delta('pullchat_wal_bytes_total', { shard: String(s) }) > 0, `shard ${s}: wal_bytes grew`)
    t.ok(delta('pullchat_wal_batch_records_count', { shard: String(s) }) >= 1, `shard ${s}: at least one group-commit round`)
    t.equal(delta('pullchat_wal_batch_records_sum', { shard: String(s) }), perShard[s], `shard ${s}: batch sizes add up to its appends`)
    t.equal(delta('pullchat_wal_fsync_duration_seconds_count', { shard: String(s) }), delta('pullchat_wal_batch_records_count', { shard: String(s) }), `shard ${s}: one fsync per round (FSYNC=always)`)
    t.equal(delta('pullchat_wal_wait_seconds_count', { shard: String(s) }), delta('pullchat_wal_batch_records_count', { shard: String(s) }), `shard ${s}: one wait observed per round`)
    // The call alone, timed on the sync thread: one per round too, and part of what the shard saw.
    const callSeconds = delta('pullchat_wal_fdatasync_call_seconds_sum', { shard: String(s) })
    t.equal(delta('pullchat_wal_fdatasync_call_seconds_count', { shard: String(s) }), delta('pullchat_wal_fsync_duration_seconds_count', { shard: String(s) }), `shard ${s}: each fdatasync's call timed on its thread`)
    t.ok(callSeconds > 0 && callSeconds <= delta('pullchat_wal_fsync_duration_seconds_sum', { shard: String(s) }), `shard ${s}: the calls (${callSeconds} s) are part of the fdatasyncs' time as the shard saw it`)
    t.equal(sumOf(m, 'pullchat_wal_segments', { shard: String(s) }), 1, `shard ${s}: one segment`)
    t.ok(sumOf(m, 'pullchat_wal_segment_bytes', { shard: String(s) }) > 0, `shard ${s}: the segment has bytes`)
  }
  // A validated send or pull to a shard of the other worker made one RPC; one to the worker's own
  // shard made none (a direct call), and neither did rejected requests.
  const rpcs = delta('pullchat_rpc_roundtrip_seconds_count')
  t.ok(rpcs > 0 && rpcs < N + M, `rpc round trips: some of the ${N + M} calls (${rpcs})`)
  for (let w = 0; w < WORKERS; w++) {
    t.equal(delta('pullchat_rpc_roundtrip_seconds_count', { thread: `worker-${w}`, shard: String(w) }), 0, `worker-${w} calls its own shard ${w} without RPC`)
  }
  t.equal(sumOf(m, 'pullchat_rpc_inflight_requests'), 0, 'nothing in flight at rest')

  // requests_total: exactly the (route, method, status) triples made, nothing else.
  const seen = new Map<string, number>()
  for (const s of samplesOf(m, 'pullchat_http_requests_total')) {
    const k = `${s.labels.route} ${s.labels.method} ${s.labels.status}`
    seen.set(k, (seen.get(k) ?? 0) + s.value)
  }
  for (const s of samplesOf(before, 'pullchat_http_requests_total')) {
    const k = `${s.labels.route} ${s.labels.method} ${s.labels.status}`
    seen.set(k, (seen.get(k) ?? 0) - s.value)
  }
  for (const [k, v] of [...seen]) if (v === 0) seen.delete(k)

  t.same(Object.fromEntries([...seen].sort()), Object.fromEntries([...expected].sort()), 'http_requests_total by route, method and status')

  // The latency histogram counts every request of a route once.
  const byRoute = new Map<string, number>()
  for (const [k, v] of expected) byRoute.set(k.split(' ')[0] as string, (byRoute.get(k.split(' ')[0] as string) ?? 0) + v)
  for (const [route, n] of byRoute) {
    t.equal(delta('pullchat_http_request_duration_seconds_count', { route }), n, `request_duration_seconds_count{route="${route}"} +${n}`)
  }

  t.test('no chat id, user id or raw URL in the exposition', async (t) => {
    const { res } = await scrape(port)
    for (const id of [...chats, ...users, emptyChat, badPath, tag]) t.notOk(res.text.includes(id), `${JSON.stringify(id)} does not appear`)
    const routes = new Set(samplesOf(parseExposition(res.text), 'pullchat_http_requests_total').map((s) => s.labels.route))
    t.same([...routes].sort(), ['/api/pull', '/api/send', '/metrics', 'unknown'], 'route labels are known routes or "unknown"')
  })
})

t.test('METRICS_PORT serves the same exposition on its own port, and nothing else there', async (t) => {
  const metricsPort = await new Promise<number>((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
    s.on('error', reject)
  })
  const { port } = await startServer(t, { shards: SHARDS, threads: 1, metricsPort })
  const sent = await request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ chat: 'mp', text: 'x', sender: 'a' }) })
  t.equal(sent.status, 200)
  const { res, m } = await scrape(metricsPort)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.equal(sumOf(m, 'pullchat_messages_sent_total'), 1, 'the send shows on the metrics port')
  t.same([...new Set(m.samples.map((s) => s.labels.thread))].sort(), ['main', 'worker-0'], 'every thread is merged in')
  t.equal(sumOf(m, 'pullchat_http_requests_total', { route: '/metrics' }), 0, 'scrapes on the metrics port are not service requests')
  const other = await request(metricsPort, '/api/send')
  t.equal(other.status, 404, 'only /metrics is served on the metrics port')
})

t.test('STORE_PREFAULT_BYTES: the worker writes its chunks before serving, and its shard takes them first', async (t) => {
  const MIB = 1 << 20
  const { port } = await startServer(t, { shards: 1, threads: 1, storePrefaultBytes: 3 * MIB - 1 })
  const spare = async (): Promise<number> => sumOf((await scrape(port)).m, 'pullchat_store_prefault_spare_bytes', { thread: 'worker-0' })
  t.equal(await spare(), 3 * MIB, 'three chunks written (rounded up), none taken by an empty store')
  const headers = { 'Content-Type': 'application/json' }
  const sent = await request(port, '/api/send', { method: 'POST', headers, body: JSON.stringify({ chat: 'a:b', text: 'first', sender: 'a' }), agent: fresh })
  t.equal(sent.status, 200)
  t.equal(await spare(), 2 * MIB, "the store's first chunk was one of them")
  const page = await request(port, '/api/pull?chat=a:b', { agent: fresh })
  t.same(page.json.messages.map((m: { text: string }) => m.text), ['first'], 'and holds the message')
})

t.test('STORE_PREFAULT_BYTES: a worker that hosts no shard writes nothing ahead', async (t) => {
  const { port } = await startServer(t, { shards: 1, threads: 2, storePrefaultBytes: 1 << 20 })
  const { m } = await scrape(port)
  t.equal(sumOf(m, 'pullchat_store_prefault_spare_bytes', { thread: 'worker-0' }), 1 << 20, 'worker-0 hosts shard 0')
  t.equal(samplesOf(m, 'pullchat_store_prefault_spare_bytes', { thread: 'worker-1' }).length, 1, 'worker-1 reports the gauge')
  t.equal(sumOf(m, 'pullchat_store_prefault_spare_bytes', { thread: 'worker-1' }), 0, 'and has nothing ahead: it only serves HTTP')
})
