// The in-process transport answers exactly as the RPC channel does: the same calls against the
// same fake shard, once through ShardClient over a real MessageChannel and once through
// InProcessClient, give the same values and the same errors. Plus what only the in-process
// transport can get wrong: a throwing callback, a broken invariant, its in-flight count, and
// pulls answered in batches, one per turn of the event loop, with one prefetch each.

import { MessageChannel } from 'node:worker_threads'
import t, { type Test } from 'tap'

import { ShardClient, type PullPage, type ShardCaller } from '../../src/rpc/client.js'
import { InProcessClient } from '../../src/rpc/in-process.js'
import { ShardEndpoint } from '../../src/rpc/server.js'
import { FakeShard, record, type Call } from './fake-shard.js'

function overChannel(t: Test): { client: ShardClient; shard: FakeShard } {
  const { port1, port2 } = new MessageChannel()
  const shard = new FakeShard()
  const endpoint = new ShardEndpoint(port2, shard)
  const client = new ShardClient(3, 10_000)
  client.attach(port1)
  t.teardown(() => {
    client.detach()
    endpoint.close()
  })
  return { client, shard }
}

const send = (c: ShardCaller, chat: string, text: string): Call<number> => record<number>((cb) => c.send(chat, text, 'alice', cb))
// The same send with its text and sender as JSON literals in a body (what the front end passes for
// the common body): over the channel, and to a shard without sendBytes, they arrive as strings.
const sendLiteral = (c: ShardCaller, chat: string, text: string): Call<number> =>
  record<number>((cb) => {
    const body = Buffer.from(`{"text":${JSON.stringify(text)},"sender":"alice"}`)
    const textFrom = body.indexOf('"', 8)
    const senderFrom = body.lastIndexOf('"alice"')
    c.sendBytes(chat, { bytes: body, textFrom, textTo: textFrom + Buffer.byteLength(JSON.stringify(text)), senderFrom, senderTo: senderFrom + 7 }, cb)
  })
const pull = (c: ShardCaller, chat: string, cursor: number, limit: number, reverse: boolean): Call<PullPage> =>
  record<PullPage>((cb) => c.pull(chat, cursor, limit, reverse, cb))

/** What a caller can observe of a finished call, errors as their whole HTTP body. */
function outcome<T>(c: Call<T>): unknown {
  const err = c.err === null ? null : { code: c.err.code, statusCode: c.err.statusCode, message: c.err.message }
  const value = c.value !== null && typeof c.value === 'object' ? { ...(c.value as object), messages: Buffer.from((c.value as PullPage).messages).toString() } : c.value
  return { calls: c.calls, err, value }
}

t.test('every kind of answer is the same in-process as over the channel', async (t) => {
  const remote = overChannel(t)
  const local = new FakeShard()
  const inProcess = new InProcessClient(3, local)
  const cases: [string, (c: ShardCaller) => Call<unknown>][] = [
    ['send answered at once', (c) => send(c, 'a:b', 'n:1795577316479813')],
    ['send answered later', (c) => send(c, 'room', 'later:42')],
    ['send the shard refuses by throwing (CHAT_FULL)', (c) => send(c, 'room', 'throw')],
    ['send the shard answers with an error (SENDER_NOT_MEMBER)', (c) => send(c, 'a:b', 'refuse')],
    ['send answered with an unknown error id', (c) => send(c, 'room', 'unknown')],
    ['send as literals answered at once', (c) => sendLiteral(c, 'a:b', 'n:1795577316479813')],
    ['send as literals the shard refuses by throwing', (c) => sendLiteral(c, 'room', 'throw')],
    ['send as literals, not ASCII', (c) => sendLiteral(c, 'room', 'é😀 hi:x')],
    ['pull', (c) => pull(c, 'a:b', 7, 10, true)],
    ['pull the shard refuses by throwing (INVALID_FIELD)', (c) => pull(c, 'throw', 0, 1, false)],
  ]
  for (const [what, call] of cases) {
    const a = call(remote.client)
    const b = call(inProcess)
    await Promise.all([a.done, b.done])
    await new Promise((r) => setTimeout(r, 40)) // a second answer, if any, would have come by now
    t.same(outcome(b), outcome(a), what)
    t.equal(b.calls, 1, `${what}: answered once`)
  }
  t.same(local.sends, remote.shard.sends, 'the shard saw the same sends')
  t.same(local.pulls, remote.shard.pulls, 'and the same pulls')
})

t.test('inflight counts sends waiting for their answer, and pulls until the end of the turn', async (t) => {
  const shard = new FakeShard()
  const c = new InProcessClient(0, shard)
  const held = [send(c, 'room', 'hold:1'), send(c, 'room', 'hold:2')]
  t.equal(c.inflight, 2)
  const p = pull(c, 'room', 0, 10, false)
  t.equal(p.calls, 0, 'a pull waits for the end of the turn')
  t.equal(c.inflight, 3)
  send(c, 'room', 'throw')
  t.equal(c.inflight, 3, 'a refused send is not in flight')
  await p.done
  t.equal(p.calls, 1)
  t.equal(c.inflight, 2)
  shard.release()
  await Promise.all(held.map((h) => h.done))
  t.equal(c.inflight, 0)
  t.same(held.map((h) => h.value).sort(), [1, 2])
})

t.test("one turn's pulls are one batch: one prefetch of their chats, then each answered in order", async (t) => {
  const shard = new FakeShard()
  const c = new InProcessClient(0, shard)
  const order: string[] = []
  const chats = ['a:b', 'room', 'throw', 'a:b', 'c:d']
  const first = chats.map((chat, i) => record<PullPage>((cb) => c.pull(chat, i, 10, false, (err, page) => (order.push(chat), cb(err, page)))))
  t.same(shard.prefetches, [], 'nothing before the end of the turn')
  await Promise.all(first.map((p) => p.done))
  t.same(order, chats, 'answered in the order asked')
  t.same(shard.prefetches, [{ chats, pullsBefore: 0 }], 'one prefetch, of every chat of the batch, before the first pull')
  t.same(shard.pulls.map((p) => p.cursor), [0, 1, 2, 3, 4])
  t.equal(first[2]?.err?.code, 'IM_ERR_INVALID_FIELD', "one pull's error is its own")
  t.ok(first.every((p, i) => p.calls === 1 && (i === 2 || p.err === null)), 'every other pull answered once, without error')
  const second = pull(c, 'e:f', 0, 1, true)
  await second.done
  t.same(shard.prefetches.at(-1), { chats: ['e:f'], pullsBefore: 5 }, 'the next turn is a batch of its own')
  t.equal(c.inflight, 0)
})

t.test("over the channel too, the shard is told a frame's pulls before it answers them", async (t) => {
  const { client, shard } = overChannel(t)
  const chats = ['a:b', 'room', 'c:d']
  await Promise.all(chats.map((chat) => pull(client, chat, 0, 10, false).done))
  t.same(shard.prefetches, [{ chats, pullsBefore: 0 }], 'one frame: one prefetch, before its pulls')
  await Promise.all([pull(client, 'e:f', 0, 1, false).done, send(client, 'room', 'n:3').done])
  t.equal(shard.prefetches.length, 1, 'a frame with one pull is not worth a prefetch')
})

t.test('a callback that throws is not answered again, and its error propagates', async (t) => {
  const c = new InProcessClient(0, new FakeShard())
  let calls = 0
  t.throws(
    () =>
      c.send('room', 'n:5', 'alice', () => {
        calls++
        throw new Error('from the callback')
      }),
    { message: 'from the callback' },
  )
  t.equal(calls, 1)
  t.equal(c.inflight, 0)
  let pulls = 0
  c.pull('room', 0, 1, false, () => {
    pulls++
    throw new Error('from the pull callback')
  })
  const after = pull(c, 'room', 0, 1, false)
  t.throws(() => c.flushPulls(), { message: 'from the pull callback' }, 'from the batch, at the end of the turn')
  t.equal(pulls, 1)
  t.equal(after.calls, 0, 'the rest of the batch waits for the next turn')
  await after.done
  t.equal(after.calls, 1)
  t.equal(pulls, 1, 'the throwing callback is not called again')
  t.equal(c.inflight, 0)
})

t.test('a broken invariant (not a PullchatError) propagates instead of being answered', async (t) => {
  const broken = {
    send: () => {
      throw new TypeError('invariant')
    },
    pull: () => {
      throw new RangeError('invariant')
    },
  }
  const c = new InProcessClient(0, broken)
  t.throws(() => c.send('room', 'x', 'alice', () => t.fail('answered')), TypeError)
  c.pull('room', 0, 1, false, () => t.fail('answered'))
  t.throws(() => c.flushPulls(), RangeError)
  t.equal(c.inflight, 0)
})
