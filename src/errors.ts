// The error catalogue: every failure a client or an operator can see has an entry here with a
// stable `code`, an HTTP status and a numeric id used on the RPC wire.
//
// Invariants:
// - Codes and wire ids never change meaning once shipped; add new entries at the end.
// - Errors cross thread boundaries as `{ id, message }` and are rebuilt with `fromWire()`;
//   nothing relies on `instanceof` across realms (a worker's Error is not the main thread's).
// - `docs/errors.md` lists every entry; test/errors.test.ts keeps the two in step.

export interface ErrorSpec {
  /** Stable, documented, machine-readable code. */
  readonly code: string
  /** HTTP status the front end answers with. */
  readonly statusCode: number
  /** Small integer that identifies the error on the RPC wire. */
  readonly wireId: number
  /** Default human-readable message. */
  readonly message: string
}

const spec = (wireId: number, code: string, statusCode: number, message: string): ErrorSpec =>
  Object.freeze({ wireId, code, statusCode, message })

export const Errors = Object.freeze({
  MISSING_FIELD: spec(1, 'IM_ERR_MISSING_FIELD', 400, 'a required field is missing or empty'),
  INVALID_FIELD: spec(2, 'IM_ERR_INVALID_FIELD', 400, 'a field has the wrong type or value'),
  FIELD_TOO_LONG: spec(3, 'IM_ERR_FIELD_TOO_LONG', 400, 'a field is longer than its limit'),
  INVALID_CHAT: spec(4, 'IM_ERR_INVALID_CHAT', 400, 'the chat id is not valid'),
  SENDER_NOT_MEMBER: spec(5, 'IM_ERR_SENDER_NOT_MEMBER', 400, 'the sender is not a member of this direct chat'),
  INVALID_JSON: spec(6, 'IM_ERR_INVALID_JSON', 400, 'the body is not valid JSON'),
  BODY_NOT_OBJECT: spec(7, 'IM_ERR_BODY_NOT_OBJECT', 400, 'the JSON body must be an object'),
  INVALID_ENCODING: spec(8, 'IM_ERR_INVALID_ENCODING', 400, 'the request is not valid UTF-8'),
  NOT_FOUND: spec(9, 'IM_ERR_NOT_FOUND', 404, 'no such route'),
  METHOD_NOT_ALLOWED: spec(10, 'IM_ERR_METHOD_NOT_ALLOWED', 405, 'method not allowed on this route'),
  BODY_TOO_LARGE: spec(11, 'IM_ERR_BODY_TOO_LARGE', 413, 'the request body is larger than the limit'),
  UNSUPPORTED_MEDIA_TYPE: spec(12, 'IM_ERR_UNSUPPORTED_MEDIA_TYPE', 415, 'unsupported content type'),
  INTERNAL: spec(13, 'IM_ERR_INTERNAL', 500, 'internal error'),
  SHARD_UNAVAILABLE: spec(14, 'IM_ERR_SHARD_UNAVAILABLE', 503, 'the shard for this chat is not available'),
  OVERLOADED: spec(15, 'IM_ERR_OVERLOADED', 503, 'too many requests in flight to this shard'),
  SHUTTING_DOWN: spec(16, 'IM_ERR_SHUTTING_DOWN', 503, 'the server is shutting down'),
  RPC_FRAME: spec(17, 'IM_ERR_RPC_FRAME', 500, 'malformed RPC frame'),
  CHAT_FULL: spec(18, 'IM_ERR_CHAT_FULL', 507, 'the chat has reached its storage limit'),
  WAL_NO_SPACE: spec(19, 'IM_ERR_WAL_NO_SPACE', 503, 'no space left on the log device; the message was not stored'),
  WAL_WRITE: spec(20, 'IM_ERR_WAL_WRITE', 503, 'the log could not be written; the message was not stored'),
  WAL_CORRUPT: spec(21, 'IM_ERR_WAL_CORRUPT', 500, 'the write-ahead log is corrupt; the shard cannot start'),
  WAL_SYNC: spec(22, 'IM_ERR_WAL_SYNC', 503, 'the log device failed to sync; the message may or may not have been stored, and the server is stopping'),
})

export type ErrorName = keyof typeof Errors

const byWireId = new Map<number, ErrorSpec>()
for (const e of Object.values(Errors)) {
  if (byWireId.has(e.wireId)) throw new Error(`duplicate wire id ${e.wireId}`)
  byWireId.set(e.wireId, e)
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
  507: 'Insufficient Storage',
}

/** Reason phrase for a status this service answers with. */
export function reasonPhrase(statusCode: number): string {
  return REASONS[statusCode] ?? 'Error'
}

/** An operating error: typed, expected, answered to the caller. */
export class PullchatError extends Error {
  readonly spec: ErrorSpec
  constructor(errorSpec: ErrorSpec, message?: string) {
    super(message ?? errorSpec.message)
    this.name = 'PullchatError'
    this.spec = errorSpec
  }

  get code(): string {
    return this.spec.code
  }

  get statusCode(): number {
    return this.spec.statusCode
  }
}

/** Rebuilds an error that crossed a thread boundary. Unknown ids become INTERNAL. */
export function fromWire(wireId: number, message: string): PullchatError {
  const found = byWireId.get(wireId)
  if (found === undefined) return new PullchatError(Errors.INTERNAL, `unknown error id ${wireId}: ${message}`)
  return new PullchatError(found, message)
}

/** Any thrown value as a PullchatError: operating errors pass through, the rest are INTERNAL. */
export function asPullchatError(err: unknown): PullchatError {
  if (err instanceof PullchatError) return err
  return new PullchatError(Errors.INTERNAL)
}

/** The one error body shape the HTTP front end answers with. */
export function errorBody(err: PullchatError): string {
  return JSON.stringify({
    statusCode: err.statusCode,
    code: err.code,
    error: reasonPhrase(err.statusCode),
    message: err.message,
  })
}
