// The HTTP contract, through a real listening server: every input form, every rule, every error
// with its status and whole body.

import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { errorOf, getJson, postJson, request, startServer } from '../helpers/server.js'

const BAD = 'Bad Request'

t.test('contract', async (t) => {
  const { port } = await startServer(t, { shards: 3, threads: 1 })
  let n = 0
  const uniq = (prefix: string): string => `${prefix}${++n}-${process.pid}`

  t.test('a body that arrives in pieces is read whole, with Content-Length or chunked', async (t) => {
    const a = uniq('a')
    const chat = `${a}:${uniq('b')}`
    // Raw writes with pauses between them, so that uWS hands the body over in several chunks.
    const exchange = async (pieces: Buffer[]): Promise<string> => {
      const socket = connect(port, '127.0.0.1')
      await once(socket, 'connect')
      let answer = ''
      socket.on('data', (d: Buffer) => (answer += d.toString()))
      for (const piece of pieces) {
        socket.write(piece)
        await new Promise((r) => setTimeout(r, 30))
      }
      await new Promise((r) => setTimeout(r, 100))
      socket.destroy()
      return answer
    }
    const text = `pieces ${'é'.repeat(3000)}`
    const body = Buffer.from(JSON.stringify({ chat, text, sender: a }))
    const cut = [0, 7, 2000, 4001, body.length] // 2000 and 4001 split a two-byte 'é'
    const parts = cut.slice(1).map((end, i) => body.subarray(cut[i], end))
    const head = `POST /api/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n`
    const sized = await exchange([Buffer.from(`${head}Content-Length: ${body.length}\r\n\r\n`), ...parts])
    t.match(sized, /^HTTP\/1.1 200 OK/, 'Content-Length, four pieces')
    const chunks = parts.map((p) => Buffer.concat([Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')]))
    const chunked = await exchange([Buffer.from(`${head}Transfer-Encoding: chunked\r\n\r\n`), ...chunks, Buffer.from('0\r\n\r\n')])
    t.match(chunked, /^HTTP\/1.1 200 OK/, 'chunked, four chunks')
    const res = await getJson(port, '/api/pull', { chat })
    t.same(res.json.messages.map((m: { text: string }) => m.text), [text, text], 'both stored whole')
  })

  t.test('GET /ping', async (t) => {
    const res = await request(port, '/ping')
    t.equal(res.status, 200)
    t.equal(res.headers['content-type'], 'application/json')
    t.same(res.json, { message: 'pong' })
  })

  t.test('HEAD answers with headers only, so that the connection can carry the next request', async (t) => {
    const socket = connect(port, '127.0.0.1')
    await once(socket, 'connect')
    let answer = ''
    socket.on('data', (d: Buffer) => (answer += d.toString()))
    socket.write('HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n')
    for (let i = 0; i < 50 && !answer.endsWith('{"message":"pong"}'); i++) await new Promise((r) => setTimeout(r, 20))
    socket.destroy()
    const replies = answer.split(/(?=HTTP\/1\.1 )/)
    t.equal(replies.length, 2, 'two replies')
    t.match(replies[0], /^HTTP\/1.1 200 OK\r\n/, 'HEAD: 200')
    t.notMatch(replies[0], /\r\nContent-Length: (?!18\r\n)/i, "HEAD: no Content-Length but the GET reply's")
    t.ok(replies[0]?.endsWith('\r\n\r\n'), 'HEAD: no body')
    t.match(replies[1], /^HTTP\/1.1 200 OK\r\n[^]*\r\n\r\n\{"message":"pong"\}$/, 'GET after it: the whole reply')
  })

  t.test('send through every input form, pull through every input form', async (t) => {
    const a = uniq('a')
    const b = uniq('b')
    const chat = `${a}:${b}`
    const forms = [
      () => postJson(port, '/api/send', { chat, text: 'json', sender: a }),
      () => request(port, '/api/send', { method: 'POST', body: JSON.stringify({ chat, text: 'no content type', sender: b }) }),
      () => request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ chat, text: 'text/plain', sender: a }) }),
      () => request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json; charset=utf-8' }, body: JSON.stringify({ chat, text: 'charset', sender: a }) }),
      () =>
        request(port, '/api/send', {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ chat, text: 'form body', sender: b }).toString(),
        }),
      () => request(port, `/api/send?${new URLSearchParams({ chat, text: 'query string', sender: a })}`, { method: 'POST' }),
      () => request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ chat, text: 'chunked', sender: a }), chunked: true }),
    ]
    const times: number[] = []
    for (const f of forms) {
      const res = await f()
      t.equal(res.status, 200, res.text)
      t.same(Object.keys(res.json).sort(), ['chat', 'send_time'])
      t.equal(res.json.chat, chat)
      times.push(res.json.send_time)
    }
    const nowUs = Date.now() * 1000
    for (const st of times) {
      t.ok(Number.isSafeInteger(st), 'send_time is an integer')
      t.ok(Math.abs(st - nowUs) < 60e6, 'send_time is Unix time in microseconds')
    }
    for (let i = 1; i < times.length; i++) t.ok((times[i] as number) > (times[i - 1] as number), 'send_time strictly increases')
    const texts = ['json', 'no content type', 'text/plain', 'charset', 'form body', 'query string', 'chunked']
    const pulls = [
      () => request(port, `/api/pull?chat=${encodeURIComponent(chat)}&limit=100`),
      () => getJson(port, '/api/pull', { chat, cursor: 0, limit: 100, reverse: false }),
      () => request(port, '/api/pull', { method: 'GET', body: JSON.stringify({ chat, limit: 100 }) }),
      () => postJson(port, '/api/pull', { chat, limit: 100 }),
      () =>
        request(port, '/api/pull', {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ chat, limit: '100' }).toString(),
        }),
      () => getJson(port, '/api/pull', { chat: `${b}:${a}`, limit: '100', reverse: 'false' }),
    ]
    for (const f of pulls) {
      const res = await f()
      t.equal(res.status, 200, res.text)
      t.same(Object.keys(res.json).sort(), ['has_more', 'messages', 'next_cursor'])
      t.same(
        res.json.messages.map((m: { text: string }) => m.text),
        texts,
      )
      for (const m of res.json.messages) t.same(Object.keys(m).sort(), ['chat', 'send_time', 'sender', 'text'])
      t.equal(res.json.has_more, false)
      t.equal(res.json.next_cursor, (times.at(-1) as number) + 1)
    }
  })

  t.test('direct chats are one chat under a canonical id', async (t) => {
    const [x, y] = [uniq('zed'), uniq('amy')]
    const r1 = await postJson(port, '/api/send', { chat: `${x}:${y}`, text: 'from x', sender: x })
    const r2 = await postJson(port, '/api/send', { chat: `${y}:${x}`, text: 'from y', sender: y })
    t.equal(r1.json.chat, `${y}:${x}`, 'members sorted')
    t.equal(r2.json.chat, `${y}:${x}`)
    for (const chat of [`${x}:${y}`, `${y}:${x}`]) {
      const res = await getJson(port, '/api/pull', { chat })
      t.same(
        res.json.messages.map((m: { chat: string; text: string }) => [m.chat, m.text]),
        [
          [`${y}:${x}`, 'from x'],
          [`${y}:${x}`, 'from y'],
        ],
      )
    }
    const self = uniq('me')
    const r3 = await postJson(port, '/api/send', { chat: `${self}:${self}`, text: 'note to self', sender: self })
    t.equal(r3.status, 200)
    t.equal(r3.json.chat, `${self}:${self}`)
  })

  t.test('a room takes any sender', async (t) => {
    const room = uniq('room')
    for (const sender of ['u1', 'u2', 'u3']) t.equal((await postJson(port, '/api/send', { chat: room, text: 'hi', sender })).status, 200)
    const res = await request(port, `/api/pull?chat=${room}`)
    t.same(
      res.json.messages.map((m: { sender: string }) => m.sender),
      ['u1', 'u2', 'u3'],
    )
  })

  t.test('unicode, quotes and escapes survive the round trip', async (t) => {
    const room = uniq('uni')
    const texts = ['héllo wörld', '你好，世界', '🎉🚀 emoji', 'quote " backslash \\ slash /', 'new\nline\ttab', '\u2028\u2029', '<script>&amp;']
    for (const text of texts) t.equal((await postJson(port, '/api/send', { chat: room, text, sender: 'ü' })).status, 200)
    const res = await getJson(port, '/api/pull', { chat: room, limit: 50 })
    t.same(
      res.json.messages.map((m: { text: string }) => m.text),
      texts,
    )
  })

  t.test('pull paging: limit, has_more, next_cursor, reverse', async (t) => {
    const room = uniq('page')
    const times: number[] = []
    for (let i = 0; i < 25; i++) times.push((await postJson(port, '/api/send', { chat: room, text: `m${i}`, sender: 's' })).json.send_time)
    const texts = (res: { json: { messages: { text: string }[] } }) => res.json.messages.map((m) => m.text)

    let res = await getJson(port, '/api/pull', { chat: room })
    t.same(texts(res), Array.from({ length: 10 }, (_, i) => `m${i}`), 'default limit is 10, oldest first')
    t.equal(res.json.has_more, true)
    t.equal(res.json.next_cursor, (times[9] as number) + 1)

    res = await getJson(port, '/api/pull', { chat: room, limit: 0 })
    t.equal(res.json.messages.length, 10, 'limit 0 means the default')

    res = await getJson(port, '/api/pull', { chat: room, cursor: times[20], limit: 10 })
    t.same(texts(res), ['m20', 'm21', 'm22', 'm23', 'm24'], 'cursor is inclusive')
    t.equal(res.json.has_more, false)
    t.equal(res.json.next_cursor, (times[24] as number) + 1)

    res = await getJson(port, '/api/pull', { chat: room, cursor: (times[24] as number) + 1 })
    t.same(res.json, { messages: [], has_more: false, next_cursor: (times[24] as number) + 1 }, 'empty page echoes the cursor')

    res = await getJson(port, '/api/pull', { chat: room, reverse: true, limit: 3 })
    t.same(texts(res), ['m24', 'm23', 'm22'], 'reverse with cursor 0 starts from the newest')
    t.equal(res.json.has_more, true)
    t.equal(res.json.next_cursor, (times[22] as number) - 1)

    res = await getJson(port, '/api/pull', { chat: room, reverse: 'true', cursor: String(times[2]), limit: '10' })
    t.same(texts(res), ['m2', 'm1', 'm0'], 'reverse cursor is inclusive; strings accepted')
    t.equal(res.json.has_more, false)
    t.equal(res.json.next_cursor, (times[0] as number) - 1)

    res = await request(port, `/api/pull?chat=${room}&reverse=True&limit=1`)
    t.same(texts(res), ['m24'], 'reverse=True (Python requests) is true')
    res = await request(port, `/api/pull?chat=${room}&reverse=1&cursor=${(times[0] as number) - 1}`)
    t.same(res.json, { messages: [], has_more: false, next_cursor: (times[0] as number) - 1 })

    // Walking both directions with next_cursor visits every message exactly once.
    for (const reverse of [false, true]) {
      const seen: string[] = []
      let cursor = 0
      for (let guard = 0; guard < 20; guard++) {
        const page = await getJson(port, '/api/pull', { chat: room, cursor, limit: 4, reverse })
        seen.push(...texts(page))
        cursor = page.json.next_cursor
        if (!page.json.has_more) break
      }
      const expected = Array.from({ length: 25 }, (_, i) => `m${i}`)
      t.same(seen, reverse ? expected.reverse() : expected, `walk reverse=${reverse}`)
    }

    res = await getJson(port, '/api/pull', { chat: uniq('never-used') })
    t.same(res.json, { messages: [], has_more: false, next_cursor: 0 }, 'unknown chat is an empty page')
  })

  t.test('limit above 1000 is clamped to 1000', async (t) => {
    const room = uniq('big')
    const sends = []
    for (let i = 0; i < 1005; i++) sends.push(postJson(port, '/api/send', { chat: room, text: String(i), sender: 's' }))
    const replies = await Promise.all(sends)
    t.ok(replies.every((r) => r.status === 200))
    const res = await getJson(port, '/api/pull', { chat: room, limit: 5000 })
    t.equal(res.json.messages.length, 1000)
    t.equal(res.json.has_more, true)
  })

  t.test('polling with next_cursor while messages arrive sees each exactly once', async (t) => {
    const room = uniq('poll')
    const total = 300
    const seen: number[] = []
    let cursor = 0
    let sent = 0
    const sender = (async () => {
      for (; sent < total; sent++) await postJson(port, '/api/send', { chat: room, text: String(sent), sender: 's' })
    })()
    for (let guard = 0; guard < 10_000 && seen.length < total; guard++) {
      const page = await getJson(port, '/api/pull', { chat: room, cursor, limit: 7 })
      for (const m of page.json.messages) seen.push(Number(m.text))
      cursor = page.json.next_cursor
    }
    await sender
    t.same(
      seen,
      Array.from({ length: total }, (_, i) => i),
    )
  })

  t.test('concurrent senders to one chat lose nothing and keep send_time strictly increasing', async (t) => {
    const room = uniq('hot')
    const replies = await Promise.all(Array.from({ length: 400 }, (_, i) => postJson(port, '/api/send', { chat: room, text: `c${i}`, sender: `s${i % 7}` })))
    t.ok(replies.every((r) => r.status === 200))
    const acked = new Set(replies.map((r) => r.json.send_time))
    t.equal(acked.size, 400, 'every send_time is distinct')
    const res = await getJson(port, '/api/pull', { chat: room, limit: 1000 })
    const msgs = res.json.messages as { text: string; send_time: number }[]
    t.equal(msgs.length, 400)
    t.same(new Set(msgs.map((m) => m.text)).size, 400)
    for (let i = 1; i < msgs.length; i++) if ((msgs[i] as { send_time: number }).send_time <= (msgs[i - 1] as { send_time: number }).send_time) t.fail('not strictly increasing')
    t.same(new Set(msgs.map((m) => m.send_time)), acked)
  })

  t.test('a pull right after an acknowledged send sees it, on every shard', async (t) => {
    for (let i = 0; i < 30; i++) {
      const room = uniq('fresh')
      const sent = await postJson(port, '/api/send', { chat: room, text: 'now', sender: 's' })
      const res = await request(port, `/api/pull?chat=${room}&reverse=true&limit=1`)
      t.equal(res.json.messages[0]?.send_time, sent.json.send_time)
    }
  })

  t.test('errors: one body shape, right status, nothing stored', async (t) => {
    const room = uniq('err')
    const bad = async (res: Promise<import('../helpers/server.js').Res>, status: number, code: string, error: string, message: RegExp | string) => {
      const r = await res
      t.equal(r.status, status, `${code}: ${r.text}`)
      t.equal(r.headers['content-type'], 'application/json')
      t.same(Object.keys(r.json).sort(), ['code', 'error', 'message', 'statusCode'])
      if (typeof message === 'string') t.same(r.json, errorOf(status, code, error, message), 'whole error body')
      else t.match(r.json, errorOf(status, code, error, message))
    }
    await bad(postJson(port, '/api/send', { text: 'x', sender: 's' }), 400, 'IM_ERR_MISSING_FIELD', BAD, '"chat" is required and must not be empty')
    await bad(postJson(port, '/api/send', { chat: room, sender: 's' }), 400, 'IM_ERR_MISSING_FIELD', BAD, '"text" is required and must not be empty')
    await bad(postJson(port, '/api/send', { chat: room, text: 'x' }), 400, 'IM_ERR_MISSING_FIELD', BAD, '"sender" is required and must not be empty')
    await bad(postJson(port, '/api/send', { chat: room, text: '', sender: 's' }), 400, 'IM_ERR_MISSING_FIELD', BAD, '"text" is required and must not be empty')
    await bad(postJson(port, '/api/send', { chat: 5, text: 'x', sender: 's' }), 400, 'IM_ERR_INVALID_FIELD', BAD, '"chat" must be a string')
    await bad(postJson(port, '/api/send', { chat: room, text: { a: 1 }, sender: 's' }), 400, 'IM_ERR_INVALID_FIELD', BAD, '"text" must be a string')
    await bad(postJson(port, '/api/send', { chat: room, text: 'x', sender: 'a:b' }), 400, 'IM_ERR_INVALID_FIELD', BAD, '"sender" must not contain \':\'')
    for (const chat of ['a:b:c', ':b', 'a:', ':']) {
      await bad(postJson(port, '/api/send', { chat, text: 'x', sender: 'a' }), 400, 'IM_ERR_INVALID_CHAT', BAD, /chat id/)
      await bad(getJson(port, '/api/pull', { chat }), 400, 'IM_ERR_INVALID_CHAT', BAD, /chat id/)
    }
    await bad(postJson(port, '/api/send', { chat: 'a\u0001b', text: 'x', sender: 'a' }), 400, 'IM_ERR_INVALID_CHAT', BAD, 'room name must not contain control characters')
    await bad(postJson(port, '/api/send', { chat: room, text: 'x', sender: 'a\u0001b' }), 400, 'IM_ERR_INVALID_FIELD', BAD, 'sender must not contain control characters')
    await bad(postJson(port, '/api/send', { chat: 'a:b', text: 'x', sender: 'c' }), 400, 'IM_ERR_SENDER_NOT_MEMBER', BAD, 'sender "c" is not a member of chat "a:b"')
    await bad(postJson(port, '/api/send', { chat: room, text: 'x'.repeat(16 * 1024 + 1), sender: 's' }), 400, 'IM_ERR_FIELD_TOO_LONG', BAD, '"text" is longer than 16384 bytes')
    await bad(postJson(port, '/api/send', { chat: room, text: 'é'.repeat(8 * 1024 + 1), sender: 's' }), 400, 'IM_ERR_FIELD_TOO_LONG', BAD, '"text" is longer than 16384 bytes')
    await bad(postJson(port, '/api/send', { chat: `${'m'.repeat(129)}:b`, text: 'x', sender: 'b' }), 400, 'IM_ERR_FIELD_TOO_LONG', BAD, 'member id is longer than 128 bytes')
    await bad(postJson(port, '/api/send', { chat: room, text: 'x', sender: 's'.repeat(129) }), 400, 'IM_ERR_FIELD_TOO_LONG', BAD, 'sender is longer than 128 bytes')
    await bad(request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"chat": "x", ' }), 400, 'IM_ERR_INVALID_JSON', BAD, /^the body is not valid JSON: /)
    t.equal(
      (await request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: JSON.stringify({ chat: room + 'f', text: 'curl -d', sender: 's' }) })).status,
      200,
      'JSON sent with curl -d (form content type) is read as JSON',
    )
    await bad(request(port, '/api/send', { method: 'POST', body: 'chat=x' }), 400, 'IM_ERR_INVALID_JSON', BAD, /^the body is not valid JSON: /)
    await bad(request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[1,2]' }), 400, 'IM_ERR_BODY_NOT_OBJECT', BAD, 'the JSON body must be an object, got an array')
    await bad(request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'null' }), 400, 'IM_ERR_BODY_NOT_OBJECT', BAD, 'the JSON body must be an object, got null')
    await bad(request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '"str"' }), 400, 'IM_ERR_BODY_NOT_OBJECT', BAD, 'the JSON body must be an object, got string')
    await bad(
      request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]) }),
      400,
      'IM_ERR_INVALID_ENCODING',
      BAD,
      'the body is not valid UTF-8',
    )
    await bad(
      request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'multipart/form-data; boundary=x' }, body: '--x--' }),
      415,
      'IM_ERR_UNSUPPORTED_MEDIA_TYPE',
      'Unsupported Media Type',
      /^content type "multipart\/form-data" is not supported/,
    )
    await bad(
      request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"chat":"${room}","text":"a\\ud800b","sender":"s"}` }),
      400,
      'IM_ERR_INVALID_ENCODING',
      BAD,
      '"text" contains a lone surrogate (not valid Unicode)',
    )
    await bad(getJson(port, '/api/pull', {}), 400, 'IM_ERR_MISSING_FIELD', BAD, '"chat" is required and must not be empty')
    await bad(getJson(port, '/api/pull', { chat: room, cursor: -1 }), 400, 'IM_ERR_INVALID_FIELD', BAD, '"cursor" must be a non-negative integer, got -1')
    await bad(getJson(port, '/api/pull', { chat: room, limit: -5 }), 400, 'IM_ERR_INVALID_FIELD', BAD, '"limit" must be a non-negative integer, got -5')
    await bad(request(port, `/api/pull?chat=${room}&limit=-5`), 400, 'IM_ERR_INVALID_FIELD', BAD, '"limit" must be a non-negative integer, got "-5"')
    await bad(getJson(port, '/api/pull', { chat: room, cursor: 1.5 }), 400, 'IM_ERR_INVALID_FIELD', BAD, '"cursor" must be a non-negative integer, got 1.5')
    await bad(getJson(port, '/api/pull', { chat: room, cursor: 'abc' }), 400, 'IM_ERR_INVALID_FIELD', BAD, '"cursor" must be a non-negative integer, got "abc"')
    await bad(getJson(port, '/api/pull', { chat: room, reverse: 'maybe' }), 400, 'IM_ERR_INVALID_FIELD', BAD, '"reverse" must be a boolean (true/false), got "maybe"')
    await bad(getJson(port, '/api/pull', { chat: room, reverse: 2 }), 400, 'IM_ERR_INVALID_FIELD', BAD, '"reverse" must be a boolean (true/false), got 2')
    await bad(request(port, '/api/nope'), 404, 'IM_ERR_NOT_FOUND', 'Not Found', 'no route for /api/nope')
    await bad(request(port, '/'), 404, 'IM_ERR_NOT_FOUND', 'Not Found', 'no route for /')
    const r405 = await request(port, '/api/send')
    t.equal(r405.headers.allow, 'POST')
    await bad(request(port, '/api/send'), 405, 'IM_ERR_METHOD_NOT_ALLOWED', 'Method Not Allowed', 'GET is not allowed on /api/send; use POST')
    await bad(request(port, '/api/pull', { method: 'DELETE' }), 405, 'IM_ERR_METHOD_NOT_ALLOWED', 'Method Not Allowed', 'DELETE is not allowed on /api/pull; use GET, POST')
    const big = JSON.stringify({ chat: room, text: 'x'.repeat(70 * 1024), sender: 's' })
    await bad(request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: big }), 413, 'IM_ERR_BODY_TOO_LARGE', 'Payload Too Large', `the body is ${Buffer.byteLength(big)} bytes; the limit is 65536`)
    await bad(
      request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: big, chunked: true, agent: new (await import('node:http')).Agent() }),
      413,
      'IM_ERR_BODY_TOO_LARGE',
      'Payload Too Large',
      'the body is over the limit of 65536 bytes',
    )
    const after = await getJson(port, '/api/pull', { chat: room })
    t.same(after.json, { messages: [], has_more: false, next_cursor: 0 }, 'no rejected send was stored')
    t.equal((await request(port, '/ping')).status, 200, 'still serving')
  })
})
