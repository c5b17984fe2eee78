// The parts of k6's 'k6' module that the example scripts use: check() and sleep().
import { state } from './state.mjs'

export function check(value, sets) {
  let all = true
  for (const [name, fn] of Object.entries(sets)) {
    let ok
    try {
      ok = Boolean(fn(value))
    } catch (err) {
      ok = false
      state.errors.push(`check ${JSON.stringify(name)} threw: ${err?.message ?? err}`)
    }
    const c = state.checks.get(name) ?? { passes: 0, fails: 0 }
    if (ok) c.passes++
    else c.fails++
    state.checks.set(name, c)
    all &&= ok
  }
  return all
}

// The shim runs iterations back to back: pacing is k6's business, not the contract's.
export function sleep() {}

export function fail(msg) {
  throw new Error(msg)
}

export function group(_name, fn) {
  return fn()
}

export default { check, sleep, fail, group }
