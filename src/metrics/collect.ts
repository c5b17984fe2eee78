// Merging every thread's metrics into one exposition, over the threads' existing control channels.
//
// prom-client's cluster aggregation (AggregatorRegistry.clusterMetrics) works only with
// node:cluster, so: the main thread asks each worker for `registry.getMetricsAsJSON()`
// ({ type: 'metrics-collect', id }), each answers ({ type: 'metrics', id, json }), and the main
// thread merges them with AggregatorRegistry.aggregate(). A thread that does not answer within
// the timeout is left out of that scrape rather than stalling it.

import { AggregatorRegistry, type Registry } from 'prom-client'
import type { MessagePort, Worker } from 'node:worker_threads'

type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

export interface CollectRequest {
  readonly type: 'metrics-collect'
  readonly id: number
}

/** In a worker: answers the main thread's collection requests from this thread's registry. */
export function answerCollect(control: MessagePort, registry: Registry, msg: { type: string; id?: number }): boolean {
  if (msg.type !== 'metrics-collect') return false
  const id = msg.id
  registry
    .getMetricsAsJSON()
    .then((json) => control.postMessage({ type: 'metrics', id, json }))
    .catch(() => control.postMessage({ type: 'metrics', id, json: [] }))
  return true
}

/** In the main thread: collects from every live worker and merges. */
export class MetricsCollector {
  private nextId = 1
  private readonly timeoutMs: number
  private readonly main: Registry

  constructor(main: Registry, timeoutMs = 2000) {
    this.main = main
    this.timeoutMs = timeoutMs
  }

  async collect(workers: readonly Worker[]): Promise<string> {
    const id = this.nextId++
    const parts = await Promise.all([this.main.getMetricsAsJSON(), ...workers.map((w) => this.ask(w, id))])
    const merged = AggregatorRegistry.aggregate(parts.filter((p): p is MetricsJson => p !== null))
    return merged.metrics()
  }

  private ask(worker: Worker, id: number): Promise<MetricsJson | null> {
    return new Promise((resolve) => {
      const done = (value: MetricsJson | null): void => {
        clearTimeout(timer)
        worker.off('message', onMessage)
        worker.off('exit', onExit)
        resolve(value)
      }
      const onMessage = (msg: { type: string; id?: number; json?: MetricsJson }): void => {
        if (msg.type === 'metrics' && msg.id === id) done(msg.json ?? null)
      }
      const onExit = (): void => done(null)
      const timer = setTimeout(() => done(null), this.timeoutMs)
      worker.on('message', onMessage)
      worker.on('exit', onExit)
      const req: CollectRequest = { type: 'metrics-collect', id }
      worker.postMessage(req)
    })
  }
}
