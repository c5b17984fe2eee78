// The RPC channel between HTTP threads and shards: msgpack frames over MessagePorts, batched per
// shard per event-loop turn. Knows nothing of HTTP or of how a shard stores messages.
export { ShardClient, type PullPage, type SendCallback, type PullCallback } from './client.js'
export { ShardEndpoint, type ServeOptions } from './server.js'
export { shardOf, hashChat } from './shard-hash.js'
export { encodeFrame, decodeFrame, FrameDecoder } from './codec.js'
export * from './types.js'
