// The cluster entry as users run it: several shards and HTTP threads, routing, shard restarts,
// and SIGTERM with requests in flight.

import { spawn } from 'node:child_process'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import t from 'tap'
import { shardOf } from '../../src/rpc/shard-hash.js'
import { spawnServer } from '../helpers/process.js'
import { getJson, postJson, request, startServer } from '../helpers/server.js'

t.test('connections spread over HTTP threads still reach one shard per chat', async (t) => {
  const { port, output } = await spawnServer(t, ['--shards', '3', '--http-threads', '2'])
  t.match(output(), '"shards":3')
  const chats = ['alpha', 'beta', 'gamma', 'delta', 'eps']
  // A fresh connection per request, so SO_REUSEPORT spreads them across both HTTP threads.
  const noKeepAlive = new http.Agent({ keepAlive: false })
  const sends = []
  for (let i = 0; i < 200; i++) {
    const chat = chats[i % chats.length] as string
    sends.push(request(port, '/api/send', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ chat, text: String(i), sender: 's' }), agent: noKeepAlive }))
  }
  const replies = await Promise.all(sends)
  t.ok(replies.every((r) => r.status === 200), 'all sends acknowledged')
  for (const chat of chats) {
    const res = await request(port, `/api/pull?chat=${chat}&limit=1000`, { agent: noKeepAlive })
    t.equal(res.json.messages.length, 40, `${chat}: every message in one place`)
    const times = res.json.messages.map((m: { send_time: number }) => m.send_time)
    t.ok(
      times.every((x: number, i: number) => i === 0 || x > times[i - 1]),
      `${chat}: strictly increasing`,
    )
  }
})

t.test('SIGTERM: in-flight requests are answered, listening stops, exit 0', async (t) => {
  const { proc, port, output } = await spawnServer(t, ['--shards', '2', '--http-threads', '2'])
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

t.test('bad configuration exits 2 with a message naming the option', async (t) => {
  const proc = spawn(process.execPath, ['dist/cluster.js', '--shards', 'many'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  proc.stderr?.on('data', (c: Buffer) => (err += c.toString()))
  const [code] = (await once(proc, 'exit')) as [number]
  t.equal(code, 2)
  t.equal(err, 'pullchat: --shards must be an integer, got "many"\n')
})

t.test('a shard that dies is restarted; its requests get 503 meanwhile, other shards serve', async (t) => {
  const shards = 3
  const { port, cluster } = await startServer(t, { shards, httpThreads: 1 })
  // Two rooms on different shards.
  const rooms = Array.from({ length: 50 }, (_, i) => `room-${i}`)
  const victim = 1
  const onVictim = rooms.find((r) => shardOf(r, shards) === victim) as string
  const elsewhere = rooms.find((r) => shardOf(r, shards) !== victim) as string
  t.equal((await postJson(port, '/api/send', { chat: onVictim, text: 'before', sender: 's' })).status, 200)

  // Kill the shard with requests in flight to it.
  const inflight = Array.from({ length: 200 }, (_, i) => postJson(port, '/api/send', { chat: onVictim, text: `x${i}`, sender: 's' }))
  await cluster.shardWorker(victim)?.terminate()
  const replies = await Promise.all(inflight)
  for (const r of replies) {
    if (r.status !== 200) {
      t.same(r.json, { statusCode: 503, code: 'IM_ERR_SHARD_UNAVAILABLE', error: 'Service Unavailable', message: `shard ${victim} is not available` })
    }
  }
  t.ok(
    replies.every((r) => r.status === 200 || r.status === 503),
    'every in-flight request answered, 200 or 503',
  )

  const other = await postJson(port, '/api/send', { chat: elsewhere, text: 'fine', sender: 's' })
  t.equal(other.status, 200, 'other shards keep serving')

  await cluster.shardRestarted(victim, 1)
  const after = await postJson(port, '/api/send', { chat: onVictim, text: 'after', sender: 's' })
  t.equal(after.status, 200, 'restarted shard serves again')
  const page = await getJson(port, '/api/pull', { chat: onVictim, reverse: true, limit: 1 })
  t.equal(page.json.messages[0].text, 'after')
})
