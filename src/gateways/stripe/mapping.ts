/**
 * Stripe's objects, errors and events -> our normalized types. No I/O: everything here is a pure
 * function of what Stripe sent, so it is tested on Stripe's real payloads (../shared/reference/stripe).
 *
 * Taxonomy (Stripe's documented decline and error codes, https://docs.stripe.com/declines/codes and
 * https://docs.stripe.com/error-codes):
 *   insufficient_funds      decline_code or ACH failure code insufficient_funds
 *   payment_method_invalid  the stored method itself is unusable: expired, wrong number or CVC, closed
 *                           or unknown bank account, no debit authorization, or a PaymentMethod id
 *                           Stripe does not know. The fix is a new method, not a retry.
 *   declined                every other issuer or Radar decline (generic, lost/stolen, fraudulent,
 *                           velocity, authentication_required off-session, processing_error). A human
 *                           looks; retrying the same call replays the same answer (Stripe stores it
 *                           under our idempotency key).
 *   rate_limited            429 (retryable)
 *   api_error               5xx and other Stripe-side errors (retryable); 409 key-in-use also
 *                           outcomeUnknown: when retries run out it is recorded as unknown, never failed
 *   network_timeout         no answer: Stripe may or may not have acted (outcome unknown)
 *   configuration_error     bad key, missing permission, a request Stripe refuses as malformed, or
 *                           an idempotency key reused with other parameters (a bug of ours)
 * Stripe's own code is always kept as providerCode.
 */
import type Stripe from 'stripe';
import { formatMoney } from '../../money.js';
import {
  GatewayError,
  type GatewayErrorCode,
  type GatewayFailure,
  type PaymentOutcome,
  type Rail,
  type RefundOutcome,
  type WebhookAction,
} from '../types.js';

/**
 * Stripe takes the three-decimal currencies with the last digit 0 ("your integration must round amounts
 * to the nearest ten", https://docs.stripe.com/currencies#three-decimal), and ACH Direct Debit in US
 * dollars only. Asked before approval (Gateway.amountProblem).
 */
const THREE_DECIMAL = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);

export function stripeAmountProblem(amount: {
  amountMinor: number;
  currency: string;
  rail: Rail;
}): string | undefined {
  if (amount.rail === 'ach' && amount.currency !== 'USD')
    return `Stripe's ACH Direct Debit moves US dollars only, not ${amount.currency}`;
  if (THREE_DECIMAL.has(amount.currency) && amount.amountMinor % 10 !== 0)
    return `Stripe takes ${amount.currency} in steps of ${formatMoney(10, amount.currency)} (the last of its three decimals must be 0)`;
  return undefined;
}

/** Metadata keys we put on every PaymentIntent and refund; search and webhooks rely on them. */
export const METADATA = {
  paymentId: 'paygate_payment_id',
  tenantId: 'paygate_tenant_id',
  invoiceNumber: 'invoice_number',
  refundId: 'paygate_refund_id',
} as const;

/**
 * Currencies whose Stripe amount is not their ISO 4217 minor unit. ISO gives ISK and UGX exponent 0
 * (money.ts, so 1000 ISK is amountMinor 1000), but Stripe's API kept them two-decimal for backwards
 * compatibility: "to charge 5 ISK, provide an amount value of 500. The amount value must be evenly
 * divisible by 100" (the same for UGX; https://docs.stripe.com/currencies#special-cases). Sending our
 * minor units unchanged would charge a hundredth of the amount.
 * Not here on purpose: HUF and TWD, Stripe's other special cases, are zero-decimal only for payouts
 * (which paygate never makes); their charges and refunds are two-decimal, as ISO 4217 says (exponent 2).
 */
const STRIPE_TWO_DECIMAL_FOR_ISO_ZERO = new Set(['ISK', 'UGX']);

/** Our ISO 4217 minor units -> the `amount` Stripe expects in that currency. */
export function toStripeAmount(amountMinor: number, currency: string): number {
  return STRIPE_TWO_DECIMAL_FOR_ISO_ZERO.has(currency.toUpperCase()) ? amountMinor * 100 : amountMinor;
}

/**
 * A Stripe `amount` (charge, refund, event) -> ISO 4217 minor units. Stripe refuses an ISK or UGX
 * amount that is not a whole multiple of 100 (invalid_charge_amount_no_decimal_compatible), so one
 * arriving here is not something this mapping can read: an explicit error naming it, never a rounding.
 */
export function fromStripeAmount(amount: number, currency: string): number {
  const code = currency.toUpperCase();
  if (!STRIPE_TWO_DECIMAL_FOR_ISO_ZERO.has(code)) return amount;
  if (amount % 100 !== 0) {
    throw new GatewayError(
      'api_error',
      `Stripe amount ${amount} ${code} is not a whole number of ${code} (Stripe sends ${code} with two decimals, always a multiple of 100)`,
      'stripe',
      { providerCode: 'unsupported:fractional_amount', retryable: false },
    );
  }
  return amount / 100;
}

/** Codes that mean the stored payment method cannot be charged as it is. */
const METHOD_INVALID_CODES = new Set([
  // cards
  'expired_card',
  'incorrect_number',
  'invalid_number',
  'incorrect_cvc',
  'invalid_cvc',
  'invalid_expiry_month',
  'invalid_expiry_year',
  'invalid_account',
  // bank accounts (ACH failure codes)
  'account_closed',
  'no_account',
  'invalid_account_number',
  'account_number_invalid',
  'routing_number_invalid',
  'bank_account_restricted',
  'bank_account_unusable',
  'bank_account_unverified',
  'account_frozen',
  'debit_not_authorized',
  'payment_method_unactivated',
  'payment_method_unexpected_state',
  'payment_method_microdeposit_verification_attempts_exceeded',
  'expired_payment_method',
  'payment_intent_mandate_invalid',
]);

/** Invalid-request codes that are Stripe refusing this money movement, not a malformed request. */
const REFUSED_CODES = new Set([
  'charge_already_refunded',
  'amount_too_large',
  'charge_not_refundable',
  'charge_disputed',
]);

/**
 * A declined payment: Stripe's `code` (card_declined, expired_card, ACH failure code, ...) and
 * `decline_code` (insufficient_funds, generic_decline, ...) reduced to our taxonomy.
 */
export function classifyDecline(
  code: string | undefined | null,
  declineCode: string | undefined | null,
): GatewayErrorCode {
  if (declineCode === 'insufficient_funds' || code === 'insufficient_funds') return 'insufficient_funds';
  if ((declineCode && METHOD_INVALID_CODES.has(declineCode)) || (code && METHOD_INVALID_CODES.has(code))) {
    return 'payment_method_invalid';
  }
  return 'declined';
}

export function failureFromLastPaymentError(error: Stripe.PaymentIntent.LastPaymentError): GatewayFailure {
  const providerCode = error.decline_code ?? error.code ?? error.type;
  return {
    code: classifyDecline(error.code, error.decline_code),
    providerCode,
    message: error.message ?? 'The payment was declined.',
  };
}

/** The parts of stripe-node's StripeError we read; a plain object in tests. */
export interface StripeErrorLike {
  /** stripe-node's class name: StripeCardError, StripeRateLimitError, ... */
  type: string;
  message: string;
  statusCode?: number;
  code?: string;
  decline_code?: string;
  param?: string;
  requestId?: string;
  headers?: Record<string, string | undefined>;
  payment_intent?: Stripe.PaymentIntent;
}

export function isStripeErrorLike(error: unknown): error is StripeErrorLike {
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof (error as { type?: unknown }).type === 'string' &&
    (error as { type: string }).type.startsWith('Stripe')
  );
}

/** The one factory from a stripe-node error to our GatewayError. */
export function mapStripeError(error: StripeErrorLike): GatewayError {
  const headers = error.headers ?? {};
  // Stripe tells us whether a retry can help; it knows better than our defaults (stripe-node obeys it too).
  const shouldRetry = headers['stripe-should-retry'];
  const retryHint = shouldRetry === 'true' ? true : shouldRetry === 'false' ? false : undefined;
  const retryAfter = Number(headers['retry-after']);
  const retryAfterSeconds = Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : undefined;
  const base = {
    requestId: error.requestId,
    ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
  };
  const make = (
    code: GatewayErrorCode,
    providerCode: string | undefined,
    extra: { retryable?: boolean; outcomeUnknown?: boolean } = {},
  ) =>
    new GatewayError(code, error.message, 'stripe', {
      ...base,
      ...(providerCode ? { providerCode } : {}),
      ...extra,
      ...(retryHint !== undefined && code !== 'network_timeout' ? { retryable: retryHint } : {}),
    });

  // 409: another request with this idempotency key is still being processed at Stripe (ours, sent again
  // while the first had not answered). That one may yet charge, so this is never a failure: retried, and
  // when the retries run out the outcome is unknown, for the reconciler to ask (whatever class
  // stripe-node gives it: the body's type has been idempotency_error and invalid_request_error).
  if (error.statusCode === 409)
    return make('api_error', 'idempotency_key_in_use', { retryable: true, outcomeUnknown: true });
  switch (error.type) {
    case 'StripeCardError':
      return make(classifyDecline(error.code, error.decline_code), error.decline_code ?? error.code, {
        retryable: false,
      });
    case 'StripeRateLimitError':
      return make('rate_limited', error.code ?? 'rate_limit');
    case 'StripeAPIError':
      return make('api_error', error.code ?? (error.statusCode ? `http_${error.statusCode}` : undefined));
    case 'StripeConnectionError':
      // No answer. The request may have reached Stripe and moved money: never retried blindly.
      return make('network_timeout', 'connection_error', { retryable: false, outcomeUnknown: true });
    case 'StripeAuthenticationError':
    case 'StripePermissionError':
      return make('configuration_error', error.code ?? error.type, { retryable: false });
    case 'StripeIdempotencyError':
      // Same key, other parameters: our bug; retrying cannot fix it.
      return make('configuration_error', 'idempotency_error', { retryable: false });
    case 'StripeInvalidRequestError': {
      if (error.param === 'payment_method' || (error.code && METHOD_INVALID_CODES.has(error.code))) {
        return make('payment_method_invalid', error.code, { retryable: false });
      }
      if (error.code && REFUSED_CODES.has(error.code))
        return make('declined', error.code, { retryable: false });
      return make('configuration_error', error.code, { retryable: false });
    }
    default:
      // An error class this mapping does not know: unsupported, surfaced as a Stripe-side error.
      return make('api_error', `unsupported:${error.type}`);
  }
}

const INTENT_STATUSES = [
  'canceled',
  'processing',
  'requires_action',
  'requires_capture',
  'requires_confirmation',
  'requires_payment_method',
  'succeeded',
] as const;
type IntentStatus = (typeof INTENT_STATUSES)[number];

function isIntentStatus(status: string): status is IntentStatus {
  return (INTENT_STATUSES as readonly string[]).includes(status);
}

/** The PaymentIntent's state as our outcome. */
export function mapPaymentIntent(intent: Stripe.PaymentIntent): PaymentOutcome {
  const outcome: PaymentOutcome = {
    status: 'processing',
    providerReference: intent.id,
    amountMinor: fromStripeAmount(intent.amount, intent.currency),
    currency: intent.currency.toUpperCase(),
  };
  const display = paymentMethodDisplay(intent.payment_method);
  if (display) outcome.paymentMethodDisplay = display;

  const status = intent.status;
  if (!isIntentStatus(status)) {
    // A status newer than this mapping: not final, so nothing is marked paid or charged again; the
    // reconciler keeps asking and raises an alert if it never resolves.
    return outcome;
  }
  switch (status) {
    case 'succeeded':
      return { ...outcome, status: 'succeeded' };
    case 'processing':
      return outcome;
    case 'requires_payment_method':
      return {
        ...outcome,
        status: 'failed',
        failure: intent.last_payment_error
          ? failureFromLastPaymentError(intent.last_payment_error)
          : {
              code: 'declined',
              providerCode: 'requires_payment_method',
              message: 'The payment has no usable payment method.',
            },
      };
    case 'requires_action':
      // Off-session there is no customer to authenticate: this payment will not complete by itself.
      return {
        ...outcome,
        status: 'failed',
        failure: {
          code: 'declined',
          providerCode: 'authentication_required',
          message: 'The payment needs the customer to authenticate, which an off-session payment cannot do.',
        },
      };
    case 'canceled':
      return {
        ...outcome,
        status: 'failed',
        failure: {
          code: 'declined',
          providerCode: intent.cancellation_reason ?? 'canceled',
          message: 'The PaymentIntent was canceled.',
        },
      };
    case 'requires_confirmation':
    case 'requires_capture':
      // We always confirm with automatic capture, so someone changed this PaymentIntent outside paygate.
      // Not final and not ours to finish: left processing for the reconciler to surface.
      return outcome;
    default: {
      const unreachable: never = status;
      throw new Error(`unhandled PaymentIntent status ${String(unreachable)}`);
    }
  }
}

/** Brand and last4 (or bank name and last4) when the PaymentMethod was expanded; never more. */
export function paymentMethodDisplay(
  method: string | Stripe.PaymentMethod | null | undefined,
): PaymentOutcome['paymentMethodDisplay'] | undefined {
  if (!method || typeof method === 'string') return undefined;
  if (method.card) return { brand: method.card.brand, last4: method.card.last4 };
  if (method.us_bank_account) {
    const display: { bankName?: string; last4?: string } = {};
    if (method.us_bank_account.bank_name) display.bankName = method.us_bank_account.bank_name;
    if (method.us_bank_account.last4) display.last4 = method.us_bank_account.last4;
    return display;
  }
  return undefined;
}

const REFUND_STATUSES = ['canceled', 'failed', 'pending', 'requires_action', 'succeeded'] as const;
type RefundStatusWord = (typeof REFUND_STATUSES)[number];

export function mapRefund(refund: Stripe.Refund): RefundOutcome {
  const status = refund.status ?? 'pending';
  const base = {
    providerReference: refund.id,
    amountMinor: fromStripeAmount(refund.amount, refund.currency),
    currency: refund.currency.toUpperCase(),
  };
  if (!(REFUND_STATUSES as readonly string[]).includes(status)) return { status: 'pending', ...base };
  switch (status as RefundStatusWord) {
    case 'succeeded':
      return { status: 'succeeded', ...base };
    case 'pending':
    case 'requires_action':
      return { status: 'pending', ...base };
    case 'failed':
    case 'canceled':
      return {
        status: 'failed',
        ...base,
        failure: {
          code: 'declined',
          providerCode: refund.failure_reason ?? status,
          message: `The refund ${status === 'failed' ? 'failed' : 'was canceled'}${refund.failure_reason ? `: ${refund.failure_reason}` : ''}.`,
        },
      };
    default: {
      const unreachable: never = status as never;
      throw new Error(`unhandled refund status ${String(unreachable)}`);
    }
  }
}

/** A verified Stripe event reduced to what our engine acts on (everything but `payload`). */
export interface MappedStripeEvent {
  action: WebhookAction;
  paymentId?: string;
  providerReference?: string;
  refund?: { providerReference: string; amountMinor: number; currency: string };
  amount?: { amountMinor: number; currency: string };
  failure?: GatewayFailure;
}

const HANDLED_EVENTS = [
  'payment_intent.succeeded',
  'payment_intent.processing',
  'payment_intent.payment_failed',
  'charge.refunded',
  'refund.updated',
  'refund.failed',
  'charge.dispute.created',
] as const;
type HandledEvent = (typeof HANDLED_EVENTS)[number];

function metadataPaymentId(metadata: Stripe.Metadata | null | undefined): string | undefined {
  const id = metadata?.[METADATA.paymentId];
  return typeof id === 'string' && id !== '' ? id : undefined;
}

function refundAction(refund: Stripe.Refund): WebhookAction {
  switch (refund.status) {
    case 'succeeded':
      return 'refund_succeeded';
    case 'failed':
    case 'canceled':
      return 'refund_failed';
    default:
      // pending / requires_action: nothing final to apply yet; a later refund.updated says.
      return 'unsupported';
  }
}

export function mapStripeEvent(event: Stripe.Event): MappedStripeEvent {
  const type = event.type as string;
  if (!(HANDLED_EVENTS as readonly string[]).includes(type)) return { action: 'unsupported' };
  const handled = type as HandledEvent;
  switch (handled) {
    case 'payment_intent.succeeded':
    case 'payment_intent.processing':
    case 'payment_intent.payment_failed': {
      const intent = event.data.object as Stripe.PaymentIntent;
      const mapped: MappedStripeEvent = {
        action:
          handled === 'payment_intent.succeeded'
            ? 'payment_succeeded'
            : handled === 'payment_intent.processing'
              ? 'payment_processing'
              : 'payment_failed',
        providerReference: intent.id,
        amount: {
          amountMinor: fromStripeAmount(intent.amount, intent.currency),
          currency: intent.currency.toUpperCase(),
        },
      };
      const paymentId = metadataPaymentId(intent.metadata);
      if (paymentId) mapped.paymentId = paymentId;
      if (handled === 'payment_intent.payment_failed') {
        mapped.failure = intent.last_payment_error
          ? failureFromLastPaymentError(intent.last_payment_error)
          : { code: 'declined', providerCode: 'payment_failed', message: 'The payment failed.' };
      }
      return mapped;
    }
    case 'charge.refunded': {
      const charge = event.data.object as Stripe.Charge;
      const mapped: MappedStripeEvent = { action: 'unsupported' };
      const reference =
        typeof charge.payment_intent === 'string' ? charge.payment_intent : charge.payment_intent?.id;
      mapped.providerReference = reference ?? charge.id;
      const paymentId = metadataPaymentId(charge.metadata);
      if (paymentId) mapped.paymentId = paymentId;
      // The newest refund is the one this event announces (Stripe lists refunds newest first). Since API
      // 2022-11-15 the list is not included by default; then refund.updated carries each refund instead.
      const latest = charge.refunds?.data?.[0];
      if (latest) {
        mapped.action = refundAction(latest);
        mapped.refund = {
          providerReference: latest.id,
          amountMinor: fromStripeAmount(latest.amount, latest.currency),
          currency: latest.currency.toUpperCase(),
        };
      }
      return mapped;
    }
    case 'refund.updated':
    case 'refund.failed': {
      const refund = event.data.object as Stripe.Refund;
      const mapped: MappedStripeEvent = {
        action: handled === 'refund.failed' ? 'refund_failed' : refundAction(refund),
        refund: {
          providerReference: refund.id,
          amountMinor: fromStripeAmount(refund.amount, refund.currency),
          currency: refund.currency.toUpperCase(),
        },
      };
      const reference =
        typeof refund.payment_intent === 'string' ? refund.payment_intent : refund.payment_intent?.id;
      if (reference) mapped.providerReference = reference;
      const paymentId = metadataPaymentId(refund.metadata);
      if (paymentId) mapped.paymentId = paymentId;
      if (mapped.action === 'refund_failed') {
        mapped.failure = {
          code: 'declined',
          providerCode: refund.failure_reason ?? 'refund_failed',
          message: `The refund failed${refund.failure_reason ? `: ${refund.failure_reason}` : ''}.`,
        };
      }
      return mapped;
    }
    case 'charge.dispute.created': {
      const dispute = event.data.object as Stripe.Dispute;
      const reference =
        typeof dispute.payment_intent === 'string' ? dispute.payment_intent : dispute.payment_intent?.id;
      return { action: 'payment_reversed', ...(reference ? { providerReference: reference } : {}) };
    }
    default: {
      const unreachable: never = handled;
      throw new Error(`unhandled Stripe event ${String(unreachable)}`);
    }
  }
}
