// The Grafana dashboard read as Grafana and an operator would: well-formed, laid out without
// overlaps, one row per area, every query on the provisioned data source and reading metrics the
// server really exports. (prometheus.test.ts runs every query against a real Prometheus.)

import http from 'node:http'
import t from 'tap'
import { request, startServer } from '../helpers/server.js'
import { allPanels, allQueries, loadDashboard, metricNames } from './dashboard.js'
import { parseExposition } from './exposition.js'

const d = loadDashboard()
const panels = allPanels(d)
const queries = allQueries(d)

t.test('dashboard metadata', async (t) => {
  t.equal(d.uid, 'pullchat')
  t.equal(d.title, 'pullchat')
  t.ok(d.schemaVersion >= 36 && d.schemaVersion <= 41, `schemaVersion ${d.schemaVersion} is a current Grafana's`)
  const ds = d.templating.list.find((v) => v.name === 'DS_PROMETHEUS')
  t.equal(ds?.type, 'datasource', 'DS_PROMETHEUS is a data source variable')
  t.equal(ds?.query, 'prometheus', 'of Prometheus data sources')
  t.equal(ds?.current?.value, 'prometheus', 'defaulting to the provisioned uid "prometheus"')
  t.same(d.templating.list.map((v) => v.name), ['DS_PROMETHEUS'], 'no other variable: queries need no substitution')
})

t.test('one row per area, in order', async (t) => {
  const rows = panels.filter((p) => p.type === 'row').map((p) => p.title)
  t.same(rows, ['Overview', 'Traffic', 'Latency', 'Messages', 'Durability', 'Shards', 'Threads', 'Recovery'])
  // Every row holds panels (either after it on the grid, or inside it when collapsed).
  const top = d.panels
  top.forEach((p, i) => {
    if (p.type !== 'row') return
    const inside = (p.panels ?? []).length + (top[i + 1] !== undefined && top[i + 1]?.type !== 'row' ? 1 : 0)
    t.ok(inside > 0, `row ${p.title} is not empty`)
  })
})

t.test('panels: unique ids, on the grid, no overlaps, each with a query on the data source variable', async (t) => {
  const titles = panels.map((p) => p.title)
  t.same(titles.filter((x, i) => titles.indexOf(x) !== i), [], 'panel titles are unique')
  const ids = panels.map((p) => p.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  const cells = new Map<string, string>()
  for (const p of panels) {
    const { x, y, w, h } = p.gridPos
    t.ok(Number.isInteger(x) && Number.isInteger(y) && w > 0 && h > 0 && x >= 0 && x + w <= 24, `${p.title}: gridPos ${JSON.stringify(p.gridPos)} fits 24 columns`)
    for (let i = x; i < x + w; i++) {
      for (let j = y; j < y + h; j++) {
        const other = cells.get(`${i},${j}`)
        if (other !== undefined) t.fail(`${p.title} overlaps ${other} at ${i},${j}`)
        cells.set(`${i},${j}`, p.title)
      }
    }
    if (p.type === 'row') continue
    t.ok(['timeseries', 'stat'].includes(p.type), `${p.title}: ${p.type} is a core panel type`)
    t.same(p.datasource, { type: 'prometheus', uid: '${DS_PROMETHEUS}' }, `${p.title}: panel data source`)
    t.ok((p.targets ?? []).length > 0, `${p.title}: has queries`)
    for (const target of p.targets ?? []) {
      t.same(target.datasource, { type: 'prometheus', uid: '${DS_PROMETHEUS}' }, `${p.title} ${target.refId}: target data source`)
      t.ok(target.expr.trim() !== '', `${p.title} ${target.refId}: expr is not empty`)
      t.notOk(target.expr.includes('$'), `${p.title} ${target.refId}: no Grafana variables in PromQL (verified as is in prometheus.test.ts)`)
      t.notMatch(target.expr, /\brate\([^)]*\[(?:[1-9]s|1[0-9]s)\]/, `${p.title} ${target.refId}: rate windows hold several 5 s scrapes`)
    }
    const refIds = (p.targets ?? []).map((x) => x.refId)
    t.equal(new Set(refIds).size, refIds.length, `${p.title}: refIds are unique`)
  }
  t.ok(queries.length >= 30, `${queries.length} queries`)
})

t.test('the areas the operator needs are all there', async (t) => {
  const all = queries.map((q) => q.expr).join('\n')
  const needs: [string, RegExp][] = [
    ['req/s by route', /sum by \(route\) \(rate\(pullchat_http_requests_total\[1m\]\)\)/],
    ['4xx', /status=~"4\.\."/],
    ['5xx', /status=~"5\.\."/],
    ['latency p50 by route', /histogram_quantile\(0\.5, sum by \(le, route\) \(rate\(pullchat_http_request_duration_seconds_bucket/],
    ['latency p99 by route', /histogram_quantile\(0\.99, sum by \(le, route\) \(rate\(pullchat_http_request_duration_seconds_bucket/],
    ['sent/s', /rate\(pullchat_messages_sent_total\[1m\]\)/],
    ['pulled/s', /rate\(pullchat_messages_pulled_total\[1m\]\)/],
    ['fsync p50', /histogram_quantile\(0\.5, [^\n]*pullchat_wal_fsync_duration_seconds_bucket/],
    ['fsync p99', /histogram_quantile\(0\.99, [^\n]*pullchat_wal_fsync_duration_seconds_bucket/],
    ['round wait p99', /histogram_quantile\(0\.99, [^\n]*pullchat_wal_wait_seconds_bucket/],
    ['fdatasync call p99, on the sync thread', /histogram_quantile\(0\.99, [^\n]*pullchat_wal_fdatasync_call_seconds_bucket/],
    ['batch p50', /histogram_quantile\(0\.5, [^\n]*pullchat_wal_batch_records_bucket/],
    ['batch p99', /histogram_quantile\(0\.99, [^\n]*pullchat_wal_batch_records_bucket/],
    ['WAL appends/s', /rate\(pullchat_wal_appends_total\[1m\]\)/],
    ['WAL bytes/s', /rate\(pullchat_wal_bytes_total\[1m\]\)/],
    ['segments', /pullchat_wal_segments\b/],
    ['segment bytes', /pullchat_wal_segment_bytes\b/],
    ['messages held by shard', /sum by \(shard\) \(pullchat_store_messages\)/],
    ['chats by shard', /sum by \(shard\) \(pullchat_store_chats\)/],
    ['memory by shard', /sum by \(shard\) \(pullchat_store_allocated_bytes\)/],
    ['memory written ahead by thread', /sum by \(thread\) \(pullchat_store_prefault_spare_bytes\)/],
    ['RPC in flight by shard', /sum by \(shard\) \(pullchat_rpc_inflight_requests\)/],
    ['RPC p99 by shard', /histogram_quantile\(0\.99, sum by \(le, shard\) \(rate\(pullchat_rpc_roundtrip_seconds_bucket/],
    ['shard restarts', /pullchat_shard_restarts_total/],
    ['worker restarts', /pullchat_worker_restarts_total/],
    ['event-loop lag p99 by thread', /by \(thread\) \(pullchat_nodejs_eventloop_lag_p99_seconds\)/],
    ['heap by thread', /by \(thread\) \(pullchat_nodejs_heap_size_used_bytes\)/],
    ['RSS', /pullchat_process_resident_memory_bytes/],
    ['recovery duration by shard', /by \(shard\) \(pullchat_recovery_duration_seconds\)/],
    ['recovery records by shard', /by \(shard\) \(pullchat_recovery_records\)/],
  ]
  for (const [what, re] of needs) t.match(all, re, what)
  // Process-wide values (every thread reports the same number) are never summed over threads.
  for (const q of queries) {
    if (/pullchat_process_/.test(q.expr)) t.notMatch(q.expr, /\bsum\b/, `${q.panel}: a process-wide metric is not summed over threads`)
  }
})

t.test('every metric the dashboard reads is exported by a running server', async (t) => {
  const { port } = await startServer(t, { shards: 2, threads: 2 })
  const agent = new http.Agent({ keepAlive: false })
  // Request series appear with their first request (their labels are not known before).
  t.equal((await request(port, '/ping', { agent })).status, 200)
  const res = await request(port, '/metrics', { agent })
  t.equal(res.status, 200)
  const names = new Set(parseExposition(res.text).samples.map((s) => s.name))
  const used = new Set(queries.flatMap((q) => metricNames(q.expr)))
  t.ok(used.size >= 20, `${used.size} metrics used`)
  for (const name of [...used].sort()) t.ok(names.has(name), `${name} is exported`)
})
