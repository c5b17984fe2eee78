// The cluster entry as users run it: several shards and worker threads, routing, a worker dying
// and coming back with its shards, and SIGTERM with requests in flight.

import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import t from 'tap'
import { shardOf } from '../../src/rpc/shard-hash.js'
import { autoShards, autoThreads } from '../../src/config.js'
import { exited, spawnServer } from '../helpers/process.js'
import { getJson, postJson, request, startServer } from '../helpers/server.js'

t.test('connections spread over worker threads still reach one shard per chat', async (t) => {
  const { port, output } = await spawnServer(t, ['--shards', '3', '--threads', '2'])
  t.match(output(), '"shards":3')
  const chats = ['alpha', 'beta', 'gamma', 'delta', 'eps']
  // A fresh connection per request, so SO_REUSEPORT spreads them across both workers, and each
  // worker calls some chats' shards in-process and the others' over RPC.
  const noKeepAlive = new http.Agent({ keepAlive: false })
  const sends = []
  for (let i = 0; i < 200; i++) {
    const chat = chats[i % chats.length] as string
    sends.push(request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ chat, text: `${i} é😀`, sender: 's' }), agent: noKeepAlive }))
  }
  const replies = await Promise.all(sends)
  t.ok(replies.every((r) => r.status === 200), 'all sends acknowledged')
  for (const chat of chats) {
    const res = await request(port, `/api/pull?chat=${chat}&limit=1000`, { agent: noKeepAlive })
    t.equal(res.json.messages.length, 40, `${chat}: every message in one place`)
    // The common body reaches a shard over RPC as strings decoded from its literals (rpc/send-bytes.ts).
    const want = Array.from({ length: 40 }, (_, k) => `${k * chats.length + chats.indexOf(chat)} é😀`).sort()
    t.same(res.json.messages.map((m: { text: string }) => m.text).sort(), want, `${chat}: every text as sent`)
    const times = res.json.messages.map((m: { send_time: number }) => m.send_time)
    t.ok(
      times.every((x: number, i: number) => i === 0 || x > times[i - 1]),
      `${chat}: strictly increasing`,
    )
  }
})

t.test('SIGTERM: in-flight requests are answered, listening stops, exit 0', async (t) => {
  const { proc, port, output } = await spawnServer(t, ['--shards', '2', '--threads', '2'])
  // Requests whose bodies are half sent when the signal arrives: they are in flight.
  const body = JSON.stringify({ chat: 'inflight', text: 'sent across shutdown', sender: 'x' })
  const half = body.length >> 1
  const inflight = await Promise.all(
    Array.from({ length: 6 }, async () => {
      const sock = net.connect(port, '127.0.0.1')
      await once(sock, 'connect')
      sock.write(`POST /api/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, half)}`)
      let text = ''
      sock.on('data', (c: Buffer) => (text += c.toString()))
      return { sock, reply: () => text }
    }),
  )
  // An idle keep-alive connection must not keep the server alive.
  const idle = net.connect(port, '127.0.0.1')
  await once(idle, 'connect')
  await new Promise((r) => setTimeout(r, 100))
  proc.kill('SIGTERM')
  await new Promise((r) => setTimeout(r, 150))
  for (const f of inflight) f.sock.write(body.slice(half))
  const [code] = (await once(proc, 'exit')) as [number]
  t.equal(code, 0, 'exit code 0')
  for (const f of inflight) {
    if (f.sock.readyState === 'open') await Promise.race([once(f.sock, 'close'), new Promise((r) => setTimeout(r, 2000))])
    t.match(f.reply(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*"send_time":\d+/, 'in-flight send answered 200')
    f.sock.destroy()
  }
  idle.destroy()
  t.match(output(), '"msg":"shutting down"')
  t.match(output(), '"msg":"stopped"')
  await t.rejects(
    new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s))
      s.on('error', reject)
    }),
    { code: 'ECONNREFUSED' },
    'no longer listening',
  )
})

t.test("SIGTERM: every shard's last log line reaches the output before the process exits", async (t) => {
  // The worker's lines travel to the main thread through a stream; a worker ended before that
  // stream was drained lost its last lines (in about a third of stops, before the fix).
  for (let i = 0; i < 4; i++) {
    const { proc, port, output } = await spawnServer(t, ['--shards', '2'])
    t.equal((await postJson(port, '/api/send', { chat: 'alice:bob', text: `stop ${i}`, sender: 'alice' })).status, 200)
    proc.kill('SIGTERM')
    const [code] = (await once(proc, 'exit')) as [number]
    t.equal(code, 0, `stop ${i}: exit code 0`)
    t.equal(output().match(/"msg":"shard stopped"/g)?.length, 2, `stop ${i}: both shards logged "shard stopped"`)
  }
})

t.test('SHARDS auto: a new data directory gets one shard per auto worker; an existing one keeps its count; another count is refused', async (t) => {
  const stop = async (proc: import('node:child_process').ChildProcess): Promise<void> => {
    proc.kill('SIGTERM')
    t.equal(await exited(proc), 0, 'stops cleanly')
  }
  const fresh = t.testdir()
  const first = await spawnServer(t, [], { dataDir: fresh })
  const listening = (out: string): { shards: number; threads: number } => JSON.parse(out.split('\n').find((l) => l.includes('"msg":"listening"')) as string)
  t.match(listening(first.output()), { shards: autoShards(), threads: autoThreads(autoShards()) }, 'the log names the settled counts')
  t.same(JSON.parse(readFileSync(join(fresh, 'pullchat.json'), 'utf8')), { format: 1, shards: autoShards() }, 'recorded')
  await stop(first.proc)

  const old = t.testdir()
  const two = await spawnServer(t, ['--shards', '2'], { dataDir: old })
  t.equal((await postJson(two.port, '/api/send', { chat: 'alice:bob', text: 'kept', sender: 'alice' })).status, 200)
  await stop(two.proc)
  const again = await spawnServer(t, [], { dataDir: old })
  t.match(listening(again.output()), { shards: 2 }, 'started without --shards: the directory\'s 2')
  t.match((await getJson(again.port, '/api/pull?chat=alice:bob')).json.messages, [{ text: 'kept' }], 'its messages are where they were')
  await stop(again.proc)

  const wrong = spawn(process.execPath, ['dist/cluster.js', '--port', '0', '--host', '127.0.0.1', '--data-dir', old, '--shards', '3'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  wrong.stderr?.on('data', (c: Buffer) => (out += c.toString()))
  t.equal(await exited(wrong), 1, 'exits 1')
  t.match(out, 'holds 2 shards but the server was started with SHARDS=3')
  t.notOk(existsSync(join(old, 'LOCK')), 'the lock is released')
})

t.test('bad configuration exits 2 with a message naming the option', async (t) => {
  const proc = spawn(process.execPath, ['dist/cluster.js', '--shards', 'many'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  proc.stderr?.on('data', (c: Buffer) => (err += c.toString()))
  const [code] = (await once(proc, 'exit')) as [number]
  t.equal(code, 2)
  t.equal(err, 'pullchat: --shards must be an integer, got "many"\n')
})

t.test('a worker that dies comes back with its shards: 503 for them meanwhile, acknowledged sends kept', async (t) => {
  const shards = 3
  const { port, cluster } = await startServer(t, { shards, threads: 3 }) // worker i hosts shard i
  const rooms = Array.from({ length: 50 }, (_, i) => `room-${i}`)
  const victim = 1
  const onVictim = rooms.find((r) => shardOf(r, shards) === victim) as string
  const elsewhere = rooms.find((r) => shardOf(r, shards) !== victim) as string
  t.equal((await postJson(port, '/api/send', { chat: onVictim, text: 'before', sender: 's' })).status, 200)

  // Crash the worker with requests in flight to its shard, on fresh connections spread over every
  // worker. A request on a connection to the dying worker loses its connection; one on another
  // worker's connection is answered: 200 if its round was durable first, else 503.
  const fresh = new http.Agent({ keepAlive: false })
  const body = (i: number): string => JSON.stringify({ chat: onVictim, text: `x${i}`, sender: 's' })
  const inflight = Array.from({ length: 200 }, (_, i) =>
    request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(i), agent: fresh }).then(
      (r) => ({ status: r.status, json: r.json, text: `x${i}` }),
      (err: NodeJS.ErrnoException) => ({ status: 0, json: { connection: err.code ?? err.message }, text: `x${i}` }),
    ),
  )
  const worker = cluster.shardWorker(victim)
  const exited = new Promise((r) => worker?.once('exit', r))
  worker?.postMessage({ type: 'crash', message: 'test: a bug in worker 1' })
  const replies = await Promise.all(inflight)
  await exited
  for (const r of replies) {
    if (r.status === 503) t.same(r.json, { statusCode: 503, code: 'IM_ERR_SHARD_UNAVAILABLE', error: 'Service Unavailable', message: `shard ${victim} is not available` })
    else if (r.status === 0) t.match(r.json.connection, /^(ECONNRESET|EPIPE|socket hang up)$/, `${r.text}: its connection was to the dying worker`)
    else t.equal(r.status, 200, `${r.text}: acknowledged`)
  }
  const byStatus: Record<string, number> = {}
  for (const r of replies) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1
  t.comment(`the in-flight requests by status (0: lost the connection): ${JSON.stringify(byStatus)}`)

  // The worker is gone and its restart waits at least RESTART_DELAY_MS_MIN (50 ms): a send to its
  // shard now, through a live worker (a fresh connection cannot reach the dead one), is refused.
  const meanwhile = await request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(-1), agent: fresh })
  t.equal(meanwhile.status, 503, 'a send to the dead worker\'s shard before its restart')
  t.same(meanwhile.json, { statusCode: 503, code: 'IM_ERR_SHARD_UNAVAILABLE', error: 'Service Unavailable', message: `shard ${victim} is not available` })

  const other = await postJson(port, '/api/send', { chat: elsewhere, text: 'fine', sender: 's' })
  t.equal(other.status, 200, 'other shards keep serving')

  await cluster.shardRestarted(victim, 1)
  const after = await postJson(port, '/api/send', { chat: onVictim, text: 'after', sender: 's' })
  t.equal(after.status, 200, 'the restarted worker\'s shard serves again')
  const page = await getJson(port, '/api/pull', { chat: onVictim, limit: 1000 })
  const texts: string[] = page.json.messages.map((m: { text: string }) => m.text)
  t.equal(texts[0], 'before')
  t.equal(texts.at(-1), 'after')
  const acked = replies.filter((r) => r.status === 200).map((r) => r.text)
  t.same(acked.filter((x) => !texts.includes(x)), [], `all ${acked.length} acknowledged sends survived the crash`)
  t.equal(new Set(texts).size, texts.length, 'none twice')
})
