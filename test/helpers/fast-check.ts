// Running a fast-check property inside a tap test: time-boxed, reporting the seed (and path) that
// replays a failure: FC_SEED=... FC_PATH=... npx tap <file>.

import fc from 'fast-check'
import type { Test } from 'tap'

const replay = process.env.FC_SEED === undefined ? {} : { seed: Number(process.env.FC_SEED), path: process.env.FC_PATH }

export async function holds<Ts>(t: Test, property: fc.IRawProperty<Ts, boolean>, params: fc.Parameters<Ts> = {}): Promise<void> {
  const details = await fc.check(property, { numRuns: 200, interruptAfterTimeLimit: 20_000, ...params, ...replay })
  const report = details.failed ? `${fc.defaultReportMessage(details)}\n${String(details.errorInstance)}` : `seed ${details.seed}`
  t.equal(details.failed, false, report)
  t.ok(details.numRuns > 0, `ran ${details.numRuns} cases (seed ${details.seed})`)
}
