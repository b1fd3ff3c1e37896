/**
 * Mapping on Stripe's real payloads (../shared/reference/stripe/events), through the real signature
 * check: each event is signed with the test signer and verified before it is mapped.
 */
import type Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import {
  fromStripeAmount,
  mapPaymentIntent,
  mapRefund,
  mapStripeError,
  type StripeErrorLike,
  toStripeAmount,
} from '../../src/gateways/stripe/mapping.js';
import { signStripeWebhookForTest, verifyStripeWebhook } from '../../src/gateways/stripe/webhook.js';
import { WebhookVerificationError } from '../../src/gateways/types.js';
import { readReferenceText } from '../support/reference.js';

const secret = 'whsec_test_mapping_secret';

function signed(file: string, mutate?: (event: Record<string, unknown>) => void) {
  let raw = readReferenceText(`stripe/events/${file}`);
  if (mutate) {
    const event = JSON.parse(raw) as Record<string, unknown>;
    mutate(event);
    raw = JSON.stringify(event);
  }
  const event = JSON.parse(raw) as { created: number };
  // Signed at the event's own time and verified "then", so the fixture's old timestamp is in tolerance.
  const now = new Date(event.created * 1000 + 10_000);
  return { raw, header: signStripeWebhookForTest(raw, secret, event.created), now };
}

describe('Stripe events (real payloads) -> WebhookEvent', () => {
  it('payment_intent.succeeded', () => {
    const { raw, header, now } = signed('payment_intent.succeeded.json', (e) => {
      const object = (e['data'] as { object: { metadata: Record<string, string> } }).object;
      object.metadata = { ...object.metadata, paygate_payment_id: 'pay_42' };
    });
    const event = verifyStripeWebhook(raw, header, secret, { now });
    expect(event).toMatchObject({
      provider: 'stripe',
      eventId: 'evt_000000000000000000000000',
      type: 'payment_intent.succeeded',
      action: 'payment_succeeded',
      providerReference: 'pi_000000000000000000000000',
      paymentId: 'pay_42',
    });
    expect(event.createdAt).toBeInstanceOf(Date);
  });

  it('payment_intent.processing (a bank debit)', () => {
    const { raw, header, now } = signed('payment_intent.processing.sepa_debit.json');
    expect(verifyStripeWebhook(raw, header, secret, { now })).toMatchObject({
      action: 'payment_processing',
      providerReference: 'pi_00000000000000',
    });
  });

  it('payment_intent.payment_failed carries the decline as our failure', () => {
    const { raw, header, now } = signed('payment_intent.payment_failed.json');
    const event = verifyStripeWebhook(raw, header, secret, { now });
    expect(event.action).toBe('payment_failed');
    expect(event.failure).toEqual({
      code: 'declined',
      providerCode: 'generic_decline',
      message: 'Your card was declined.',
    });
    expect(event.paymentId).toBeUndefined();
  });

  it('charge.refunded carries the refund amount and its reference', () => {
    const { raw, header, now } = signed('charge.refunded.json');
    const event = verifyStripeWebhook(raw, header, secret, { now });
    expect(event.action).toBe('refund_succeeded');
    expect(event.refund).toEqual({
      providerReference: 're_000000000000000000000000',
      amountMinor: 100,
      currency: 'USD',
    });
  });

  it('an event type we do not act on is unsupported, not an error', () => {
    const { raw, header, now } = signed('payment_intent.succeeded.json', (e) => {
      e['type'] = 'customer.created';
    });
    expect(verifyStripeWebhook(raw, header, secret, { now }).action).toBe('unsupported');
  });
});

describe('verifyStripeWebhook refuses what it cannot trust', () => {
  const raw = readReferenceText('stripe/events/payment_intent.succeeded.json');
  const t = 1_700_000_000;
  const at = (seconds: number) => new Date(seconds * 1000);

  it('a body changed after signing, another secret, or no header', () => {
    const header = signStripeWebhookForTest(raw, secret, t);
    expect(() => verifyStripeWebhook(`${raw} `, header, secret, { now: at(t) })).toThrow(
      WebhookVerificationError,
    );
    expect(() => verifyStripeWebhook(raw, header, 'whsec_other', { now: at(t) })).toThrow(
      WebhookVerificationError,
    );
    expect(() => verifyStripeWebhook(raw, undefined, secret, { now: at(t) })).toThrow(
      /Missing Stripe-Signature/,
    );
    expect(verifyStripeWebhook(Buffer.from(raw), header, secret, { now: at(t) }).action).toBe(
      'payment_succeeded',
    );
  });

  it('the 300 s tolerance, both ways', () => {
    const header = signStripeWebhookForTest(raw, secret, t);
    expect(verifyStripeWebhook(raw, header, secret, { now: at(t + 300) }).action).toBe('payment_succeeded');
    expect(() => verifyStripeWebhook(raw, header, secret, { now: at(t + 301) })).toThrow(/tolerance/);
    expect(() => verifyStripeWebhook(raw, header, secret, { now: at(t - 301) })).toThrow(/tolerance/);
    expect(() => verifyStripeWebhook(raw, header, secret, { now: at(t + 301), toleranceSeconds: 0 })).toThrow(
      /positive/,
    );
  });
});

describe('mapStripeError: the taxonomy', () => {
  const cases: [string, StripeErrorLike, string, string | undefined, boolean][] = [
    [
      'insufficient funds',
      { type: 'StripeCardError', message: 'm', code: 'card_declined', decline_code: 'insufficient_funds' },
      'insufficient_funds',
      'insufficient_funds',
      false,
    ],
    [
      'expired card',
      { type: 'StripeCardError', message: 'm', code: 'expired_card' },
      'payment_method_invalid',
      'expired_card',
      false,
    ],
    [
      'incorrect number',
      { type: 'StripeCardError', message: 'm', code: 'incorrect_number' },
      'payment_method_invalid',
      'incorrect_number',
      false,
    ],
    [
      'generic decline',
      { type: 'StripeCardError', message: 'm', code: 'card_declined', decline_code: 'generic_decline' },
      'declined',
      'generic_decline',
      false,
    ],
    [
      'stolen card',
      { type: 'StripeCardError', message: 'm', code: 'card_declined', decline_code: 'stolen_card' },
      'declined',
      'stolen_card',
      false,
    ],
    [
      'unknown method',
      {
        type: 'StripeInvalidRequestError',
        message: 'm',
        code: 'resource_missing',
        param: 'payment_method',
        statusCode: 400,
      },
      'payment_method_invalid',
      'resource_missing',
      false,
    ],
    [
      'rate limit',
      { type: 'StripeRateLimitError', message: 'm', code: 'rate_limit', statusCode: 429 },
      'rate_limited',
      'rate_limit',
      true,
    ],
    [
      'server error',
      { type: 'StripeAPIError', message: 'm', statusCode: 500 },
      'api_error',
      'http_500',
      true,
    ],
    [
      'timeout',
      { type: 'StripeConnectionError', message: 'Request aborted due to timeout being reached (500ms)' },
      'network_timeout',
      'connection_error',
      false,
    ],
    [
      'bad key',
      { type: 'StripeAuthenticationError', message: 'm', statusCode: 401 },
      'configuration_error',
      'StripeAuthenticationError',
      false,
    ],
    [
      'no permission',
      { type: 'StripePermissionError', message: 'm', statusCode: 403 },
      'configuration_error',
      'StripePermissionError',
      false,
    ],
    [
      'key reused',
      { type: 'StripeIdempotencyError', message: 'm', statusCode: 400 },
      'configuration_error',
      'idempotency_error',
      false,
    ],
    [
      'over-refund',
      { type: 'StripeInvalidRequestError', message: 'm', code: 'amount_too_large', param: 'amount' },
      'declined',
      'amount_too_large',
      false,
    ],
  ];
  it.each(cases)('%s', (_name, error, code, providerCode, retryable) => {
    const mapped = mapStripeError(error);
    expect(mapped.code).toBe(code);
    expect(mapped.details.providerCode).toBe(providerCode);
    expect(mapped.retryable).toBe(retryable);
    expect(mapped.provider).toBe('stripe');
  });

  it('Stripe-Should-Retry overrides our default; Retry-After is kept', () => {
    expect(
      mapStripeError({ type: 'StripeAPIError', message: 'm', headers: { 'stripe-should-retry': 'false' } })
        .retryable,
    ).toBe(false);
    expect(
      mapStripeError({
        type: 'StripeInvalidRequestError',
        message: 'm',
        code: 'lock_timeout',
        headers: { 'stripe-should-retry': 'true' },
      }).retryable,
    ).toBe(true);
    expect(
      mapStripeError({ type: 'StripeRateLimitError', message: 'm', headers: { 'retry-after': '2' } }).details
        .retryAfterSeconds,
    ).toBe(2);
    const timeout = mapStripeError({
      type: 'StripeConnectionError',
      message: 'm',
      headers: { 'stripe-should-retry': 'true' },
    });
    expect([timeout.retryable, timeout.details.outcomeUnknown]).toEqual([false, true]);
  });
});

describe('mapPaymentIntent and mapRefund', () => {
  const intent = (status: string, extra: Partial<Stripe.PaymentIntent> = {}) =>
    ({
      id: 'pi_1',
      amount: 500,
      currency: 'usd',
      status,
      payment_method: null,
      last_payment_error: null,
      cancellation_reason: null,
      ...extra,
    }) as unknown as Stripe.PaymentIntent;

  it('every status has an outcome; nothing unknown is ever "succeeded"', () => {
    expect(mapPaymentIntent(intent('succeeded')).status).toBe('succeeded');
    expect(mapPaymentIntent(intent('processing')).status).toBe('processing');
    expect(mapPaymentIntent(intent('requires_capture')).status).toBe('processing');
    expect(mapPaymentIntent(intent('requires_action')).failure?.providerCode).toBe('authentication_required');
    expect(mapPaymentIntent(intent('canceled', { cancellation_reason: 'abandoned' })).failure).toMatchObject({
      code: 'declined',
      providerCode: 'abandoned',
    });
    expect(mapPaymentIntent(intent('a_status_from_the_future')).status).toBe('processing');
    expect(mapPaymentIntent(intent('succeeded'))).toMatchObject({
      amountMinor: 500,
      currency: 'USD',
      providerReference: 'pi_1',
    });
  });

  it('ACH failure codes after settlement', () => {
    const failed = (code: string) =>
      mapPaymentIntent(
        intent('requires_payment_method', {
          last_payment_error: {
            type: 'invalid_request_error',
            code,
            message: 'x',
          } as Stripe.PaymentIntent.LastPaymentError,
        }),
      );
    expect(failed('insufficient_funds').failure?.code).toBe('insufficient_funds');
    expect(failed('account_closed').failure?.code).toBe('payment_method_invalid');
    expect(failed('debit_not_authorized').failure?.code).toBe('payment_method_invalid');
  });

  it('amounts: ISK and UGX are two-decimal at Stripe (x100), every other currency is its ISO minor unit', () => {
    expect(toStripeAmount(5, 'ISK')).toBe(500);
    expect(toStripeAmount(1_500, 'UGX')).toBe(150_000);
    expect(fromStripeAmount(500, 'isk')).toBe(5);
    expect(fromStripeAmount(150_000, 'ugx')).toBe(1_500);
    for (const [currency, minor] of [
      ['USD', 12_34],
      ['JPY', 1_000],
      ['KWD', 1_230],
      ['HUF', 1_234_56],
      ['TWD', 800_45],
    ] as const) {
      expect(toStripeAmount(minor, currency)).toBe(minor);
      expect(fromStripeAmount(minor, currency.toLowerCase())).toBe(minor);
    }
    // Stripe refuses fractional ISK/UGX; one arriving anyway is named, never rounded.
    expect(() => fromStripeAmount(1_050, 'isk')).toThrow(/not a whole number of ISK/);
    const refund = {
      id: 're_1',
      status: 'succeeded',
      amount: 2_500,
      currency: 'isk',
    } as unknown as Stripe.Refund;
    expect(mapRefund(refund)).toMatchObject({ amountMinor: 25, currency: 'ISK' });
  });

  it('refund statuses', () => {
    const refund = (status: string) =>
      ({ id: 're_1', status, amount: 1, currency: 'usd', failure_reason: null }) as unknown as Stripe.Refund;
    expect(mapRefund(refund('succeeded')).status).toBe('succeeded');
    expect(mapRefund(refund('pending')).status).toBe('pending');
    expect(mapRefund(refund('failed'))).toMatchObject({ status: 'failed', failure: { code: 'declined' } });
  });
});
