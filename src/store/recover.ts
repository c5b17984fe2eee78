// Rebuilding a shard's store from its log at start-up.

import { readLog, WalCorruptError, type RecoveredLog } from '../wal/index.js'
import { readStoredMessage } from './message-record.js'
import type { ShardStore } from './shard-store.js'

export interface Recovery {
  readonly log: RecoveredLog
  readonly records: number
  readonly ms: number
  /**
   * Oldest messages left out of memory because their chat already held its limit (a log written
   * by a version that let a chat grow past it; this one refuses such sends before logging them).
   */
  readonly overLimit: number
}

export interface RecoveryObserver {
  /** A record was replayed into the store. */
  onRecord?(chat: string, sendTime: number, segment: string): void
  /** The chat's oldest message was dropped to make room (see Recovery.overLimit). */
  onDropOldest?(chat: string): void
}

/** Replays every record of the shard's log into `store`. Throws WalCorruptError. */
export function recoverStore(dir: string, shard: number, store: ShardStore, observer: RecoveryObserver = {}): Recovery {
  const t0 = performance.now()
  let overLimit = 0
  const log = readLog(dir, shard, (payload, lsn, file, offset) => {
    const m = readStoredMessage(payload)
    if (m === null) throw new WalCorruptError(file, offset, `record ${lsn} has a valid checksum but is not a message`)
    const chat = store.chatLog(m.chat)
    const last = chat.lastStoredTime
    if (m.sendTime <= last) {
      throw new WalCorruptError(file, offset, `record ${lsn}: send_time ${m.sendTime} does not follow ${last} in chat ${JSON.stringify(m.chat)}`)
    }
    if (chat.full) {
      // Keep the newest messages, as retention would; the log itself is left as it is.
      store.dropOldest(m.chat, 1)
      observer.onDropOldest?.(m.chat)
      overLimit++
    }
    if (m.json !== null) store.appendJson(chat, m.sendTime, m.json, m.jsonFrom, m.json.length)
    else if (m.message !== null) store.append(m.chat, m.sendTime, m.message.text, m.message.sender)
    observer.onRecord?.(m.chat, m.sendTime, file)
  })
  return { log, records: log.records, ms: performance.now() - t0, overLimit }
}
