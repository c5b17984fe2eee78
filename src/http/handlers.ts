// Route handlers as plain functions from a parsed request to a reply, so they can be tested
// without a socket. Validation happens here, before anything reaches a shard: a rejected send
// stores nothing.

import type { Config } from '../config.js'
import { PullchatError, errorBody } from '../errors.js'
import type { PullCallback, SendBytes, SendCallback } from '../rpc/index.js'
import { checkId, parseChatId } from './chat-id.js'
import { pullBody, sendBody } from './reply-body.js'
import { optionalBool, optionalUint, readFields, requiredString, sendBodyType } from './request-fields.js'
import { readSendBody, type SendBody } from './send-body.js'
import { Errors } from '../errors.js'

export interface ParsedRequest {
  readonly method: string
  readonly path: string
  /** Raw query string, without '?'. */
  readonly query: string
  readonly contentType: string
  /** Valid until the handler returns (it may be a uWS chunk): what outlives the call is copied. */
  readonly body: Uint8Array | null
}

export interface Reply {
  readonly status: number
  /**
   * A JSON document, unless contentType says otherwise. Bytes may be a view that the next reply
   * built on this thread overwrites (reply-body.ts): write a reply before asking for another.
   */
  readonly body: string | Uint8Array
  readonly contentType?: string
  readonly headers?: Readonly<Record<string, string>>
}

/** What the handlers need of the shards: routing by chat is the backend's business. */
export interface Backend {
  send(chat: string, text: string, sender: string, cb: SendCallback): void
  /**
   * As send, with the text and sender as the JSON literals the request carried (send-body.ts);
   * `fields.bytes` is valid only during the call.
   */
  sendBytes(chat: string, fields: SendBytes, cb: SendCallback): void
  pull(chat: string, cursor: number, limit: number, reverse: boolean, cb: PullCallback): void
}

export interface HandlerContext {
  readonly config: Config
  readonly backend: Backend
  /** Counts acknowledged sends and pulled messages (metrics); optional in tests. */
  readonly counters?: { messagesSent(n: number): void; messagesPulled(n: number): void }
  /** Produces the merged Prometheus exposition of every thread. */
  readonly scrape?: (cb: (err: Error | null, text: string) => void) => void
}

export type Handler = (req: ParsedRequest, ctx: HandlerContext, done: (reply: Reply) => void) => void

export function errorReply(err: PullchatError, headers?: Record<string, string>): Reply {
  return headers === undefined ? { status: err.statusCode, body: errorBody(err) } : { status: err.statusCode, body: errorBody(err), headers }
}

const PONG = JSON.stringify({ message: 'pong' })

export const ping: Handler = (_req, _ctx, done) => done({ status: 200, body: PONG })

/** A send's fields as the request gave them. */
export interface SendFields {
  readonly chat: string
  readonly sender: string
  /** The text, or '' when `bytes` is not null: then the text is the literal `bytes` points to. */
  readonly text: string
  readonly bytes: SendBody | null
}

/**
 * Reads and checks a send's chat, text and sender as they arrived (the chat id not yet parsed).
 * The common body is read without decoding its text (send-body.ts, unless `fast` is false, as in
 * the tests that compare both); any other takes the general path. Both give the same fields and
 * the same errors.
 */
export function sendFields(req: ParsedRequest, config: Config, fast = true): SendFields {
  const bytes = fast && req.query === '' && req.body !== null && sendBodyType(req.contentType) ? readSendBody(req.body) : null
  if (bytes !== null) {
    // Valid UTF-8 without escapes: no lone surrogates, and textBytes is the text's UTF-8 length.
    if (bytes.textBytes > config.textBytesMax) throw new PullchatError(Errors.FIELD_TOO_LONG, `"text" is longer than ${config.textBytesMax} bytes`)
    return { chat: bytes.chat, sender: bytes.sender, text: '', bytes }
  }
  const fields = readFields(req.query, req.contentType, req.body)
  const chat = requiredString(fields, 'chat')
  const text = requiredString(fields, 'text')
  const sender = requiredString(fields, 'sender')
  // JSON can spell lone surrogates ("\ud800"); they have no UTF-8 form to store or send.
  for (const [name, v] of [['chat', chat], ['text', text], ['sender', sender]] as const) {
    if (!v.isWellFormed()) throw new PullchatError(Errors.INVALID_ENCODING, `"${name}" contains a lone surrogate (not valid Unicode)`)
  }
  if (text.length * 3 > config.textBytesMax && Buffer.byteLength(text) > config.textBytesMax) {
    throw new PullchatError(Errors.FIELD_TOO_LONG, `"text" is longer than ${config.textBytesMax} bytes`)
  }
  return { chat, sender, text, bytes: null }
}

export const send: Handler = (req, ctx, done) => {
  const { config } = ctx
  const { chat: chatRaw, sender, text, bytes } = sendFields(req, config)
  if (sender.includes(':')) throw new PullchatError(Errors.INVALID_FIELD, '"sender" must not contain \':\'')
  checkId(sender, 'sender', config.memberBytesMax, Errors.INVALID_FIELD)
  const chat = parseChatId(chatRaw, config.memberBytesMax)
  if (chat.members !== null && chat.members[0] !== sender && chat.members[1] !== sender) {
    throw new PullchatError(Errors.SENDER_NOT_MEMBER, `sender ${JSON.stringify(sender)} is not a member of chat ${JSON.stringify(chat.id)}`)
  }
  const answer: SendCallback = (err, sendTime) => {
    if (err !== null) {
      done(errorReply(err))
      return
    }
    ctx.counters?.messagesSent(1)
    done({ status: 200, body: sendBody(chat.id, sendTime) })
  }
  if (bytes !== null) ctx.backend.sendBytes(chat.id, bytes, answer)
  else ctx.backend.send(chat.id, text, sender, answer)
}

export const pull: Handler = (req, ctx, done) => {
  const { config } = ctx
  const fields = readFields(req.query, req.contentType, req.body)
  const chatRaw = requiredString(fields, 'chat')
  if (!chatRaw.isWellFormed()) throw new PullchatError(Errors.INVALID_ENCODING, '"chat" contains a lone surrogate (not valid Unicode)')
  const chat = parseChatId(chatRaw, config.memberBytesMax)
  const cursor = optionalUint(fields, 'cursor') ?? 0
  const limitAsked = optionalUint(fields, 'limit') ?? 0
  const limit = limitAsked === 0 ? config.pullLimitDefault : Math.min(limitAsked, config.pullLimitMax)
  const reverse = optionalBool(fields, 'reverse') ?? false
  ctx.backend.pull(chat.id, cursor, limit, reverse, (err, page) => {
    if (err !== null || page === null) {
      done(errorReply(err ?? new PullchatError(Errors.INTERNAL)))
      return
    }
    ctx.counters?.messagesPulled(page.count)
    done({ status: 200, body: pullBody(page.messages, page.hasMore, page.nextCursor) })
  })
}

export const metrics: Handler = (_req, ctx, done) => {
  if (ctx.scrape === undefined) {
    done(errorReply(new PullchatError(Errors.NOT_FOUND, 'metrics are not served here')))
    return
  }
  ctx.scrape((err, text) => {
    if (err !== null) done(errorReply(new PullchatError(Errors.INTERNAL, `metrics collection failed: ${err.message}`)))
    else done({ status: 200, body: text, contentType: 'text/plain; version=0.0.4; charset=utf-8' })
  })
}

export interface Route {
  /** Handlers by upper-case method. */
  readonly methods: Readonly<Record<string, Handler>>
  /** Whether the handler reads the body (ping does not). */
  readonly readsBody: boolean
}

export const ROUTES: ReadonlyMap<string, Route> = new Map<string, Route>([
  ['/ping', { methods: { GET: ping, HEAD: ping }, readsBody: false }],
  ['/api/send', { methods: { POST: send }, readsBody: true }],
  ['/api/pull', { methods: { GET: pull, POST: pull }, readsBody: true }],
  ['/metrics', { methods: { GET: metrics, HEAD: metrics }, readsBody: false }],
])
