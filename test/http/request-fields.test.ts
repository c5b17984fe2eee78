// The query-string fast path reads exactly what URLSearchParams reads, for every text (the fast
// path takes only text with nothing to decode; the rest goes through URLSearchParams itself).

import fc from 'fast-check'
import t from 'tap'
import { holds } from '../helpers/fast-check.js'
import { readQuery, type Fields } from '../../src/http/request-fields.js'

/** What URLSearchParams makes of `text`, first occurrence of a key winning. */
function reference(text: string): Fields {
  const out: Fields = Object.create(null) as Fields
  for (const [k, v] of new URLSearchParams(text)) if (!Object.hasOwn(out, k)) out[k] = v
  return out
}

function read(text: string): Fields {
  const out: Fields = Object.create(null) as Fields
  readQuery(text, out)
  return out
}

// Texts made mostly of the characters that matter: separators, escapes and a few keys.
const piece = fc.oneof(
  fc.constantFrom('&', '=', '&&', '?', '??', '==', 'chat', 'cursor', 'limit', 'reverse', 'a:b', '1', 'true', '', '%20', '%', '+', 'é', '😀', '%F0%9F%98%80', '%zz'),
  fc.string({ unit: 'grapheme', maxLength: 4 }),
)
const text = fc.array(piece, { maxLength: 12 }).map((parts) => parts.join(''))

t.test('readQuery equals URLSearchParams, with or without anything to decode', async (t) => {
  await holds(
    t,
    fc.property(text, (s) => JSON.stringify(Object.entries(read(s))) === JSON.stringify(Object.entries(reference(s)))),
    { numRuns: 2000 },
  )
})

t.test('edges of the fast path', async (t) => {
  for (const s of ['', '?', '??a=1', '?a=1&b', '&', '&&&', '=', '==', 'a', 'a=', '=b', 'a=1=2', 'a=1&a=2', 'a&b=&c=3', 'chat=alice:bob&limit=10&reverse=true', '&chat=x&']) {
    t.same(read(s), reference(s), JSON.stringify(s))
  }
})
