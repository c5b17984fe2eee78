// What a store puts in a log record: msgpack [chat, sender, text, send_time].

import { Packr } from 'msgpackr'

const packr = new Packr({ useRecords: false, moreTypes: false })

export interface MessageRecord {
  readonly chat: string
  readonly sender: string
  readonly text: string
  readonly sendTime: number
}

/** Encodes a message. The result is a view into a reused buffer: use it before the next call. */
export function encodeMessage(chat: string, sender: string, text: string, sendTime: number): Uint8Array {
  return packr.pack([chat, sender, text, sendTime])
}

/** Decodes a record payload; returns null when it is not a message record. */
export function decodeMessage(payload: Uint8Array): MessageRecord | null {
  let v: unknown
  try {
    v = packr.unpack(payload)
  } catch {
    return null
  }
  if (!Array.isArray(v) || v.length !== 4) return null
  const [chat, sender, text, sendTime] = v as unknown[]
  if (typeof chat !== 'string' || typeof sender !== 'string' || typeof text !== 'string') return null
  if (typeof sendTime !== 'number' || !Number.isSafeInteger(sendTime) || sendTime < 1) return null
  return { chat, sender, text, sendTime }
}

/**
 * A checker for `repair`: says why a checksum-valid record cannot be replayed (not a message, or
 * a send_time that does not follow its chat's previous one), or null when it can. Stateful: feed
 * it one shard's records in log order.
 */
export function messageRecordChecker(): (payload: Uint8Array) => string | null {
  const last = new Map<string, number>()
  return (payload) => {
    const m = decodeMessage(payload)
    if (m === null) return 'a record with a valid checksum that is not a message'
    const prev = last.get(m.chat) ?? 0
    if (m.sendTime <= prev) return `send_time ${m.sendTime} does not follow ${prev} in its chat`
    last.set(m.chat, m.sendTime)
    return null
  }
}
