// A real Prometheus scraping a real server with the shipped prometheus/prometheus.yml (only the
// target swapped for the test server's address; the 5 s scrape interval is kept), under load, then
// EVERY PromQL expression of the Grafana dashboard run through Prometheus's HTTP API: each must
// evaluate and return data.
//
// Needs the `prometheus` binary (Debian package "prometheus", which also ships promtool);
// skipped with a message when it is absent.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { shardOf } from '../../src/rpc/shard-hash.js'
import { request, startServer, type Res } from '../helpers/server.js'
import { ROOT, allQueries, loadDashboard } from './dashboard.js'

const has = (bin: string): boolean => spawnSync(bin, ['--version'], { stdio: 'ignore' }).status === 0
const skip = has('prometheus') && has('promtool') ? false : 'prometheus binary not found (apt-get install prometheus)'

const SHIPPED = join(ROOT, 'prometheus/prometheus.yml')
const SHIPPED_TARGET = "'pullchat:8080'"
const LOAD_MS = 15_000
const SHARDS = 2

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
    s.on('error', reject)
  })

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

interface Sample {
  metric: Record<string, string>
  value: [number, string]
}

/** An instant query; throws unless Prometheus answers status "success". */
async function query(promPort: number, expr: string, time?: number): Promise<{ resultType: string; result: Sample[] | [number, string] }> {
  const params = new URLSearchParams({ query: expr })
  if (time !== undefined) params.set('time', String(time))
  const res = await request(promPort, `/api/v1/query?${params}`, { agent: new http.Agent({ keepAlive: false }) })
  if (res.json?.status !== 'success') throw new Error(`query ${expr}: HTTP ${res.status} ${res.text}`)
  return res.json.data
}

function values(data: { resultType: string; result: Sample[] | [number, string] }): number[] {
  if (data.resultType === 'scalar') return [Number((data.result as [number, string])[1])]
  return (data.result as Sample[]).map((s) => Number(s.value[1]))
}

t.test('promtool accepts the shipped Prometheus configuration', { skip }, async (t) => {
  const r = spawnSync('promtool', ['check', 'config', SHIPPED], { encoding: 'utf8' })
  t.equal(r.status, 0, `promtool check config ${SHIPPED}\n${r.stdout}${r.stderr}`)
})

t.test('every dashboard query returns data from a real Prometheus scraping a loaded server', { skip }, async (t) => {
  const dir = t.testdir({ data: {}, tsdb: {} })
  const dataDir = join(dir, 'data')

  // First life: messages that the second life's recovery replays (so the Recovery row has data).
  const first = await startServer(t, { shards: SHARDS, threads: 2, dataDir })
  const recoveryChats = ['recovery-a', 'recovery-b', 'recovery-c', 'recovery-d']
  t.same(new Set(recoveryChats.map((c) => shardOf(c, SHARDS))).size, SHARDS, 'the first life writes to every shard')
  let recovered = 0
  for (const chat of recoveryChats) {
    for (let i = 0; i < 10; i++) {
      const r = await request(first.port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ chat, text: `r${i}`, sender: 'ops' }) })
      t.equal(r.status, 200)
      recovered++
    }
  }
  await first.cluster.stop()
  const { port } = await startServer(t, { shards: SHARDS, threads: 2, dataDir })

  // The shipped config, with only the target swapped for this server.
  const shipped = readFileSync(SHIPPED, 'utf8')
  t.equal(shipped.split(SHIPPED_TARGET).length - 1, 1, `the shipped config names the target ${SHIPPED_TARGET} once`)
  const configPath = join(dir, 'prometheus.yml')
  writeFileSync(configPath, shipped.replace(SHIPPED_TARGET, `'127.0.0.1:${port}'`))
  const checked = spawnSync('promtool', ['check', 'config', configPath], { encoding: 'utf8' })
  t.equal(checked.status, 0, `the generated copy passes promtool too\n${checked.stdout}${checked.stderr}`)

  const promPort = await freePort()
  let promOut = ''
  const prom: ChildProcess = spawn(
    'prometheus',
    [`--config.file=${configPath}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  prom.stdout?.on('data', (c: Buffer) => (promOut += c.toString()))
  prom.stderr?.on('data', (c: Buffer) => (promOut += c.toString()))
  t.teardown(async () => {
    if (prom.exitCode !== null || prom.signalCode !== null) return
    const exited = new Promise((r) => prom.once('exit', r))
    prom.kill('SIGTERM')
    const killer = setTimeout(() => prom.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(killer)
  })
  const readyBy = Date.now() + 20_000
  for (;;) {
    if (prom.exitCode !== null) throw new Error(`prometheus exited with ${prom.exitCode}:\n${promOut}`)
    const ready = await request(promPort, '/-/ready', { agent: new http.Agent({ keepAlive: false }) }).catch(() => null)
    if (ready?.status === 200) break
    if (Date.now() > readyBy) throw new Error(`prometheus not ready after 20 s:\n${promOut}`)
    await sleep(200)
  }

  // Load: sends and pulls on chats that cover both shards, with some 400s and 404s, for LOAD_MS.
  const chats = Array.from({ length: 8 }, (_, i) => `load-${i}`)
  t.same(new Set(chats.map((c) => shardOf(c, SHARDS))).size, SHARDS, 'the load reaches every shard')
  const json = { 'content-type': 'application/json' }
  let sent = 0
  let pulls = 0
  let errors = 0
  let round = 0
  const loadEnd = Date.now() + LOAD_MS
  while (Date.now() < loadEnd) {
    const batch: Promise<Res>[] = []
    for (let i = 0; i < 6; i++) {
      const chat = chats[(round * 6 + i) % chats.length] as string
      batch.push(request(port, '/api/send', { method: 'POST', headers: json, body: JSON.stringify({ chat, text: `load ${round} ${i}`, sender: `u${i}` }) }))
    }
    for (let i = 0; i < 3; i++) {
      const chat = chats[(round + i) % chats.length] as string
      batch.push(request(port, '/api/pull', { method: 'GET', headers: json, body: JSON.stringify({ chat, limit: 20 }) }))
    }
    if (round % 4 === 0) {
      batch.push(request(port, '/api/send', { method: 'POST', headers: json, body: '{"text":"no chat"}' }))
      batch.push(request(port, '/no-such-route'))
    }
    const replies = await Promise.all(batch)
    for (const r of replies) {
      if (r.status >= 500) throw new Error(`unexpected ${r.status}: ${r.text}`)
      if (r.status >= 400) errors++
    }
    sent += 6
    pulls += 3
    round++
    await sleep(50)
  }
  const loadEndedAt = Date.now()
  t.ok(sent >= 300 && pulls >= 150 && errors >= 50, `load: ${sent} sends, ${pulls} pulls, ${errors} errors in ${LOAD_MS / 1000} s`)

  // Wait for a scrape that started over 1.5 s after the load (the store's gauges are read at most
  // once a second), and for enough scrapes in the last minute for rate()/increase() windows.
  const scrapedBy = Date.now() + 20_000
  for (;;) {
    const last = values(await query(promPort, 'timestamp(up{job="pullchat"})'))
    const count = values(await query(promPort, 'count_over_time(up{job="pullchat"}[1m])'))
    if ((last[0] ?? 0) * 1000 >= loadEndedAt + 1500 && (count[0] ?? 0) >= 4) break
    if (Date.now() > scrapedBy) throw new Error(`no scrape after the load (last ${last}, count ${count}):\n${promOut}`)
    await sleep(500)
  }
  t.same(values(await query(promPort, 'up{job="pullchat"}')), [1], 'the target is up')

  const dash = loadDashboard()
  const queries = allQueries(dash)
  t.ok(queries.length >= 30, `${queries.length} dashboard queries`)
  // Series that are legitimately 0 on a healthy server: restarts, the RPC queue at rest, 5xx,
  // memory written ahead (STORE_PREFAULT_BYTES is 0 by default).
  const mayBeZero = /restarts_total|rpc_inflight_requests|status=~"5\.\."|prefault_spare_bytes/
  const now = Date.now() / 1000
  for (const q of queries) {
    const where = `${q.panel} [${q.refId}]: ${q.expr}`
    let data: Awaited<ReturnType<typeof query>>
    try {
      data = await query(promPort, q.expr, now)
    } catch (err) {
      t.fail(`${where}\n${(err as Error).message}`)
      continue
    }
    const vs = values(data)
    t.ok(vs.length > 0, `${where} -> ${vs.length} series`)
    const finite = vs.filter((v) => Number.isFinite(v))
    t.ok(finite.length > 0, `${where} -> a number (${vs.join(', ')})`)
    if (!mayBeZero.test(q.expr)) t.ok(finite.some((v) => v > 0), `${where} -> above 0 (${vs.join(', ')})`)
  }

  // The panels show the right numbers, not just some numbers.
  const byTitle = (title: string, refId = 'A'): string => {
    const q = queries.find((x) => x.panel === title && x.refId === refId)
    if (q === undefined) throw new Error(`no panel ${title} ${refId}`)
    return q.expr
  }
  const held = values(await query(promPort, byTitle('Messages held by shard'), now))
  t.equal(held.length, SHARDS, 'one series per shard')
  t.equal(held.reduce((a, b) => a + b, 0), recovered + sent, `messages held = ${recovered} recovered + ${sent} sent`)
  const replayed = values(await query(promPort, byTitle('Records replayed at last start by shard'), now))
  t.equal(replayed.reduce((a, b) => a + b, 0), recovered, `records replayed = ${recovered}`)
  const chatsHeld = values(await query(promPort, byTitle('Chats by shard'), now))
  t.equal(chatsHeld.reduce((a, b) => a + b, 0), recoveryChats.length + chats.length, 'chats held')
  const lag = await query(promPort, byTitle('Event-loop lag p99 by thread'), now)
  t.same((lag.result as Sample[]).map((s) => s.metric.thread).sort(), ['main', 'worker-0', 'worker-1'], 'event-loop lag for every thread')
  const spare = await query(promPort, byTitle('Memory held by shard', 'C'), now)
  t.same(
    (spare.result as Sample[]).map((x) => [x.metric.thread, Number(x.value[1])]).sort(),
    [['worker-0', 0], ['worker-1', 0]],
    'memory written ahead: a series per worker thread, 0 by default',
  )
  const rss = values(await query(promPort, byTitle('Process RSS'), now))
  t.equal(rss.length, 1, 'one RSS series for the one process (not one per thread)')
  t.same(values(await query(promPort, byTitle('Restarts by shard and worker (1h)', 'A'), now)), [0, 0], 'no shard restarted, one series per shard')
  t.same(values(await query(promPort, byTitle('Restarts by shard and worker (1h)', 'B'), now)), [0, 0], 'no worker restarted, one series per worker')
  t.same(values(await query(promPort, byTitle('Thread restarts (1h)'), now)), [0], 'overview: no restarts')
})
