// @ts-check
// Issue 5's targets for `npm run bench`, judged on one run's results (bench/run.mjs): durable sends
// and pulls of limit 10 at 0.5 of the ceiling's rate or more, each with a p99 under 5 ms and no
// errors, timeouts or non-2xx replies, at 64 connections. The mixed load and the 1000-connection
// load are measured and charted but are no target. Throughput across store sizes, memory and
// recovery have commands of their own (bench/scale.mjs, memory.mjs, recovery.mjs), which judge
// their own targets.

export const TARGETS = Object.freeze({ ratioMin: 0.5, p99MsUnder: 5, connections: 64 })

/** The scenarios each target is judged on, by kind. */
const KINDS = Object.freeze({
  'send-1-chat': 'send',
  'send-10k-chats': 'send',
  'pull-hot': 'pull',
  'pull-reverse': 'pull',
  'pull-many-chats': 'pull',
})

/**
 * @typedef {{ latencyMsP99: number, errors: number, timeouts: number, non2xx: number }} Side
 * @typedef {{ scenario: string, ratio: number, pullchat: Side }} Row
 * @typedef {{ scenario: string, kind: string, ratio: number, p99Ms: number, failures: number, held: { ratio: boolean, p99: boolean, failures: boolean } }} Check
 * @typedef {{ judged: boolean, why?: string, checks: Check[], notRun: string[], held: boolean | null }} Verdict
 */

/**
 * The targets, scenario by scenario, for a run's report. `judged` is false (and `held` null)
 * when the run was not at the targets' 64 connections or measured none of their scenarios.
 * @param {{ settings: { connections: number }, results: Row[] }} report
 * @returns {Verdict}
 */
export function judgeTargets(report) {
  if (report.settings.connections !== TARGETS.connections) {
    return { judged: false, why: `the targets are for ${TARGETS.connections} connections; this run used ${report.settings.connections}`, checks: [], notRun: [], held: null }
  }
  /** @type {Check[]} */
  const checks = []
  for (const row of report.results) {
    const kind = /** @type {Record<string, string>} */ (KINDS)[row.scenario]
    if (kind === undefined) continue
    const p = row.pullchat
    const failures = p.errors + p.timeouts + p.non2xx
    checks.push({
      scenario: row.scenario,
      kind,
      ratio: row.ratio,
      p99Ms: p.latencyMsP99,
      failures,
      held: { ratio: row.ratio >= TARGETS.ratioMin, p99: p.latencyMsP99 < TARGETS.p99MsUnder, failures: failures === 0 },
    })
  }
  // Scenarios left out (BENCH_SCENARIOS): what held, held only where it was measured.
  const notRun = Object.keys(KINDS).filter((name) => !checks.some((c) => c.scenario === name))
  if (checks.length === 0) return { judged: false, why: 'none of the targets\' scenarios ran', checks, notRun, held: null }
  return { judged: true, checks, notRun, held: checks.every((c) => c.held.ratio && c.held.p99 && c.held.failures) }
}

/**
 * The verdict as lines for the console.
 * @param {Verdict} verdict
 * @returns {string[]}
 */
export function formatVerdict(verdict) {
  const head = `Against issue 5's targets (at ${TARGETS.connections} connections, durable sends and pulls at >= ${TARGETS.ratioMin} of the ceiling, p99 under ${TARGETS.p99MsUnder} ms, no errors):`
  if (!verdict.judged) return [head, `  not judged: ${verdict.why}`]
  const mark = (/** @type {boolean} */ ok) => (ok ? 'held' : 'NOT HELD')
  const lines = verdict.checks.map(
    (c) =>
      `  ${c.scenario.padEnd(16)} ratio ${c.ratio.toFixed(3)} ${mark(c.held.ratio).padEnd(8)}  p99 ${c.p99Ms.toFixed(2)} ms ${mark(c.held.p99).padEnd(8)}  errors, timeouts and non-2xx ${c.failures} ${mark(c.held.failures)}`,
  )
  const missed = verdict.checks.flatMap((c) => [
    ...(c.held.ratio ? [] : [`${c.scenario} at ${c.ratio.toFixed(3)} of the ceiling`]),
    ...(c.held.p99 ? [] : [`${c.scenario} p99 ${c.p99Ms.toFixed(2)} ms`]),
    ...(c.held.failures ? [] : [`${c.scenario} ${c.failures} errors, timeouts or non-2xx`]),
  ])
  const notRun = verdict.notRun.length === 0 ? '' : ` (not run: ${verdict.notRun.join(', ')})`
  return [head, ...lines, verdict.held ? `  every target held in this run${notRun}` : `  not held in this run: ${missed.join('; ')}${notRun}`]
}
