// Entry point of a shard worker thread. The cluster sends it one MessagePort per HTTP thread
// ({ type: 'port' }) and, at shutdown, { type: 'stop' }; it answers { type: 'stopped' } once every
// reply is flushed.

import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import type { Config } from '../config.js'
import { createLogger } from '../log.js'
import { ShardEndpoint } from '../rpc/index.js'
import { Shard } from './shard.js'

export interface ShardWorkerData {
  readonly shard: number
  readonly config: Config
}

export type ShardControl = { readonly type: 'port'; readonly port: MessagePort } | { readonly type: 'stop' }

const { shard: shardId, config } = workerData as ShardWorkerData
const log = createLogger(`shard-${shardId}`, config.logLevel)
const shard = new Shard(shardId)
const endpoints: ShardEndpoint[] = []

if (parentPort === null) throw new Error('shard-worker must run in a worker thread')
const control = parentPort

control.on('message', (msg: ShardControl) => {
  if (msg.type === 'port') {
    endpoints.push(
      new ShardEndpoint(msg.port, shard, {
        onBadFrame: (err) => log.error('dropped a malformed RPC frame', { code: err.code, detail: err.message }),
      }),
    )
  } else if (msg.type === 'stop') {
    for (const e of endpoints) e.close()
    const stats = shard.store.stats()
    log.info('shard stopped', { chats: stats.chats, messages: stats.messages })
    control.postMessage({ type: 'stopped' })
  }
})

control.postMessage({ type: 'ready' })
