// Metrics of a worker's front end: requests, latency, messages, and the calls to each shard (the
// RPC channel's round trips for shards that other workers host).
// Those updated on every request are series metrics (series.ts): label sets resolved once.

import { Gauge, type Registry } from 'prom-client'
import { type CounterSeries, type HistogramSeries, SeriesCounter, SeriesHistogram } from './series.js'
import { LATENCY_BUCKETS_S, PREFIX } from './thread-registry.js'

const KNOWN_METHODS = new Set(['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])

export interface HttpMetrics {
  /** `route` must be a known route path or "unknown"; never a raw URL. */
  request(route: string, method: string, status: number, seconds: number): void
  messagesSent(n: number): void
  messagesPulled(n: number): void
  rpcRoundTrip(shard: number, seconds: number): void
}

export function createHttpMetrics(registry: Registry, shards: number, inflight: () => readonly number[]): HttpMetrics {
  const requests = new SeriesCounter({
    name: `${PREFIX}http_requests_total`,
    help: 'HTTP requests answered, by route, method and status',
    registers: [registry],
  })
  const duration = new SeriesHistogram({
    name: `${PREFIX}http_request_duration_seconds`,
    help: 'Time from request to reply, by route',
    buckets: LATENCY_BUCKETS_S,
    registers: [registry],
  })
  const sent = new SeriesCounter({ name: `${PREFIX}messages_sent_total`, help: 'Messages acknowledged to senders', registers: [registry] }).labels({})
  const pulled = new SeriesCounter({ name: `${PREFIX}messages_pulled_total`, help: 'Messages returned by pulls', registers: [registry] }).labels({})
  const rtt = new SeriesHistogram({
    name: `${PREFIX}rpc_roundtrip_seconds`,
    help: 'Time from an RPC call to its reply, by shard',
    buckets: LATENCY_BUCKETS_S,
    registers: [registry],
  })
  new Gauge({
    name: `${PREFIX}rpc_inflight_requests`,
    help: 'RPC calls awaiting a reply, by shard (the queue depth towards it)',
    labelNames: ['shard'] as const,
    registers: [registry],
    collect() {
      inflight().forEach((n, shard) => this.set({ shard: String(shard) }, n))
    },
  })
  const rttByShard = Array.from({ length: shards }, (_, shard) => rtt.labels({ shard: String(shard) }))
  // route -> method -> status -> series; every level is a handful of entries.
  const counted = new Map<string, Map<string, Map<number, CounterSeries>>>()
  const timed = new Map<string, HistogramSeries>()
  const requestSeries = (route: string, rawMethod: string, status: number): CounterSeries => {
    const method = KNOWN_METHODS.has(rawMethod) ? rawMethod : 'OTHER' // any token is a method: bound the label
    let byMethod = counted.get(route)
    if (byMethod === undefined) counted.set(route, (byMethod = new Map()))
    let byStatus = byMethod.get(method)
    if (byStatus === undefined) byMethod.set(method, (byStatus = new Map()))
    let series = byStatus.get(status)
    if (series === undefined) {
      series = requests.labels({ route, method, status: String(status) })
      byStatus.set(status, series)
    }
    return series
  }
  return {
    request: (route, method, status, seconds) => {
      requestSeries(route, method, status).inc()
      let d = timed.get(route)
      if (d === undefined) timed.set(route, (d = duration.labels({ route })))
      d.observe(seconds)
    },
    messagesSent: (n) => sent.inc(n),
    messagesPulled: (n) => pulled.inc(n),
    rpcRoundTrip: (shard, seconds) => (rttByShard[shard] ?? rtt.labels({ shard: String(shard) })).observe(seconds),
  }
}
