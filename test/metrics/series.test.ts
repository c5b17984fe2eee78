// Series metrics (src/metrics/series.ts) must be indistinguishable from prom-client's Counter and
// Histogram: same JSON from the registry, same exposition after the main thread's merge.

import assert from 'node:assert/strict'
import fc from 'fast-check'
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client'
import t from 'tap'
import { holds } from '../helpers/fast-check.js'
import { SeriesCounter, SeriesHistogram } from '../../src/metrics/series.js'

const BUCKETS = [0.001, 0.01, 0.1, 1]
const routes = ['/api/send', '/api/pull', 'unknown']

/** JSON with object keys sorted: key order is not part of the format. */
const canonical = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) => (x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b))) : x))

/** A registry's JSON, its values in a canonical order (the order of series is not part of it either). */
async function json(r: Registry): Promise<string[]> {
  const metrics = await r.getMetricsAsJSON()
  return metrics.map((m) => canonical({ ...m, values: m.values.map(canonical).sort() }))
}

t.test('the same observations give prom-client\'s JSON and merged exposition', (t) =>
  holds(
    t,
    fc.asyncProperty(
      fc.array(fc.record({ route: fc.constantFrom(...routes), v: fc.oneof(fc.double({ min: 0, max: 5, noNaN: true }), fc.constantFrom(...BUCKETS)), n: fc.integer({ min: 0, max: 3 }) }), { maxLength: 60 }),
      async (obs) => {
        const theirs = new Registry()
        const ours = new Registry()
        theirs.setDefaultLabels({ thread: 'http-0' })
        ours.setDefaultLabels({ thread: 'http-0' })
        const c1 = new Counter({ name: 'x_total', help: 'h', labelNames: ['route'], registers: [theirs] })
        const h1 = new Histogram({ name: 'x_seconds', help: 'h', labelNames: ['route'], buckets: BUCKETS, registers: [theirs] })
        const c2 = new SeriesCounter({ name: 'x_total', help: 'h', registers: [ours] })
        const h2 = new SeriesHistogram({ name: 'x_seconds', help: 'h', buckets: BUCKETS, registers: [ours] })
        for (const o of obs) {
          c1.inc({ route: o.route }, o.n)
          h1.observe({ route: o.route }, o.v)
          c2.labels({ route: o.route }).inc(o.n)
          h2.labels({ route: o.route }).observe(o.v)
        }
        assert.deepEqual(await json(ours), await json(theirs))
        const merged = async (r: Registry): Promise<string> => AggregatorRegistry.aggregate([await r.getMetricsAsJSON(), await r.getMetricsAsJSON()]).metrics()
        const [ma, mb] = [await merged(theirs), await merged(ours)]
        assert.deepEqual(mb.split('\n').sort(), ma.split('\n').sort(), 'merged exposition')
      },
    ),
    { numRuns: 50 },
  ),
)
