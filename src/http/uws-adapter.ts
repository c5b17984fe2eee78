// Everything uWebSockets.js-specific lives here: routing a request to its handler, reading the
// body, and writing the reply. The rules uWS imposes, kept in this one place:
// - `onAborted` is attached before anything asynchronous (for a request without a body, only if
//   the handler did not answer before returning), and after an abort `res` is never touched
//   again (doing so terminates the process);
// - writes after the route handler returned, or from `onData`, are wrapped in `res.cork()`; within
//   the route handler uWS has corked the response already, and a reply is written as it is;
// - `onData` chunks are neutered when the callback returns: a body that came in one chunk is handed
//   to the handler in place (handlers do not keep it), one that came in several is copied;
// - the body limit is enforced from Content-Length before reading, and again while reading
//   chunked bodies; an oversized body gets 413 and the connection is closed.

import { performance } from 'node:perf_hooks' // the global is a getter, called on every use
import uWS from 'uWebSockets.js'
import type { Config } from '../config.js'
import { Errors, PullchatError, reasonPhrase } from '../errors.js'
import type { Logger } from '../log.js'
import { errorReply, type Handler, type HandlerContext, type ParsedRequest, type Reply, type Route } from './handlers.js'

export interface Adapter {
  readonly app: uWS.TemplatedApp
  /** Requests received and not yet answered or aborted. */
  inflight(): number
  /** From now on, answer new requests with 503 and close connections after each reply. */
  drain(): void
}

interface InFlight {
  aborted: boolean
  answered: boolean
  /** While the route handler runs: uWS has the response corked, and a reply needs no cork() of its own. */
  inHandler: boolean
  readonly route: string
  readonly method: string
  readonly startedAt: number
}

// Strings that uWS reads on every request, as bytes: uWS converts a string argument to UTF-8 in a
// buffer it allocates and frees on each call, and reads a Uint8Array in place.
const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'))
const CONTENT_TYPE = bytes('Content-Type')
const JSON_TYPE = bytes('application/json')
const H_CONTENT_TYPE = bytes('content-type')
const H_CONTENT_LENGTH = bytes('content-length')
const H_TRANSFER_ENCODING = bytes('transfer-encoding')

// uWS's route registrations by HTTP method.
const UWS_METHODS: Readonly<Record<string, 'get' | 'head' | 'post'>> = { GET: 'get', HEAD: 'head', POST: 'post' }

const STATUS_LINES = new Map<number, Uint8Array>()
function statusLine(status: number): Uint8Array {
  let line = STATUS_LINES.get(status)
  if (line === undefined) {
    line = bytes(status === 200 ? '200 OK' : `${status} ${reasonPhrase(status)}`)
    STATUS_LINES.set(status, line)
  }
  return line
}

function writeReply(res: uWS.HttpResponse, method: string, reply: Reply, close: boolean): void {
  // uWS writes "200 OK" itself before the first header: one call fewer for nearly every reply.
  if (reply.status !== 200) res.writeStatus(statusLine(reply.status))
  res.writeHeader(CONTENT_TYPE, reply.contentType ?? JSON_TYPE)
  if (reply.headers !== undefined) for (const [k, v] of Object.entries(reply.headers)) res.writeHeader(k, v)
  // A reply to HEAD has no body: uWS's end() would send it, and a client would read it as the
  // start of its next reply. It has no Content-Length either (which HTTP allows): this uWS build
  // does not finish a response ended with endWithoutBody(length) (uNetworking/uWebSockets#1855).
  // One that must close its connection (draining) ends with end(), which says Content-Length: 0.
  if (method === 'HEAD' && !close) res.endWithoutBody()
  else res.end(method === 'HEAD' ? undefined : reply.body, close)
}

/** Called once per answered request; `route` is a known route path or "unknown". */
export type RequestObserver = (route: string, method: string, status: number, seconds: number) => void

export function createAdapter(
  routes: ReadonlyMap<string, Route>,
  ctx: HandlerContext,
  log: Logger,
  observe: RequestObserver = () => {},
  app: uWS.TemplatedApp = uWS.App(),
): Adapter {
  const config: Config = ctx.config
  let inflight = 0
  let draining = false

  const write = (res: uWS.HttpResponse, state: InFlight, reply: Reply, close: boolean): void => {
    if (state.aborted || state.answered) return
    state.answered = true
    inflight--
    if (state.inHandler) writeReply(res, state.method, reply, close || draining)
    else res.cork(() => writeReply(res, state.method, reply, close || draining))
    observe(state.route, state.method, reply.status, (performance.now() - state.startedAt) / 1000)
  }

  // Replies, from the route handler, to a request that is not read further (routing errors, 413,
  // draining).
  const answerNow = (res: uWS.HttpResponse, route: string, method: string, startedAt: number, reply: Reply, close: boolean): void => {
    writeReply(res, method, reply, close || draining)
    observe(route, method, reply.status, (performance.now() - startedAt) / 1000)
  }

  const dispatch = (res: uWS.HttpResponse, state: InFlight, handler: Handler, req: ParsedRequest): void => {
    try {
      handler(req, ctx, (reply) => write(res, state, reply, false))
    } catch (err) {
      if (err instanceof PullchatError) {
        write(res, state, errorReply(err), false)
      } else {
        log.error('handler failed', { path: req.path, err: (err as Error)?.message, stack: (err as Error)?.stack })
        write(res, state, errorReply(new PullchatError(Errors.INTERNAL)), false)
      }
    }
  }

  const serve = (res: uWS.HttpResponse, req: uWS.HttpRequest, path: string, method: string, route: Route, startedAt: number): void => {
    const handler = route.methods[method]
    if (handler === undefined) {
      const allow = Object.keys(route.methods).join(', ')
      answerNow(res, path, method, startedAt, errorReply(new PullchatError(Errors.METHOD_NOT_ALLOWED, `${method} is not allowed on ${path}; use ${allow}`), { Allow: allow }), false)
      return
    }
    if (draining) {
      answerNow(res, path, method, startedAt, errorReply(new PullchatError(Errors.SHUTTING_DOWN)), true)
      return
    }
    const query = req.getQuery() ?? ''
    const contentType = req.getHeader(H_CONTENT_TYPE)
    const contentLength = req.getHeader(H_CONTENT_LENGTH)
    // (Transfer-Encoding is read only when Content-Length does not already say there is a body.)
    const hasBody = (contentLength !== '' && contentLength !== '0') || req.getHeader(H_TRANSFER_ENCODING) !== ''

    if (!route.readsBody || !hasBody) {
      // uWS still consumes and discards a body we do not read.
      const state: InFlight = { aborted: false, answered: false, inHandler: true, route: path, method, startedAt }
      inflight++
      dispatch(res, state, handler, { method, path, query, contentType, body: null })
      state.inHandler = false
      // A request answered before the handler returned (an error, /ping) needs no abort
      // handler; one that will be answered later gets it now, before anything asynchronous runs.
      if (!state.answered) {
        res.onAborted(() => {
          if (!state.answered) inflight--
          state.aborted = true
        })
      }
      return
    }

    // (uWS itself closes a connection whose Content-Length is not a number.)
    if (contentLength !== '' && Number(contentLength) > config.bodyBytesMax) {
      const err = new PullchatError(Errors.BODY_TOO_LARGE, `the body is ${contentLength} bytes; the limit is ${config.bodyBytesMax}`)
      answerNow(res, path, method, startedAt, errorReply(err), true)
      return
    }

    const state: InFlight = { aborted: false, answered: false, inHandler: false, route: path, method, startedAt }
    inflight++
    res.onAborted(() => {
      if (!state.answered) inflight--
      state.aborted = true
    })
    const expected = contentLength === '' ? 0 : Number(contentLength)
    let body: Buffer | null = null
    let received = 0
    let chunks: Buffer[] | null = null // only for a body that comes in pieces Content-Length did not announce
    res.onData((chunk, isLast) => {
      if (state.answered || state.aborted) return
      if (received + chunk.byteLength > config.bodyBytesMax) {
        write(res, state, errorReply(new PullchatError(Errors.BODY_TOO_LARGE, `the body is over the limit of ${config.bodyBytesMax} bytes`)), true)
        return
      }
      if (isLast && received === 0) {
        // The whole body in one chunk, as nearly every request's: read in place. A handler is done
        // with the body when it returns (whatever is kept is copied: ParsedRequest.body), and uWS
        // neuters the chunk only after this callback.
        dispatch(res, state, handler, { method, path, query, contentType, body: Buffer.from(chunk) })
        return
      }
      const bytes = new Uint8Array(chunk)
      if (received === 0 && expected >= bytes.length) body = Buffer.allocUnsafe(expected)
      if (body !== null && received + bytes.length <= body.length) body.set(bytes, received)
      else {
        // Chunked, or more bytes than Content-Length said: collect copies.
        chunks ??= []
        if (body !== null) {
          chunks.push(body.subarray(0, received))
          body = null
        }
        chunks.push(Buffer.from(bytes))
      }
      received += bytes.length
      if (!isLast) return
      const full = body !== null ? body.subarray(0, received) : Buffer.concat(chunks ?? [])
      dispatch(res, state, handler, { method, path, query, contentType, body: full })
    })
  }

  // Each known route and method has a uWS route of its own, so that uWS's router, not JavaScript,
  // picks the handler, and a request needs no strings for its path and method (getUrl and
  // getCaseSensitiveMethod each make one): ~1-2% of a send's CPU (docs/performance.md). Everything
  // else falls through to `any`, for its 404 or 405.
  for (const [path, route] of routes) {
    for (const method of Object.keys(route.methods)) {
      const register = UWS_METHODS[method]
      if (register === undefined) throw new Error(`no uWS route for method ${method}`)
      app[register](path, (res, req) => serve(res, req, path, method, route, performance.now()))
    }
  }

  app.any('/*', (res, req) => {
    const startedAt = performance.now()
    const path = req.getUrl()
    const method = req.getCaseSensitiveMethod()
    const route = routes.get(path)
    if (route === undefined) {
      answerNow(res, 'unknown', method, startedAt, errorReply(new PullchatError(Errors.NOT_FOUND, `no route for ${path}`)), false)
      return
    }
    // A known path gets here only with a method it does not serve: 405.
    serve(res, req, path, method, route, startedAt)
  })

  return {
    app,
    inflight: () => inflight,
    drain: () => {
      draining = true
    },
  }
}
