// Prometheus metrics: a registry per thread, merged by the main thread for GET /metrics.
export { createThreadRegistry, PREFIX, LATENCY_BUCKETS_S, FSYNC_BUCKETS_S, BATCH_BUCKETS } from './thread-registry.js'
export { createHttpMetrics, type HttpMetrics } from './http-metrics.js'
export { createShardMetrics, type ShardMetrics, type ShardMetricsSet, type ShardStats } from './shard-metrics.js'
export { MetricsCollector, answerCollect, METRICS_CONTENT_TYPE, type CollectRequest } from './collect.js'
