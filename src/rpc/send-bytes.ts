// A send whose text and sender are still the JSON string literals the request carried.
//
// The front end reads the common send body without decoding its text (src/http/send-body.ts); a
// shard in the same thread copies the literals into the log record as they are (Shard.sendBytes).
// Everything else (the RPC frames to another thread's shard, a ShardService without sendBytes)
// takes strings, decoded here.

/**
 * `bytes[textFrom, textTo)` and `bytes[senderFrom, senderTo)` are JSON string literals, quotes
 * included, in valid UTF-8 and without a backslash: each is exactly JSON.stringify of the string
 * it spells, in UTF-8.
 */
export interface SendBytes {
  readonly bytes: Uint8Array
  readonly textFrom: number
  readonly textTo: number
  readonly senderFrom: number
  readonly senderTo: number
}

// ignoreBOM: a literal's leading U+FEFF is part of its string; the default decoder drops it as a BOM.
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true })

/** The text and sender that `fields` spell. */
export function sendStrings(fields: SendBytes): { text: string; sender: string } {
  const { bytes } = fields
  // Without escapes, a literal's string is its bytes between the quotes.
  return {
    text: utf8.decode(bytes.subarray(fields.textFrom + 1, fields.textTo - 1)),
    sender: utf8.decode(bytes.subarray(fields.senderFrom + 1, fields.senderTo - 1)),
  }
}
