// Metrics of an HTTP thread: requests, latency, messages, and the RPC channel to each shard.

import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
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
  const requests = new Counter({
    name: `${PREFIX}http_requests_total`,
    help: 'HTTP requests answered, by route, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [registry],
  })
  const duration = new Histogram({
    name: `${PREFIX}http_request_duration_seconds`,
    help: 'Time from request to reply, by route',
    labelNames: ['route'] as const,
    buckets: LATENCY_BUCKETS_S,
    registers: [registry],
  })
  const sent = new Counter({ name: `${PREFIX}messages_sent_total`, help: 'Messages acknowledged to senders', registers: [registry] })
  const pulled = new Counter({ name: `${PREFIX}messages_pulled_total`, help: 'Messages returned by pulls', registers: [registry] })
  const rtt = new Histogram({
    name: `${PREFIX}rpc_roundtrip_seconds`,
    help: 'Time from an RPC call to its reply, by shard',
    labelNames: ['shard'] as const,
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
  for (let shard = 0; shard < shards; shard++) rtt.zero({ shard: String(shard) })
  sent.inc(0)
  pulled.inc(0)
  const shardLabels = new Map<number, { shard: string }>()
  const shardLabel = (shard: number): { shard: string } => {
    let l = shardLabels.get(shard)
    if (l === undefined) shardLabels.set(shard, (l = { shard: String(shard) }))
    return l
  }
  return {
    request: (route, method, status, seconds) => {
      requests.inc({ route, method: KNOWN_METHODS.has(method) ? method : 'OTHER', status: String(status) })
      duration.observe({ route }, seconds)
    },
    messagesSent: (n) => sent.inc(n),
    messagesPulled: (n) => pulled.inc(n),
    rpcRoundTrip: (shard, seconds) => rtt.observe(shardLabel(shard), seconds),
  }
}
