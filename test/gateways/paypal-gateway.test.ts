/**
 * The PayPal gateway through the REAL @paypal/paypal-server-sdk against the loopback emulator: every
 * taxonomy case from a documented vault token or an injected fault, idempotency keys derived from our
 * ids, retrieve that never charges, and the timeout-after-capture case ending with one capture.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createPaypalGateway, type PaypalGateway } from '../../src/gateways/paypal/client.js';
import { withRetry } from '../../src/gateways/retry.js';
import { GatewayError, type PayRequest } from '../../src/gateways/types.js';
import { createFaults, type Faults } from '../../src/sandbox/faults.js';
import { createLedger, type Ledger } from '../../src/sandbox/ledger.js';
import { type PaypalEmulator, startPaypalEmulator } from '../../src/sandbox/paypal/index.js';

let emulator: PaypalEmulator;
let ledger: Ledger;
let faults: Faults;
let gateway: PaypalGateway;

beforeAll(async () => {
  ledger = createLedger();
  faults = createFaults();
  emulator = await startPaypalEmulator({ ledger, faults });
  // Short timeout so the "never answers" fault ends quickly; nothing here asserts a duration.
  gateway = createPaypalGateway({ environment: 'sandbox', sandboxUrl: emulator.url, timeoutMs: 1_500 });
});
afterAll(async () => {
  await emulator.close();
});
beforeEach(() => {
  faults.clear();
});

function payRequest(token: string, overrides: Partial<PayRequest> = {}): PayRequest {
  return {
    paymentId: `pay_${randomUUID()}`,
    tenantId: 'ten_1',
    amountMinor: 50_000,
    currency: 'USD',
    rail: 'paypal',
    paymentMethodToken: token,
    payee: { name: 'Acme Supplies', paypalEmail: 'billing@acme.example' },
    invoiceNumber: `INV-${randomUUID().slice(0, 8)}`,
    description: 'Invoice payment',
    ...overrides,
  };
}

async function gatewayError(promise: Promise<unknown>): Promise<GatewayError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(GatewayError);
    return error as GatewayError;
  }
  throw new Error('expected a GatewayError, the call succeeded');
}

function keysFor(paymentId: string): string[] {
  return emulator
    .requests()
    .filter((r) => r.paypalRequestId?.endsWith(paymentId))
    .map(
      (r) =>
        `${r.method} ${r.path.replace(/orders\/[A-Z0-9]+/, 'orders/:id')} ${r.paypalRequestId} ${r.status}${r.replayed ? ' replayed' : ''}`,
    );
}

describe('pay', () => {
  it('creates and captures once, with keys derived from our payment id', async () => {
    const request = payRequest('pp_vault_success');
    const outcome = await gateway.pay(request);
    expect(outcome).toMatchObject({ status: 'succeeded', amountMinor: 50_000, currency: 'USD' });
    expect(outcome.providerReference).toMatch(/^[A-Z0-9]{17}$/);
    expect(ledger.charges(request.paymentId)).toMatchObject([
      {
        id: outcome.providerReference,
        amountMinor: 50_000,
        currency: 'USD',
        idempotencyKey: `capture:${request.paymentId}`,
      },
    ]);
    expect(keysFor(request.paymentId)).toEqual([
      `POST /v2/checkout/orders pay:${request.paymentId} 201`,
      `POST /v2/checkout/orders/:id/capture capture:${request.paymentId} 201`,
    ]);
  });

  it('sends PayPal decimal strings from minor units (JPY has none)', async () => {
    const request = payRequest('pp_vault_success', { amountMinor: 1_500, currency: 'JPY' });
    const outcome = await gateway.pay(request);
    expect(outcome).toMatchObject({ status: 'succeeded', amountMinor: 1_500, currency: 'JPY' });
  });

  it('paying again with the same payment id replays, never captures twice', async () => {
    const request = payRequest('pp_vault_success');
    const first = await gateway.pay(request);
    const second = await gateway.pay(request);
    expect(second).toEqual(first);
    expect(ledger.charges(request.paymentId)).toHaveLength(1);
    expect(keysFor(request.paymentId).at(-1)).toBe(
      `POST /v2/checkout/orders pay:${request.paymentId} 200 replayed`,
    );
  });

  it('pending capture is processing, then succeeded once settled', async () => {
    const request = payRequest('pp_vault_pending');
    const outcome = await gateway.pay(request);
    expect(outcome.status).toBe('processing');
    emulator.settleCapture(outcome.providerReference, 'COMPLETED');
    const later = await gateway.retrieve({
      paymentId: request.paymentId,
      providerReference: outcome.providerReference,
    });
    expect(later).toMatchObject({ status: 'succeeded', providerReference: outcome.providerReference });
  });

  it('INSTRUMENT_DECLINED -> declined, nothing charged', async () => {
    const request = payRequest('pp_vault_declined');
    const error = await gatewayError(gateway.pay(request));
    expect(error).toMatchObject({ code: 'declined', provider: 'paypal' });
    expect(error.details.providerCode).toBe('INSTRUMENT_DECLINED');
    expect(error.details.requestId).toMatch(/^[0-9a-f]+$/);
    expect(error.retryable).toBe(false);
    expect(ledger.charges(request.paymentId)).toHaveLength(0);
  });

  it('declined capture with processor code 5120 -> failed with insufficient_funds', async () => {
    const request = payRequest('pp_vault_insufficient_funds');
    const outcome = await gateway.pay(request);
    expect(outcome).toMatchObject({
      status: 'failed',
      failure: { code: 'insufficient_funds', providerCode: '5120' },
    });
    expect(ledger.charges(request.paymentId)).toHaveLength(0);
  });

  it('PAYER_ACTION_REQUIRED -> payment_method_invalid', async () => {
    const error = await gatewayError(gateway.pay(payRequest('pp_vault_payer_action_required')));
    expect(error).toMatchObject({ code: 'payment_method_invalid' });
    expect(error.details.providerCode).toBe('PAYER_ACTION_REQUIRED');
  });

  it('a token not in the vault -> payment_method_invalid at create', async () => {
    for (const token of ['pp_vault_invalid', 'not-a-vault-token']) {
      const error = await gatewayError(gateway.pay(payRequest(token)));
      expect(error).toMatchObject({ code: 'payment_method_invalid' });
      expect(error.details.providerCode).toBe('PAYMENT_SOURCE_INFO_CANNOT_BE_VERIFIED');
    }
  });

  it('a vendor without a PayPal email -> configuration_error before any call', async () => {
    const request = payRequest('pp_vault_success', { payee: { name: 'No Email Ltd' } });
    const error = await gatewayError(gateway.pay(request));
    expect(error.code).toBe('configuration_error');
    expect(keysFor(request.paymentId)).toEqual([]);
  });

  it('wrong client credentials -> configuration_error (401 from the OAuth endpoint)', async () => {
    const wrong = createPaypalGateway({
      environment: 'sandbox',
      sandboxUrl: emulator.url,
      clientId: 'someone-else',
      clientSecret: 'nope',
    });
    const error = await gatewayError(wrong.pay(payRequest('pp_vault_success')));
    expect(error).toMatchObject({ code: 'configuration_error' });
    expect(error.details.providerCode).toBe('invalid_client');
    expect(error.retryable).toBe(false);
  });

  it('429 -> rate_limited with Retry-After', async () => {
    faults.next('paypal', { kind: 'http_429', retryAfterSeconds: 7 });
    const request = payRequest('pp_vault_success');
    const error = await gatewayError(gateway.pay(request));
    expect(error).toMatchObject({ code: 'rate_limited' });
    expect(error.details).toMatchObject({ providerCode: 'RATE_LIMIT_REACHED', retryAfterSeconds: 7 });
    expect(error.retryable).toBe(true);
    expect(ledger.charges(request.paymentId)).toHaveLength(0);
  });

  it('500 -> api_error, retryable', async () => {
    faults.next('paypal', { kind: 'http_500' });
    const error = await gatewayError(gateway.pay(payRequest('pp_vault_success')));
    expect(error).toMatchObject({ code: 'api_error' });
    expect(error.details.providerCode).toBe('INTERNAL_SERVER_ERROR');
    expect(error.retryable).toBe(true);
  });

  it('a refused connection -> api_error, retryable (nothing reached PayPal)', async () => {
    const closed = await startPaypalEmulator({ ledger: createLedger(), faults: createFaults() });
    const url = closed.url;
    await closed.close();
    const offline = createPaypalGateway({ environment: 'sandbox', sandboxUrl: url });
    const error = await gatewayError(offline.pay(payRequest('pp_vault_success')));
    expect(error).toMatchObject({ code: 'api_error' });
    expect(error.details.providerCode).toBe('ECONNREFUSED');
    expect(error.retryable).toBe(true);
  });

  it('refuses a sandboxUrl that is not loopback', () => {
    expect(() =>
      createPaypalGateway({ environment: 'sandbox', sandboxUrl: 'http://paypal.example:80' }),
    ).toThrow(/loopback/);
  });
});

describe('timeouts and retries', () => {
  it('a timeout after the capture took effect ends with one capture', async () => {
    const request = payRequest('pp_vault_success');
    faults.next('paypal', {
      kind: 'timeout_after_charge',
      match: { method: 'POST', path: '/v2/checkout/orders/' },
    });
    const error = await gatewayError(gateway.pay(request));
    expect(error).toMatchObject({ code: 'network_timeout' });
    expect(error.details.outcomeUnknown).toBe(true);
    expect(ledger.charges(request.paymentId)).toHaveLength(1);

    // What the engine does next: ask before retrying. The answer is the capture that happened.
    const known = await gateway.retrieve({ paymentId: request.paymentId });
    expect(known).toMatchObject({
      status: 'succeeded',
      providerReference: ledger.charges(request.paymentId)[0]!.id,
    });
    expect(ledger.charges(request.paymentId)).toHaveLength(1);
  });

  it('withRetry after a timeout asks, and returns the capture instead of paying again', async () => {
    const request = payRequest('pp_vault_success');
    faults.next('paypal', {
      kind: 'timeout_after_charge',
      match: { method: 'POST', path: '/v2/checkout/orders/' },
    });
    const sleeps: number[] = [];
    const outcome = await withRetry(() => gateway.pay(request), {
      checkOutcome: () => gateway.retrieve({ paymentId: request.paymentId }),
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    expect(outcome.status).toBe('succeeded');
    expect(sleeps).toEqual([]);
    expect(ledger.charges(request.paymentId)).toHaveLength(1);
  });

  it('retries 500s with the same PayPal-Request-Id and charges once', async () => {
    const request = payRequest('pp_vault_success');
    faults.next('paypal', {
      kind: 'http_500',
      times: 2,
      match: { method: 'POST', path: '/v2/checkout/orders/' },
    });
    const sleeps: number[] = [];
    const outcome = await withRetry(() => gateway.pay(request), {
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    expect(outcome.status).toBe('succeeded');
    expect(sleeps).toHaveLength(2);
    expect(ledger.charges(request.paymentId)).toHaveLength(1);
    const captureKeys = emulator
      .requests()
      .filter((r) => r.path.endsWith('/capture') && r.paypalRequestId?.endsWith(request.paymentId))
      .map((r) => `${r.paypalRequestId} ${r.status}`);
    expect(captureKeys).toEqual([
      `capture:${request.paymentId} 500`,
      `capture:${request.paymentId} 500`,
      `capture:${request.paymentId} 201`,
    ]);
    // The create was replayed on attempts 2 and 3: one order, not three.
    const creates = keysFor(request.paymentId).filter((k) => k.startsWith('POST /v2/checkout/orders pay:'));
    expect(creates).toEqual([
      `POST /v2/checkout/orders pay:${request.paymentId} 201`,
      `POST /v2/checkout/orders pay:${request.paymentId} 200 replayed`,
      `POST /v2/checkout/orders pay:${request.paymentId} 200 replayed`,
    ]);
  });
});

describe('SDK-level behaviour', () => {
  it('the SDK does not retry on its own: one 500 on GET is one request and one api_error', async () => {
    const request = payRequest('pp_vault_success');
    await gateway.pay(request);
    const before = emulator.requests().filter((r) => r.method === 'GET').length;
    faults.next('paypal', { kind: 'http_500', match: { method: 'GET' } });
    const error = await gatewayError(gateway.retrieve({ paymentId: request.paymentId }));
    expect(error).toMatchObject({ code: 'api_error' });
    expect(emulator.requests().filter((r) => r.method === 'GET').length - before).toBe(1);
  });

  it('added latency below the timeout is only slower', async () => {
    faults.next('paypal', { kind: 'latency', latencyMs: 50 });
    expect((await gateway.pay(payRequest('pp_vault_success'))).status).toBe('succeeded');
    expect(faults.fired('paypal').at(-1)).toMatchObject({ kind: 'latency' });
  });

  it('withRetry waits at least the Retry-After PayPal asked for, then succeeds with the same keys', async () => {
    const request = payRequest('pp_vault_success');
    faults.next('paypal', {
      kind: 'http_429',
      retryAfterSeconds: 2,
      match: { method: 'POST', path: '/v2/checkout/orders' },
    });
    const sleeps: number[] = [];
    const outcome = await withRetry(() => gateway.pay(request), {
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    expect(outcome.status).toBe('succeeded');
    expect(sleeps).toHaveLength(1);
    expect(sleeps[0]).toBeGreaterThanOrEqual(2_000);
    expect(ledger.charges(request.paymentId)).toHaveLength(1);
  });
});

describe('retrieve', () => {
  it('finds nothing for a payment PayPal never saw, and creates nothing', async () => {
    const paymentId = `pay_${randomUUID()}`;
    expect(await gateway.retrieve({ paymentId })).toBeNull();
    expect(ledger.charges(paymentId)).toHaveLength(0);
    // Asking again is the same answer: the lookup left no order behind for the key.
    expect(await gateway.retrieve({ paymentId })).toBeNull();
  });

  it('an order created but never captured is "no payment", and a later pay captures it once', async () => {
    const request = payRequest('pp_vault_success');
    faults.next('paypal', { kind: 'http_500', match: { method: 'POST', path: '/v2/checkout/orders/' } });
    await gatewayError(gateway.pay(request));
    expect(await gateway.retrieve({ paymentId: request.paymentId })).toBeNull();
    expect(ledger.charges(request.paymentId)).toHaveLength(0);
    const outcome = await gateway.pay(request);
    expect(outcome.status).toBe('succeeded');
    expect(ledger.charges(request.paymentId)).toHaveLength(1);
  });

  it('finds a capture by our payment id alone and by its reference', async () => {
    const request = payRequest('pp_vault_success');
    const paid = await gateway.pay(request);
    expect(await gateway.retrieve({ paymentId: request.paymentId })).toEqual(paid);
    expect(
      await gateway.retrieve({ paymentId: request.paymentId, providerReference: paid.providerReference }),
    ).toEqual(paid);
    expect(
      await gateway.retrieve({ paymentId: request.paymentId, providerReference: 'NOTOURCAPTURE0000' }),
    ).toBeNull();
    expect(ledger.charges(request.paymentId)).toHaveLength(1);
  });
});

describe('refund', () => {
  it('partial, replayed, then the rest, then refused', async () => {
    const request = payRequest('pp_vault_success');
    const paid = await gateway.pay(request);
    const base = {
      paymentId: request.paymentId,
      tenantId: 'ten_1',
      paymentProviderReference: paid.providerReference,
      currency: 'USD',
    };
    const first = { ...base, refundId: `ref_${randomUUID()}`, amountMinor: 20_000, reason: 'damaged goods' };
    const r1 = await gateway.refund(first);
    expect(r1.status).toBe('succeeded');
    // The same refund id again (a retry) is PayPal's replay of the same refund, not a second one.
    expect(await gateway.refund(first)).toEqual(r1);
    expect(ledger.refunds(request.paymentId)).toMatchObject([
      {
        id: r1.providerReference,
        amountMinor: 20_000,
        refundOf: paid.providerReference,
        idempotencyKey: `refund:${first.refundId}`,
      },
    ]);
    const rest = await gateway.refund({ ...base, refundId: `ref_${randomUUID()}`, amountMinor: 30_000 });
    expect(rest.status).toBe('succeeded');
    expect(ledger.totalRefunded(request.paymentId)).toBe(50_000);
    const error = await gatewayError(
      gateway.refund({ ...base, refundId: `ref_${randomUUID()}`, amountMinor: 1 }),
    );
    expect(error).toMatchObject({ code: 'declined' });
    expect(error.details.providerCode).toBe('CAPTURE_FULLY_REFUNDED');
    expect(await gateway.retrieve({ paymentId: request.paymentId })).toMatchObject({ status: 'succeeded' });
  });

  it('retrieveRefund: GET /v2/payments/refunds/{id} through the SDK, ours only, never a new refund', async () => {
    const request = payRequest('pp_vault_success');
    const paid = await gateway.pay(request);
    const refundId = `ref_${randomUUID()}`;
    const made = await gateway.refund({
      refundId,
      paymentId: request.paymentId,
      tenantId: 't',
      paymentProviderReference: paid.providerReference,
      amountMinor: 12_345,
      currency: 'USD',
    });
    const writes = emulator.requests().filter((r) => r.method === 'POST').length;
    expect(await gateway.retrieveRefund({ refundId, providerReference: made.providerReference })).toEqual({
      status: 'succeeded',
      providerReference: made.providerReference,
      amountMinor: 12_345,
      currency: 'USD',
    });
    expect(
      emulator
        .requests()
        .filter((r) => r.method === 'GET' && r.path === `/v2/payments/refunds/${made.providerReference}`),
    ).toHaveLength(1);
    // Another refund's id (its custom_id is not ours) and an id PayPal does not know: no record of ours.
    expect(
      await gateway.retrieveRefund({
        refundId: `ref_${randomUUID()}`,
        providerReference: made.providerReference,
      }),
    ).toBeNull();
    expect(await gateway.retrieveRefund({ refundId, providerReference: 'NOSUCHREFUND0000' })).toBeNull();
    expect(emulator.requests().filter((r) => r.method === 'POST')).toHaveLength(writes);
    expect(ledger.refunds(request.paymentId)).toHaveLength(1);
  });

  it('a timeout after the refund took effect, retried with the same key, is one refund', async () => {
    const request = payRequest('pp_vault_success');
    const paid = await gateway.pay(request);
    const refund = {
      refundId: `ref_${randomUUID()}`,
      paymentId: request.paymentId,
      tenantId: 't',
      paymentProviderReference: paid.providerReference,
      amountMinor: 10_000,
      currency: 'USD',
    };
    faults.next('paypal', {
      kind: 'timeout_after_charge',
      match: { method: 'POST', path: '/v2/payments/captures/' },
    });
    const error = await gatewayError(gateway.refund(refund));
    expect(error).toMatchObject({ code: 'network_timeout', details: { outcomeUnknown: true } });
    expect(ledger.refunds(request.paymentId)).toHaveLength(1);
    const retried = await gateway.refund(refund);
    expect(retried).toEqual({
      status: 'succeeded',
      providerReference: ledger.refunds(request.paymentId)[0]!.id,
      amountMinor: 10_000,
      currency: 'USD',
    });
    expect(ledger.refunds(request.paymentId)).toHaveLength(1);
    expect(ledger.totalRefunded(request.paymentId)).toBe(10_000);
  });

  it('more than the capture -> declined REFUND_AMOUNT_EXCEEDED; unknown capture -> api_error', async () => {
    const request = payRequest('pp_vault_success');
    const paid = await gateway.pay(request);
    const base = { paymentId: request.paymentId, tenantId: 't', currency: 'USD' };
    const tooMuch = await gatewayError(
      gateway.refund({
        ...base,
        refundId: `ref_${randomUUID()}`,
        paymentProviderReference: paid.providerReference,
        amountMinor: 50_001,
      }),
    );
    expect(tooMuch.details.providerCode).toBe('REFUND_AMOUNT_EXCEEDED');
    const unknown = await gatewayError(
      gateway.refund({
        ...base,
        refundId: `ref_${randomUUID()}`,
        paymentProviderReference: 'NOSUCHCAPTURE0000',
        amountMinor: 1,
      }),
    );
    expect(unknown).toMatchObject({ code: 'api_error' });
    expect(unknown.details.providerCode).toBe('INVALID_RESOURCE_ID');
    expect(unknown.retryable).toBe(false);
    expect(ledger.refunds(request.paymentId)).toHaveLength(0);
  });
});
