/**
 * Engine answers and errors as MCP tool results: structuredContent plus the same JSON as text, and
 * errors as `isError` results with `{error: {code, message, retryable, next_step}}`. Nothing here ever
 * puts a stack trace, an internal message or a secret into a result.
 */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '../config.js';
import { RefusedError, UsageError } from '../errors.js';
import { MoneyError } from '../money.js';
import { PaymentFailedError } from '../payments/pay.js';

export interface ToolError {
  code: string;
  message: string;
  retryable: boolean;
  next_step: string;
}

export function toolResult(value: object): CallToolResult {
  return {
    structuredContent: value as Record<string, unknown>,
    content: [{ type: 'text', text: JSON.stringify(value) }],
  };
}

export function toolErrorResult(error: ToolError, extra: Record<string, unknown> = {}): CallToolResult {
  const body = { error, ...extra };
  return { isError: true, structuredContent: body, content: [{ type: 'text', text: JSON.stringify(body) }] };
}

/**
 * Map what a handler threw. Refusals and usage errors were written for the caller and carry their
 * own next step; anything else is our bug or an outage, logged in full and answered generically.
 */
export function errorResult(error: unknown, logger: Logger, tool: string): CallToolResult {
  if (error instanceof RefusedError) {
    const extra = error instanceof PaymentFailedError ? { payment: error.payment } : {};
    return toolErrorResult(
      {
        code: error.code,
        message: error.message,
        retryable: error.retryable,
        next_step: error.nextStep ?? 'change the request according to the message, or ask a human',
      },
      extra,
    );
  }
  if (error instanceof UsageError) {
    return toolErrorResult({
      code: error.code,
      message: error.message,
      retryable: false,
      next_step: error.nextStep ?? 'fix the argument named in the message and call again',
    });
  }
  if (error instanceof MoneyError) {
    return toolErrorResult({
      code: 'invalid_amount',
      message: error.message,
      retryable: false,
      next_step: 'send the amount as a decimal string with at most the currency’s decimals, e.g. "500.00"',
    });
  }
  logger.error({ err: error, tool }, 'tool failed unexpectedly');
  return toolErrorResult({
    code: 'internal_error',
    message:
      'paygate hit an internal error; nothing was charged by this call unless get_payment_status says so',
    retryable: true,
    next_step: 'call get_payment_status for the invoice before retrying; if it persists, tell a human',
  });
}
