// Running a fast-check property inside a tap test: time-boxed, reporting the seed (and path) that
// replays a failure: FC_SEED=... FC_PATH=... npx tap <file>.

import fc from 'fast-check'
import type { Test } from 'tap'

const replay = process.env.FC_SEED === undefined ? {} : { seed: Number(process.env.FC_SEED), path: process.env.FC_PATH }

export async function holds<Ts>(t: Test, property: fc.IRawProperty<Ts, boolean>, params: fc.Parameters<Ts> = {}): Promise<void> {
  const settings = { numRuns: 200, interruptAfterTimeLimit: 20_000, ...params, ...replay }
  const details = await fc.check(property, settings)
  const report = details.failed ? `${fc.defaultReportMessage(details)}\n${String(details.errorInstance)}` : `seed ${details.seed}`
  t.equal(details.failed, false, report)
  // The time limit keeps a slow machine from hanging the suite, but a property cut off after a
  // handful of cases has tested next to nothing: at least a tenth of the cases asked for must run.
  const floor = Math.ceil(settings.numRuns / 10)
  t.ok(details.numRuns >= floor, `ran ${details.numRuns} of ${settings.numRuns} cases, at least ${floor} (seed ${details.seed})`)
}
