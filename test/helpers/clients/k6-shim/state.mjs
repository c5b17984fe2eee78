// What the shimmed k6 modules record while a script runs; the runner prints it at the end.
export const state = {
  vu: 0,
  /** check name -> { passes, fails } */
  checks: new Map(),
  /** Every request as written on the wire, with the status it got. */
  requests: [],
  /** Thrown errors by message (an exception ends an iteration in k6 too). */
  errors: [],
}
