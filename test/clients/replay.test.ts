// k6 and JMeter cannot run here (k6 is not packaged for npm or Debian; Debian's JMeter is 2.13,
// which cannot send a body with GET), so this replays what they send, against the real server:
//
// - the JMeter plan examples/jmeter/pullchat.jmx, read and played as JMeter 5 plays it
//   (test/helpers/clients/jmx.ts), with the plan's own extractors and Response Assertions;
// - the k6 script examples/k6/pullchat.js, run unchanged under a shim of k6's http API that writes
//   requests the way k6 does (test/helpers/clients/k6-shim/), with the script's own checks;
// - the request shapes students' scripts commonly used, byte for byte.

import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { startServer } from '../helpers/server.js'
import { JMETER_USER_AGENT, readPlan, runPlan } from '../helpers/clients/jmx.js'
import { RawConnection } from '../helpers/clients/raw-http.js'

const ROOT = new URL('../../', import.meta.url)
const read = (path: string): string => readFileSync(new URL(path, ROOT), 'utf8')

t.test('the JMeter plan, as JMeter 5 sends it', async (t) => {
  const { port } = await startServer(t)
  const plan = readPlan(read('examples/jmeter/pullchat.jmx'))
  t.same(plan.headers, [['Content-Type', 'application/json']], 'one Header Manager: Content-Type: application/json')
  t.same(
    plan.samplers.map((s) => [s.method, s.path, s.rawBody === null ? 'params' : 'raw body']),
    [
      ['POST', '/api/send', 'raw body'],
      ['GET', '/api/pull', 'raw body'],
      ['GET', '/api/pull', 'raw body'],
      ['GET', '/api/pull', 'params'],
    ],
  )
  const assertionsPerLoop = plan.samplers.reduce((n, s) => n + s.assertions.length, 0)
  t.equal(assertionsPerLoop, 8, 'a status and a body assertion per sampler')

  const threads = 3
  const loops = 4
  const results = await runPlan(plan, { host: '127.0.0.1', port: String(port), threads: String(threads), loops: String(loops) })
  t.equal(results.length, threads * loops * plan.samplers.length, 'every sample ran')
  t.equal(
    results.reduce((n, r) => n + r.assertions.length, 0),
    threads * loops * assertionsPerLoop,
    'every assertion ran',
  )
  const failed = results.flatMap((r) => r.assertions.filter((a) => !a.ok).map((a) => `${r.sampler} (thread ${r.thread}, loop ${r.loop}): ${a.name}: ${a.detail}`))
  t.same(failed, [], 'every assertion of the plan passes')
  t.ok(
    results.every((r) => r.status === 200),
    'every sample is 200',
  )

  // What went on the wire: the GET samplers carry their JSON body, as JMeter >= 3.1 sends it.
  const first = results.filter((r) => r.thread === 1 && r.loop === 1)
  const [send, pull, reverse, query] = first.map((r) => r.request) as [string, string, string, string]
  t.match(send, /^POST \/api\/send HTTP\/1\.1\r\nConnection: keep-alive\r\nContent-Type: application\/json\r\nContent-Length: \d+\r\nHost: 127\.0\.0\.1:\d+\r\nUser-Agent: Apache-HttpClient\/4\.5\.14 \(Java\/17\.0\.15\)\r\n\r\n\{"chat":"u\d+t1:bot","text":"hello 1","sender":"u\d+t1"\}$/)
  t.match(pull, /^GET \/api\/pull HTTP\/1\.1\r\n[\s\S]*Content-Length: \d+\r\n[\s\S]*\r\n\r\n\{"chat":"u\d+t1:bot","cursor":\d{16},"limit":10,"reverse":false\}$/)
  t.match(reverse, /\r\n\r\n\{"chat":"bot:u\d+t1","cursor":0,"limit":1,"reverse":true\}$/)
  t.match(query, /^GET \/api\/pull\?chat=bot%3Au\d+t1&cursor=0&limit=1&reverse=false HTTP\/1\.1\r\n/)
  t.notMatch(query, /Content-Length/, 'the query-string pull has no body')
  t.ok(query.includes(`User-Agent: ${JMETER_USER_AGENT}\r\n`))
})

t.test('the k6 script, run under a k6 http shim', async (t) => {
  const { base } = await startServer(t)
  const vus = 3
  const iterations = 4
  const child = spawn(process.execPath, ['test/helpers/clients/k6-shim/run.mjs', 'examples/k6/pullchat.js', base, String(vus), String(iterations)], {
    cwd: new URL('.', ROOT),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (c: Buffer) => (out += c.toString()))
  child.stderr.on('data', (c: Buffer) => (err += c.toString()))
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  t.equal(code, 0, err)
  const summary = JSON.parse(out) as {
    options: { vus: number; duration: string }
    checks: Record<string, { passes: number; fails: number }>
    requests: { vu: number; raw: string; status: number }[]
    errors: string[]
  }
  t.same(summary.errors, [], 'no iteration threw')
  t.match(summary.options, { vus: 10, duration: '10s' }, 'the script keeps its short options')

  // Every check the script declares ran on every iteration and passed (its checks threshold).
  const declared = [...read('examples/k6/pullchat.js').matchAll(/^\s*'([^']+)': \(r\) =>/gm)].map((m) => m[1])
  t.equal(declared.length, 11, 'the script declares 11 checks')
  t.same(Object.keys(summary.checks).sort(), [...declared].sort(), 'every declared check ran')
  for (const [name, c] of Object.entries(summary.checks)) t.same(c, { passes: vus * iterations, fails: 0 }, name)

  // Its http_req_failed threshold: no request failed.
  t.equal(summary.requests.length, vus * iterations * 3)
  t.same(
    summary.requests.filter((r) => r.status !== 200),
    [],
  )

  // What went on the wire: a string body with only the headers the script passed.
  const [send, pull, newest] = summary.requests.filter((r) => r.vu === 1).map((r) => r.raw) as [string, string, string]
  t.match(send, /^POST \/api\/send HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\nUser-Agent: k6\/[\d.]+ \(https:\/\/k6\.io\/\)\r\nContent-Length: \d+\r\nContent-Type: application\/json\r\nAccept-Encoding: gzip\r\n\r\n\{"chat":"vu1-\d+:amy","text":"message 1 from vu1-\d+","sender":"vu1-\d+"\}$/)
  t.match(pull, /^GET \/api\/pull HTTP\/1\.1\r\n[\s\S]*Content-Type: application\/json\r\n[\s\S]*\r\n\r\n\{"chat":"vu1-\d+:amy","cursor":\d{16},"limit":10,"reverse":false\}$/)
  t.match(newest, /^GET \/api\/pull\?chat=vu1-\d+%3Aamy&reverse=true&limit=1 HTTP\/1\.1\r\nHost: [^\r]+\r\nUser-Agent: [^\r]+\r\nAccept-Encoding: gzip\r\n\r\n$/)
})

t.test("students' request shapes, byte for byte", async (t) => {
  const { port } = await startServer(t)
  const conn = await RawConnection.open(port)
  t.teardown(() => conn.close())
  const host = `Host: 127.0.0.1:${port}`
  const K6 = 'User-Agent: k6/0.54.0 (https://k6.io/)'
  const JMETER = `User-Agent: ${JMETER_USER_AGENT}`
  const withBody = (head: string[], body: string): [string[], string] => [[...head, `Content-Length: ${Buffer.byteLength(body)}`], body]
  const sendTimes: number[] = []

  const sends: [string, string[], string][] = [
    // k6: http.post(url, JSON.stringify(body)) without params: no Content-Type at all.
    ['k6, JSON string without params', ...withBody(['POST /api/send HTTP/1.1', host, K6], JSON.stringify({ chat: 'bob:amy', text: 'k6 no params', sender: 'amy' }))],
    // k6: http.post(url, {chat, text, sender}): an object is form-encoded.
    [
      'k6, object body (form)',
      ...withBody(['POST /api/send HTTP/1.1', host, K6, 'Content-Type: application/x-www-form-urlencoded'], 'chat=amy%3Abob&sender=bob&text=k6+form'),
    ],
    // JMeter: Body Data without a Header Manager: HttpClient labels a StringEntity text/plain.
    [
      'JMeter, body data without a Header Manager',
      ...withBody(['POST /api/send HTTP/1.1', 'Connection: keep-alive', 'Content-Type: text/plain; charset=ISO-8859-1', host, JMETER], '{"chat":"amy:bob","text":"jmeter text/plain","sender":"amy"}'),
    ],
    // Postman's Params tab on a POST: everything in the query string, no body.
    ['query string, no body', ['POST /api/send?chat=amy:bob&text=query%20only&sender=bob HTTP/1.1', host, 'Content-Length: 0'], ''],
  ]
  for (const [what, head, body] of sends) {
    const res = await conn.send(head, body)
    t.equal(res.status, 200, `${what}: status`, { body: res.body })
    const json = JSON.parse(res.body)
    t.same(Object.keys(json), ['chat', 'send_time'], what)
    t.equal(json.chat, 'amy:bob', `${what}: canonical chat`)
    sendTimes.push(json.send_time)
  }
  const texts = ['k6 no params', 'k6 form', 'jmeter text/plain', 'query only']
  const expected = texts.map((text, i) => ({ chat: 'amy:bob', text, sender: i % 2 === 0 ? 'amy' : 'bob', send_time: sendTimes[i] }))
  const last = sendTimes[3] as number

  const pulls: [string, string[], string][] = [
    // The classic: GET with everything in the query string, no body, no Content-Type.
    ['GET, query string', ['GET /api/pull?chat=amy:bob&cursor=0&limit=10&reverse=false HTTP/1.1', host], ''],
    // JMeter's query sampler under a plan-wide Header Manager: a Content-Type but no body.
    ['GET, query string, Content-Type and no body', ['GET /api/pull?chat=bob%3Aamy&cursor=0&limit=10 HTTP/1.1', 'Connection: keep-alive', 'Content-Type: application/json', host, JMETER], ''],
    // JSON with every number and boolean quoted, as string-templated plans write them.
    ['GET, JSON body with quoted numbers', ...withBody(['GET /api/pull HTTP/1.1', host, K6, 'Content-Type: application/json'], '{"chat":"amy:bob","cursor":"0","limit":"10","reverse":"false"}')],
    // JMeter < 3.1 cannot send a GET body; POST works as a pull too.
    ['POST, JSON body', ...withBody(['POST /api/pull HTTP/1.1', 'Connection: keep-alive', 'Content-Type: application/json', host, JMETER], '{"chat":"amy:bob","limit":10}')],
    ['POST, form body', ...withBody(['POST /api/pull HTTP/1.1', host, K6, 'Content-Type: application/x-www-form-urlencoded'], 'chat=amy%3Abob&limit=10')],
  ]
  for (const [what, head, body] of pulls) {
    const res = await conn.send(head, body)
    t.equal(res.status, 200, `${what}: status`, { body: res.body })
    t.same(JSON.parse(res.body), { messages: expected, has_more: false, next_cursor: last + 1 }, what)
  }

  const reverse = await conn.send(['GET /api/pull?chat=amy:bob&cursor=0&limit=2&reverse=true HTTP/1.1', host], '')
  t.same(JSON.parse(reverse.body), { messages: [expected[3], expected[2]], has_more: true, next_cursor: (sendTimes[2] as number) - 1 }, 'reverse by query string')

  // What JMeter 2.13 (Debian's package) does with the plan's GET samplers: it drops the body.
  const dropped = await conn.send(['GET /api/pull HTTP/1.1', 'Connection: keep-alive', 'Content-Type: application/json', host, JMETER], '')
  t.equal(dropped.status, 400)
  t.same(JSON.parse(dropped.body), { statusCode: 400, code: 'IM_ERR_MISSING_FIELD', error: 'Bad Request', message: '"chat" is required and must not be empty' })
})
