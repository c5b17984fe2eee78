// JSON's text as bytes: what the request path reads and writes without JSON.parse or
// JSON.stringify (src/http/send-body.ts, src/http/reply-body.ts, src/store/message-record.ts,
// src/store/chat-log.ts).

export const QUOTE = 0x22 // "
export const BACKSLASH = 0x5c // \

/** Whether JSON.stringify writes the character (below 0x80) or UTF-8 byte `c` as it is, unescaped. */
export const jsonKeeps = (c: number): boolean => c >= 0x20 && c !== QUOTE && c !== BACKSLASH
