/**
 * PayPal's wire objects (as the official SDK hands them to us, camelCased) and errors mapped to our
 * types. No I/O here: client.ts makes the calls, this file only reads what came back, so every rule
 * below is testable on real payloads without a network.
 */
import {
  ApiError,
  CaptureStatus,
  CheckoutPaymentIntent,
  type Order,
  type OrderRequest,
  type OrdersCapture,
  type RefundRequest as PaypalRefundRequest,
  type Refund,
  RefundStatus,
} from '@paypal/paypal-server-sdk';
import { formatAmount, parseAmount } from '../../money.js';
import {
  GatewayError,
  type GatewayErrorCode,
  type GatewayFailure,
  type RefundStatus as OurRefundStatus,
  type PaymentOutcome,
  type PaymentStatus,
  type PayRequest,
  type RefundOutcome,
  type RefundRequest,
  type WebhookAction,
  type WebhookEvent,
} from '../types.js';

/**
 * PayPal-Request-Id values, derived from our own row ids so a retry after a crash or a restart sends
 * the very same key and PayPal answers with the original result instead of acting twice. PayPal keeps
 * order keys for 6 hours and capture/refund keys for 45 days; our ids never repeat, so a key outliving
 * PayPal's memory can only ever be replayed by a retry of the same action. Max length is 108.
 */
export const paypalRequestIds = {
  createOrder: (paymentId: string) => `pay:${paymentId}`,
  captureOrder: (paymentId: string) => `capture:${paymentId}`,
  refund: (refundId: string) => `refund:${refundId}`,
} as const;

/**
 * The currencies PayPal's REST API takes (https://developer.paypal.com/api/rest/reference/currency-codes/;
 * BRL, CNY, INR and MYR only for accounts in their country, which PayPal itself refuses otherwise).
 * HUF and TWD have two decimals in ISO 4217, but PayPal refuses any decimal in them: whole units only.
 */
const PAYPAL_CURRENCIES = new Set([
  'AUD',
  'BRL',
  'CAD',
  'CNY',
  'CZK',
  'DKK',
  'EUR',
  'HKD',
  'HUF',
  'ILS',
  'INR',
  'JPY',
  'MYR',
  'MXN',
  'TWD',
  'NZD',
  'NOK',
  'PHP',
  'PLN',
  'GBP',
  'SGD',
  'SEK',
  'CHF',
  'THB',
  'USD',
]);
const WHOLE_UNITS_ONLY = new Set(['HUF', 'TWD']);

/** Asked before approval (Gateway.amountProblem). */
export function paypalAmountProblem(amount: { amountMinor: number; currency: string }): string | undefined {
  if (!PAYPAL_CURRENCIES.has(amount.currency)) return `PayPal does not take ${amount.currency}`;
  if (WHOLE_UNITS_ONLY.has(amount.currency) && amount.amountMinor % 100 !== 0)
    return `PayPal takes ${amount.currency} in whole units only, without decimals`;
  return undefined;
}

/** Minor units to PayPal's decimal string ("500.00"; "1500" for JPY), through money.ts only. */
export function toPaypalMoney(
  amountMinor: number,
  currency: string,
): { currencyCode: string; value: string } {
  // "100", not "100.00": PayPal refuses decimals in these even when they are zeros.
  if (WHOLE_UNITS_ONLY.has(currency) && amountMinor % 100 === 0)
    return { currencyCode: currency, value: String(amountMinor / 100) };
  return { currencyCode: currency, value: formatAmount(amountMinor, currency) };
}

/** PayPal's decimal string back to minor units; PayPal may send fewer decimals ("30.0"). */
export function fromPaypalMoney(money: { currencyCode: string; value: string }): {
  amountMinor: number;
  currency: string;
} {
  // parseAmount refuses zero (an amount we are asked to move must be positive); PayPal can report a
  // zero amount (a fully netted breakdown), which is a fact, not a request.
  if (/^0+(\.0*)?$/.test(money.value)) return { amountMinor: 0, currency: money.currencyCode };
  return { amountMinor: parseAmount(money.value, money.currencyCode), currency: money.currencyCode };
}

/**
 * Orders v2 create body. intent CAPTURE (we take the money now, no separate authorization), one
 * purchase unit whose custom_id is our payment id (PayPal echoes it on the capture and in webhooks,
 * which is how an event finds its payment) and invoice_id the invoice number (PayPal refuses a second
 * capture with the same invoice_id: DUPLICATE_INVOICE_ID, one more guard against paying twice).
 */
export function buildOrderRequest(request: PayRequest): OrderRequest {
  const email = request.payee.paypalEmail;
  if (!email) {
    throw new GatewayError(
      'configuration_error',
      `vendor "${request.payee.name}" has no PayPal email: add one with \`paygate vendor add --paypal-email\``,
      'paypal',
      { retryable: false },
    );
  }
  return {
    intent: CheckoutPaymentIntent.Capture,
    purchaseUnits: [
      {
        referenceId: request.paymentId,
        customId: request.paymentId,
        invoiceId: request.invoiceNumber,
        description: request.description.slice(0, 127),
        amount: toPaypalMoney(request.amountMinor, request.currency),
        payee: { emailAddress: email },
      },
    ],
    paymentSource: { paypal: { vaultId: request.paymentMethodToken } },
  };
}

/**
 * The body retrieve() sends to find an order by our payment id alone. PayPal answers a create whose
 * PayPal-Request-Id it has seen with the original order, whatever the body. The body is deliberately
 * one PayPal must refuse (amount 0.00: CANNOT_BE_ZERO_OR_NEGATIVE), so a key PayPal has not seen makes
 * nothing at all: no stray order that a later pay() with the same key would be handed instead of its
 * own. Safe either way: if PayPal ever validated the body before looking at the key, the lookup would
 * report "no record", the caller would retry pay() with the same keys, and PayPal would replay the
 * original order and capture rather than act twice.
 */
export function buildLookupOrderRequest(paymentId: string): OrderRequest {
  return {
    intent: CheckoutPaymentIntent.Capture,
    purchaseUnits: [
      { referenceId: paymentId, customId: paymentId, amount: { currencyCode: 'USD', value: '0.00' } },
    ],
  };
}

/** The issue PayPal answers a lookup with when it has no order for the key (see above). */
export const LOOKUP_NOT_FOUND_ISSUE = 'CANNOT_BE_ZERO_OR_NEGATIVE';

export function buildRefundRequest(request: RefundRequest): PaypalRefundRequest {
  return {
    amount: toPaypalMoney(request.amountMinor, request.currency),
    customId: request.refundId,
    ...(request.reason ? { noteToPayer: request.reason.slice(0, 255) } : {}),
  };
}

/** Raised when PayPal sends a status word this code does not know: explicit, never guessed. */
function unsupported(what: string, value: unknown): GatewayError {
  return new GatewayError('api_error', `unsupported PayPal ${what} "${String(value)}"`, 'paypal', {
    providerCode: String(value),
    retryable: false,
  });
}

/**
 * PENDING is money on its way (e-check, review): processing until a webhook or a retrieve says more.
 * REFUNDED / PARTIALLY_REFUNDED are captures that succeeded and were later refunded: the payment itself
 * succeeded, the refunds are tracked on their own rows.
 */
export function captureStatusToPaymentStatus(status: CaptureStatus): PaymentStatus {
  switch (status) {
    case CaptureStatus.Completed:
    case CaptureStatus.Refunded:
    case CaptureStatus.PartiallyRefunded:
      return 'succeeded';
    case CaptureStatus.Pending:
      return 'processing';
    case CaptureStatus.Declined:
    case CaptureStatus.Failed:
      return 'failed';
    default: {
      const never: never = status;
      throw unsupported('capture status', never);
    }
  }
}

export function refundStatusToOurs(status: RefundStatus): OurRefundStatus {
  switch (status) {
    case RefundStatus.Completed:
      return 'succeeded';
    case RefundStatus.Pending:
      return 'pending';
    case RefundStatus.Failed:
    case RefundStatus.Cancelled:
      return 'failed';
    default: {
      const never: never = status;
      throw unsupported('refund status', never);
    }
  }
}

/**
 * Processor response codes PayPal documents for declined captures that say "not enough money" rather
 * than a plain refusal (5120: insufficient funds; 5400: expired card is not that, see below).
 */
const INSUFFICIENT_FUNDS_PROCESSOR_CODES = new Set(['5120']);

/** Why a capture that PayPal answered with DECLINED or FAILED failed, in our taxonomy. */
export function captureFailure(capture: OrdersCapture): GatewayFailure {
  const processorCode = capture.processorResponse?.responseCode;
  if (processorCode && INSUFFICIENT_FUNDS_PROCESSOR_CODES.has(processorCode)) {
    return { code: 'insufficient_funds', providerCode: processorCode, message: 'PayPal: insufficient funds' };
  }
  return {
    code: 'declined',
    providerCode: processorCode ?? capture.status ?? 'DECLINED',
    message: `PayPal declined the capture (${capture.status ?? 'DECLINED'})`,
  };
}

/** The capture of our order, if PayPal made one: the last one is the current state of the payment. */
export function captureOf(order: Order): OrdersCapture | undefined {
  const captures = order.purchaseUnits?.[0]?.payments?.captures ?? [];
  return captures.at(-1);
}

/** A capture as our outcome; null when the order exists but was never captured (no money moved). */
export function orderToOutcome(order: Order): PaymentOutcome | null {
  const capture = captureOf(order);
  if (!capture) return null;
  return captureToOutcome(capture);
}

export function captureToOutcome(capture: OrdersCapture): PaymentOutcome {
  if (!capture.id) throw missing('capture.id');
  if (!capture.status) throw missing('capture.status');
  const status = captureStatusToPaymentStatus(capture.status);
  const money = capture.amount ? fromPaypalMoney(capture.amount) : undefined;
  return {
    status,
    providerReference: capture.id,
    ...(status === 'failed' ? { failure: captureFailure(capture) } : {}),
    ...(money ? { amountMinor: money.amountMinor, currency: money.currency } : {}),
    paymentMethodDisplay: { brand: 'PayPal' },
  };
}

export function refundToOutcome(refund: Refund): RefundOutcome {
  if (!refund.id) throw missing('refund.id');
  if (!refund.status) throw missing('refund.status');
  const status = refundStatusToOurs(refund.status);
  const money = refund.amount ? fromPaypalMoney(refund.amount) : undefined;
  return {
    status,
    providerReference: refund.id,
    ...(money ? { amountMinor: money.amountMinor, currency: money.currency } : {}),
    ...(status === 'failed'
      ? {
          failure: {
            code: 'declined',
            providerCode: refund.status,
            message: `PayPal refund ${refund.status}`,
          },
        }
      : {}),
  };
}

function missing(field: string): GatewayError {
  return new GatewayError('api_error', `PayPal response has no ${field}`, 'paypal', { retryable: false });
}

// ---------------------------------------------------------------------------------------------------
// Errors

/**
 * 422 issues, by how a caller should react. Anything not listed keeps PayPal's code and maps to
 * `declined` (a business refusal a retry will not fix; a human looks at it).
 * - payment_method_invalid: the vaulted token or agreement cannot be used; ask for an updated method.
 * - insufficient_funds: retrying later may work (the seed's rule: alert and reschedule).
 * - configuration_error: our side (payee account, features not enabled): no retry, fix the setup.
 */
const ISSUE_CODES: Readonly<Record<string, GatewayErrorCode>> = {
  INSTRUMENT_DECLINED: 'declined',
  TRANSACTION_REFUSED: 'declined',
  PAYER_CANNOT_PAY: 'declined',
  COMPLIANCE_VIOLATION: 'declined',
  MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED: 'declined',
  TRANSACTION_LIMIT_EXCEEDED: 'declined',
  DUPLICATE_INVOICE_ID: 'declined',
  PAYER_ACTION_REQUIRED: 'payment_method_invalid',
  ORDER_NOT_APPROVED: 'payment_method_invalid',
  PAYMENT_SOURCE_INFO_CANNOT_BE_VERIFIED: 'payment_method_invalid',
  PAYMENT_SOURCE_DECLINED_BY_PROCESSOR: 'payment_method_invalid',
  PAYMENT_SOURCE_CANNOT_BE_USED: 'payment_method_invalid',
  PAYER_ACCOUNT_LOCKED_OR_CLOSED: 'payment_method_invalid',
  PAYER_ACCOUNT_RESTRICTED: 'payment_method_invalid',
  TOKEN_ID_NOT_FOUND: 'payment_method_invalid',
  TOKEN_EXPIRED: 'payment_method_invalid',
  BILLING_AGREEMENT_NOT_FOUND: 'payment_method_invalid',
  AGREEMENT_ALREADY_CANCELLED: 'payment_method_invalid',
  CARD_EXPIRED: 'payment_method_invalid',
  REFERENCED_CARD_EXPIRED: 'payment_method_invalid',
  REDIRECT_PAYER_FOR_ALTERNATE_FUNDING: 'insufficient_funds',
  REFUND_FAILED_INSUFFICIENT_FUNDS: 'insufficient_funds',
  PAYEE_ACCOUNT_INVALID: 'configuration_error',
  PAYEE_ACCOUNT_LOCKED_OR_CLOSED: 'configuration_error',
  PAYEE_ACCOUNT_RESTRICTED: 'configuration_error',
  PAYEE_BLOCKED_TRANSACTION: 'configuration_error',
  NOT_ENABLED_FOR_CARD_PROCESSING: 'configuration_error',
  PERMISSION_DENIED: 'configuration_error',
  CONSENT_NEEDED: 'configuration_error',
};

interface PaypalErrorBody {
  name?: string;
  message?: string;
  debug_id?: string;
  details?: { issue?: string; description?: string }[];
  error?: string;
  error_description?: string;
}

/** Network-level failures (no HTTP answer), as axios reports them under the SDK. */
interface TransportError {
  code?: string;
  message?: string;
}

/**
 * Codes meaning the request may have reached PayPal and we never heard back: the outcome is unknown
 * and the caller must ask (retrieve) before anything else. A refused connection never left our host,
 * so it is a plain retryable api_error.
 */
const OUTCOME_UNKNOWN_CODES = new Set(['ECONNABORTED', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE', 'ERR_CANCELED']);
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

function parseBody(error: ApiError<unknown>): PaypalErrorBody {
  if (error.result && typeof error.result === 'object') return error.result as PaypalErrorBody;
  if (typeof error.body === 'string' && error.body.length > 0) {
    try {
      const parsed: unknown = JSON.parse(error.body);
      if (parsed && typeof parsed === 'object') return parsed as PaypalErrorBody;
    } catch {
      // Not JSON (a proxy's HTML page): the status code alone decides below.
    }
  }
  return {};
}

function header(headers: Record<string, string> | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === name) return value;
  return undefined;
}

/** Whole seconds from a Retry-After header; HTTP-dates and nonsense give undefined. */
function retryAfterSeconds(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value.trim());
}

/**
 * The one place PayPal failures become GatewayErrors. `operation` names the call for the message.
 * An HTTP answer maps by status and issue; no answer maps by transport code.
 */
export function mapPaypalError(error: unknown, operation: string): GatewayError {
  if (error instanceof GatewayError) return error;
  if (error instanceof ApiError) {
    const body = parseBody(error);
    const issue = body.details?.[0]?.issue;
    const providerCode = issue ?? body.name ?? body.error ?? String(error.statusCode);
    const requestId = body.debug_id ?? header(error.headers, 'paypal-debug-id');
    const detail = body.details?.[0]?.description ?? body.message ?? body.error_description ?? error.message;
    const message = `PayPal ${operation} failed: ${providerCode}: ${detail}`;
    const base = { providerCode, ...(requestId ? { requestId } : {}) };
    const status = error.statusCode;
    if (status === 401 || body.error === 'invalid_client' || body.error === 'invalid_token') {
      return new GatewayError(
        'configuration_error',
        `${message} (check PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET)`,
        'paypal',
        { ...base, retryable: false },
      );
    }
    if (status === 429) {
      const after = retryAfterSeconds(header(error.headers, 'retry-after'));
      return new GatewayError('rate_limited', message, 'paypal', {
        ...base,
        retryable: true,
        ...(after !== undefined ? { retryAfterSeconds: after } : {}),
      });
    }
    if (status >= 500) return new GatewayError('api_error', message, 'paypal', { ...base, retryable: true });
    // 409: "a previous call for the given resource is in progress": the same key will settle it, and
    // that call may yet capture, so when retries run out the outcome is unknown, never a failure.
    if (status === 409)
      return new GatewayError('api_error', message, 'paypal', {
        ...base,
        retryable: true,
        outcomeUnknown: true,
      });
    if (status === 403) {
      return new GatewayError('configuration_error', message, 'paypal', { ...base, retryable: false });
    }
    if (status === 422) {
      const code = (issue && ISSUE_CODES[issue]) || 'declined';
      return new GatewayError(code, message, 'paypal', { ...base, retryable: false });
    }
    // 400 (our request is malformed), 404 (no such resource), 415: a bug or a wrong reference, never
    // fixed by sending the same thing again.
    return new GatewayError('api_error', message, 'paypal', { ...base, retryable: false });
  }
  const transport = (error ?? {}) as TransportError;
  const code = transport.code ?? '';
  if (OUTCOME_UNKNOWN_CODES.has(code) || /timeout/i.test(transport.message ?? '')) {
    return new GatewayError(
      'network_timeout',
      `PayPal ${operation}: no answer (${code || 'timeout'}); the outcome is unknown, retrieve it before retrying`,
      'paypal',
      { providerCode: code || 'TIMEOUT', retryable: false, outcomeUnknown: true },
    );
  }
  if (NOT_SENT_CODES.has(code)) {
    return new GatewayError('api_error', `PayPal ${operation}: could not connect (${code})`, 'paypal', {
      providerCode: code,
      retryable: true,
    });
  }
  // An SDK-side failure (response failed the SDK's schema validation, ...): we do not know whether
  // PayPal acted, so the only safe answer is to ask.
  return new GatewayError(
    'network_timeout',
    `PayPal ${operation}: unreadable answer (${transport.message ?? String(error)}); retrieve the outcome`,
    'paypal',
    { providerCode: code || 'UNKNOWN', retryable: false, outcomeUnknown: true },
  );
}

// ---------------------------------------------------------------------------------------------------
// Webhooks

/** Only the fields we read from a PayPal webhook body (snake_case, as PayPal sends it). */
interface PaypalWebhookBody {
  id?: string;
  event_type?: string;
  create_time?: string;
  resource_type?: string;
  resource?: {
    id?: string;
    custom_id?: string;
    status?: string;
    amount?: { currency_code?: string; value?: string };
    links?: { href?: string; rel?: string }[];
    supplementary_data?: { related_ids?: { order_id?: string } };
    processor_response?: { response_code?: string };
  };
}

export const PAYPAL_WEBHOOK_EVENT_TYPES = [
  'PAYMENT.CAPTURE.COMPLETED',
  'PAYMENT.CAPTURE.PENDING',
  'PAYMENT.CAPTURE.DENIED',
  'PAYMENT.CAPTURE.DECLINED',
  'PAYMENT.CAPTURE.REFUNDED',
  'PAYMENT.CAPTURE.REVERSED',
] as const;
export type PaypalWebhookEventType = (typeof PAYPAL_WEBHOOK_EVENT_TYPES)[number];

function isHandledType(type: string): type is PaypalWebhookEventType {
  return (PAYPAL_WEBHOOK_EVENT_TYPES as readonly string[]).includes(type);
}

export function webhookAction(type: PaypalWebhookEventType): WebhookAction {
  switch (type) {
    case 'PAYMENT.CAPTURE.COMPLETED':
      return 'payment_succeeded';
    case 'PAYMENT.CAPTURE.PENDING':
      return 'payment_processing';
    case 'PAYMENT.CAPTURE.DENIED':
    case 'PAYMENT.CAPTURE.DECLINED':
      return 'payment_failed';
    case 'PAYMENT.CAPTURE.REFUNDED':
      return 'refund_succeeded';
    case 'PAYMENT.CAPTURE.REVERSED':
      return 'payment_reversed';
    default: {
      const never: never = type;
      return never;
    }
  }
}

/** The capture id a refund event belongs to: PayPal links it as rel "up" .../captures/{id}. */
function capturedIdFromLinks(links: { href?: string; rel?: string }[] | undefined): string | undefined {
  const up = links?.find((l) => l.rel === 'up')?.href;
  const match = up ? /\/v2\/payments\/captures\/([^/?#]+)$/.exec(up) : null;
  return match?.[1];
}

/** A failed capture event, read the same way as a capture we got back from the API. */
function webhookFailure(type: string, resource: NonNullable<PaypalWebhookBody['resource']>): GatewayFailure {
  const processorCode = resource.processor_response?.response_code;
  if (processorCode && INSUFFICIENT_FUNDS_PROCESSOR_CODES.has(processorCode)) {
    return {
      code: 'insufficient_funds',
      providerCode: processorCode,
      message: `PayPal ${type}: insufficient funds`,
    };
  }
  return {
    code: 'declined',
    providerCode: processorCode ?? resource.status ?? type,
    message: `PayPal ${type}`,
  };
}

/** A verified PayPal webhook body reduced to a WebhookEvent. Throws only on a body with no id/type. */
export function paypalWebhookToEvent(payload: unknown): WebhookEvent {
  const body = (payload ?? {}) as PaypalWebhookBody;
  if (typeof body.id !== 'string' || typeof body.event_type !== 'string') {
    throw new Error('PayPal webhook body has no id or event_type');
  }
  const type = body.event_type;
  const createdAt = body.create_time ? new Date(body.create_time) : undefined;
  const base: WebhookEvent = {
    provider: 'paypal',
    eventId: body.id,
    type,
    action: 'unsupported',
    ...(createdAt && !Number.isNaN(createdAt.getTime()) ? { createdAt } : {}),
    payload,
  };
  if (!isHandledType(type)) return base;
  const action = webhookAction(type);
  const resource = body.resource ?? {};
  const paymentId = resource.custom_id;
  // The refund's or the capture's amount; a reversal's resource is the reversal, not the capture, and its
  // amount is neither read nor used.
  const amount =
    action !== 'payment_reversed' && resource.amount?.currency_code && resource.amount.value
      ? fromPaypalMoney({ currencyCode: resource.amount.currency_code, value: resource.amount.value })
      : undefined;
  if (action === 'refund_succeeded') {
    // The resource is the refund; custom_id on it is our refund id, not the payment's.
    const captureId = capturedIdFromLinks(resource.links);
    return {
      ...base,
      action,
      ...(captureId ? { providerReference: captureId } : {}),
      ...(resource.id && amount ? { refund: { providerReference: resource.id, ...amount } } : {}),
    };
  }
  return {
    ...base,
    action,
    ...(paymentId ? { paymentId } : {}),
    ...(resource.id ? { providerReference: resource.id } : {}),
    ...(amount ? { amount } : {}),
    ...(action === 'payment_failed' ? { failure: webhookFailure(type, resource) } : {}),
  };
}
