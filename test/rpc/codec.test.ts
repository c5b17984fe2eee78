// The RPC channel: frames (round trips, streams cut anywhere, garbage), entry validators, the
// client and the server over a real MessageChannel, and which shard owns a chat.
//
// Property tests are time-boxed. A failure's message holds fast-check's seed and path; replay it
// with FC_SEED=<seed> FC_PATH=<path> npx tap test/rpc/codec.test.ts

import assert from 'node:assert/strict'
import { MessageChannel, type MessagePort } from 'node:worker_threads'
import fc from 'fast-check'
import { pack } from 'msgpackr'
import t, { type Test } from 'tap'
import { holds } from '../helpers/fast-check.js'
import { Errors, PullchatError } from '../../src/errors.js'
import { ShardClient, type PullPage } from '../../src/rpc/client.js'
import {
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FRAME_PAYLOAD_BYTES_MAX,
  FRAME_VERSION,
  FrameDecoder,
  OP_PULL,
  OP_SEND,
  decodeFrame,
  encodeFrame,
  entryId,
  isErrorEntry,
  isPullOk,
  isRequestEntry,
  isSendOk,
} from '../../src/rpc/codec.js'
import { ShardEndpoint } from '../../src/rpc/server.js'
import { hashChat, shardOf } from '../../src/rpc/shard-hash.js'
import { FakeShard, record, type Call } from './fake-shard.js'

// ---------------------------------------------------------------------------------------------
// Arbitraries and helpers

const BIG = 1795577316479813 // a send_time in µs, past 2^32

// Well-formed unicode (every code point, no lone surrogates: see the lone-surrogate test below).
const str = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({ unit: fc.constantFrom('"', '\\', '\u0000', '\n', '😀', '👩‍👩‍👧', '\u2028', 'ü', '\ufeff', '\ufffd'), maxLength: 10 }),
  fc.string({ unit: 'binary', minLength: 200, maxLength: 3000 }),
)
const id = fc.integer({ min: 1, max: 0x7fff_ffff })
const safeNat = fc.oneof(
  fc.constantFrom(0, 1, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 32 - 1, 2 ** 32, BIG, Number.MAX_SAFE_INTEGER),
  fc.maxSafeNat(),
  fc.nat(),
)
const bytes = fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ minLength: 256, maxLength: 70_000 }))

const sendEntry = fc.tuple(fc.constant(OP_SEND), id, str, str, str)
const pullEntry = fc.tuple(fc.constant(OP_PULL), id, str, safeNat, fc.integer({ min: 1, max: 1000 }), fc.boolean())
const sendOkEntry = fc.tuple(id, fc.constant(0), safeNat)
const pullOkEntry = fc.tuple(id, fc.constant(0), bytes, fc.boolean(), safeNat, safeNat)
const errorEntry = fc.tuple(id, fc.integer({ min: 1, max: 18 }), str)

const requestBatch = fc.array(fc.oneof(sendEntry, pullEntry), { maxLength: 40 })
const replyBatch = fc.array(fc.oneof(sendOkEntry, pullOkEntry, errorEntry), { maxLength: 40 })
const anyBatch = fc.oneof(requestBatch, replyBatch)
const smallBatch = fc.array(fc.oneof(fc.tuple(fc.constant(OP_SEND), id, fc.string({ unit: 'binary', maxLength: 6 }), fc.string({ maxLength: 4 }), fc.constant('s')), errorEntry.map(([i, c]) => [i, c, '😀'])), {
  maxLength: 3,
})

/** Byte arrays compared by content, whatever their class (msgpackr hands back Buffers). */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: Array.from(v) }
  if (Array.isArray(v)) return v.map(plain)
  return v
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/** A frame with a correct header around any payload. */
function frameOf(payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(FRAME_HEADER_BYTES + payload.length)
  f[0] = FRAME_MAGIC
  f[1] = FRAME_VERSION
  new DataView(f.buffer).setUint32(2, payload.length, true)
  f.set(payload, FRAME_HEADER_BYTES)
  return f
}

/** Throws unless `fn` returns an array or throws IM_ERR_RPC_FRAME. */
function arrayOrFrameError(fn: () => unknown): 'array' | 'rejected' {
  let v: unknown
  try {
    v = fn()
  } catch (err) {
    assert.ok(err instanceof PullchatError, `threw ${String(err)}, not a PullchatError`)
    assert.equal(err.code, 'IM_ERR_RPC_FRAME')
    return 'rejected'
  }
  assert.ok(Array.isArray(v), `returned ${typeof v}, not an array`)
  return 'array'
}

const frameError = (message: string) => ({ name: 'PullchatError', code: 'IM_ERR_RPC_FRAME', message: `malformed RPC frame: ${message}` })

// ---------------------------------------------------------------------------------------------
// Frames

t.test('a frame: header, then the msgpack batch', async (t) => {
  const batch = [[OP_SEND, 1, 'alice:bob', 'hi', 'alice']]
  const frame = encodeFrame(batch)
  const payload = pack(batch)
  t.equal(frame[0], 0x50, 'magic')
  t.equal(frame[1], 1, 'version')
  t.equal(new DataView(frame.buffer, frame.byteOffset).getUint32(2, true), payload.length, 'payload length, little-endian')
  t.same(Array.from(frame.subarray(FRAME_HEADER_BYTES)), Array.from(payload))
  t.equal(frame.length, FRAME_HEADER_BYTES + payload.length)
  t.same(decodeFrame(frame), batch)
  t.same(decodeFrame(encodeFrame([])), [], 'an empty batch')
})

t.test('frames own their buffer, so transferring one never touches another', async (t) => {
  const a = encodeFrame([[OP_SEND, 1, 'a', 'first', 's']])
  const b = encodeFrame([[OP_SEND, 2, 'b', 'second, and longer', 's']])
  t.equal(a.byteOffset, 0)
  t.equal(a.buffer.byteLength, a.length, 'the whole ArrayBuffer is the frame')
  t.equal(b.buffer.byteLength, b.length)
  t.not(a.buffer, b.buffer)
  t.same(decodeFrame(a), [[OP_SEND, 1, 'a', 'first', 's']], 'encoding b did not overwrite a')
})

t.test('round trip: any request or reply batch decodes to itself', (t) =>
  holds(
    t,
    fc.property(anyBatch, (batch) => {
      const frame = encodeFrame(batch)
      assert.equal(frame.buffer.byteLength, frame.length)
      const back = decodeFrame(frame)
      assert.deepEqual(plain(back), plain(batch))
      for (const [i, e] of back.entries()) {
        const sent = batch[i] as unknown[]
        if (((sent[0] === OP_SEND && sent.length === 5) || (sent[0] === OP_PULL && sent.length === 6)) && typeof sent[2] === 'string') assert.ok(isRequestEntry(e), 'decoded request validates')
        if (sent[2] instanceof Uint8Array) {
          assert.ok((e as unknown[])[2] instanceof Uint8Array, 'bytes come back as a Uint8Array')
          assert.ok(isPullOk(e), 'decoded pull reply validates')
        }
      }
    }),
    { numRuns: 150 },
  ),
)

t.test('round trip: the values that matter, exactly', async (t) => {
  const messages = Buffer.from('[{"chat":"a:b","text":"😀","sender":"a","send_time":1795577316479813}]')
  const batch = [
    [OP_SEND, 1, 'alice:bob', 'ünïcödé 😀 "quoted" \\ \u0000 \n', 'alice'],
    [OP_PULL, 0x7fff_ffff, 'alice:bob', BIG, 50, true],
    [OP_PULL, 3, 'alice:bob', Number.MAX_SAFE_INTEGER, 1, false],
    [7, 0, BIG],
    [8, 0, messages, false, BIG + 1, 1],
    [9, 0, new Uint8Array(0), true, 0, 0],
    [10, Errors.CHAT_FULL.wireId, 'chat "alice:bob" is full'],
  ]
  const back = decodeFrame(encodeFrame(batch))
  t.same(back.slice(0, 4), batch.slice(0, 4))
  t.equal((back[1] as unknown[])[3], 1795577316479813)
  t.equal((back[2] as unknown[])[3], Number.MAX_SAFE_INTEGER)
  t.equal((back[3] as unknown[])[2], 1795577316479813)
  const pullOk = back[4] as unknown[]
  t.ok(pullOk[2] instanceof Uint8Array)
  t.equal(Buffer.from(pullOk[2] as Uint8Array).toString('utf8'), messages.toString('utf8'))
  t.same(pullOk.slice(3), [false, BIG + 1, 1])
  t.same(plain(back[5]), [9, 0, { bytes: [] }, true, 0, 0])
  t.same(back[6], [10, 18, 'chat "alice:bob" is full'])
})

// The channel carries strings as UTF-8, which has no form for a lone surrogate: msgpackr turns it
// into U+FFFD. The HTTP front end therefore rejects such strings (IM_ERR_INVALID_ENCODING, see
// test/http/contract.test.ts) before they reach a shard; this pins the channel's behaviour.
t.test('lone surrogates do not survive the channel (the front end rejects them)', async (t) => {
  for (const s of ['\ud800', 'a\udc00b', 'x'.repeat(100) + '\udbff']) {
    const back = (decodeFrame(encodeFrame([[OP_SEND, 1, 'c', s, 's']]))[0] as unknown[])[3] as string
    t.not(back, s, JSON.stringify(s))
    t.ok(back.isWellFormed())
  }
})

// ---------------------------------------------------------------------------------------------
// A stream of frames, cut anywhere

function pushAll(decoder: FrameDecoder, chunks: readonly Uint8Array[]): unknown[][] {
  const out: unknown[][] = []
  for (const c of chunks) out.push(...decoder.push(c))
  return out
}

t.test('FrameDecoder: three frames split at every offset, and byte by byte', async (t) => {
  const batches = [
    [[OP_SEND, 1, 'alice:bob', 'hi 😀', 'alice']],
    [],
    [
      [OP_PULL, 2, 'alice:bob', BIG, 10, true],
      [3, 0, Buffer.from('[]'), false, BIG, 0],
      [4, Errors.OVERLOADED.wireId, 'busy'],
    ],
  ]
  const frames = batches.map(encodeFrame)
  const stream = concat(frames)
  const ends = frames.map((_, i) => frames.slice(0, i + 1).reduce((n, f) => n + f.length, 0))
  for (let cut = 0; cut <= stream.length; cut++) {
    const d = new FrameDecoder()
    const first = d.push(stream.subarray(0, cut))
    const whole = ends.filter((e) => e <= cut).length
    assert.equal(first.length, whole, `cut at ${cut}: frames completed by the first chunk`)
    assert.equal(d.pending, cut - (ends[whole - 1] ?? 0), `cut at ${cut}: pending`)
    const rest = d.push(stream.subarray(cut))
    assert.deepEqual(plain([...first, ...rest]), plain(batches), `cut at ${cut}`)
    assert.equal(d.pending, 0)
  }
  t.pass(`every one of ${stream.length + 1} cuts`)

  const d = new FrameDecoder()
  const got: unknown[][] = []
  for (let i = 0; i < stream.length; i++) {
    got.push(...d.push(stream.subarray(i, i + 1)))
    t.equal(got.length, ends.filter((e) => e <= i + 1).length, `after byte ${i}`)
  }
  t.same(plain(got), plain(batches), 'byte by byte')
  t.equal(d.pending, 0)
})

t.test('FrameDecoder: any batches, cut into any chunks, come out whole and in order', (t) =>
  holds(
    t,
    fc.property(fc.array(smallBatch, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (batches, cuts) => {
      const stream = concat(batches.map(encodeFrame))
      const at = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b)
      const chunks = [0, ...at].map((from, i) => stream.subarray(from, at[i] ?? stream.length))
      const d = new FrameDecoder()
      assert.deepEqual(pushAll(d, chunks), batches)
      assert.equal(d.pending, 0)
      // Every single cut, and byte by byte, too.
      for (let cut = 0; cut <= stream.length; cut++) {
        const e = new FrameDecoder()
        assert.deepEqual(pushAll(e, [stream.subarray(0, cut), stream.subarray(cut)]), batches, `cut at ${cut}`)
        assert.equal(e.pending, 0)
      }
      const b = new FrameDecoder()
      assert.deepEqual(pushAll(b, Array.from(stream, (_, i) => stream.subarray(i, i + 1))), batches, 'byte by byte')
    }),
    { numRuns: 100 },
  ),
)

// ---------------------------------------------------------------------------------------------
// Garbage

const GOOD = encodeFrame([[OP_SEND, 1, 'alice:bob', 'hi', 'alice']])
const edit = (frame: Uint8Array, f: (copy: Uint8Array) => void): Uint8Array => {
  const copy = frame.slice()
  f(copy)
  return copy
}

t.test('decodeFrame rejects a bad header with IM_ERR_RPC_FRAME', async (t) => {
  const payloadBytes = GOOD.length - FRAME_HEADER_BYTES
  t.throws(() => decodeFrame(edit(GOOD, (f) => (f[0] = 0x51))), frameError('bad magic 0x51'))
  t.throws(() => decodeFrame(edit(GOOD, (f) => (f[0] = 0))), frameError('bad magic 0x0'))
  t.throws(() => decodeFrame(edit(GOOD, (f) => (f[1] = 2))), frameError('unsupported version 2'))
  t.throws(() => decodeFrame(edit(GOOD, (f) => (f[1] = 0))), frameError('unsupported version 0'))
  t.throws(() => decodeFrame(edit(GOOD, (f) => new DataView(f.buffer).setUint32(2, payloadBytes + 1, true))), frameError(`header says ${payloadBytes + 1} payload bytes, frame has ${payloadBytes}`))
  t.throws(() => decodeFrame(edit(GOOD, (f) => new DataView(f.buffer).setUint32(2, payloadBytes - 1, true))), frameError(`header says ${payloadBytes - 1} payload bytes, frame has ${payloadBytes}`))
  t.throws(() => decodeFrame(concat([GOOD, Uint8Array.of(0)])), frameError(`header says ${payloadBytes} payload bytes, frame has ${payloadBytes + 1}`))
  t.throws(() => decodeFrame(concat([GOOD, GOOD])), frameError(`header says ${payloadBytes} payload bytes, frame has ${payloadBytes * 2 + FRAME_HEADER_BYTES}`), 'two frames in one message')
  t.throws(() => decodeFrame(edit(GOOD, (f) => new DataView(f.buffer).setUint32(2, 0xffff_ffff, true))), frameError('payload of 4294967295 bytes exceeds the limit'))
  t.throws(() => decodeFrame(edit(GOOD, (f) => new DataView(f.buffer).setUint32(2, FRAME_PAYLOAD_BYTES_MAX + 1, true))), frameError(`payload of ${FRAME_PAYLOAD_BYTES_MAX + 1} bytes exceeds the limit`))
  t.throws(() => decodeFrame('PQ' as unknown as Uint8Array), frameError('not bytes'))
  t.throws(() => decodeFrame(GOOD.buffer as unknown as Uint8Array), frameError('not bytes'))
  t.throws(() => decodeFrame(null as unknown as Uint8Array), frameError('not bytes'))
})

t.test('decodeFrame rejects every proper prefix of a frame with IM_ERR_RPC_FRAME', async (t) => {
  const frame = encodeFrame([[OP_PULL, 1, 'alice:bob', BIG, 10, false], [2, 0, Buffer.from('[1,2,3]'), true, 5, 3]])
  for (let n = 0; n < frame.length; n++) {
    let err: unknown
    try {
      decodeFrame(frame.subarray(0, n))
    } catch (e) {
      err = e
    }
    assert.ok(err instanceof PullchatError, `prefix of ${n} bytes: ${String(err)}`)
    assert.equal(err.code, 'IM_ERR_RPC_FRAME', `prefix of ${n} bytes`)
    if (n < FRAME_HEADER_BYTES) assert.equal(err.message, `malformed RPC frame: only ${n} bytes`)
  }
  t.pass(`all ${frame.length} prefixes rejected`)
  // The same, with a header that agrees with the truncated payload.
  for (let n = 0; n < frame.length - FRAME_HEADER_BYTES; n++) {
    t.throws(() => decodeFrame(frameOf(frame.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + n))), { code: 'IM_ERR_RPC_FRAME' }, `payload cut to ${n} bytes`)
  }
})

t.test('decodeFrame rejects payloads that are not one msgpack array', async (t) => {
  t.throws(() => decodeFrame(frameOf(pack({ a: 1 }))), frameError('payload is not an array'), 'a map')
  t.throws(() => decodeFrame(frameOf(pack(5))), frameError('payload is not an array'), 'a number')
  t.throws(() => decodeFrame(frameOf(pack('[1]'))), frameError('payload is not an array'), 'a string')
  t.throws(() => decodeFrame(frameOf(pack(null))), frameError('payload is not an array'), 'nil')
  t.throws(() => decodeFrame(frameOf(new Uint8Array(0))), { code: 'IM_ERR_RPC_FRAME' }, 'nothing')
  t.throws(() => decodeFrame(frameOf(Uint8Array.of(0x92, 1))), frameError('Unexpected end of MessagePack data'), 'an array cut short')
  t.throws(() => decodeFrame(frameOf(concat([pack([1]), pack([2])]))), { code: 'IM_ERR_RPC_FRAME' }, 'two values')
})

t.test('random bytes: decodeFrame returns an array or throws IM_ERR_RPC_FRAME, nothing else', (t) =>
  holds(
    t,
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 100 }),
        // Past the header: garbage payloads.
        fc.uint8Array({ maxLength: 200 }).map(frameOf),
        // Valid frames with bytes overwritten.
        fc.tuple(anyBatch, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 })).map(([batch, edits]) =>
          edit(encodeFrame(batch), (f) => {
            for (const [at, v] of edits) f[FRAME_HEADER_BYTES + (at % Math.max(1, f.length - FRAME_HEADER_BYTES))] = v
          }),
        ),
      ),
      (bytes) => {
        arrayOrFrameError(() => decodeFrame(bytes))
        arrayOrFrameError(() => new FrameDecoder().push(bytes))
      },
    ),
    { numRuns: 2000 },
  ),
)

t.test('FrameDecoder rejects a bad magic or version as soon as the byte arrives', async (t) => {
  t.throws(() => new FrameDecoder().push(Uint8Array.of(0x00)), frameError('bad magic 0x0'))
  t.throws(() => new FrameDecoder().push(Uint8Array.of(0x7b)), frameError('bad magic 0x7b'), 'JSON is not a frame')
  const d = new FrameDecoder()
  t.same(d.push(Uint8Array.of(FRAME_MAGIC)), [])
  t.equal(d.pending, 1)
  t.throws(() => d.push(Uint8Array.of(2)), frameError('unsupported version 2'))
  // After a whole good frame, in the same chunk or the next.
  t.throws(() => new FrameDecoder().push(concat([GOOD, Uint8Array.of(0x51)])), frameError('bad magic 0x51'))
  const e = new FrameDecoder()
  t.equal(e.push(GOOD).length, 1)
  t.throws(() => e.push(Uint8Array.of(0xff)), frameError('bad magic 0xff'))
  // An oversized length, once the header is complete.
  const huge = edit(GOOD.subarray(0, FRAME_HEADER_BYTES), (f) => new DataView(f.buffer).setUint32(2, 0xffff_ffff, true))
  const h = new FrameDecoder()
  t.same(h.push(huge.subarray(0, 5)), [], 'not yet a whole header')
  t.throws(() => h.push(huge.subarray(5)), frameError('payload of 4294967295 bytes exceeds the limit'))
  t.throws(() => new FrameDecoder().push(frameOf(pack({ a: 1 }))), frameError('payload is not an array'))
})

// ---------------------------------------------------------------------------------------------
// Entry validators

t.test('isRequestEntry accepts requests and rejects anything else', async (t) => {
  const good: unknown[] = [
    [OP_SEND, 1, 'alice:bob', 'hi', 'alice'],
    [OP_SEND, 0, '', '', ''],
    [OP_PULL, 7, 'alice:bob', 0, 10, false],
    [OP_PULL, Number.MAX_SAFE_INTEGER, 'alice:bob', BIG, 1, true],
  ]
  for (const e of good) t.ok(isRequestEntry(e), JSON.stringify(e))
  const bad: unknown[] = [
    null,
    undefined,
    'send',
    {},
    { 0: OP_SEND, 1: 1, 2: 'c', 3: 't', 4: 's', length: 5 },
    [],
    [OP_SEND],
    [3, 1, 'c', 't', 's'],
    [0, 1, 'c', 't', 's'],
    ['1', 1, 'c', 't', 's'],
    [OP_SEND, -1, 'c', 't', 's'],
    [OP_SEND, 1.5, 'c', 't', 's'],
    [OP_SEND, '1', 'c', 't', 's'],
    [OP_SEND, 2 ** 53, 'c', 't', 's'],
    [OP_SEND, 1, 'c', 't'],
    [OP_SEND, 1, 'c', 't', 's', 'extra'],
    [OP_SEND, 1, 5, 't', 's'],
    [OP_SEND, 1, 'c', null, 's'],
    [OP_SEND, 1, 'c', 't', new Uint8Array(1)],
    [OP_PULL, 1, 'c', 0, 10],
    [OP_PULL, 1, 'c', 0, 10, false, 'extra'],
    [OP_PULL, 1, 'c', -1, 10, false],
    [OP_PULL, 1, 'c', 0.5, 10, false],
    [OP_PULL, 1, 'c', '0', 10, false],
    [OP_PULL, 1, 'c', 0, -10, false],
    [OP_PULL, 1, 'c', 0, 10, 'false'],
    [OP_PULL, 1, 'c', 0, 10, 0],
    [OP_PULL, 1, null, 0, 10, false],
    [OP_PULL, 1, 'c', 'c', 't', 's'],
    [OP_SEND, 1, 'c', 0, 10, false],
  ]
  for (const e of bad) t.notOk(isRequestEntry(e), JSON.stringify(e) ?? String(e))
})

t.test('entryId reads the id of a request that failed validation, when there is one', async (t) => {
  t.equal(entryId([OP_SEND, 5, 'c', 7, 's']), 5)
  t.equal(entryId([99, 6]), 6)
  t.equal(entryId([OP_SEND, 0]), 0)
  t.equal(entryId([OP_SEND, '5']), undefined)
  t.equal(entryId([OP_SEND, -5]), undefined)
  t.equal(entryId([OP_SEND]), undefined)
  t.equal(entryId('junk'), undefined)
  t.equal(entryId({ 1: 5 }), undefined)
})

t.test('isSendOk / isPullOk / isErrorEntry accept their shape and only theirs', async (t) => {
  const sendOk = [7, 0, BIG]
  const pullOk = [7, 0, new Uint8Array([0x5b, 0x5d]), true, BIG, 0]
  const pullOkBuffer = [7, 0, Buffer.from('[]'), false, 0, 0]
  const error = [7, Errors.CHAT_FULL.wireId, 'full']
  const table: Array<[string, unknown, boolean, boolean, boolean]> = [
    // name, entry, isSendOk, isPullOk, isErrorEntry
    ['send ok', sendOk, true, false, false],
    ['send ok, send_time 0', [7, 0, 0], true, false, false],
    ['pull ok', pullOk, false, true, false],
    ['pull ok with a Buffer', pullOkBuffer, false, true, false],
    ['error', error, false, false, true],
    ['error with an unknown id', [7, 999, 'x'], false, false, true],
    ['error with code 0', [7, 0, 'full'], false, false, false],
    ['negative id', [-7, 0, BIG], false, false, false],
    ['string id', ['7', 0, BIG], false, false, false],
    ['fractional id', [7.5, Errors.CHAT_FULL.wireId, 'x'], false, false, false],
    ['non-zero code on a send ok', [7, 1, BIG], false, false, false],
    ['negative send_time', [7, 0, -1], false, false, false],
    ['fractional send_time', [7, 0, 1.5], false, false, false],
    ['unsafe send_time', [7, 0, 2 ** 53], false, false, false],
    ['send_time as a string', [7, 0, '1'], false, false, false],
    ['send ok with an extra field', [7, 0, BIG, 1], false, false, false],
    ['pull ok with an array for bytes', [7, 0, [0x5b, 0x5d], true, 0], false, false, false],
    ['pull ok with a string for bytes', [7, 0, '[]', true, 0], false, false, false],
    ['pull ok with hasMore as a number', [7, 0, new Uint8Array(0), 1, 0], false, false, false],
    ['pull ok with a negative cursor', [7, 0, new Uint8Array(0), true, -1], false, false, false],
    ['pull ok missing the cursor', [7, 0, new Uint8Array(0), true], false, false, false],
    ['pull ok missing the count', [7, 0, new Uint8Array(0), true, 0], false, false, false],
    ['error with a numeric message', [7, 17, 5], false, false, false],
    ['error with a string code', [7, '17', 'x'], false, false, false],
    ['a request', [OP_SEND, 1, 'c', 't', 's'], false, false, false],
    ['not an array', { 0: 7, 1: 0, 2: 5, length: 3 }, false, false, false],
    ['null', null, false, false, false],
  ]
  for (const [name, e, send, pull, err] of table) {
    t.equal(isSendOk(e), send, `isSendOk: ${name}`)
    t.equal(isPullOk(e), pull, `isPullOk: ${name}`)
    t.equal(isErrorEntry(e), err, `isErrorEntry: ${name}`)
  }
})

// ---------------------------------------------------------------------------------------------
// Client and server over a real MessageChannel

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(2)
  }
}

const send = (c: ShardClient, chat: string, text: string, sender = 'alice'): Call<number> => record<number>((cb) => c.send(chat, text, sender, cb))
const pull = (c: ShardClient, chat: string, cursor: number, limit: number, reverse: boolean): Call<PullPage> =>
  record<PullPage>((cb) => c.pull(chat, cursor, limit, reverse, cb))

interface Rig {
  readonly client: ShardClient
  readonly shard: FakeShard
  readonly clientPort: MessagePort
  readonly serverPort: MessagePort
  readonly endpoint: ShardEndpoint
  /** Batches as the server side received them, one per frame. */
  readonly requestFrames: unknown[][]
  /** Batches as the client side received them, one per frame. */
  readonly replyFrames: unknown[][]
  readonly badFrames: PullchatError[]
}

function rig(t: Test, inflightMax = 10_000): Rig {
  const { port1: clientPort, port2: serverPort } = new MessageChannel()
  const shard = new FakeShard()
  const requestFrames: unknown[][] = []
  const replyFrames: unknown[][] = []
  const badFrames: PullchatError[] = []
  serverPort.on('message', (f: Uint8Array) => requestFrames.push(decodeFrame(f)))
  const endpoint = new ShardEndpoint(serverPort, shard, { onBadFrame: (err) => badFrames.push(err) })
  const client = new ShardClient(3, inflightMax)
  client.attach(clientPort)
  clientPort.on('message', (f: Uint8Array) => replyFrames.push(decodeFrame(f)))
  t.teardown(() => {
    client.detach()
    serverPort.close()
  })
  return { client, shard, clientPort, serverPort, endpoint, requestFrames, replyFrames, badFrames }
}

const UNAVAILABLE = { code: 'IM_ERR_SHARD_UNAVAILABLE', message: 'shard 3 is not available' }

t.test('calls made in one turn go as one frame; replies come back as one frame, each to its caller', async (t) => {
  const { client, shard, requestFrames, replyFrames } = rig(t)
  const sends = Array.from({ length: 40 }, (_, i) => send(client, `chat${i % 7}`, `n:${BIG + i}`, `user${i}`))
  const pulls = Array.from({ length: 40 }, (_, i) => pull(client, `chat${i % 5}`, i * 1000, 1 + i, i % 2 === 0))
  t.equal(client.inflight, 80)
  t.equal(requestFrames.length, 0, 'nothing is sent before the turn ends')
  await Promise.all([...sends, ...pulls].map((c) => c.done))
  t.equal(requestFrames.length, 1, 'one request frame')
  t.equal(requestFrames[0]?.length, 80, 'holding all 80 calls')
  t.equal(replyFrames.length, 1, 'one reply frame')
  t.equal(replyFrames[0]?.length, 80)
  for (const [i, c] of sends.entries()) {
    t.equal(c.err, null)
    t.equal(c.value, BIG + i, `send ${i} got its own send_time`)
  }
  for (const [i, c] of pulls.entries()) {
    t.equal(c.err, null)
    t.same(JSON.parse(Buffer.from(c.value?.messages ?? []).toString()), { chat: `chat${i % 5}`, cursor: i * 1000, limit: 1 + i, reverse: i % 2 === 0 }, `pull ${i} got its own page`)
    t.equal(c.value?.hasMore, i % 2 === 0)
    t.equal(c.value?.nextCursor, i * 1000 + 1 + i)
  }
  t.same(shard.sends.map((m) => m.sender), sends.map((_, i) => `user${i}`), 'the shard saw the sends in call order')
  t.equal(client.inflight, 0)
  await tick()
  t.ok([...sends, ...pulls].every((c) => c.calls === 1), 'every callback ran exactly once')

  // A call in a later turn is a frame of its own.
  const later = send(client, 'chat0', 'n:5')
  await later.done
  t.equal(later.value, 5)
  t.equal(requestFrames.length, 2)
  t.equal(requestFrames[1]?.length, 1)
})

t.test('replies are matched by id, whatever order they come in', async (t) => {
  const { client, shard, replyFrames } = rig(t)
  const calls = Array.from({ length: 10 }, (_, i) => send(client, 'a:b', `hold:${100 + i}`))
  await until(() => shard.holding === 10, 'the shard to hold 10 sends')
  shard.release() // reverse order, in one turn
  await Promise.all(calls.map((c) => c.done))
  t.same(calls.map((c) => c.value), Array.from({ length: 10 }, (_, i) => 100 + i))
  t.equal(replyFrames.length, 1)
  t.same((replyFrames[0] as unknown[][]).map((e) => e[2]), Array.from({ length: 10 }, (_, i) => 109 - i), 'the frame held them newest first')
})

t.test('strings cross intact, in both directions', async (t) => {
  const { client, shard } = rig(t)
  const chat = '😀:ünï"cödé\\'
  const sender = 'ä\u0000\n👩‍👩‍👧'
  const text = 'n:1 ' + '\u2028\ufeff🎉'.repeat(5000)
  const c = send(client, chat, text, sender)
  const p = pull(client, chat, BIG, 50, true)
  await Promise.all([c.done, p.done])
  t.same(shard.sends, [{ chat, text, sender, send_time: 0 }])
  t.same(shard.pulls, [{ chat, cursor: BIG, limit: 50, reverse: true }])
  t.same(JSON.parse(Buffer.from(p.value?.messages ?? []).toString('utf8')), { chat, cursor: BIG, limit: 50, reverse: true })
  t.equal(p.value?.nextCursor, BIG + 50)
})

t.test("the shard's errors cross with their code and message", async (t) => {
  const { client } = rig(t)
  const thrown = send(client, 'a:b', 'throw')
  const refused = send(client, 'a:b', 'refuse', 'carol')
  const unknown = send(client, 'a:b', 'unknown')
  const badPull = pull(client, 'throw', 0, 0, false)
  const fine = send(client, 'a:b', 'n:42')
  await Promise.all([thrown, refused, unknown, badPull, fine].map((c) => c.done))
  t.ok(thrown.err instanceof PullchatError)
  t.match(thrown.err, { code: 'IM_ERR_CHAT_FULL', statusCode: 507, message: 'chat "a:b" is full' })
  t.equal(thrown.value, 0)
  t.match(refused.err, { code: 'IM_ERR_SENDER_NOT_MEMBER', statusCode: 400, message: 'carol is not a member of a:b' })
  t.match(unknown.err, { code: 'IM_ERR_INTERNAL', statusCode: 500, message: 'unknown error id 999: from the future' })
  t.match(badPull.err, { code: 'IM_ERR_INVALID_FIELD', message: 'limit must be at least 1' })
  t.equal(badPull.value, null)
  t.equal(fine.err, null, 'an error fails only its own call')
  t.equal(fine.value, 42)
})

t.test('a send answered later is still delivered, after the quick ones', async (t) => {
  const { client, replyFrames } = rig(t)
  const order: string[] = []
  const slow = send(client, 'a:b', 'later:777')
  const quick = send(client, 'a:b', 'n:1')
  void slow.done.then(() => order.push('slow'))
  void quick.done.then(() => order.push('quick'))
  await Promise.all([slow.done, quick.done])
  t.equal(slow.err, null)
  t.equal(slow.value, 777)
  t.equal(quick.value, 1)
  t.same(order, ['quick', 'slow'])
  t.equal(replyFrames.length, 2, 'the late reply came in a frame of its own')
})

t.test('the shard port closing fails every call in flight with SHARD_UNAVAILABLE, once', async (t) => {
  const { client, shard, endpoint } = rig(t)
  const held = Array.from({ length: 5 }, (_, i) => send(client, 'a:b', `hold:${i}`))
  await until(() => shard.holding === 5, 'the shard to hold 5 sends')
  const answered = send(client, 'a:b', 'n:9')
  await answered.done
  endpoint.close()
  await Promise.all(held.map((c) => c.done))
  for (const c of held) {
    t.ok(c.err instanceof PullchatError)
    t.match(c.err, UNAVAILABLE)
    t.equal(c.value, 0)
  }
  t.equal(client.connected, false)
  t.equal(client.inflight, 0)
  shard.release() // answers that can no longer go anywhere
  await sleep(20)
  t.same(held.map((c) => c.calls), [1, 1, 1, 1, 1], 'each callback ran exactly once')
  t.equal(answered.calls, 1)
  t.equal(answered.value, 9, 'a call answered before the close is untouched')
})

t.test('detach() fails calls in flight and queued ones at once; later calls fail at once', async (t) => {
  const { client, shard, requestFrames, serverPort } = rig(t)
  const held = Array.from({ length: 3 }, (_, i) => send(client, 'a:b', `hold:${i}`))
  await until(() => shard.holding === 3, 'the shard to hold 3 sends')
  const queued = send(client, 'a:b', 'n:1') // not yet flushed
  const queuedPull = pull(client, 'a:b', 0, 10, false)
  let serverSawClose = false
  serverPort.once('close', () => (serverSawClose = true))
  client.detach()
  for (const c of [...held, queued, queuedPull]) {
    t.equal(c.calls, 1, 'failed synchronously, once')
    t.match(c.err, UNAVAILABLE)
  }
  t.equal(queuedPull.value, null)
  t.equal(client.inflight, 0)

  const after = send(client, 'a:b', 'n:2')
  t.equal(after.calls, 1, 'a call after detach fails before send() returns')
  t.match(after.err, UNAVAILABLE)
  const afterPull = pull(client, 'a:b', 0, 10, false)
  t.equal(afterPull.calls, 1)
  t.match(afterPull.err, UNAVAILABLE)

  shard.release()
  await sleep(20)
  t.equal(requestFrames.length, 1, 'the queued calls were never sent')
  t.ok(serverSawClose, 'the shard side saw the port close')
  t.same([...held, queued, queuedPull, after, afterPull].map((c) => c.calls), [1, 1, 1, 1, 1, 1, 1])

  const never = new ShardClient(5, 10)
  const c = send(never, 'a:b', 'n:1')
  t.equal(c.calls, 1)
  t.match(c.err, { code: 'IM_ERR_SHARD_UNAVAILABLE', message: 'shard 5 is not available' })
})

t.test('attach() to a restarted shard: old calls fail, new calls go to the new port', async (t) => {
  const first = rig(t)
  const held = send(first.client, 'a:b', 'hold:1')
  await until(() => first.shard.holding === 1, 'the first shard to hold a send')
  const { port1, port2 } = new MessageChannel()
  const second = new FakeShard()
  new ShardEndpoint(port2, second)
  t.teardown(() => port2.close())
  first.client.attach(port1)
  t.equal(held.calls, 1)
  t.match(held.err, UNAVAILABLE)
  t.equal(first.client.connected, true)
  const c = send(first.client, 'a:b', 'n:8')
  await c.done
  t.equal(c.value, 8)
  t.equal(second.sends.length, 1)
  t.equal(first.shard.sends.length, 1, 'the old shard got nothing more')

  // A call still queued when the new port arrives failed already: it must not reach the new
  // shard (which would store a message its sender was told had failed).
  const queued = send(first.client, 'a:b', 'n:9')
  const { port1: port3, port2: port4 } = new MessageChannel()
  const third = new FakeShard()
  new ShardEndpoint(port4, third)
  t.teardown(() => port4.close())
  first.client.attach(port3)
  t.match(queued.err, UNAVAILABLE)
  const fresh = send(first.client, 'a:b', 'n:10')
  await fresh.done
  t.equal(fresh.value, 10)
  t.same(third.sends.map((m) => m.text), ['n:10'], 'the new shard got only the new call')
  t.equal(queued.calls, 1)
})

t.test('past inflightMax calls fail at once with OVERLOADED', async (t) => {
  const { client, shard, requestFrames } = rig(t, 3)
  const admitted = Array.from({ length: 3 }, (_, i) => send(client, 'a:b', `hold:${i}`))
  const over = send(client, 'a:b', 'hold:3')
  const overPull = pull(client, 'a:b', 0, 1, false)
  t.equal(over.calls, 1, 'failed before send() returned')
  t.ok(over.err instanceof PullchatError)
  t.match(over.err, { code: 'IM_ERR_OVERLOADED', statusCode: 503, message: '3 requests in flight to shard 3' })
  t.equal(over.value, 0)
  t.match(overPull.err, { code: 'IM_ERR_OVERLOADED' })
  t.equal(overPull.value, null)
  t.equal(client.inflight, 3)
  await until(() => shard.holding === 3, 'the shard to hold 3 sends')
  t.equal(requestFrames[0]?.length, 3, 'only the admitted calls were sent')
  shard.release()
  await Promise.all(admitted.map((c) => c.done))
  t.same(admitted.map((c) => c.value), [0, 1, 2])
  t.equal(client.inflight, 0)
  const again = send(client, 'a:b', 'n:4')
  await again.done
  t.equal(again.err, null, 'room again once replies came back')
  t.equal(again.value, 4)
  t.same([...admitted, over, overPull, again].map((c) => c.calls), [1, 1, 1, 1, 1, 1])
})

/** A client whose "shard" is a raw port answering every request frame with `answer(batch)`. */
function rawShard(t: Test, answer: (batch: unknown[][]) => Uint8Array): ShardClient {
  const { port1, port2 } = new MessageChannel()
  port2.on('message', (f: Uint8Array) => port2.postMessage(answer(decodeFrame(f) as unknown[][])))
  const client = new ShardClient(3, 100)
  client.attach(port1)
  t.teardown(() => {
    client.detach()
    port2.close()
  })
  return client
}

t.test('a shard that answers garbage fails every call in flight with RPC_FRAME', async (t) => {
  const client = rawShard(t, () => Uint8Array.of(1, 2, 3))
  const calls = [send(client, 'a:b', 'x'), pull(client, 'a:b', 0, 10, true)]
  await Promise.all(calls.map((c) => c.done))
  for (const c of calls) t.match(c.err, frameError('only 3 bytes'))
  t.equal(client.inflight, 0)
  t.equal(client.connected, true, 'the port stays: a restart will replace it')
})

t.test('malformed replies fail their own call with RPC_FRAME; replies to unknown ids are ignored', async (t) => {
  const client = rawShard(t, (batch) => {
    const id = (i: number): number => batch[i]?.[1] as number
    return encodeFrame([
      [id(0), 0, 'not a send_time'],
      [id(1), 0, 5], // a send ok, for a pull
      [id(2), 0, Buffer.from('[]'), false, 0], // a pull ok, for a send
      [99999, 0, 1], // nobody asked
      [id(3), 0, 17],
      [id(3), 0, 18], // answered twice: the second is dropped
    ])
  })
  const calls = [send(client, 'a:b', 'x'), pull(client, 'a:b', 0, 10, true), send(client, 'a:b', 'y'), send(client, 'a:b', 'z')]
  await Promise.all(calls.map((c) => c.done))
  const [badSend, pullGotSend, sendGotPull, ok] = calls
  t.match(badSend?.err, { code: 'IM_ERR_RPC_FRAME', message: 'malformed RPC reply' })
  t.match(pullGotSend?.err, { code: 'IM_ERR_RPC_FRAME', message: 'malformed RPC reply' })
  t.match(sendGotPull?.err, { code: 'IM_ERR_RPC_FRAME', message: 'malformed RPC reply' })
  t.equal(ok?.err, null)
  t.equal(ok?.value, 17)
  await sleep(10)
  t.same(calls.map((c) => c.calls), [1, 1, 1, 1])
  t.equal(client.inflight, 0)
})

t.test('the server answers malformed requests it can, and reports the rest', async (t) => {
  const { port1, port2 } = new MessageChannel()
  const shard = new FakeShard()
  const bad: PullchatError[] = []
  new ShardEndpoint(port2, shard, { onBadFrame: (err) => bad.push(err) })
  const replies: unknown[][] = []
  port1.on('message', (f: Uint8Array) => replies.push(decodeFrame(f)))
  t.teardown(() => {
    port1.close()
    port2.close()
  })

  port1.postMessage(
    encodeFrame([
      [OP_SEND, 5, 'a:b', 7, 's'], // text is not a string
      ['junk'], // no id
      [OP_SEND, 6, 'a:b', 'n:60', 's'],
      [9, 7, 'a:b'], // unknown op
      [OP_PULL, 8, 'a:b', -1, 10, false],
    ]),
  )
  await until(() => replies.length === 1, 'a reply frame')
  t.same(replies[0], [
    [5, Errors.RPC_FRAME.wireId, 'malformed RPC request'],
    [6, 0, 60],
    [7, Errors.RPC_FRAME.wireId, 'malformed RPC request'],
    [8, Errors.RPC_FRAME.wireId, 'malformed RPC request'],
  ])
  t.equal(bad.length, 1)
  t.match(bad[0], { code: 'IM_ERR_RPC_FRAME', message: 'RPC request without an id' })
  t.equal(shard.sends.length, 1, 'only the valid request reached the shard')
  t.equal(shard.pulls.length, 0)

  port1.postMessage(Uint8Array.of(FRAME_MAGIC))
  port1.postMessage(frameOf(pack({ not: 'an array' })))
  await until(() => bad.length === 3, 'two more bad frames')
  t.match(bad[1], frameError('only 1 bytes'))
  t.match(bad[2], frameError('payload is not an array'))
  await sleep(10)
  t.equal(replies.length, 1, 'an undecodable frame gets no answer')
})

// ---------------------------------------------------------------------------------------------
// Which shard owns a chat

t.test('hashChat is 32-bit FNV-1a over UTF-16 code units, pinned', async (t) => {
  // Changing any of these moves chats between shards: a data migration.
  t.equal(hashChat(''), 0x811c9dc5, 'FNV-1a offset basis')
  t.equal(hashChat('a'), 0xe40c292c, 'FNV-1a test vector "a"')
  t.equal(hashChat('foobar'), 0xbf9cf968, 'FNV-1a test vector "foobar"')
  t.equal(hashChat('alice:bob'), 694039286)
  t.equal(hashChat('bob:carol'), 1207636679)
  t.equal(hashChat('😀:ü'), 2551387566)
})

t.test('shardOf is deterministic and in range', (t) =>
  holds(
    t,
    fc.property(fc.string({ unit: 'binary', maxLength: 64 }), fc.integer({ min: 1, max: 256 }), (chat, shards) => {
      const s = shardOf(chat, shards)
      assert.ok(Number.isInteger(s) && s >= 0 && s < shards, `shardOf(${JSON.stringify(chat)}, ${shards}) = ${s}`)
      assert.equal(shardOf(chat, shards), s)
      assert.equal(shardOf(chat, 1), 0)
      const h = hashChat(chat)
      assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffff_ffff)
    }),
    { numRuns: 1000 },
  ),
)

t.test('shardOf spreads chats evenly over the shards', async (t) => {
  // Chat ids as the front end makes them ("a:b", names sorted), in the patterns load tests and
  // real user bases produce.
  const pair = (a: string, b: string): string => (a < b ? `${a}:${b}` : `${b}:${a}`)
  let seed = 42
  const random = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32
  const populations: Record<string, (i: number) => string> = {
    'neighbours user<i>:user<i+1>': (i) => pair(`user${i}`, `user${i + 1}`),
    'random pairs of 1000 users': () => pair(`user${Math.floor(random() * 1000)}`, `user${Math.floor(random() * 1000)}`),
    'rooms room-<i>': (i) => `room-${i}`,
    'zero-padded u00042:u00126': (i) => pair(`u${String(i).padStart(5, '0')}`, `u${String((i * 3) % 10_000).padStart(5, '0')}`),
  }
  for (const [name, make] of Object.entries(populations)) {
    for (const shards of [2, 4, 8]) {
      const counts = new Array<number>(shards).fill(0)
      for (let i = 0; i < 10_000; i++) counts[shardOf(make(i), shards)]++
      const fair = 10_000 / shards
      t.ok(
        counts.every((n) => Math.abs(n - fair) <= fair * 0.2),
        `${name}, ${shards} shards: each within ±20% of ${fair}: ${counts.join(' ')}`,
      )
    }
  }
})

t.test('shardOf: pinned owners (changing any is a data migration)', async (t) => {
  const chats = ['alice:bob', 'bob:carol', 'room-1', '😀:ü', 'a:a', '']
  t.same(chats.map((c) => shardOf(c, 2)), [1, 0, 0, 0, 1, 1], '2 shards')
  t.same(chats.map((c) => shardOf(c, 4)), [1, 2, 2, 0, 1, 3], '4 shards')
  t.same(chats.map((c) => shardOf(c, 7)), [6, 5, 3, 1, 2, 4], '7 shards')
})
