// The RPC channel between the front end and the shards: msgpack frames over MessagePorts between
// threads, batched per shard per event-loop turn, and a direct call within the thread that hosts
// the shard (in-process.ts). Knows nothing of HTTP or of how a shard stores messages.
export { ShardClient, type ShardCaller, type PullPage, type SendCallback, type PullCallback } from './client.js'
export { InProcessClient } from './in-process.js'
export { ShardEndpoint, type ServeOptions } from './server.js'
export { shardOf, hashChat } from './shard-hash.js'
export { encodeFrame, decodeFrame, FrameDecoder } from './codec.js'
export * from './types.js'
export { sendStrings, type SendBytes } from './send-bytes.js'
