// Rebuilding a shard's store from its log at start-up.

import { readLog, WalCorruptError, type RecoveredLog } from '../wal/index.js'
import { decodeMessage } from './message-record.js'
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
    const m = decodeMessage(payload)
    if (m === null) throw new WalCorruptError(file, offset, `record ${lsn} has a valid checksum but is not a message`)
    const last = store.get(m.chat)?.lastStoredTime ?? 0
    if (m.sendTime <= last) {
      throw new WalCorruptError(file, offset, `record ${lsn}: send_time ${m.sendTime} does not follow ${last} in chat ${JSON.stringify(m.chat)}`)
    }
    store.append(m.chat, m.sendTime, m.text, m.sender)
    onRecord?.(m.chat, m.sendTime, file)
  })
  return { log, records: log.records, ms: performance.now() - t0 }
}
