// Chat ids as clients write them, and the canonical form the store keys on.
//
// "a:b" is a direct chat between members a and b; "a:b" and "b:a" are one chat, canonically the
// two ids sorted (by UTF-16 code units) and joined with ':'. "a:a" is allowed. An id without ':'
// is a named room. More than one ':' or an empty member is invalid. Member ids, senders and room
// names are at most `idBytesMax` bytes of UTF-8 and hold no control characters.

import { Errors, PullchatError, type ErrorSpec } from '../errors.js'

export interface ChatId {
  /** Canonical id: members sorted for direct chats, the name itself for rooms. */
  readonly id: string
  /** The two members of a direct chat (sorted), or null for a room. */
  readonly members: readonly [string, string] | null
}

// C0 controls and DEL. Everything else (any script, emoji) is a fine id character.
const CONTROL = /[\u0000-\u001f\u007f]/

/**
 * Checks a member id, sender or room name; `what` names it in the error message, `invalid` is
 * the error for a bad character (IM_ERR_INVALID_CHAT inside a chat id, IM_ERR_INVALID_FIELD for a
 * sender).
 */
export function checkId(value: string, what: string, idBytesMax: number, invalid: ErrorSpec = Errors.INVALID_CHAT): void {
  if (value.length * 3 > idBytesMax && Buffer.byteLength(value) > idBytesMax) {
    throw new PullchatError(Errors.FIELD_TOO_LONG, `${what} is longer than ${idBytesMax} bytes`)
  }
  if (CONTROL.test(value)) throw new PullchatError(invalid, `${what} must not contain control characters`)
}

export function parseChatId(chat: string, idBytesMax: number): ChatId {
  const colon = chat.indexOf(':')
  if (colon === -1) {
    checkId(chat, 'room name', idBytesMax)
    return { id: chat, members: null }
  }
  if (chat.indexOf(':', colon + 1) !== -1) {
    throw new PullchatError(Errors.INVALID_CHAT, `chat id ${JSON.stringify(chat)} has more than one ':'; use "a:b" for a direct chat or a room name without ':'`)
  }
  const a = chat.slice(0, colon)
  const b = chat.slice(colon + 1)
  if (a === '' || b === '') throw new PullchatError(Errors.INVALID_CHAT, `chat id ${JSON.stringify(chat)} has an empty member id`)
  checkId(a, 'member id', idBytesMax)
  checkId(b, 'member id', idBytesMax)
  // When a <= b the id as given is already canonical: reuse the string.
  return a <= b ? { id: chat, members: [a, b] } : { id: `${b}:${a}`, members: [b, a] }
}
