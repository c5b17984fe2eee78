// The error catalogue against its documentation (docs/errors.md and the README's table), and the
// catalogue's own rules: stable unique ids, rebuilding across threads, one body shape.

import { readFileSync } from 'node:fs'
import t from 'tap'
import { Errors, PullchatError, asPullchatError, errorBody, fromWire, reasonPhrase, type ErrorSpec } from '../src/errors.js'

const entries = Object.entries(Errors) as [string, ErrorSpec][]
const specs = entries.map(([, s]) => s)
const read = (path: string): string => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8')

interface Row {
  readonly code: string
  readonly status: number
  readonly rest: readonly string[]
}

/** Rows of the markdown tables in `md` whose first cell is a code in backticks. */
function codeRows(md: string): Row[] {
  const rows: Row[] = []
  for (const line of md.split('\n')) {
    const m = /^\|\s*`(IM_ERR_[A-Z_]+)`\s*\|\s*(\d{3})\s*\|(.*)$/.exec(line)
    if (m === null) continue
    rows.push({
      code: m[1] as string,
      status: Number(m[2]),
      rest: (m[3] as string)
        .split('|')
        .map((c) => c.trim())
        .filter((c) => c !== ''),
    })
  }
  return rows
}

t.test('the catalogue keeps its own rules', async (t) => {
  t.ok(entries.length >= 18, 'the catalogue is not empty')
  const wireIds = specs.map((s) => s.wireId)
  t.equal(new Set(wireIds).size, wireIds.length, 'wire ids are unique')
  t.ok(
    wireIds.every((id) => Number.isInteger(id) && id > 0),
    'wire ids are positive integers (0 means success on the wire)',
  )
  t.ok(
    wireIds.every((id, i) => i === 0 || id > (wireIds[i - 1] as number)),
    'new entries go at the end: wire ids increase in catalogue order',
  )
  const codes = specs.map((s) => s.code)
  t.equal(new Set(codes).size, codes.length, 'codes are unique')
  for (const [name, s] of entries) {
    t.equal(s.code, `IM_ERR_${name}`, `${name}: the code is IM_ERR_ + its name`)
    t.ok(s.statusCode >= 400 && s.statusCode <= 599, `${s.code}: an error status`)
    t.not(reasonPhrase(s.statusCode), 'Error', `${s.code}: status ${s.statusCode} has a reason phrase`)
    t.ok(s.message.length > 0, `${s.code}: a default message`)
    t.ok(Object.isFrozen(s), `${s.code}: frozen`)
  }
  t.ok(Object.isFrozen(Errors), 'the catalogue is frozen')
})

t.test('docs/errors.md lists every entry, in order, with its status', async (t) => {
  const rows = codeRows(read('docs/errors.md'))
  t.same(
    rows.map((r) => [r.code, r.status]),
    specs.map((s) => [s.code, s.statusCode]),
    'one row per catalogue entry, same order, same status',
  )
  for (const r of rows) t.equal(r.rest.length, 1, `${r.code}: a "when" column`)
  const documented = new Set(rows.map((r) => r.code))
  const known = new Set(specs.map((s) => s.code))
  t.same(
    [...documented].filter((c) => !known.has(c)),
    [],
    'no documented code is missing from the catalogue',
  )
  t.same(
    [...known].filter((c) => !documented.has(c)),
    [],
    'no catalogue code is missing from the doc',
  )
  t.equal(rows.length, documented.size, 'no code is documented twice')
})

t.test("the README's error table has every code with its status", async (t) => {
  const rows = codeRows(read('README.md'))
  t.same(
    rows.map((r) => [r.code, r.status]),
    specs.map((s) => [s.code, s.statusCode]),
  )
})

t.test('fromWire() rebuilds every entry from its wire id', async (t) => {
  for (const s of specs) {
    const e = fromWire(s.wireId, `detail for ${s.code}`)
    t.ok(e instanceof PullchatError, s.code)
    t.equal(e.spec, s, `${s.code}: the catalogue's own spec`)
    t.equal(e.code, s.code)
    t.equal(e.statusCode, s.statusCode)
    t.equal(e.message, `detail for ${s.code}`, `${s.code}: the message that crossed the wire`)
    t.equal(e.name, 'PullchatError')
  }
})

t.test('an unknown wire id becomes IM_ERR_INTERNAL and keeps what it knows', async (t) => {
  const unknown = Math.max(...specs.map((s) => s.wireId)) + 1
  for (const id of [0, -1, unknown, 9999]) {
    const e = fromWire(id, 'boom')
    t.equal(e.spec, Errors.INTERNAL, `id ${id}`)
    t.equal(e.statusCode, 500)
    t.equal(e.message, `unknown error id ${id}: boom`)
  }
})

t.test('errorBody(): one shape, key order included', async (t) => {
  for (const s of specs) {
    const body = errorBody(new PullchatError(s))
    t.equal(body, `{"statusCode":${s.statusCode},"code":"${s.code}","error":"${reasonPhrase(s.statusCode)}","message":${JSON.stringify(s.message)}}`, s.code)
  }
  t.same(JSON.parse(errorBody(new PullchatError(Errors.INVALID_CHAT, 'chat id "a:b:c" has more than one \':\''))), {
    statusCode: 400,
    code: 'IM_ERR_INVALID_CHAT',
    error: 'Bad Request',
    message: 'chat id "a:b:c" has more than one \':\'',
  })
  t.same(JSON.parse(errorBody(fromWire(Errors.SHARD_UNAVAILABLE.wireId, 'shard 1 is not available'))), {
    statusCode: 503,
    code: 'IM_ERR_SHARD_UNAVAILABLE',
    error: 'Service Unavailable',
    message: 'shard 1 is not available',
  })
})

t.test('reason phrases', async (t) => {
  t.same(
    [400, 404, 405, 413, 415, 500, 503, 507].map(reasonPhrase),
    ['Bad Request', 'Not Found', 'Method Not Allowed', 'Payload Too Large', 'Unsupported Media Type', 'Internal Server Error', 'Service Unavailable', 'Insufficient Storage'],
  )
  t.equal(reasonPhrase(418), 'Error', 'a status the service never answers with')
})

t.test('asPullchatError(): operating errors pass through, anything else is INTERNAL', async (t) => {
  const op = new PullchatError(Errors.BODY_TOO_LARGE, 'too big')
  t.equal(asPullchatError(op), op)
  for (const thrown of [new Error('secret detail'), 'a string', null, undefined, { code: 'IM_ERR_NOT_FOUND' }]) {
    const e = asPullchatError(thrown)
    t.equal(e.spec, Errors.INTERNAL)
    t.equal(e.message, 'internal error', 'no detail of the unexpected error leaks to the client')
  }
})
