// The HTTP front end: a uWebSockets.js server per worker thread, routing each chat to its shard.
export { ROUTES, ping, send, pull, errorReply, type Backend, type Handler, type HandlerContext, type ParsedRequest, type Reply, type Route } from './handlers.js'
export { createAdapter, type Adapter } from './uws-adapter.js'
export { parseChatId, type ChatId } from './chat-id.js'
export { readFields } from './request-fields.js'
export { createFrontEnd, type FrontEnd } from './front-end.js'
