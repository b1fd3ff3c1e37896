/**
 * Contract: every response the Stripe emulator gives on the endpoints our adapter uses validates
 * against Stripe's published OpenAPI schemas. Requests are sent over real HTTP, form-encoded the way
 * stripe-node encodes them.
 */
import qs from 'qs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SANDBOX_STRIPE_SECRET_KEY, type Sandbox, startSandbox } from '../../src/sandbox/index.js';
import { componentValidator, explain, responseValidator } from '../support/stripe-spec.js';

let sandbox: Sandbox;

beforeAll(async () => {
  sandbox = await startSandbox();
});
afterAll(async () => {
  await sandbox.close();
});

async function stripeRequest(
  method: 'GET' | 'POST',
  path: string,
  params: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const encoded = qs.stringify(params, { arrayFormat: 'indices' });
  const response = await fetch(
    `${sandbox.stripeUrl}${path}${method === 'GET' && encoded ? `?${encoded}` : ''}`,
    {
      method,
      headers: {
        authorization: `Bearer ${SANDBOX_STRIPE_SECRET_KEY}`,
        'content-type': 'application/x-www-form-urlencoded',
        ...headers,
      },
      ...(method === 'POST' ? { body: encoded } : {}),
    },
  );
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown>,
    headers: response.headers,
  };
}

function expectValid(validate: ReturnType<typeof componentValidator>, body: unknown): void {
  const ok = validate(body);
  expect(ok, ok ? '' : explain(validate)).toBe(true);
}

const payParams = (paymentMethod: string, extra: Record<string, unknown> = {}) => ({
  amount: 12_345,
  currency: 'usd',
  payment_method: paymentMethod,
  allowed_payment_method_types: [paymentMethod.startsWith('pm_usBank') ? 'us_bank_account' : 'card'],
  confirm: true,
  off_session: true,
  description: 'INV-1',
  metadata: {
    paygate_payment_id: `pay_${Math.random().toString(36).slice(2)}`,
    paygate_tenant_id: 't1',
    invoice_number: 'INV-1',
  },
  ...extra,
});

const piCreate = () => responseValidator('/v1/payment_intents', 'post', '200');
const piError = () => responseValidator('/v1/payment_intents', 'post', 'default');

describe('Stripe emulator responses match the OpenAPI spec', () => {
  it('POST /v1/payment_intents: a card payment that succeeds, with and without the expanded method', async () => {
    const plain = await stripeRequest('POST', '/v1/payment_intents', payParams('pm_card_visa'));
    expect(plain.status).toBe(200);
    expect(plain.body['status']).toBe('succeeded');
    expectValid(piCreate(), plain.body);

    const expanded = await stripeRequest(
      'POST',
      '/v1/payment_intents',
      payParams('pm_card_visa', {
        expand: ['payment_method'],
        transfer_data: { destination: 'acct_1Vendor' },
      }),
    );
    expect(expanded.status).toBe(200);
    expect((expanded.body['payment_method'] as Record<string, unknown>)['object']).toBe('payment_method');
    expect(expanded.body['transfer_data']).toEqual({ destination: 'acct_1Vendor' });
    expectValid(piCreate(), expanded.body);
    expectValid(componentValidator('payment_method'), expanded.body['payment_method']);
  });

  it('POST /v1/payment_intents: an ACH debit is processing, then settles to succeeded or failed', async () => {
    const ok = await stripeRequest(
      'POST',
      '/v1/payment_intents',
      payParams('pm_usBankAccount_success', { expand: ['payment_method'] }),
    );
    const bad = await stripeRequest(
      'POST',
      '/v1/payment_intents',
      payParams('pm_usBankAccount_accountClosed'),
    );
    expect([ok.body['status'], bad.body['status']]).toEqual(['processing', 'processing']);
    expectValid(piCreate(), ok.body);
    expectValid(piCreate(), bad.body);

    await sandbox.stripe.settleAch();
    const settledOk = await stripeRequest('GET', `/v1/payment_intents/${ok.body['id']}`, {
      expand: ['payment_method'],
    });
    const settledBad = await stripeRequest('GET', `/v1/payment_intents/${bad.body['id']}`);
    expect(settledOk.body['status']).toBe('succeeded');
    expect(settledBad.body['status']).toBe('requires_payment_method');
    expect((settledBad.body['last_payment_error'] as Record<string, unknown>)['code']).toBe('account_closed');
    const retrieve = responseValidator('/v1/payment_intents/{intent}', 'get', '200');
    expectValid(retrieve, settledOk.body);
    expectValid(retrieve, settledBad.body);
  });

  it('POST /v1/payment_intents: a card decline is a 402 error carrying the declined PaymentIntent', async () => {
    const declined = await stripeRequest(
      'POST',
      '/v1/payment_intents',
      payParams('pm_card_visa_chargeDeclinedInsufficientFunds'),
    );
    expect(declined.status).toBe(402);
    const error = declined.body['error'] as Record<string, unknown>;
    expect(error).toMatchObject({
      type: 'card_error',
      code: 'card_declined',
      decline_code: 'insufficient_funds',
    });
    expectValid(piError(), declined.body);
    expectValid(piCreate(), error['payment_intent']);
  });

  it('errors: unknown method 400, unknown object 404, bad key 401, injected 429 and 500, idempotency 400', async () => {
    const unknownMethod = await stripeRequest('POST', '/v1/payment_intents', payParams('pm_does_not_exist'));
    expect(unknownMethod.status).toBe(400);
    expect(unknownMethod.body['error']).toMatchObject({ code: 'resource_missing', param: 'payment_method' });

    const missing = await stripeRequest('GET', '/v1/payment_intents/pi_missing');
    expect(missing.status).toBe(404);

    const badKey = await fetch(`${sandbox.stripeUrl}/v1/payment_intents/pi_missing`, {
      headers: { authorization: 'Bearer sk_test_not_the_sandbox_key' },
    });
    expect(badKey.status).toBe(401);
    const badKeyBody = await badKey.json();
    expect(JSON.stringify(badKeyBody)).not.toContain('sk_test_not_the_sandbox_key');

    const limited = await stripeRequest('POST', '/v1/payment_intents', payParams('pm_card_visa'), {
      'x-sandbox-fault': '429;retry_after=2',
    });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('2');

    const broken = await stripeRequest('POST', '/v1/payment_intents', payParams('pm_card_visa'), {
      'x-sandbox-fault': '500',
    });
    expect(broken.status).toBe(500);

    const params = payParams('pm_card_visa');
    await stripeRequest('POST', '/v1/payment_intents', params, { 'idempotency-key': 'contract-key' });
    const conflict = await stripeRequest(
      'POST',
      '/v1/payment_intents',
      { ...params, amount: 1 },
      { 'idempotency-key': 'contract-key' },
    );
    expect(conflict.status).toBe(400);
    expect((conflict.body['error'] as Record<string, unknown>)['type']).toBe('idempotency_error');

    for (const response of [unknownMethod, missing, limited, broken, conflict])
      expectValid(piError(), response.body);
    expectValid(componentValidator('error'), badKeyBody);
  });

  it('idempotency: the same key and parameters replay the saved response with Idempotent-Replayed', async () => {
    const params = payParams('pm_card_visa');
    const first = await stripeRequest('POST', '/v1/payment_intents', params, {
      'idempotency-key': 'replay-key',
    });
    const second = await stripeRequest('POST', '/v1/payment_intents', params, {
      'idempotency-key': 'replay-key',
    });
    expect(second.body).toEqual(first.body);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    expect(
      sandbox.ledger.charges((params.metadata as { paygate_payment_id: string }).paygate_payment_id),
    ).toHaveLength(1);
  });

  it('GET /v1/payment_intents/search: finds ours by metadata; each result is a PaymentIntent', async () => {
    const params = payParams('pm_card_visa');
    const created = await stripeRequest('POST', '/v1/payment_intents', params);
    const id = params.metadata.paygate_payment_id;
    const found = await stripeRequest('GET', '/v1/payment_intents/search', {
      query: `metadata['paygate_payment_id']:'${id}'`,
      expand: ['data.payment_method'],
    });
    expect(found.status).toBe(200);
    // The trimmed spec has no search path: the envelope is checked by hand against Stripe's documented
    // search_result shape, every item against the payment_intent schema.
    expect(Object.keys(found.body).sort()).toEqual(['data', 'has_more', 'next_page', 'object', 'url']);
    expect(found.body).toMatchObject({ object: 'search_result', has_more: false, next_page: null });
    const data = found.body['data'] as Record<string, unknown>[];
    expect(data.map((d) => d['id'])).toEqual([created.body['id']]);
    for (const item of data) expectValid(componentValidator('payment_intent'), item);
  });

  it('POST /v1/refunds and GET /v1/refunds: partial, rest, and refusals', async () => {
    const paid = await stripeRequest('POST', '/v1/payment_intents', payParams('pm_card_visa'));
    const partial = await stripeRequest('POST', '/v1/refunds', {
      payment_intent: paid.body['id'],
      amount: 345,
    });
    const rest = await stripeRequest('POST', '/v1/refunds', { payment_intent: paid.body['id'] });
    const again = await stripeRequest('POST', '/v1/refunds', { payment_intent: paid.body['id'], amount: 1 });
    expect([partial.status, rest.status, again.status]).toEqual([200, 200, 400]);
    expect([partial.body['amount'], rest.body['amount']]).toEqual([345, 12_000]);
    const create = responseValidator('/v1/refunds', 'post', '200');
    expectValid(create, partial.body);
    expectValid(create, rest.body);
    expectValid(responseValidator('/v1/refunds', 'post', 'default'), again.body);

    const list = await stripeRequest('GET', '/v1/refunds', { payment_intent: paid.body['id'], limit: 100 });
    expect((list.body['data'] as unknown[]).length).toBe(2);
    expectValid(responseValidator('/v1/refunds', 'get', '200'), list.body);
  });
});
