// One prom-client registry per thread. Every metric is named `pullchat_...` in base units, and every
// thread's series carry a `thread` label ("main", "worker-0"), so that the merge in the
// main thread (AggregatorRegistry.aggregate) never sums one thread's gauges into another's. Chat
// ids and user ids never appear in labels.

import { Registry, collectDefaultMetrics } from 'prom-client'

export const PREFIX = 'pullchat_'

export function createThreadRegistry(thread: string): Registry {
  const registry = new Registry()
  registry.setDefaultLabels({ thread })
  collectDefaultMetrics({ register: registry, prefix: PREFIX })
  // process_* metrics (CPU, RSS, open files) describe the whole process, not a thread: only the
  // main thread exports them, so that summing over threads does not count the process N times.
  if (thread !== 'main') {
    for (const m of registry.getMetricsAsArray()) {
      if (m.name.startsWith(`${PREFIX}process_`)) registry.removeSingleMetric(m.name)
    }
  }
  return registry
}

/** Latency buckets for request and RPC round trips: 50 µs to ~3 s. */
export const LATENCY_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

/** fsync buckets like etcd's wal_fsync_duration_seconds: 1 ms doubling to ~8 s (plus 0.25, 0.5 ms). */
export const FSYNC_BUCKETS_S = [0.00025, 0.0005, ...Array.from({ length: 14 }, (_, i) => 0.001 * 2 ** i)]

/** Records per group-commit round. */
export const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
