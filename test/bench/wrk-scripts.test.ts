// The benchmarks' wrk scripts (bench/lib.mjs), run through wrk against a server that records what
// it is sent: every request is one the load names, each of wrk's threads cycles through them in
// order, both threads start (wrkScript's barrier) and the summary line is read. bench/scale.mjs's
// loads are what its comparisons rest on: the one chat's requests differ only in X-Request-Id, the
// many chats' in the chat, and the sends are the bench's message by a member of its chat. Skipped
// where wrk is not installed (.ci/run installs it).

import t, { type Test } from 'tap'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
// @ts-expect-error: the bench is JavaScript with JSDoc types, outside the compiled sources
import { BENCH_TEXT, hasWrk, requestIds, runWrkAsync, scaleLoads, wrkScript } from '../../bench/lib.mjs'

const skip = hasWrk() ? false : 'wrk not found (apt-get install wrk)'

interface Seen {
  readonly method: string
  readonly url: string
  readonly id: string | undefined
  readonly contentType: string | undefined
  readonly body: string
}

interface Wrk {
  reqPerSec: number
  summary: { non2xx: number; errors: number; p99: number } | null
  output: string
}

/** A server that answers every request with 200 and `{}`, recording each by connection. */
async function recorder(t: Test): Promise<{ port: number; byConnection: Map<number, Seen[]>; reset(): void }> {
  const byConnection = new Map<number, Seen[]>()
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const conn = req.socket.remotePort ?? 0
      const seen = byConnection.get(conn) ?? []
      const id = req.headers['x-request-id']
      seen.push({ method: req.method ?? '', url: req.url ?? '', id: Array.isArray(id) ? id.join(',') : id, contentType: req.headers['content-type'], body: Buffer.concat(chunks).toString() })
      byConnection.set(conn, seen)
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}')
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { port: (server.address() as AddressInfo).port, byConnection, reset: () => byConnection.clear() }
}

/** Runs `requests` as a wrkScript through wrk (2 threads, one connection each) for `seconds`. */
async function runScript(t: Test, port: number, requests: string[], seconds: number): Promise<{ wrk: Wrk; started: number | null; elapsedMs: number }> {
  const file = join(t.testdir(), 'load.lua')
  writeFileSync(file, wrkScript(requests, true))
  let started: number | null = null
  const t0 = Date.now()
  const wrk = (await runWrkAsync(port, file, { connections: 2, seconds }, (pid: number) => (started = pid))) as Wrk
  return { wrk, started, elapsedMs: Date.now() - t0 }
}

/** The length most of `ids` have. */
function commonLength(ids: string[]): number {
  const counts = new Map<number, number>()
  for (const id of ids) counts.set(id.length, (counts.get(id.length) ?? 0) + 1)
  return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? -1
}

const key = (s: Seen): string => JSON.stringify([s.method, s.url, s.id ?? null, s.contentType ?? null, s.body])

t.test('bench:scale\'s loads, through wrk', { skip }, async (t) => {
  const srv = await recorder(t)
  const chats = 300
  const loads = scaleLoads(chats)
  const ids: string[] = requestIds(chats)
  const pull = (chat: string, id: string): Seen => ({ method: 'GET', url: `/api/pull?chat=${chat}&limit=10`, id, contentType: undefined, body: '' })
  const send = (chat: string, sender: string, id: string): Seen => ({ method: 'POST', url: '/api/send', id, contentType: 'application/json', body: JSON.stringify({ chat, text: BENCH_TEXT, sender }) })
  const spread: string[] = loads.spread
  const one: { chat: string; sender: string } = loads.one
  t.equal(new Set(spread).size, chats, 'the many chats are every chat once')
  t.notOk(spread.includes(one.chat), 'the one chat is none of the many')
  t.equal(one.chat.length, commonLength(spread), "the one chat's id is as long as most of the many chats' ids")
  const expected: Record<string, Seen[]> = {
    hot: ids.map((id) => pull(one.chat, id)),
    many: spread.map((chat, i) => pull(chat, ids[i] as string)),
    sendOne: ids.map((id) => send(one.chat, one.sender, id)),
    sendMany: spread.map((chat, i) => send(chat, chat.split(':')[0] as string, ids[i] as string)),
  }
  for (const [name, want] of Object.entries(expected)) {
    await t.test(name, async (t) => {
      srv.reset()
      const { wrk, started, elapsedMs } = await runScript(t, srv.port, loads[name] as string[], 1)
      t.ok(wrk.summary !== null, 'the summary line is read')
      t.equal(wrk.summary?.errors, 0, 'no socket errors')
      t.equal(wrk.summary?.non2xx, 0, 'no non-2xx')
      t.ok(wrk.reqPerSec > 0, `wrk's rate is read (${wrk.reqPerSec}/s)`)
      t.ok(started !== null && started > 0, "both threads passed the barrier (runWrkAsync's onStart)")
      t.ok(elapsedMs < 15_000, `a 1 s load returned in ${elapsedMs} ms (no thread left waiting at the barrier)`)
      const order = new Map(want.map((s, i) => [key(s), i]))
      const conns = [...srv.byConnection.values()]
      t.equal(conns.length, 2, 'both threads sent, each on its connection')
      const all = conns.flat()
      t.ok(all.length > 4 * chats, `enough requests to cycle the load (${all.length})`)
      t.same(all.filter((s) => !order.has(key(s))).slice(0, 3), [], 'every request is one the load names')
      t.equal(new Set(all.map(key)).size, chats, 'every request of the load was sent')
      for (const seen of conns) {
        // A thread sends its requests in the load's order, from the start (or the second: wrk's
        // main thread asks the first thread's state for one request to check the script).
        const at = seen.map((s) => order.get(key(s)) ?? -1)
        t.ok(at[0] === 0 || at[0] === 1, `a thread starts at the load's start (at ${at[0]})`)
        t.equal(at.findIndex((k, i) => i > 0 && k !== ((at[i - 1] as number) + 1) % chats), -1, 'and goes on in order, round and round')
      }
      if (name === 'hot' || name === 'sendOne') t.equal(new Set(all.map((s) => s.url + s.body)).size, 1, 'the one chat: requests differ only in X-Request-Id')
      else t.equal(new Set(all.map((s) => s.url + s.body)).size, chats, 'the many chats: a request for each')
    })
  }
})

t.test('a script of 100k requests (ten of wrkScript\'s chunks) loads in wrk and is sent in order', { skip }, async (t) => {
  const srv = await recorder(t)
  const loads = scaleLoads(100_000)
  t.equal(loads.one.chat, 'u00000:u00001', 'the one chat of 100k')
  t.equal(loads.one.chat.length, commonLength(loads.spread), "as long as most of the 100k chats' ids")
  const { wrk, started } = await runScript(t, srv.port, loads.hot as string[], 1)
  t.equal(wrk.summary?.errors, 0, `no socket errors\n${wrk.output}`)
  t.ok(started !== null, 'both threads passed the barrier')
  const index = new Map((requestIds(100_000) as string[]).map((id, i) => [id, i]))
  for (const seen of srv.byConnection.values()) {
    const at = seen.map((s) => index.get(s.id ?? '') ?? -1)
    t.ok(at.length > 0 && (at[0] === 0 || at[0] === 1), 'a thread starts at the load\'s start')
    t.equal(at.findIndex((k, i) => i > 0 && k !== (at[i - 1] as number) + 1), -1, `and goes on in order (${at.length} requests)`)
  }
})
