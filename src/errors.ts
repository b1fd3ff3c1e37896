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

/**
 * The 4xx status an HTTP middleware (Express's body parsers) put on its error, or undefined: a request
 * refused for what the client sent (too large, malformed), to be answered as such, not as our 500.
 */
export function requestErrorStatus(err: unknown): number | undefined {
  const carried = err as { status?: unknown; statusCode?: unknown } | null;
  const status = carried?.status ?? carried?.statusCode;
  return typeof status === 'number' && status >= 400 && status < 500 ? status : undefined;
}
