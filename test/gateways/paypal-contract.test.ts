/**
 * Contract tests: every response the PayPal emulator gives on the endpoints the adapter uses validates
 * against PayPal's own OpenAPI documents (../shared/reference/paypal/checkout_orders_v2.json and
 * payments_payment_v2.json), for the path, method and status code it was given on. Requests are raw
 * HTTP here, so what is validated is exactly the bytes the emulator sent.
 *
 * Not covered by those documents, and so checked by shape only: /v1/oauth2/token (PayPal's OAuth API
 * is not in them) and 429 (PayPal documents RATE_LIMIT_REACHED outside the OpenAPI files).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET } from '../../src/gateways/paypal/client.js';
import { createFaults, type Faults } from '../../src/sandbox/faults.js';
import { createLedger } from '../../src/sandbox/ledger.js';
import {
  type PaypalEmulator,
  SANDBOX_VAULT_TOKENS,
  startPaypalEmulator,
} from '../../src/sandbox/paypal/index.js';
import { referenceRoot } from '../support/reference.js';

const reference = path.join(referenceRoot, 'paypal');
const specs = {
  orders: JSON.parse(readFileSync(path.join(reference, 'checkout_orders_v2.json'), 'utf8')),
  payments: JSON.parse(readFileSync(path.join(reference, 'payments_payment_v2.json'), 'utf8')),
};

// ajv-formats is CommonJS with a default export; under NodeNext ESM its callable is `.default`.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (
  ajv: Ajv,
) => Ajv;
// unicodeRegExp off: PayPal's email pattern is written for non-unicode regular expressions.
const ajv = new Ajv({ strict: false, allErrors: true, unicodeRegExp: false });
addFormats(ajv);
// PayPal's own format names; their patterns (kept in the schemas) carry the real constraint.
for (const format of [
  'ppaas_date_time_v3',
  'merchant_common_email_address_v2',
  'ppaas_payer_id_v3',
  'ppaas_common_country_code_v2',
  'ppaas_common_language_v3',
  'ppaas_common_currency_code_v2',
]) {
  ajv.addFormat(format, true);
}
ajv.addSchema(specs.orders, 'orders');
ajv.addSchema(specs.payments, 'payments');

function pointer(...segments: string[]): string {
  return `#/${segments.map((s) => encodeURIComponent(s.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/')}`;
}

const validators = new Map<string, ValidateFunction>();
/** The schema PayPal documents for this path, method and status (its `default` when not listed). */
function responseValidator(
  api: 'orders' | 'payments',
  specPath: string,
  method: string,
  status: number,
): ValidateFunction {
  const id = `${api} ${specPath} ${method} ${status}`;
  const cached = validators.get(id);
  if (cached) return cached;
  const responses = specs[api].paths[specPath][method].responses;
  const listed = responses[String(status)];
  let ref: string;
  if (listed?.content?.['application/json']?.schema) {
    ref = `${api}${pointer('paths', specPath, method, 'responses', String(status), 'content', 'application/json', 'schema')}`;
  } else {
    expect(responses.default?.$ref, `${id}: no schema listed and no default`).toBe(
      '#/components/responses/default',
    );
    ref = `${api}${pointer('components', 'responses', 'default', 'content', 'application/json', 'schema')}`;
  }
  const validate = ajv.compile({ $ref: ref });
  validators.set(id, validate);
  return validate;
}

let emulator: PaypalEmulator;
let faults: Faults;
let token: string;
const validated: string[] = [];

beforeAll(async () => {
  faults = createFaults();
  emulator = await startPaypalEmulator({ ledger: createLedger(), faults });
  const response = await fetch(`${emulator.url}/v1/oauth2/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${EMULATOR_CLIENT_ID}:${EMULATOR_CLIENT_SECRET}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: 'grant_type=client_credentials',
  });
  const body = (await response.json()) as { access_token: string; token_type: string; expires_in: number };
  expect(response.status).toBe(200);
  expect(body).toMatchObject({
    token_type: 'Bearer',
    access_token: expect.any(String),
    expires_in: expect.any(Number),
  });
  token = body.access_token;
});
afterAll(async () => {
  await emulator.close();
});

interface Call {
  api: 'orders' | 'payments';
  specPath: string;
  method: 'get' | 'post';
  url: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/** Calls the emulator, validates the answer against PayPal's schema for it, returns status and body. */
async function call(c: Call): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${emulator.url}${c.url}`, {
    method: c.method.toUpperCase(),
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      prefer: 'return=representation',
      ...c.headers,
    },
    ...(c.body !== undefined ? { body: JSON.stringify(c.body) } : {}),
  });
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await response.json()) as Record<string, unknown>;
  const validate = responseValidator(c.api, c.specPath, c.method, response.status);
  const ok = validate(body);
  expect(
    ok,
    `${c.method.toUpperCase()} ${c.url} ${response.status}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body)}`,
  ).toBe(true);
  validated.push(`${c.method.toUpperCase()} ${c.specPath} ${response.status}`);
  return { status: response.status, body };
}

let sequence = 0;
function orderBody(vaultId: string | undefined, value = '500.00', currency = 'USD') {
  sequence++;
  return {
    intent: 'CAPTURE',
    purchase_units: [
      {
        reference_id: `pay_${sequence}`,
        custom_id: `pay_${sequence}`,
        invoice_id: `INV-${sequence}`,
        description: 'Invoice payment',
        amount: { currency_code: currency, value },
        payee: { email_address: 'billing@acme.example' },
      },
    ],
    ...(vaultId ? { payment_source: { paypal: { vault_id: vaultId } } } : {}),
  };
}

const create = (body: unknown, key?: string, prefer?: string) =>
  call({
    api: 'orders',
    specPath: '/v2/checkout/orders',
    method: 'post',
    url: '/v2/checkout/orders',
    body,
    headers: { ...(key ? { 'paypal-request-id': key } : {}), ...(prefer ? { prefer } : {}) },
  });
const capture = (id: string, key?: string, headers: Record<string, string> = {}) =>
  call({
    api: 'orders',
    specPath: '/v2/checkout/orders/{id}/capture',
    method: 'post',
    url: `/v2/checkout/orders/${id}/capture`,
    headers: { ...(key ? { 'paypal-request-id': key } : {}), ...headers },
  });
const getOrder = (id: string) =>
  call({
    api: 'orders',
    specPath: '/v2/checkout/orders/{id}',
    method: 'get',
    url: `/v2/checkout/orders/${id}`,
  });
const refund = (captureId: string, body: unknown, key?: string, headers: Record<string, string> = {}) =>
  call({
    api: 'payments',
    specPath: '/v2/payments/captures/{capture_id}/refund',
    method: 'post',
    url: `/v2/payments/captures/${captureId}/refund`,
    body,
    headers: { ...(key ? { 'paypal-request-id': key } : {}), ...headers },
  });

describe('PayPal emulator responses validate against PayPal OpenAPI', () => {
  it('every vault token, through create, capture and get', async () => {
    for (const vaultId of Object.keys(SANDBOX_VAULT_TOKENS)) {
      const created = await create(orderBody(vaultId), `pay:contract-${vaultId}`);
      if (vaultId === 'pp_vault_invalid') {
        expect(created.status).toBe(422);
        continue;
      }
      expect(created.status).toBe(201);
      const id = created.body['id'] as string;
      const captured = await capture(id, `capture:contract-${vaultId}`);
      expect([201, 422]).toContain(captured.status);
      await getOrder(id);
      // Replays: 200 with the order (orders) whatever the first answer was.
      expect((await create(orderBody(vaultId), `pay:contract-${vaultId}`)).status).toBe(200);
      if (captured.status === 201)
        expect((await capture(id, `capture:contract-${vaultId}`)).status).toBe(200);
    }
  });

  it('minimal representation (no Prefer) and orders without a payment source', async () => {
    const minimal = await create(orderBody('pp_vault_success'), undefined, 'return=minimal');
    expect(Object.keys(minimal.body).sort()).toEqual(['id', 'links', 'status']);
    const noSource = await create(orderBody(undefined));
    expect(noSource.body['status']).toBe('PAYER_ACTION_REQUIRED');
    expect((await capture(noSource.body['id'] as string)).status).toBe(422);
  });

  it('create errors: zero amount, bad precision, bad currency, malformed', async () => {
    expect((await create(orderBody('pp_vault_success', '0.00'))).status).toBe(422);
    expect((await create(orderBody('pp_vault_success', '1.001'))).status).toBe(422);
    expect((await create(orderBody('pp_vault_success', '1.00', 'XXQ'))).status).toBe(422);
    expect((await create({ intent: 'CAPTURE', purchase_units: [] })).status).toBe(400);
  });

  it('get and capture of an unknown order: 404; capture twice with new keys: 422', async () => {
    expect((await getOrder('NOSUCHORDER000000')).status).toBe(404);
    expect((await capture('NOSUCHORDER000000')).status).toBe(404);
    const created = await create(orderBody('pp_vault_success'));
    const id = created.body['id'] as string;
    expect((await capture(id, 'capture:first')).status).toBe(201);
    const again = await capture(id, 'capture:second');
    expect(again.status).toBe(422);
    expect((again.body['details'] as { issue: string }[])[0]!.issue).toBe('ORDER_ALREADY_CAPTURED');
  });

  it('refunds: partial, replay, rest, fully refunded, exceeded, currency, unknown capture', async () => {
    const created = await create(orderBody('pp_vault_success', '100.00'));
    const captured = await capture(created.body['id'] as string);
    const units = captured.body['purchase_units'] as { payments: { captures: { id: string }[] } }[];
    const captureId = units[0]!.payments.captures[0]!.id;
    expect(
      (await refund(captureId, { amount: { currency_code: 'USD', value: '30.00' } }, 'refund:r1')).status,
    ).toBe(201);
    expect(
      (await refund(captureId, { amount: { currency_code: 'USD', value: '30.00' } }, 'refund:r1')).status,
    ).toBe(201);
    expect((await refund(captureId, { amount: { currency_code: 'USD', value: '80.00' } })).status).toBe(422);
    expect((await refund(captureId, { amount: { currency_code: 'EUR', value: '1.00' } })).status).toBe(422);
    expect((await refund(captureId, {}, 'refund:rest')).status).toBe(201);
    expect((await refund(captureId, { amount: { currency_code: 'USD', value: '1.00' } })).status).toBe(422);
    expect((await refund('NOSUCHCAPTURE0000', {})).status).toBe(404);
    await getOrder(created.body['id'] as string);
  });

  it('injected 500 on every endpoint validates as PayPal INTERNAL_SERVER_ERROR', async () => {
    const created = await create(orderBody('pp_vault_success'));
    const id = created.body['id'] as string;
    const fault = { 'x-sandbox-fault': '500' };
    expect(
      (
        await call({
          api: 'orders',
          specPath: '/v2/checkout/orders',
          method: 'post',
          url: '/v2/checkout/orders',
          body: orderBody('pp_vault_success'),
          headers: fault,
        })
      ).status,
    ).toBe(500);
    expect((await capture(id, undefined, fault)).status).toBe(500);
    expect(
      (
        await call({
          api: 'orders',
          specPath: '/v2/checkout/orders/{id}',
          method: 'get',
          url: `/v2/checkout/orders/${id}`,
          headers: fault,
        })
      ).status,
    ).toBe(500);
    expect((await refund('ANY', {}, undefined, fault)).status).toBe(500);
  });

  it('401 with a bad token validates as AUTHENTICATION_FAILURE', async () => {
    const response = await call({
      api: 'orders',
      specPath: '/v2/checkout/orders/{id}',
      method: 'get',
      url: '/v2/checkout/orders/X',
      headers: { authorization: 'Bearer not-a-token' },
    });
    expect(response.status).toBe(401);
    expect(response.body['name']).toBe('AUTHENTICATION_FAILURE');
  });

  it('429 (outside the OpenAPI files) has PayPal error shape and Retry-After', async () => {
    const response = await fetch(`${emulator.url}/v2/checkout/orders/X`, {
      headers: { authorization: `Bearer ${token}`, 'x-sandbox-fault': '429;retry_after=3' },
    });
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('3');
    expect(await response.json()).toMatchObject({
      name: 'RATE_LIMIT_REACHED',
      message: expect.any(String),
      debug_id: expect.any(String),
    });
  });

  it('covered every endpoint and status the adapter can meet', () => {
    const seen = new Set(validated);
    for (const expected of [
      'POST /v2/checkout/orders 200',
      'POST /v2/checkout/orders 201',
      'POST /v2/checkout/orders 400',
      'POST /v2/checkout/orders 422',
      'POST /v2/checkout/orders 500',
      'POST /v2/checkout/orders/{id}/capture 200',
      'POST /v2/checkout/orders/{id}/capture 201',
      'POST /v2/checkout/orders/{id}/capture 404',
      'POST /v2/checkout/orders/{id}/capture 422',
      'POST /v2/checkout/orders/{id}/capture 500',
      'GET /v2/checkout/orders/{id} 200',
      'GET /v2/checkout/orders/{id} 401',
      'GET /v2/checkout/orders/{id} 404',
      'GET /v2/checkout/orders/{id} 500',
      'POST /v2/payments/captures/{capture_id}/refund 201',
      'POST /v2/payments/captures/{capture_id}/refund 404',
      'POST /v2/payments/captures/{capture_id}/refund 422',
      'POST /v2/payments/captures/{capture_id}/refund 500',
    ]) {
      expect(seen, expected).toContain(expected);
    }
  });
});
