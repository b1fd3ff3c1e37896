/**
 * The errors every interface maps the same way: the CLI to exit codes, MCP tools to isError results,
 * the sidecar to HTTP statuses. `code` is stable and machine-readable; the message says what was wrong
 * and what to do instead.
 */

/** A value was malformed or missing: the caller must change the request. CLI exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  constructor(
    message: string,
    readonly code = 'invalid_input',
    readonly nextStep?: string,
  ) {
    super(message);
  }
}

/** The request was well-formed but the rules refuse it (not found, not allowed, wrong state). CLI exit 1. */
export class RefusedError extends Error {
  override readonly name = 'RefusedError';
  constructor(
    readonly code: string,
    message: string,
    readonly nextStep?: string,
    readonly retryable = false,
  ) {
    super(message);
  }
}

/** The error types of Express's body parsers that mean the request itself is unreadable. */
const BODY_PARSER_ERRORS = new Set([
  'entity.too.large',
  'entity.parse.failed',
  'entity.verify.failed',
  'charset.unsupported',
  'encoding.unsupported',
  'request.aborted',
  'request.size.invalid',
  'stream.encoding.set',
]);

/** zlib's error codes: a body whose Content-Encoding does not decode (corrupt gzip, deflate, brotli). */
const DECOMPRESSION_ERROR = /^(Z_|ERR_BROTLI_|ERR_ZLIB_)/;

/**
 * The 4xx status a body parser put on its error, or undefined: a request refused for what the client
 * sent (too large, malformed, an encoding that does not decode), to be answered as such rather than as
 * our 500. Only the body parsers' own errors and the decompression errors they pass on (as 400, with no
 * type of their own): another error that happens to carry a 4xx status (an SDK's) is still ours.
 */
export function requestErrorStatus(err: unknown): number | undefined {
  const carried = err as { type?: unknown; status?: unknown; code?: unknown } | null;
  const fromParser = typeof carried?.type === 'string' && BODY_PARSER_ERRORS.has(carried.type);
  const undecodable = typeof carried?.code === 'string' && DECOMPRESSION_ERROR.test(carried.code);
  if (!fromParser && !undecodable) return undefined;
  return typeof carried.status === 'number' && carried.status >= 400 && carried.status < 500
    ? carried.status
    : undefined;
}
