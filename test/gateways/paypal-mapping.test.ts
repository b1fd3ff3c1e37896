/**
 * mapping.ts on its own (no I/O): status switches, money, request bodies, and the real PayPal event
 * payloads in ../shared/reference/paypal/events reduced to WebhookEvents.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CaptureStatus, RefundStatus } from '@paypal/paypal-server-sdk';
import { describe, expect, it } from 'vitest';
import {
  buildLookupOrderRequest,
  buildOrderRequest,
  captureStatusToPaymentStatus,
  fromPaypalMoney,
  mapPaypalError,
  paypalRequestIds,
  paypalWebhookToEvent,
  refundStatusToOurs,
  toPaypalMoney,
} from '../../src/gateways/paypal/mapping.js';
import { GatewayError } from '../../src/gateways/types.js';
import { referenceRoot } from '../support/reference.js';

const events = path.join(referenceRoot, 'paypal/events');
const load = (name: string): unknown => JSON.parse(readFileSync(path.join(events, `${name}.json`), 'utf8'));

describe('statuses', () => {
  it('maps every capture status', () => {
    const mapped = Object.values(CaptureStatus).map((s) => [s, captureStatusToPaymentStatus(s)]);
    expect(Object.fromEntries(mapped)).toEqual({
      COMPLETED: 'succeeded',
      DECLINED: 'failed',
      PARTIALLY_REFUNDED: 'succeeded',
      PENDING: 'processing',
      REFUNDED: 'succeeded',
      FAILED: 'failed',
    });
  });

  it('maps every refund status', () => {
    const mapped = Object.values(RefundStatus).map((s) => [s, refundStatusToOurs(s)]);
    expect(Object.fromEntries(mapped)).toEqual({
      CANCELLED: 'failed',
      FAILED: 'failed',
      PENDING: 'pending',
      COMPLETED: 'succeeded',
    });
  });

  it('refuses a status word it does not know instead of guessing', () => {
    expect(() => captureStatusToPaymentStatus('VOIDED' as CaptureStatus)).toThrow(
      /unsupported PayPal capture status "VOIDED"/,
    );
  });
});

describe('money and requests', () => {
  it('converts through money.ts only', () => {
    expect(toPaypalMoney(50_000, 'USD')).toEqual({ currencyCode: 'USD', value: '500.00' });
    expect(toPaypalMoney(1_500, 'JPY')).toEqual({ currencyCode: 'JPY', value: '1500' });
    expect(toPaypalMoney(1_234, 'KWD')).toEqual({ currencyCode: 'KWD', value: '1.234' });
    expect(fromPaypalMoney({ currencyCode: 'USD', value: '30.0' })).toEqual({
      amountMinor: 3_000,
      currency: 'USD',
    });
    expect(fromPaypalMoney({ currencyCode: 'USD', value: '0.00' })).toEqual({
      amountMinor: 0,
      currency: 'USD',
    });
  });

  it('derives every PayPal-Request-Id from our ids', () => {
    expect(paypalRequestIds.createOrder('p1')).toBe('pay:p1');
    expect(paypalRequestIds.captureOrder('p1')).toBe('capture:p1');
    expect(paypalRequestIds.refund('r1')).toBe('refund:r1');
  });

  it('builds the order: CAPTURE, custom_id = payment id, invoice_id, payee, vaulted source', () => {
    const body = buildOrderRequest({
      paymentId: 'pay_1',
      tenantId: 't',
      amountMinor: 12_345,
      currency: 'EUR',
      rail: 'paypal',
      paymentMethodToken: 'pp_vault_success',
      payee: { name: 'Acme', paypalEmail: 'billing@acme.example' },
      invoiceNumber: 'INV-2025-001',
      description: 'Invoice INV-2025-001',
    });
    expect(body).toEqual({
      intent: 'CAPTURE',
      purchaseUnits: [
        {
          referenceId: 'pay_1',
          customId: 'pay_1',
          invoiceId: 'INV-2025-001',
          description: 'Invoice INV-2025-001',
          amount: { currencyCode: 'EUR', value: '123.45' },
          payee: { emailAddress: 'billing@acme.example' },
        },
      ],
      paymentSource: { paypal: { vaultId: 'pp_vault_success' } },
    });
  });

  it('the lookup body can never become a payment: amount zero, no payment source', () => {
    const body = buildLookupOrderRequest('pay_1');
    expect(body.paymentSource).toBeUndefined();
    expect(body.purchaseUnits[0]!.amount.value).toBe('0.00');
  });
});

describe('transport errors', () => {
  it('a timeout is network_timeout with the outcome unknown; a refused connection is retryable', () => {
    const timeout = mapPaypalError(
      Object.assign(new Error('timeout of 1500ms exceeded'), { code: 'ECONNABORTED' }),
      'capture',
    );
    expect(timeout).toBeInstanceOf(GatewayError);
    expect(timeout).toMatchObject({ code: 'network_timeout', details: { outcomeUnknown: true } });
    expect(timeout.retryable).toBe(false);
    const refused = mapPaypalError(
      Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
      'capture',
    );
    expect(refused).toMatchObject({ code: 'api_error' });
    expect(refused.retryable).toBe(true);
  });
});

describe('real PayPal event payloads', () => {
  it('PAYMENT.CAPTURE.COMPLETED -> payment_succeeded with the capture id', () => {
    const event = paypalWebhookToEvent(load('PAYMENT.CAPTURE.COMPLETED'));
    expect(event).toMatchObject({
      provider: 'paypal',
      eventId: 'WH-58D329510W468432D-8HN650336L201105X',
      type: 'PAYMENT.CAPTURE.COMPLETED',
      action: 'payment_succeeded',
      providerReference: '12A34567BC123456S',
    });
    expect(event.paymentId).toBeUndefined();
    expect(event.createdAt?.toISOString()).toBe('2019-02-14T21:50:07.940Z');
  });

  it('PAYMENT.CAPTURE.DECLINED -> payment_failed with custom_id as our payment id', () => {
    expect(paypalWebhookToEvent(load('PAYMENT.CAPTURE.DECLINED'))).toMatchObject({
      action: 'payment_failed',
      paymentId: 'CUSTOMID-1001',
      providerReference: '7U133281TB3277326',
      failure: { code: 'declined', providerCode: 'DECLINED' },
    });
  });

  it('PAYMENT.CAPTURE.REFUNDED -> refund_succeeded on the capture linked as "up"', () => {
    expect(paypalWebhookToEvent(load('PAYMENT.CAPTURE.REFUNDED'))).toMatchObject({
      action: 'refund_succeeded',
      providerReference: '0JF852973C016714D',
      refund: { providerReference: '1Y107995YT783435V', amountMinor: 99, currency: 'USD' },
    });
  });

  it('maps the remaining capture events and leaves others unsupported', () => {
    const body = (type: string) => ({ id: 'WH-X', event_type: type, resource: { id: 'C', custom_id: 'p' } });
    expect(paypalWebhookToEvent(body('PAYMENT.CAPTURE.PENDING')).action).toBe('payment_processing');
    expect(paypalWebhookToEvent(body('PAYMENT.CAPTURE.DENIED')).action).toBe('payment_failed');
    expect(paypalWebhookToEvent(body('PAYMENT.CAPTURE.REVERSED'))).toMatchObject({
      action: 'payment_reversed',
      paymentId: 'p',
      providerReference: 'C',
    });
    expect(paypalWebhookToEvent(body('CHECKOUT.ORDER.APPROVED')).action).toBe('unsupported');
    const insufficient = {
      id: 'WH-Y',
      event_type: 'PAYMENT.CAPTURE.DECLINED',
      resource: {
        id: 'C',
        custom_id: 'p',
        status: 'DECLINED',
        processor_response: { response_code: '5120' },
      },
    };
    expect(paypalWebhookToEvent(insufficient).failure).toMatchObject({
      code: 'insufficient_funds',
      providerCode: '5120',
    });
    expect(() => paypalWebhookToEvent({ event_type: 'PAYMENT.CAPTURE.COMPLETED' })).toThrow(/no id/);
  });
});
