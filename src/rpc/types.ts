// The RPC contract between the HTTP front end and the shards, typed after the assignment's IDL
// (IMService: Send(SendRequest) -> SendResponse, Pull(PullRequest) -> PullResponse).
//
// Two deliberate departures, both to keep the hot path free of per-message objects:
// - SendResponse also carries the send_time the shard assigned (the HTTP reply returns it);
// - PullResponse.messages is the page already encoded as a UTF-8 JSON array of
//   {"chat","text","sender","send_time"} objects, built by the shard from bytes it kept at write
//   time, so nobody decodes and re-encodes messages on the way out.

import type { SendBytes } from './send-bytes.js'

export interface Message {
  readonly chat: string
  readonly text: string
  readonly sender: string
  /** Unix time in microseconds; assigned by the shard, ignored in a SendRequest. */
  readonly send_time: number
}

export interface SendRequest {
  readonly message: Message
}

export interface SendResponse {
  /** 0 on success, otherwise an error's wire id (see src/errors.ts). */
  readonly code: number
  readonly msg: string
  readonly send_time: number
}

export interface PullRequest {
  readonly chat: string
  readonly cursor: number
  readonly limit: number
  readonly reverse: boolean
}

export interface PullResponse {
  readonly code: number
  readonly msg: string
  /** The page's messages as a UTF-8 JSON array, in the order asked for. */
  readonly messages: Uint8Array
  readonly has_more: boolean
  /** Number of messages in `messages` (not in the IDL: it feeds the front end's metrics). */
  readonly count: number
  readonly next_cursor: number
}

/** What a shard implements. `send` answers once the message is durable; `pull` answers at once. */
export interface ShardService {
  send(req: SendRequest, reply: (res: SendResponse) => void): void
  pull(req: PullRequest): PullResponse
  /**
   * As `pull`, but `messages` may be a view of a buffer the service's next `pullView` overwrites:
   * for a caller in the same thread that is done with the page before it calls again (the
   * in-process transport), so that a pull allocates nothing for its bytes. Optional.
   */
  pullView?(req: PullRequest): PullResponse
  /**
   * A hint that pulls of `chats[0, n)` follow at once: the service may read ahead for them, so that
   * a batch of pulls waits on memory once rather than once per pull. Optional.
   */
  prefetch?(chats: readonly string[], n: number): void
  /**
   * As `send`, with the text and sender as the JSON literals a request carried (send-bytes.ts):
   * for a caller in the same thread, so that the literals are copied into the log record as they
   * are. `fields.bytes` is not kept after the call returns. Optional.
   */
  sendBytes?(chat: string, fields: SendBytes, reply: (res: SendResponse) => void): void
}

export const CODE_OK = 0
