// Rebuilding a shard's store from its log at start-up.

import { readLog, WalCorruptError, type RecoveredLog } from '../wal/index.js'
import { readStoredMessage } from './message-record.js'
import type { ShardStore } from './shard-store.js'

export interface Recovery {
  readonly log: RecoveredLog
  readonly records: number
  readonly ms: number
}

/** Replays every record of the shard's log into `store`. Throws WalCorruptError. */
export function recoverStore(dir: string, shard: number, store: ShardStore, onRecord?: (chat: string, sendTime: number, segment: string) => void): Recovery {
  const t0 = performance.now()
  const log = readLog(dir, shard, (payload, lsn, file, offset) => {
    const m = readStoredMessage(payload)
    if (m === null) throw new WalCorruptError(file, offset, `record ${lsn} has a valid checksum but is not a message`)
    const chat = store.chatLog(m.chat)
    const last = chat.lastStoredTime
    if (m.sendTime <= last) {
      throw new WalCorruptError(file, offset, `record ${lsn}: send_time ${m.sendTime} does not follow ${last} in chat ${JSON.stringify(m.chat)}`)
    }
    if (m.json !== null) store.appendJson(chat, m.sendTime, m.json, m.jsonFrom, m.json.length)
    else if (m.message !== null) store.append(m.chat, m.sendTime, m.message.text, m.message.sender)
    onRecord?.(m.chat, m.sendTime, file)
  })
  return { log, records: log.records, ms: performance.now() - t0 }
}
