/**
 * The Stripe gateway through the REAL stripe SDK against the loopback emulator: every taxonomy case is
 * produced by a documented test payment method or an injected fault, and the ledger shows what money
 * really moved. Waits are recorded by an injected sleep, never slept.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ExponentialBackoff, noJitterGenerator } from 'cockatiel';
import qs from 'qs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createStripeGateway, type StripeGatewayOptions } from '../../src/gateways/stripe/client.js';
import { verifyStripeWebhook } from '../../src/gateways/stripe/webhook.js';
import { GatewayError, type PayRequest, type WebhookEvent } from '../../src/gateways/types.js';
import { SANDBOX_STRIPE_SECRET_KEY, type Sandbox, startSandbox } from '../../src/sandbox/index.js';

const webhookSecret = `whsec_${randomUUID().replaceAll('-', '')}`;
let sandbox: Sandbox;
let receiver: Server;
const received: WebhookEvent[] = [];
const rejected: string[] = [];

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const signature = req.headers['stripe-signature'];
        received.push(
          verifyStripeWebhook(
            Buffer.concat(chunks),
            typeof signature === 'string' ? signature : undefined,
            webhookSecret,
          ),
        );
        res.writeHead(200).end();
      } catch (error) {
        rejected.push(String(error));
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const port = (receiver.address() as AddressInfo).port;
  sandbox = await startSandbox({
    stripe: { webhookUrl: `http://127.0.0.1:${port}/webhooks/stripe`, webhookSecret },
  });
});

afterEach(() => {
  sandbox.faults.clear();
});

afterAll(async () => {
  await sandbox.close();
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
});

function gateway(options: Partial<StripeGatewayOptions> = {}) {
  const waits: number[] = [];
  const gw = createStripeGateway({
    sandboxUrl: sandbox.stripeUrl,
    timeoutMs: 2_000,
    sleep: async (ms) => void waits.push(ms),
    retry: { backoff: new ExponentialBackoff({ generator: noJitterGenerator, initialDelay: 100 }) },
    ...options,
  });
  return { gw, waits };
}

function payRequest(paymentMethodToken: string, extra: Partial<PayRequest> = {}): PayRequest {
  return {
    paymentId: `pay_${randomUUID().replaceAll('-', '')}`,
    tenantId: 'tenant_1',
    amountMinor: 50_000,
    currency: 'USD',
    rail: paymentMethodToken.startsWith('pm_usBank') ? 'ach' : 'stripe',
    paymentMethodToken,
    payee: { name: 'Acme Supplies' },
    invoiceNumber: 'INV-2025-001',
    description: 'Invoice INV-2025-001',
    ...extra,
  };
}

function postsFor(paymentId: string) {
  return sandbox.stripe
    .requests()
    .filter((r) => r.method === 'POST' && r.idempotencyKey === `pay:${paymentId}`);
}

describe('pay', () => {
  it('a card payment succeeds once, with our metadata, our key and the payee as transfer destination', async () => {
    const { gw } = gateway();
    const request = payRequest('pm_card_visa', { payee: { name: 'Acme', stripeAccount: 'acct_1Acme' } });
    const outcome = await gw.pay(request);
    expect(outcome).toMatchObject({
      status: 'succeeded',
      amountMinor: 50_000,
      currency: 'USD',
      paymentMethodDisplay: { brand: 'visa', last4: '4242' },
    });
    expect(outcome.providerReference).toMatch(/^pi_/);
    expect(sandbox.ledger.charges(request.paymentId)).toMatchObject([
      {
        id: outcome.providerReference,
        amountMinor: 50_000,
        currency: 'usd',
        idempotencyKey: `pay:${request.paymentId}`,
      },
    ]);

    const raw = (await (
      await fetch(`${sandbox.stripeUrl}/v1/payment_intents/${outcome.providerReference}`, {
        headers: { authorization: 'Bearer sk_test_paygate_sandbox' },
      })
    ).json()) as Record<string, unknown>;
    expect(raw['metadata']).toEqual({
      paygate_payment_id: request.paymentId,
      paygate_tenant_id: 'tenant_1',
      invoice_number: 'INV-2025-001',
    });
    expect(raw['transfer_data']).toEqual({ destination: 'acct_1Acme' });

    // Paying the same payment again (a crash and restart) replays the first answer: still one charge.
    expect(await gw.pay(request)).toEqual(outcome);
    expect(sandbox.ledger.charges(request.paymentId)).toHaveLength(1);
    expect(postsFor(request.paymentId).map((r) => r.replayed ?? false)).toEqual([false, true]);
  });

  const declines: [string, string, string][] = [
    ['pm_card_visa_chargeDeclinedInsufficientFunds', 'insufficient_funds', 'insufficient_funds'],
    ['pm_card_chargeDeclinedExpiredCard', 'payment_method_invalid', 'expired_card'],
    ['pm_card_chargeDeclinedIncorrectCvc', 'payment_method_invalid', 'incorrect_cvc'],
    ['pm_card_visa_chargeDeclined', 'declined', 'generic_decline'],
    ['pm_card_visa_chargeDeclinedLostCard', 'declined', 'lost_card'],
    ['pm_card_radarBlock', 'declined', 'fraudulent'],
    ['pm_card_chargeDeclinedProcessingError', 'declined', 'processing_error'],
    ['pm_card_authenticationRequired', 'declined', 'authentication_required'],
  ];
  it.each(declines)('%s -> failed %s (%s), no money moved, no retry', async (pm, code, providerCode) => {
    const { gw, waits } = gateway();
    const request = payRequest(pm);
    const outcome = await gw.pay(request);
    expect(outcome.status).toBe('failed');
    expect(outcome.providerReference).toMatch(/^pi_/);
    expect(outcome.failure).toMatchObject({ code, providerCode });
    expect(sandbox.ledger.charges(request.paymentId)).toEqual([]);
    expect(postsFor(request.paymentId)).toHaveLength(1);
    expect(waits).toEqual([]);
  });

  it('a PaymentMethod Stripe does not know -> payment_method_invalid (thrown: no PaymentIntent exists)', async () => {
    const { gw } = gateway();
    const error = await gw.pay(payRequest('pm_card_made_up')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({
      code: 'payment_method_invalid',
      details: { providerCode: 'resource_missing' },
    });
  });

  it('a wrong API key -> configuration_error, not retried', async () => {
    const { gw, waits } = gateway({ secretKey: 'sk_test_wrong_key_for_this_sandbox' });
    const error = await gw.pay(payRequest('pm_card_visa')).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'configuration_error', retryable: false });
    expect(waits).toEqual([]);
    expect(String((error as Error).message)).not.toContain('sk_test_wrong_key_for_this_sandbox');
  });

  it('429 twice, then success: two backoff waits, three attempts with the same key, one charge', async () => {
    const { gw, waits } = gateway();
    sandbox.faults.next('stripe', {
      kind: 'http_429',
      times: 2,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    const request = payRequest('pm_card_visa');
    const outcome = await gw.pay(request);
    expect(outcome.status).toBe('succeeded');
    expect(waits).toEqual([100, 200]);
    const posts = postsFor(request.paymentId);
    expect(posts.map((p) => [p.status, p.fault ?? null])).toEqual([
      [429, 'http_429'],
      [429, 'http_429'],
      [200, null],
    ]);
    expect(sandbox.ledger.charges(request.paymentId)).toHaveLength(1);
  });

  it('Retry-After from a 429 sets the wait', async () => {
    const { gw, waits } = gateway();
    sandbox.faults.next('stripe', { kind: 'http_429', retryAfterSeconds: 3, match: { method: 'POST' } });
    expect((await gw.pay(payRequest('pm_card_visa'))).status).toBe('succeeded');
    expect(waits).toEqual([3000]);
  });

  it('500 three times -> api_error after 3 attempts, nothing charged', async () => {
    const { gw, waits } = gateway();
    sandbox.faults.next('stripe', {
      kind: 'http_500',
      times: 3,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    const request = payRequest('pm_card_visa');
    await expect(gw.pay(request)).rejects.toMatchObject({ code: 'api_error', retryable: true });
    expect(waits).toEqual([100, 200]);
    expect(postsFor(request.paymentId)).toHaveLength(3);
    expect(sandbox.ledger.totalCharged(request.paymentId)).toBe(0);
  });

  it('a timeout after the charge took effect ends with exactly one charge: we ask, we do not pay again', async () => {
    const { gw, waits } = gateway({ timeoutMs: 300 });
    sandbox.faults.next('stripe', {
      kind: 'timeout_after_charge',
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    const request = payRequest('pm_card_visa');
    const outcome = await gw.pay(request);
    expect(outcome.status).toBe('succeeded');
    expect(sandbox.ledger.charges(request.paymentId)).toHaveLength(1);
    expect(sandbox.ledger.totalCharged(request.paymentId)).toBe(50_000);
    expect(postsFor(request.paymentId)).toHaveLength(1);
    expect(sandbox.stripe.requests().some((r) => r.path === '/v1/payment_intents/search')).toBe(true);
    expect(waits).toEqual([]);
    expect(sandbox.faults.fired('stripe').map((f) => f.kind)).toContain('timeout_after_charge');
  });

  it("a timeout's check does not take another PaymentIntent whose metadata names our payment", async () => {
    const { gw } = gateway({ timeoutMs: 300 });
    const request = payRequest('pm_usBankAccount_processing');
    // Someone with dashboard access made a succeeded 1.00 charge and wrote our payment id into it.
    const foreign = await fetch(`${sandbox.stripeUrl}/v1/payment_intents`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${SANDBOX_STRIPE_SECRET_KEY}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: qs.stringify({
        amount: 100,
        currency: 'usd',
        payment_method: 'pm_card_visa',
        confirm: true,
        off_session: true,
        metadata: { paygate_payment_id: request.paymentId },
      }),
    });
    expect(foreign.status).toBe(200);
    sandbox.faults.next('stripe', {
      kind: 'timeout_after_charge',
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    // Ours (500.00 by ACH) took effect and is processing; "best news" alone would answer the foreign
    // succeeded one.
    const outcome = await gw.pay(request);
    expect(outcome).toMatchObject({ status: 'processing', amountMinor: 50_000 });
  });

  it('a slow request that lands after our retry is replayed by its key, not charged twice', async () => {
    const { gw } = gateway({ timeoutMs: 200 });
    // The first POST waits 1 s before Stripe acts on it: we time out, find nothing, retry with the
    // same key and get charged once; the late first request then meets the saved key.
    sandbox.faults.next('stripe', {
      kind: 'latency',
      latencyMs: 1_000,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    const request = payRequest('pm_card_visa');
    const outcome = await gw.pay(request);
    expect(outcome.status).toBe('succeeded');
    await expect.poll(() => postsFor(request.paymentId).filter((p) => p.status !== undefined).length).toBe(2);
    expect(
      postsFor(request.paymentId)
        .map((p) => p.replayed ?? false)
        .sort(),
    ).toEqual([false, true]);
    expect(sandbox.ledger.charges(request.paymentId)).toHaveLength(1);
  });

  it('a timeout with the emulator hanging and nothing charged is reported as outcome unknown when asking fails too', async () => {
    const { gw } = gateway({ timeoutMs: 200 });
    sandbox.faults.next('stripe', {
      kind: 'timeout_after_charge',
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    sandbox.faults.next('stripe', {
      kind: 'http_500',
      match: { method: 'GET', path: '/v1/payment_intents/search' },
    });
    const request = payRequest('pm_card_visa');
    await expect(gw.pay(request)).rejects.toMatchObject({
      code: 'network_timeout',
      details: { outcomeUnknown: true },
    });
    // Stripe did charge: it is the reconciler's job to find it, and it will, by asking.
    expect(sandbox.ledger.charges(request.paymentId)).toHaveLength(1);
    expect((await gw.retrieve({ paymentId: request.paymentId }))?.status).toBe('succeeded');
  });
});

describe('ACH (us_bank_account)', () => {
  it('processing now, succeeded after settlement, with signed webhooks for both', async () => {
    const { gw } = gateway();
    const request = payRequest('pm_usBankAccount_success');
    const outcome = await gw.pay(request);
    expect(outcome).toMatchObject({
      status: 'processing',
      paymentMethodDisplay: { bankName: 'STRIPE TEST BANK', last4: '6789' },
    });
    expect(sandbox.ledger.charges(request.paymentId)).toMatchObject([{ status: 'processing' }]);

    await sandbox.stripe.settleAch();
    const settled = await gw.retrieve({
      paymentId: request.paymentId,
      providerReference: outcome.providerReference,
    });
    expect(settled?.status).toBe('succeeded');
    expect(sandbox.ledger.charges(request.paymentId)).toMatchObject([{ status: 'succeeded' }]);

    await sandbox.stripe.webhooksIdle();
    expect(rejected).toEqual([]);
    const mine = received.filter((e) => e.paymentId === request.paymentId).map((e) => e.action);
    expect(mine).toEqual(['payment_processing', 'payment_succeeded']);
  });

  it.each([
    ['pm_usBankAccount_insufficientFunds', 'insufficient_funds', 'insufficient_funds'],
    ['pm_usBankAccount_accountClosed', 'payment_method_invalid', 'account_closed'],
    ['pm_usBankAccount_noAccount', 'payment_method_invalid', 'no_account'],
    ['pm_usBankAccount_debitNotAuthorized', 'payment_method_invalid', 'debit_not_authorized'],
  ])(
    '%s: processing, then failed %s (%s); the ledger no longer counts it',
    async (pm, code, providerCode) => {
      const { gw } = gateway();
      const request = payRequest(pm);
      expect((await gw.pay(request)).status).toBe('processing');
      await sandbox.stripe.settleAch();
      const settled = await gw.retrieve({ paymentId: request.paymentId });
      expect(settled).toMatchObject({ status: 'failed', failure: { code, providerCode } });
      expect(sandbox.ledger.totalCharged(request.paymentId)).toBe(0);
      await sandbox.stripe.webhooksIdle();
      const failed = received.find((e) => e.paymentId === request.paymentId && e.action === 'payment_failed');
      expect(failed?.failure).toMatchObject({ code, providerCode });
    },
  );

  it('pm_usBankAccount_processing stays processing after settlement', async () => {
    const { gw } = gateway();
    const request = payRequest('pm_usBankAccount_processing');
    await gw.pay(request);
    await sandbox.stripe.settleAch();
    expect((await gw.retrieve({ paymentId: request.paymentId }))?.status).toBe('processing');
  });
});

describe('retrieve', () => {
  it('finds a payment by our id alone, and answers null (never charging) when Stripe has none', async () => {
    const { gw } = gateway();
    const request = payRequest('pm_card_visa');
    const paid = await gw.pay(request);
    expect(await gw.retrieve({ paymentId: request.paymentId })).toEqual(paid);
    const before = sandbox.ledger.entries().length;
    expect(await gw.retrieve({ paymentId: 'pay_never_sent' })).toBeNull();
    expect(await gw.retrieve({ paymentId: 'pay_never_sent', providerReference: 'pi_unknown' })).toBeNull();
    expect(sandbox.ledger.entries().length).toBe(before);
  });

  it('found by our id, a PaymentIntent for another amount is not taken for ours (metadata can be edited)', async () => {
    const { gw } = gateway();
    // A 1.00 charge whose metadata names our payment id, as anyone with dashboard access could make.
    const foreign = payRequest('pm_card_visa', { amountMinor: 1_00 });
    await gw.pay(foreign);
    const ours = { amountMinor: 500_00, currency: 'USD' };
    expect(await gw.retrieve({ paymentId: foreign.paymentId, amount: ours })).toBeNull();
    expect(
      await gw.retrieve({ paymentId: foreign.paymentId, amount: { amountMinor: 1_00, currency: 'USD' } }),
    ).toMatchObject({ status: 'succeeded', amountMinor: 1_00 });
  });
});

describe('refund', () => {
  async function paid() {
    const { gw } = gateway();
    const request = payRequest('pm_card_visa');
    const outcome = await gw.pay(request);
    return { gw, request, reference: outcome.providerReference };
  }
  const refundRequest = (
    request: PayRequest,
    reference: string,
    amountMinor: number,
    refundId = `ref_${randomUUID().replaceAll('-', '')}`,
  ) => ({
    refundId,
    paymentId: request.paymentId,
    tenantId: request.tenantId,
    paymentProviderReference: reference,
    amountMinor,
    currency: 'USD',
    reason: 'duplicate invoice',
  });

  it('partial, then the rest; more is refused as declined; the ledger adds up', async () => {
    const { gw, request, reference } = await paid();
    const first = await gw.refund(refundRequest(request, reference, 12_500));
    const rest = await gw.refund(refundRequest(request, reference, 37_500));
    expect([first.status, rest.status]).toEqual(['succeeded', 'succeeded']);
    expect(sandbox.ledger.totalRefunded(request.paymentId)).toBe(50_000);
    await expect(gw.refund(refundRequest(request, reference, 1))).rejects.toMatchObject({
      code: 'declined',
      details: { providerCode: 'charge_already_refunded' },
    });
    await sandbox.stripe.webhooksIdle();
    const refunds = received.filter(
      (e) => e.paymentId === request.paymentId && e.action === 'refund_succeeded',
    );
    // One event per refund; like Stripe's, the sandbox's deliveries may arrive in either order.
    expect(refunds.map((e) => e.refund?.amountMinor).sort((a, b) => a! - b!)).toEqual([12_500, 37_500]);
  });

  it('the same refund twice (a retry after a crash) refunds once', async () => {
    const { gw, request, reference } = await paid();
    const once = refundRequest(request, reference, 1_000);
    const a = await gw.refund(once);
    const b = await gw.refund(once);
    expect(b).toEqual(a);
    expect(sandbox.ledger.refunds(request.paymentId)).toHaveLength(1);
  });

  it('a timeout after the refund took effect: found by listing, not refunded twice', async () => {
    const { gw, request, reference } = await paid();
    const slow = gateway({ timeoutMs: 300 }).gw;
    sandbox.faults.next('stripe', {
      kind: 'timeout_after_charge',
      match: { method: 'POST', path: '/v1/refunds' },
    });
    const outcome = await slow.refund(refundRequest(request, reference, 2_000));
    expect(outcome.status).toBe('succeeded');
    expect(sandbox.ledger.refunds(request.paymentId)).toHaveLength(1);
    void gw;
  });
});

describe('refund test methods', () => {
  const refundOf = async (pm: string, amountMinor: number) => {
    const { gw } = gateway();
    const request = payRequest(pm);
    const paid = await gw.pay(request);
    const refundId = `ref_${randomUUID().replaceAll('-', '')}`;
    const outcome = await gw.refund({
      refundId,
      paymentId: request.paymentId,
      tenantId: request.tenantId,
      paymentProviderReference: paid.providerReference,
      amountMinor,
      currency: 'USD',
    });
    return { request, outcome, refundId };
  };

  it('pm_card_pendingRefund: pending, then succeeded with a signed refund.updated', async () => {
    const { request, outcome } = await refundOf('pm_card_pendingRefund', 5_000);
    expect(outcome.status).toBe('pending');
    await sandbox.stripe.settleRefunds();
    await sandbox.stripe.webhooksIdle();
    const updated = received.find(
      (e) => e.type === 'refund.updated' && e.refund?.providerReference === outcome.providerReference,
    );
    expect(updated).toMatchObject({
      action: 'refund_succeeded',
      paymentId: request.paymentId,
      refund: { amountMinor: 5_000 },
    });
    expect(sandbox.ledger.totalRefunded(request.paymentId)).toBe(5_000);
  });

  it('retrieveRefund reads a pending refund (pm_card_pendingRefund) as Stripe has it now, never refunding again', async () => {
    const { request, outcome, refundId } = await refundOf('pm_card_pendingRefund', 4_000);
    expect(outcome.status).toBe('pending');
    const { gw } = gateway();
    const lookup = { refundId, providerReference: outcome.providerReference };
    expect(await gw.retrieveRefund(lookup)).toMatchObject({ status: 'pending', amountMinor: 4_000 });
    await sandbox.stripe.settleRefunds();
    expect(await gw.retrieveRefund(lookup)).toEqual({
      status: 'succeeded',
      providerReference: outcome.providerReference,
      amountMinor: 4_000,
      currency: 'USD',
    });
    // A refund made by another of our rows (its metadata names another id), and one Stripe does not know.
    expect(await gw.retrieveRefund({ ...lookup, refundId: 'ref_someone_else' })).toBeNull();
    expect(await gw.retrieveRefund({ refundId, providerReference: 're_doesnotexist' })).toBeNull();
    expect(sandbox.ledger.refunds(request.paymentId)).toHaveLength(1);
  });

  it('pm_card_refundFail: succeeded, then failed with refund.failed; the ledger takes it back', async () => {
    const { request, outcome } = await refundOf('pm_card_refundFail', 7_000);
    expect(outcome.status).toBe('succeeded');
    expect(sandbox.ledger.totalRefunded(request.paymentId)).toBe(7_000);
    await sandbox.stripe.settleRefunds();
    await sandbox.stripe.webhooksIdle();
    const failed = received.find(
      (e) => e.type === 'refund.failed' && e.refund?.providerReference === outcome.providerReference,
    );
    expect(failed).toMatchObject({
      action: 'refund_failed',
      paymentId: request.paymentId,
      failure: { code: 'declined' },
    });
    expect(sandbox.ledger.totalRefunded(request.paymentId)).toBe(0);
  });
});

describe('currencies Stripe keeps two-decimal though ISO 4217 gives them none (ISK, UGX)', () => {
  // https://docs.stripe.com/currencies#special-cases: "to charge 5 ISK, provide an amount value of 500";
  // the same for UGX. Our minor units for both are whole units (exponent 0). The emulator refuses an
  // amount that is not a multiple of 100 and records the ledger in ISO minor units, as money moved.
  for (const currency of ['ISK', 'UGX']) {
    it(`${currency}: charged, refunded and reported in whole ${currency}, not a hundredth of them`, async () => {
      const { gw } = gateway();
      const request = payRequest('pm_card_visa', { amountMinor: 12_345, currency });
      const paid = await gw.pay(request);
      expect(paid).toMatchObject({ status: 'succeeded', amountMinor: 12_345, currency });
      expect(sandbox.ledger.charges(request.paymentId)[0]!.amountMinor).toBe(12_345);
      const refundId = `ref_${randomUUID().replaceAll('-', '')}`;
      const refund = await gw.refund({
        refundId,
        paymentId: request.paymentId,
        tenantId: request.tenantId,
        paymentProviderReference: paid.providerReference,
        amountMinor: 2_345,
        currency,
      });
      expect(refund).toMatchObject({ status: 'succeeded', amountMinor: 2_345, currency });
      expect(sandbox.ledger.totalRefunded(request.paymentId)).toBe(2_345);
      expect(
        await gw.retrieveRefund({ refundId, providerReference: refund.providerReference }),
      ).toMatchObject({ amountMinor: 2_345 });
      await sandbox.stripe.webhooksIdle();
      const event = received.find(
        (e) => e.action === 'refund_succeeded' && e.refund?.providerReference === refund.providerReference,
      );
      expect(event?.refund).toEqual({
        providerReference: refund.providerReference,
        amountMinor: 2_345,
        currency,
      });
    });
  }

  it('HUF and TWD, zero-decimal at Stripe only for payouts, are charged in ISO minor units unchanged', async () => {
    for (const currency of ['HUF', 'TWD']) {
      const { gw } = gateway();
      const request = payRequest('pm_card_visa', { amountMinor: 1_234_56, currency });
      expect(await gw.pay(request)).toMatchObject({ status: 'succeeded', amountMinor: 1_234_56 });
      expect(sandbox.ledger.charges(request.paymentId)[0]!.amountMinor).toBe(1_234_56);
    }
  });
});
