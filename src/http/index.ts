// The HTTP front end: a uWebSockets.js server per HTTP thread, routing each chat to its shard.
export { ROUTES, ping, send, pull, errorReply, type Backend, type Handler, type HandlerContext, type ParsedRequest, type Reply, type Route } from './handlers.js'
export { createAdapter, type Adapter } from './uws-adapter.js'
export { parseChatId, type ChatId } from './chat-id.js'
export { readFields } from './request-fields.js'
export type { HttpWorkerData, HttpControl } from './http-worker.js'

/** The module an HTTP worker thread runs. */
export const httpWorkerUrl = new URL('./http-worker.js', import.meta.url)
