/**
 * A loopback emulator of exactly the PayPal endpoints our adapter calls, so the official
 * @paypal/paypal-server-sdk runs unmodified against it (redirected by the gateway's axios adapter):
 *   POST /v1/oauth2/token                          client-credentials token (HTTP Basic)
 *   POST /v2/checkout/orders                       create an order (intent CAPTURE, vaulted source)
 *   POST /v2/checkout/orders/:id/capture           capture it: the money moves here
 *   GET  /v2/checkout/orders/:id                   the order with its captures
 *   POST /v2/payments/captures/:id/refund          full or partial refund of a capture
 *   GET  /v2/payments/refunds/:id                  one refund as it is now
 *   GET  /v1/notifications/certs/:name             the sandbox's webhook-signing certificate
 *
 * Faithful where the client's correctness depends on it: PayPal's error body
 * ({name, message, debug_id, details: [{issue, description}], links}) and status codes (400, 401,
 * 404, 422 with the issue, 429, 500), PayPal-Request-Id replay (a write with a key already used
 * answers 200 with the current state of what that key made, without acting again; the key is looked
 * up before the body is validated), the vault tokens in vault.ts, and webhooks signed the way PayPal
 * signs them. Every capture and refund that moves money is written to the shared ledger; faults
 * (faults.ts) apply to /v2 calls.
 *
 * Not a general PayPal: unknown routes answer 404 so a new adapter call fails loudly until emulated.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET } from '../../gateways/paypal/constants.js';
import { signPaypalWebhook } from '../../gateways/paypal/webhook.js';
import { formatAmount, isKnownCurrency, MoneyError, parseAmount } from '../../money.js';
import { createWebhookSender, DEFAULT_WEBHOOK_DELAY_MS, type DeliveryRecord } from '../delivery.js';
import { FAULT_HEADER, type Fault, type Faults, processingDelay, sleep } from '../faults.js';
import type { Ledger } from '../ledger.js';
import { createSandboxSigningIdentity, type SandboxSigningIdentity } from './certificate.js';
import { vaultBehaviour } from './vault.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export interface PaypalEmulatorOptions {
  ledger: Ledger;
  faults: Faults;
  /** The only credentials accepted at /v1/oauth2/token; default the gateway's EMULATOR_ ones. */
  clientId?: string;
  clientSecret?: string;
  /** Where to POST signed webhook events, and the webhook id they are signed with. */
  webhook?: { url: string; webhookId: string };
  /** Events are delivered this long after the call that caused them, as PayPal does; default 200 ms. */
  webhookDelayMs?: number;
  /** Signing key and certificate; default a fresh self-signed one. */
  identity?: SandboxSigningIdentity;
  host?: string;
  port?: number;
}

export interface PaypalWebhookDelivery extends DeliveryRecord {
  eventId: string;
  type: string;
}

export interface PaypalRequestRecord {
  method: string;
  path: string;
  paypalRequestId?: string;
  status: number;
  /** True when the answer was a PayPal-Request-Id replay (nothing was done again). */
  replayed: boolean;
}

export interface PaypalEmulator {
  readonly url: string;
  /** Where the signing certificate is served; the sidecar's sandboxCertOrigin is `url`. */
  readonly certUrl: string;
  readonly certificatePem: string;
  /** Every /v2 request answered so far, in order (tests check keys and replays). */
  requests(): PaypalRequestRecord[];
  deliveries(): PaypalWebhookDelivery[];
  /** Resolves when every webhook sent so far has been answered (or failed). */
  webhooksIdle(): Promise<void>;
  /** Settle a PENDING capture (pp_vault_pending) as COMPLETED or DECLINED, with its webhook. */
  settleCapture(captureId: string, outcome: 'COMPLETED' | 'DECLINED'): void;
  close(): Promise<void>;
}

/** PayPal ids: 17 upper-case alphanumerics. */
function paypalId(): string {
  const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ';
  return Array.from(randomBytes(17), (b) => alphabet[b % alphabet.length]).join('');
}

/** PayPal's account ids avoid 0, 1, I and O. */
function accountId(): string {
  const alphabet = '23456789ABCDEFGHJKLMNPQRSTUVWXYZ';
  return Array.from(randomBytes(13), (b) => alphabet[b % alphabet.length]).join('');
}

/** RFC 3339 with seconds, as PayPal writes it (2024-08-02T19:33:35Z). */
function timestamp(date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const MESSAGES: Readonly<Record<number, [string, string]>> = {
  400: ['INVALID_REQUEST', 'Request is not well-formed, syntactically incorrect, or violates schema.'],
  401: [
    'AUTHENTICATION_FAILURE',
    'Authentication failed due to missing authorization header, or invalid authentication credentials.',
  ],
  404: ['RESOURCE_NOT_FOUND', 'The specified resource does not exist.'],
  422: [
    'UNPROCESSABLE_ENTITY',
    'The requested action could not be performed, semantically incorrect, or failed business validation.',
  ],
  429: ['RATE_LIMIT_REACHED', 'Too many requests. Blocked due to rate limiting.'],
  500: ['INTERNAL_SERVER_ERROR', 'An internal server error occurred.'],
};

/** PayPal refuses any decimal point in these, "100.00" included (its currency-codes reference). */
const NO_DECIMALS = new Set(['HUF', 'JPY', 'TWD']);

/**
 * PayPal's documented description for each issue the emulator raises, word for word from its OpenAPI
 * documents (the schemas enumerate them, so a paraphrase would not be PayPal's error). Issues whose
 * description differs between APIs are sent without one; PayPal marks it optional.
 */
const ISSUE_DESCRIPTIONS: Readonly<Record<string, string>> = {
  CANNOT_BE_ZERO_OR_NEGATIVE:
    'Must be greater than zero. If the currency supports decimals, only two decimal place precision is supported.',
  DECIMAL_PRECISION: 'If the currency supports decimals, only two decimal place precision is supported.',
  DECIMALS_NOT_SUPPORTED:
    'Currency does not support decimals. Please refer to https://developer.paypal.com/docs/api/reference/currency-codes/ for more information.',
  PAYMENT_SOURCE_INFO_CANNOT_BE_VERIFIED:
    'The combination of the payment_source name, billing address, shipping name and shipping address could not be verified. Please correct this information and try again by creating a new order.',
  UNSUPPORTED_INTENT:
    '`intent=AUTHORIZE` is not supported for multiple purchase units. Only `intent=CAPTURE` is supported.',
  INVALID_PARAMETER_SYNTAX: 'The value of a field does not conform to the expected format.',
  MALFORMED_REQUEST_JSON: 'The request JSON is not well formed.',
  INVALID_ARRAY_MIN_ITEMS: 'The number of items in an array parameter is too small.',
  ORDER_ALREADY_CAPTURED: "Order already captured.If 'intent=CAPTURE' only one capture per order is allowed.",
  ORDER_NOT_APPROVED:
    "Payer has not yet approved the Order for payment. Please redirect the payer to the 'rel':'approve' url returned as part of the HATEOAS links within the Create Order call or provide a valid `payment_source` in the request.",
  INSTRUMENT_DECLINED:
    "The instrument presented  was either declined by the processor or bank, or it can't be used for this payment.",
  PAYER_ACTION_REQUIRED: 'Transaction cannot complete successfully, instruct the buyer to return to PayPal.',
  INVALID_RESOURCE_ID: 'Specified resource ID does not exist. Please check the resource ID and try again.',
  CAPTURE_FULLY_REFUNDED: 'The capture has already been fully refunded',
  REFUND_NOT_ALLOWED: 'Capture cannot be refunded.',
  REFUND_CAPTURE_CURRENCY_MISMATCH: 'Refund must be in the same currency as the capture',
  REFUND_AMOUNT_EXCEEDED:
    'The refund amount must be less than or equal to the capture amount that has not yet been refunded.',
};

class PaypalFailure extends Error {
  constructor(
    readonly status: number,
    readonly issue?: string,
    readonly field?: string,
    readonly headers: Record<string, string> = {},
    /** error_details.value: for sandbox-only errors, what was wrong and what to send instead. */
    readonly value?: string,
  ) {
    super(issue ?? String(status));
  }
}

function errorBody(failure: PaypalFailure, debugId: string): JsonObject {
  const [name, message] = MESSAGES[failure.status] ?? MESSAGES[500]!;
  const body: JsonObject = { name, message, debug_id: debugId };
  if (failure.issue) {
    const detail: JsonObject = { issue: failure.issue };
    if (failure.field) {
      detail['field'] = failure.field;
      detail['location'] = failure.field === FAULT_HEADER ? 'header' : 'body';
    }
    if (failure.value) detail['value'] = failure.value;
    const description = ISSUE_DESCRIPTIONS[failure.issue];
    if (description) detail['description'] = description;
    body['details'] = [detail];
  }
  body['links'] = [
    {
      href: `https://developer.paypal.com/api/rest/reference/orders/v2/errors/#${failure.issue ?? name}`,
      rel: 'information_link',
      method: 'GET',
    },
  ];
  return body;
}

interface Reply {
  status: number;
  body: JsonObject;
  /** The request acted (money may have moved): a timeout_after_charge fault applies after this. */
  acted?: boolean;
  replayed?: boolean;
}

interface StoredOrder {
  order: JsonObject;
  vaultToken?: string;
  paymentId?: string;
}

interface StoredCapture {
  orderId: string;
  capture: JsonObject;
  amountMinor: number;
  currency: string;
  refundedMinor: number;
}

interface StoredRefund {
  refund: JsonObject;
  captureId: string;
}

export async function startPaypalEmulator(options: PaypalEmulatorOptions): Promise<PaypalEmulator> {
  const { ledger, faults } = options;
  const clientId = options.clientId ?? EMULATOR_CLIENT_ID;
  const clientSecret = options.clientSecret ?? EMULATOR_CLIENT_SECRET;
  let identity = options.identity;
  const signingIdentity = () => {
    identity ??= createSandboxSigningIdentity();
    return identity;
  };
  const orders = new Map<string, StoredOrder>();
  const captures = new Map<string, StoredCapture>();
  const refunds = new Map<string, StoredRefund>();
  /** PayPal-Request-Id -> what it made, per operation (PayPal scopes keys per API). */
  const keys = new Map<string, { kind: 'order' | 'capture' | 'refund'; id: string }>();
  const tokens = new Set<string>();
  const requests: PaypalRequestRecord[] = [];
  const deliveries: PaypalWebhookDelivery[] = [];
  const sender = createWebhookSender();
  const webhookDelayMs = options.webhookDelayMs ?? DEFAULT_WEBHOOK_DELAY_MS;
  const hanging = new Set<ServerResponse>();
  let closed = false;
  let baseUrl = '';
  // An id of this emulator's own in the certificate's URL: receivers cache certificates by URL, and a
  // new sandbox (a new key) may come back on a port an earlier one used.
  const certPath = `/v1/notifications/certs/CERT-paygate-sandbox-${randomBytes(8).toString('hex')}`;

  // --- webhooks -------------------------------------------------------------------------------------

  function emit(eventType: string, resourceType: 'capture' | 'refund', resource: JsonObject): void {
    const webhook = options.webhook;
    if (!webhook || closed) return;
    const id = `WH-${paypalId()}`;
    const event: JsonObject = {
      id,
      event_version: '1.0',
      create_time: new Date().toISOString(),
      resource_type: resourceType,
      resource_version: '2.0',
      event_type: eventType,
      summary: `${eventType} (paygate sandbox)`,
      resource: structuredClone(resource),
      links: [{ href: `${baseUrl}/v1/notifications/webhooks-events/${id}`, rel: 'self', method: 'GET' }],
    };
    const rawBody = Buffer.from(JSON.stringify(event), 'utf8');
    const record: PaypalWebhookDelivery = { eventId: id, type: eventType };
    deliveries.push(record);
    // Signed when sent, as PayPal signs each delivery attempt.
    sender.send(
      webhook.url,
      webhookDelayMs,
      () => ({
        headers: {
          ...signPaypalWebhook({
            rawBody,
            webhookId: webhook.webhookId,
            privateKey: signingIdentity().privateKey,
            certUrl: `${baseUrl}${certPath}`,
          }),
          'user-agent': 'PayPal/AUHD-214.0-paygate-sandbox',
        },
        body: rawBody,
      }),
      record,
    );
  }

  // --- objects --------------------------------------------------------------------------------------

  function link(path: string, rel: string, method = 'GET'): JsonObject {
    return { href: `${baseUrl}${path}`, rel, method };
  }

  function orderView(stored: StoredOrder, minimal: boolean): JsonObject {
    const order = structuredClone(stored.order);
    if (!minimal) return order;
    return { id: order['id']!, status: order['status']!, links: order['links']! };
  }

  function purchaseUnit(order: JsonObject): JsonObject {
    return (order['purchase_units'] as JsonObject[])[0]!;
  }

  // --- endpoints ------------------------------------------------------------------------------------

  function createOrder(body: JsonObject, prefer: string | undefined): Reply {
    if (body['intent'] !== 'CAPTURE') {
      throw new PaypalFailure(422, 'UNSUPPORTED_INTENT', '/intent');
    }
    const units = body['purchase_units'];
    if (!Array.isArray(units) || units.length !== 1 || typeof units[0] !== 'object' || units[0] === null) {
      throw new PaypalFailure(400, 'INVALID_ARRAY_MIN_ITEMS', '/purchase_units');
    }
    const unit = units[0] as JsonObject;
    const amount = (unit['amount'] ?? {}) as JsonObject;
    const currency = amount['currency_code'];
    const value = amount['value'];
    if (typeof currency !== 'string' || !isKnownCurrency(currency)) {
      throw new PaypalFailure(422, 'INVALID_CURRENCY_CODE', '/purchase_units/0/amount');
    }
    if (typeof value !== 'string' || !/^\d+(\.\d+)?$/.test(value)) {
      throw new PaypalFailure(400, 'INVALID_PARAMETER_SYNTAX', '/purchase_units/0/amount/value');
    }
    if (/^0+(\.0*)?$/.test(value)) {
      throw new PaypalFailure(
        422,
        'CANNOT_BE_ZERO_OR_NEGATIVE',
        "/purchase_units/@reference_id=='default'/amount/value",
      );
    }
    if (NO_DECIMALS.has(currency) && value.includes('.')) {
      throw new PaypalFailure(422, 'DECIMALS_NOT_SUPPORTED', '/purchase_units/0/amount/value');
    }
    let amountMinor: number;
    try {
      amountMinor = parseAmount(value, currency);
    } catch (error) {
      if (!(error instanceof MoneyError)) throw error;
      throw new PaypalFailure(422, 'DECIMAL_PRECISION', '/purchase_units/0/amount/value');
    }
    const source = (body['payment_source'] as JsonObject | undefined)?.['paypal'] as JsonObject | undefined;
    const vaultToken = typeof source?.['vault_id'] === 'string' ? source['vault_id'] : undefined;
    if (vaultToken !== undefined && vaultBehaviour(vaultToken) === 'invalid') {
      throw new PaypalFailure(
        422,
        'PAYMENT_SOURCE_INFO_CANNOT_BE_VERIFIED',
        '/payment_source/paypal/vault_id',
      );
    }
    const id = paypalId();
    const now = timestamp();
    const payee = unit['payee'] as JsonObject | undefined;
    const order: JsonObject = {
      id,
      intent: 'CAPTURE',
      status: vaultToken ? 'APPROVED' : 'PAYER_ACTION_REQUIRED',
      purchase_units: [
        {
          reference_id: typeof unit['reference_id'] === 'string' ? unit['reference_id'] : 'default',
          amount: { currency_code: currency, value: formatAmount(amountMinor, currency) },
          ...(payee && typeof payee['email_address'] === 'string'
            ? { payee: { email_address: payee['email_address'] } }
            : {}),
          ...(typeof unit['description'] === 'string' ? { description: unit['description'] } : {}),
          ...(typeof unit['custom_id'] === 'string' ? { custom_id: unit['custom_id'] } : {}),
          ...(typeof unit['invoice_id'] === 'string' ? { invoice_id: unit['invoice_id'] } : {}),
        },
      ],
      ...(vaultToken
        ? {
            payment_source: {
              paypal: {
                email_address: 'sandbox-payer@example.com',
                account_id: accountId(),
                account_status: 'VERIFIED',
              },
            },
          }
        : {}),
      create_time: now,
      update_time: now,
      links: [
        link(`/v2/checkout/orders/${id}`, 'self'),
        ...(vaultToken
          ? [link(`/v2/checkout/orders/${id}/capture`, 'capture', 'POST')]
          : [
              {
                href: `https://www.sandbox.paypal.com/checkoutnow?token=${id}`,
                rel: 'payer-action',
                method: 'GET',
              },
            ]),
      ],
    };
    const stored: StoredOrder = {
      order,
      ...(vaultToken ? { vaultToken } : {}),
      ...(typeof unit['custom_id'] === 'string' ? { paymentId: unit['custom_id'] } : {}),
    };
    orders.set(id, stored);
    return { status: 201, body: orderView(stored, prefer !== 'return=representation') };
  }

  function captureOrder(orderId: string, key: string | undefined, prefer: string | undefined): Reply {
    const stored = orders.get(orderId);
    if (!stored) {
      throw new PaypalFailure(404, 'INVALID_RESOURCE_ID', '/id');
    }
    const { order } = stored;
    if (order['status'] === 'COMPLETED') {
      throw new PaypalFailure(422, 'ORDER_ALREADY_CAPTURED');
    }
    if (order['status'] !== 'APPROVED' || !stored.vaultToken) {
      throw new PaypalFailure(422, 'ORDER_NOT_APPROVED');
    }
    const behaviour = vaultBehaviour(stored.vaultToken);
    if (behaviour === 'declined') {
      throw new PaypalFailure(422, 'INSTRUMENT_DECLINED');
    }
    if (behaviour === 'payer_action_required') {
      throw new PaypalFailure(422, 'PAYER_ACTION_REQUIRED');
    }
    const unit = purchaseUnit(order);
    const amount = unit['amount'] as JsonObject;
    const currency = amount['currency_code'] as string;
    const amountMinor = parseAmount(amount['value'] as string, currency);
    const captureId = paypalId();
    const now = timestamp();
    const status = behaviour === 'success' ? 'COMPLETED' : behaviour === 'pending' ? 'PENDING' : 'DECLINED';
    const capture: JsonObject = {
      id: captureId,
      status,
      ...(behaviour === 'pending' ? { status_details: { reason: 'PENDING_REVIEW' } } : {}),
      amount: structuredClone(amount),
      final_capture: true,
      seller_protection: {
        status: 'ELIGIBLE',
        dispute_categories: ['ITEM_NOT_RECEIVED', 'UNAUTHORIZED_TRANSACTION'],
      },
      ...(typeof unit['custom_id'] === 'string' ? { custom_id: unit['custom_id'] } : {}),
      ...(typeof unit['invoice_id'] === 'string' ? { invoice_id: unit['invoice_id'] } : {}),
      ...(behaviour === 'insufficient_funds' ? { processor_response: { response_code: '5120' } } : {}),
      supplementary_data: { related_ids: { order_id: orderId } },
      create_time: now,
      update_time: now,
      links: [
        link(`/v2/payments/captures/${captureId}`, 'self'),
        link(`/v2/payments/captures/${captureId}/refund`, 'refund', 'POST'),
        link(`/v2/checkout/orders/${orderId}`, 'up'),
      ],
    };
    unit['payments'] = { captures: [capture] };
    order['status'] = 'COMPLETED';
    order['update_time'] = now;
    captures.set(captureId, { orderId, capture, amountMinor, currency, refundedMinor: 0 });
    const moved = status !== 'DECLINED';
    if (moved) {
      ledger.record({
        provider: 'paypal',
        kind: 'charge',
        id: captureId,
        ...(stored.paymentId ? { paymentId: stored.paymentId } : {}),
        amountMinor,
        currency,
        status,
        ...(key ? { idempotencyKey: key } : {}),
      });
    }
    emit(
      status === 'COMPLETED'
        ? 'PAYMENT.CAPTURE.COMPLETED'
        : status === 'PENDING'
          ? 'PAYMENT.CAPTURE.PENDING'
          : 'PAYMENT.CAPTURE.DECLINED',
      'capture',
      capture,
    );
    return { status: 201, body: orderView(stored, prefer !== 'return=representation'), acted: moved };
  }

  function refundCapture(
    captureId: string,
    body: JsonObject,
    key: string | undefined,
    prefer?: string,
  ): Reply {
    const stored = captures.get(captureId);
    if (!stored) {
      throw new PaypalFailure(404, 'INVALID_RESOURCE_ID', '/capture_id');
    }
    const captureStatus = stored.capture['status'];
    if (captureStatus === 'REFUNDED') {
      throw new PaypalFailure(422, 'CAPTURE_FULLY_REFUNDED');
    }
    if (captureStatus !== 'COMPLETED' && captureStatus !== 'PARTIALLY_REFUNDED') {
      throw new PaypalFailure(422, 'REFUND_NOT_ALLOWED');
    }
    const remaining = stored.amountMinor - stored.refundedMinor;
    let amountMinor = remaining;
    const amount = body['amount'] as JsonObject | undefined;
    if (amount !== undefined) {
      if (amount['currency_code'] !== stored.currency) {
        throw new PaypalFailure(422, 'REFUND_CAPTURE_CURRENCY_MISMATCH', '/amount/currency_code');
      }
      const value = amount['value'];
      if (typeof value !== 'string' || /^0+(\.0*)?$/.test(value) || !/^\d+(\.\d+)?$/.test(value)) {
        throw new PaypalFailure(422, 'CANNOT_BE_ZERO_OR_NEGATIVE', '/amount/value');
      }
      if (NO_DECIMALS.has(stored.currency) && value.includes('.')) {
        throw new PaypalFailure(422, 'DECIMALS_NOT_SUPPORTED', '/amount/value');
      }
      try {
        amountMinor = parseAmount(value, stored.currency);
      } catch (error) {
        if (!(error instanceof MoneyError)) throw error;
        throw new PaypalFailure(422, 'DECIMAL_PRECISION', '/amount/value');
      }
    }
    if (amountMinor > remaining) {
      throw new PaypalFailure(422, 'REFUND_AMOUNT_EXCEEDED', '/amount/value');
    }
    const refundId = paypalId();
    const now = timestamp();
    const refund: JsonObject = {
      id: refundId,
      status: 'COMPLETED',
      amount: { currency_code: stored.currency, value: formatAmount(amountMinor, stored.currency) },
      ...(typeof body['custom_id'] === 'string' ? { custom_id: body['custom_id'] } : {}),
      ...(typeof body['invoice_id'] === 'string' ? { invoice_id: body['invoice_id'] } : {}),
      ...(typeof body['note_to_payer'] === 'string' ? { note_to_payer: body['note_to_payer'] } : {}),
      create_time: now,
      update_time: now,
      links: [
        link(`/v2/payments/refunds/${refundId}`, 'self'),
        link(`/v2/payments/captures/${captureId}`, 'up'),
      ],
    };
    stored.refundedMinor += amountMinor;
    stored.capture['status'] =
      stored.refundedMinor === stored.amountMinor ? 'REFUNDED' : 'PARTIALLY_REFUNDED';
    stored.capture['update_time'] = now;
    const order = orders.get(stored.orderId);
    if (order) {
      const payments = purchaseUnit(order.order)['payments'] as JsonObject;
      payments['refunds'] = [...((payments['refunds'] as Json[] | undefined) ?? []), refund];
    }
    refunds.set(refundId, { refund, captureId });
    ledger.record({
      provider: 'paypal',
      kind: 'refund',
      id: refundId,
      ...(order?.paymentId ? { paymentId: order.paymentId } : {}),
      refundOf: captureId,
      amountMinor,
      currency: stored.currency,
      status: 'COMPLETED',
      ...(key ? { idempotencyKey: key } : {}),
    });
    emit('PAYMENT.CAPTURE.REFUNDED', 'refund', refund);
    const view =
      prefer === 'return=representation'
        ? structuredClone(refund)
        : { id: refundId, status: 'COMPLETED', links: refund['links']! };
    return { status: 201, body: view, acted: true };
  }

  /** A write whose PayPal-Request-Id was already used: the current state of what it made, 200. */
  function replay(
    key: string,
    kind: 'order' | 'capture' | 'refund',
    prefer: string | undefined,
  ): Reply | undefined {
    const made = keys.get(`${kind}:${key}`);
    if (!made) return undefined;
    const minimal = prefer !== 'return=representation';
    if (made.kind === 'refund') {
      const refund = refunds.get(made.id)!.refund;
      // Orders answer a replay with 200; the refund API documents only 201, so a replay repeats it.
      return {
        status: 201,
        body: minimal
          ? { id: refund['id']!, status: refund['status']!, links: refund['links']! }
          : structuredClone(refund),
        replayed: true,
      };
    }
    return { status: 200, body: orderView(orders.get(made.id)!, minimal), replayed: true };
  }

  function route(
    method: string,
    path: string,
    body: JsonObject,
    key: string | undefined,
    prefer?: string,
  ): Reply {
    const segments = path.split('/').filter(Boolean);
    // /v2/checkout/orders
    if (method === 'POST' && path === '/v2/checkout/orders') {
      const replayed = key ? replay(key, 'order', prefer) : undefined;
      if (replayed) return replayed;
      const reply = createOrder(body, prefer);
      if (key) keys.set(`order:${key}`, { kind: 'order', id: reply.body['id'] as string });
      return reply;
    }
    if (segments[0] === 'v2' && segments[1] === 'checkout' && segments[2] === 'orders' && segments[3]) {
      const orderId = decodeURIComponent(segments[3]);
      if (method === 'GET' && segments.length === 4) {
        const stored = orders.get(orderId);
        if (!stored) throw new PaypalFailure(404, 'INVALID_RESOURCE_ID', '/id');
        return { status: 200, body: orderView(stored, false) };
      }
      if (method === 'POST' && segments.length === 5 && segments[4] === 'capture') {
        const replayed = key ? replay(key, 'capture', prefer) : undefined;
        if (replayed) return replayed;
        const reply = captureOrder(orderId, key, prefer);
        if (key) keys.set(`capture:${key}`, { kind: 'capture', id: orderId });
        return reply;
      }
    }
    if (
      method === 'POST' &&
      segments.length === 5 &&
      segments[0] === 'v2' &&
      segments[1] === 'payments' &&
      segments[2] === 'captures' &&
      segments[4] === 'refund'
    ) {
      const replayed = key ? replay(key, 'refund', prefer) : undefined;
      if (replayed) return replayed;
      const reply = refundCapture(decodeURIComponent(segments[3]!), body, key, prefer);
      if (key) keys.set(`refund:${key}`, { kind: 'refund', id: reply.body['id'] as string });
      return reply;
    }
    if (
      method === 'GET' &&
      segments.length === 4 &&
      segments[0] === 'v2' &&
      segments[1] === 'payments' &&
      segments[2] === 'refunds'
    ) {
      const stored = refunds.get(decodeURIComponent(segments[3]!));
      if (!stored) throw new PaypalFailure(404, 'INVALID_RESOURCE_ID', '/refund_id');
      return { status: 200, body: structuredClone(stored.refund) };
    }
    throw new PaypalFailure(404);
  }

  // --- HTTP -----------------------------------------------------------------------------------------

  function send(
    res: ServerResponse,
    status: number,
    body: JsonObject | string,
    headers: Record<string, string> = {},
  ) {
    if (res.destroyed) return;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, {
      'content-type': typeof body === 'string' ? 'application/x-pem-file' : 'application/json',
      'content-length': Buffer.byteLength(text),
      ...headers,
    });
    res.end(text);
  }

  function readBody(req: IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > 1_000_000) {
          reject(new PaypalFailure(400, 'INVALID_REQUEST'));
          req.destroy();
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });
  }

  function oauthToken(req: IncomingMessage, rawBody: string, res: ServerResponse): void {
    const auth = req.headers.authorization ?? '';
    const [scheme, encoded] = auth.split(' ');
    const decoded = scheme === 'Basic' && encoded ? Buffer.from(encoded, 'base64').toString('utf8') : '';
    const separator = decoded.indexOf(':');
    const id = decoded.slice(0, separator);
    const secret = decoded.slice(separator + 1);
    if (separator < 0 || id !== clientId || secret !== clientSecret) {
      send(res, 401, { error: 'invalid_client', error_description: 'Client Authentication failed' });
      return;
    }
    if (new URLSearchParams(rawBody).get('grant_type') !== 'client_credentials') {
      send(res, 400, { error: 'unsupported_grant_type', error_description: 'Grant Type is NULL' });
      return;
    }
    const token = `A21AA${randomBytes(24).toString('base64url')}`;
    tokens.add(token);
    send(res, 200, {
      scope:
        'https://uri.paypal.com/services/payments/payment https://uri.paypal.com/services/payments/refund',
      access_token: token,
      token_type: 'Bearer',
      app_id: 'APP-PAYGATE-SANDBOX',
      expires_in: 32400,
      nonce: `${timestamp()}${randomBytes(8).toString('hex')}`,
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://sandbox');
    const path = url.pathname;
    const rawBody = await readBody(req);
    const debugId = randomBytes(7).toString('hex');

    if (method === 'POST' && path === '/v1/oauth2/token') return oauthToken(req, rawBody, res);
    if (method === 'GET' && path === certPath) return send(res, 200, signingIdentity().certificatePem);

    const key =
      typeof req.headers['paypal-request-id'] === 'string' ? req.headers['paypal-request-id'] : undefined;
    const prefer = typeof req.headers.prefer === 'string' ? req.headers.prefer : undefined;
    const record = (status: number, replayed = false) =>
      requests.push({ method, path, ...(key ? { paypalRequestId: key } : {}), status, replayed });
    const fail = (failure: PaypalFailure) => {
      record(failure.status);
      send(res, failure.status, errorBody(failure, debugId), {
        'paypal-debug-id': debugId,
        ...failure.headers,
      });
    };

    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!bearer || !tokens.has(bearer)) return fail(new PaypalFailure(401));

    let fault: Fault | undefined;
    try {
      const header = req.headers[FAULT_HEADER];
      fault = faults.take('paypal', { method, path, header: Array.isArray(header) ? header[0] : header });
    } catch (error) {
      // A typo in a test's fault header must fail loudly, with what is accepted.
      return fail(
        new PaypalFailure(400, 'INVALID_PARAMETER_VALUE', FAULT_HEADER, {}, (error as Error).message),
      );
    }
    if (fault?.kind === 'latency') await sleep(fault.latencyMs ?? 0);
    // PayPal documents nothing about a request id used twice at once, so a slow request is only slow.
    if (fault?.kind === 'slow_processing') await processingDelay(fault);
    if (fault?.kind === 'http_500') return fail(new PaypalFailure(500));
    if (fault?.kind === 'http_429') {
      return fail(
        new PaypalFailure(
          429,
          undefined,
          undefined,
          fault.retryAfterSeconds !== undefined ? { 'retry-after': String(fault.retryAfterSeconds) } : {},
        ),
      );
    }

    let body: JsonObject = {};
    if (method === 'POST' && rawBody.length > 0) {
      try {
        const parsed: unknown = JSON.parse(rawBody);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
          throw new Error('not an object');
        body = parsed as JsonObject;
      } catch {
        return fail(new PaypalFailure(400, 'MALFORMED_REQUEST_JSON'));
      }
    }

    let reply: Reply;
    try {
      reply = route(method, path, body, key, prefer);
    } catch (error) {
      if (!(error instanceof PaypalFailure)) throw error;
      return fail(error);
    }
    record(reply.status, reply.replayed ?? false);

    if (fault?.kind === 'timeout_after_charge') {
      // The work is done (and saved under the key) whether or not the client hears about it.
      if (fault.hangMs === undefined) {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      await sleep(fault.hangMs);
      if (res.destroyed) return;
    }
    send(res, reply.status, reply.body, { 'paypal-debug-id': debugId });
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (error instanceof PaypalFailure) {
        send(res, error.status, errorBody(error, randomUUID()));
        return;
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      send(res, 500, {
        name: 'INTERNAL_SERVER_ERROR',
        message: `Sandbox bug: ${message}`,
        debug_id: 'sandbox',
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  baseUrl = `http://${address.address}:${address.port}`;

  return {
    url: baseUrl,
    certUrl: `${baseUrl}${certPath}`,
    get certificatePem() {
      return signingIdentity().certificatePem;
    },
    requests: () => requests.map((r) => ({ ...r })),
    deliveries: () => deliveries.map((d) => ({ ...d })),
    webhooksIdle: () => sender.idle(),
    settleCapture: (captureId, outcome) => {
      const stored = captures.get(captureId);
      if (stored?.capture['status'] !== 'PENDING') {
        throw new Error(`settleCapture: ${captureId} is not a PENDING capture`);
      }
      stored.capture['status'] = outcome;
      delete stored.capture['status_details'];
      stored.capture['update_time'] = timestamp();
      ledger.updateStatus('paypal', captureId, outcome);
      emit(
        outcome === 'COMPLETED' ? 'PAYMENT.CAPTURE.COMPLETED' : 'PAYMENT.CAPTURE.DECLINED',
        'capture',
        stored.capture,
      );
    },
    close: async () => {
      closed = true;
      for (const res of hanging) res.destroy();
      await sender.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
