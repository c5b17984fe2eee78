// The bench's verdict on issue 5's targets (bench/targets.mjs): which scenarios it judges, and
// that each of the three conditions fails a run on its own.

import t from 'tap'
// @ts-expect-error: the bench is JavaScript with JSDoc types, outside the compiled sources
import { TARGETS, formatVerdict, judgeTargets } from '../../bench/targets.mjs'

interface Side { latencyMsP99: number; errors: number; timeouts: number; non2xx: number }
interface Row { scenario: string; ratio: number; pullchat: Side }

const side = (p99: number, errors = 0, timeouts = 0, non2xx = 0): Side => ({ latencyMsP99: p99, errors, timeouts, non2xx })
const run = (rows: Row[], connections = 64) => ({ settings: { connections }, results: rows })
const passing = (): Row[] => [
  { scenario: 'send-1-chat', ratio: 0.58, pullchat: side(2.6) },
  { scenario: 'send-10k-chats', ratio: 0.55, pullchat: side(3.2) },
  { scenario: 'pull-hot', ratio: 0.92, pullchat: side(1.7) },
  { scenario: 'pull-reverse', ratio: 0.8, pullchat: side(1.4) },
  { scenario: 'pull-many-chats', ratio: 0.86, pullchat: side(1.3) },
  // Measured, but no target: a ratio and p99 that would fail one do not fail the run.
  { scenario: 'mixed-90-10', ratio: 0.4, pullchat: side(9) },
  { scenario: 'many-connections', ratio: 0.7, pullchat: side(11.7) },
]

t.test('a run meeting every target is judged held, on the send and pull scenarios only', async (t) => {
  const v = judgeTargets(run(passing()))
  t.equal(v.judged, true)
  t.equal(v.held, true)
  t.same(v.checks.map((c: { scenario: string }) => c.scenario), ['send-1-chat', 'send-10k-chats', 'pull-hot', 'pull-reverse', 'pull-many-chats'])
  t.same(v.notRun, [])
  t.equal(formatVerdict(v).at(-1), '  every target held in this run')
})

t.test('scenarios left out of a run are named: a verdict holds only for those measured', async (t) => {
  const v = judgeTargets(run(passing().filter((r) => r.scenario !== 'send-10k-chats' && r.scenario !== 'pull-reverse')))
  t.equal(v.held, true)
  t.same(v.notRun, ['send-10k-chats', 'pull-reverse'])
  t.match(formatVerdict(v).at(-1), /every target held in this run \(not run: send-10k-chats, pull-reverse\)/)
})

t.test('each condition fails the run on its own, at its bound', async (t) => {
  const cases: [string, (r: Row) => void, RegExp][] = [
    ['a ratio under 0.5', (r) => (r.ratio = 0.499), /send-10k-chats at 0\.499 of the ceiling/],
    ['a p99 of exactly 5 ms', (r) => (r.pullchat.latencyMsP99 = TARGETS.p99MsUnder), /send-10k-chats p99 5\.00 ms/],
    ['one error', (r) => (r.pullchat.errors = 1), /send-10k-chats 1 errors, timeouts or non-2xx/],
    ['one timeout', (r) => (r.pullchat.timeouts = 1), /send-10k-chats 1 errors/],
    ['one non-2xx', (r) => (r.pullchat.non2xx = 1), /send-10k-chats 1 errors/],
  ]
  for (const [name, spoil, said] of cases) {
    const rows = passing()
    spoil(rows[1] as Row)
    const v = judgeTargets(run(rows))
    t.equal(v.held, false, name)
    const lines = formatVerdict(v)
    t.match(lines.at(-1), said, `${name}: the last line names it`)
    t.equal(lines.filter((l: string) => l.includes('NOT HELD')).length, 1, `${name}: one condition of one scenario marked`)
  }
  // The bound itself is met.
  const rows = passing()
  ;(rows[0] as Row).ratio = TARGETS.ratioMin
  t.equal(judgeTargets(run(rows)).held, true, 'a ratio of exactly 0.5 holds')
})

t.test('a run at other than 64 connections, or without the scenarios, is not judged', async (t) => {
  const other = judgeTargets(run(passing(), 1000))
  t.equal(other.judged, false)
  t.equal(other.held, null)
  t.match(formatVerdict(other).join('\n'), /not judged: the targets are for 64 connections; this run used 1000/)
  const none = judgeTargets(run([{ scenario: 'mixed-90-10', ratio: 0.6, pullchat: side(2) }]))
  t.equal(none.judged, false)
  t.equal(none.held, null)
  t.match(formatVerdict(none).join('\n'), /not judged: none of the targets' scenarios ran/)
})
