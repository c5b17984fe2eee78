// The handlers as plain functions, without a socket: what reaches the backend, and what never does.

import t from 'tap'
import { DEFAULTS } from '../../src/config.js'
import { pull, send, type Backend, type ParsedRequest, type Reply } from '../../src/http/handlers.js'
import { PullchatError } from '../../src/errors.js'
import { sendStrings } from '../../src/rpc/index.js'

interface Call {
  readonly op: string
  readonly args: unknown[]
}

function harness() {
  const calls: Call[] = []
  // Sends that came as the body's literals (send-body.ts); recorded as the strings they spell, so
  // that every test below holds for both ways a send reaches the backend.
  const literalSends: string[] = []
  const backend: Backend = {
    send: (chat, text, sender, cb) => {
      calls.push({ op: 'send', args: [chat, text, sender] })
      cb(null, 1795577316479813)
    },
    sendBytes: (chat, fields, cb) => {
      const { text, sender } = sendStrings(fields)
      literalSends.push(chat)
      calls.push({ op: 'send', args: [chat, text, sender] })
      cb(null, 1795577316479813)
    },
    pull: (chat, cursor, limit, reverse, cb) => {
      calls.push({ op: 'pull', args: [chat, cursor, limit, reverse] })
      cb(null, { messages: Buffer.from('[]'), hasMore: false, nextCursor: cursor, count: 0 })
    },
  }
  const run = (handler: typeof send, req: Partial<ParsedRequest>): Reply | PullchatError => {
    let reply: Reply | undefined
    try {
      handler({ method: 'POST', path: '/', query: '', contentType: 'application/json', body: null, ...req }, { config: DEFAULTS, backend }, (r) => (reply = r))
    } catch (err) {
      return err as PullchatError
    }
    if (reply === undefined) throw new Error('no reply')
    return reply
  }
  return { calls, literalSends, run }
}

const json = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v))

t.test('send passes the canonical chat to the backend and answers with it', async (t) => {
  const { calls, run } = harness()
  const reply = run(send, { body: json({ chat: 'bob:alice', text: 'hi', sender: 'bob' }) }) as Reply
  t.same(calls, [{ op: 'send', args: ['alice:bob', 'hi', 'bob'] }])
  t.equal(reply.status, 200)
  t.same(JSON.parse(String(reply.body)), { chat: 'alice:bob', send_time: 1795577316479813 })
})

t.test('the common body reaches the backend as its literals; any other as strings', async (t) => {
  const { calls, literalSends, run } = harness()
  run(send, { body: json({ chat: 'bob:alice', text: 'hi', sender: 'bob' }) })
  run(send, { body: json({ chat: 'bob:alice', text: 'say "hi"', sender: 'bob' }) })
  run(send, { body: json({ chat: 'bob:alice', text: 'hi', sender: 'bob', send_time: 0 }) })
  run(send, { body: Buffer.from('text=hi&sender=bob&chat=bob:alice'), contentType: 'application/x-www-form-urlencoded' })
  t.same(literalSends, ['alice:bob'], 'only the first is the common body')
  t.same(
    calls.map((c) => c.args),
    [['alice:bob', 'hi', 'bob'], ['alice:bob', 'say "hi"', 'bob'], ['alice:bob', 'hi', 'bob'], ['alice:bob', 'hi', 'bob']],
  )
})

t.test('a rejected send never reaches the backend', async (t) => {
  const bad = [
    { chat: 'a:b', text: 'hi', sender: 'c' },
    { chat: 'a:b:c', text: 'hi', sender: 'a' },
    { chat: 'a:b', text: '', sender: 'a' },
    { chat: 'a:b', text: 'x'.repeat(DEFAULTS.textBytesMax + 1), sender: 'a' },
    { chat: 'a:b', text: 'hi', sender: 'a:b' },
    { chat: 'room', text: 'a\ud800', sender: 'a' },
  ]
  for (const body of bad) {
    const { calls, run } = harness()
    const out = run(send, { body: json(body) })
    t.ok(out instanceof PullchatError && out.statusCode === 400, `400 for ${JSON.stringify(body).slice(0, 60)}`)
    t.same(calls, [], 'backend not called')
  }
})

t.test('pull: defaults, clamping and coercion before the backend', async (t) => {
  const cases: Array<[Partial<ParsedRequest>, unknown[]]> = [
    [{ query: 'chat=b:a' }, ['a:b', 0, DEFAULTS.pullLimitDefault, false]],
    [{ query: 'chat=room&limit=0&cursor=5' }, ['room', 5, DEFAULTS.pullLimitDefault, false]],
    [{ query: 'chat=room&limit=99999&reverse=TRUE' }, ['room', 0, DEFAULTS.pullLimitMax, true]],
    [{ body: json({ chat: 'room', cursor: '12', limit: '3', reverse: 1 }) }, ['room', 12, 3, true]],
    [{ query: 'chat=ignored&limit=7', body: json({ chat: 'room' }) }, ['room', 0, 7, false]],
  ]
  for (const [req, args] of cases) {
    const { calls, run } = harness()
    const reply = run(pull, { method: 'GET', ...req }) as Reply
    t.equal(reply.status, 200)
    t.same(calls, [{ op: 'pull', args }], JSON.stringify(req.query ?? '') + ' ' + (req.body ? Buffer.from(req.body).toString() : ''))
    t.same(JSON.parse(Buffer.from(reply.body as Uint8Array).toString()), { messages: [], has_more: false, next_cursor: args[1] })
  }
})
