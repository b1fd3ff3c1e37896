/**
 * A loopback emulator of exactly the Stripe endpoints our adapter calls, so the real `stripe` SDK runs
 * unmodified against it:
 *   POST /v1/payment_intents            create (and confirm, off-session) a PaymentIntent
 *   GET  /v1/payment_intents/search     find ours by metadata (the "crashed before we stored pi_..." path)
 *   GET  /v1/payment_intents/:id        retrieve
 *   POST /v1/refunds                    full or partial refund of a PaymentIntent
 *   GET  /v1/refunds?payment_intent=    find our refund after a timeout (never a create)
 *   GET  /v1/refunds/:id                retrieve one refund (a pending refund whose webhook was lost)
 *
 * What it is faithful to, because the client's correctness depends on it: form-encoded bodies parsed
 * as Stripe parses them (qs, bracket notation), Stripe's error body and status codes (402 card errors
 * carrying the PaymentIntent, 400 invalid requests, 401 bad key, 404 unknown object, 429, 500),
 * idempotency (same key and parameters: the saved response replayed with `Idempotent-Replayed: true`;
 * same key, other parameters: 400 idempotency_error; a key still executing: 409), the documented test
 * payment methods (test-methods.ts), ACH debits that stay `processing` until settled, and signed
 * webhooks, and Stripe's currency special cases: ISK and UGX amounts are two-decimal on the wire
 * (ISO 4217 gives them no decimals) and must be multiples of 100. Every charge and refund that moves
 * money is written to the shared ledger, in ISO 4217 minor units (so 5 ISK, `amount=500`, is 5 there).
 *
 * What it is not: a general Stripe. Unknown routes answer Stripe's 404 so a new adapter call fails
 * loudly until it is emulated here on purpose.
 */
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import qs from 'qs';
import { createWebhookSender, DEFAULT_WEBHOOK_DELAY_MS, type DeliveryRecord } from '../delivery.js';
import { FAULT_HEADER, type Fault, type Faults, processingDelay, sleep } from '../faults.js';
import type { Ledger } from '../ledger.js';
import { SANDBOX_STRIPE_SECRET_KEY } from './constants.js';
import {
  EMULATED_API_VERSION,
  type ErrorFields,
  errorBody,
  type Json,
  type JsonObject,
  newId,
  nowSeconds,
  paymentMethodObject,
} from './objects.js';
import { findTestMethod, type TestMethod } from './test-methods.js';

/** The key the SDK uses when paygate runs without a real Stripe key; any other key gets a 401. */
export { SANDBOX_STRIPE_SECRET_KEY } from './constants.js';

export interface StripeEmulatorOptions {
  ledger: Ledger;
  faults: Faults;
  /** The only API key accepted; default SANDBOX_STRIPE_SECRET_KEY. */
  secretKey?: string;
  /** Where to POST signed events, and the whsec_ secret to sign them with. */
  webhook?: { url: string; secret: string };
  /**
   * How long after the API call an event is delivered. Stripe sends events asynchronously, after the
   * request that caused them has answered (typically within seconds), so a webhook normally finds the
   * caller's own outcome already recorded; 0 sends at once, racing the caller. Default 200 ms.
   */
  webhookDelayMs?: number;
  /** Settle ACH debits by themselves after this long; absent: only when settleAch() is called. */
  achSettleDelayMs?: number;
  host?: string;
  port?: number;
}

export interface WebhookDelivery extends DeliveryRecord {
  eventId: string;
  type: string;
}

/** One request as the emulator saw it: lets a test prove a retry reused the same idempotency key. */
export interface RequestRecord {
  method: string;
  path: string;
  idempotencyKey?: string;
  status?: number;
  replayed?: boolean;
  fault?: Fault['kind'];
}

export interface StripeEmulator {
  readonly url: string;
  /** Every request received, in arrival order (status is set once answered). */
  requests(): RequestRecord[];
  /** Settle every ACH debit still processing, as its test account is documented to. */
  settleAch(): Promise<void>;
  /** Move pending refunds (pm_card_pendingRefund) to succeeded and fail pm_card_refundFail's. */
  settleRefunds(): Promise<void>;
  /** Webhook deliveries attempted so far, in order. */
  deliveries(): WebhookDelivery[];
  /** Resolves when every webhook sent so far has been answered (or failed). */
  webhooksIdle(): Promise<void>;
  /** Signs a payload as this emulator does; exposed so a test can check the scheme. */
  signatureHeader(payload: string, timestampSeconds?: number): string;
  close(): Promise<void>;
}

interface StoredIntent {
  intent: JsonObject;
  method?: TestMethod;
  chargeId?: string;
  amountRefunded: number;
  refunds: JsonObject[];
  settleTimer?: NodeJS.Timeout;
}

interface SavedResponse {
  fingerprint: string;
  status: number;
  body: JsonObject;
  requestId: string;
}

interface Reply {
  status: number;
  body: JsonObject;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly fields: ErrorFields,
  ) {
    super(fields.message);
  }
}

function invalid(message: string, param?: string, code?: string, status = 400): ApiError {
  return new ApiError(status, {
    type: 'invalid_request_error',
    message,
    ...(param ? { param } : {}),
    ...(code ? { code } : {}),
  });
}

const parseOptions = { depth: 5, arrayLimit: 100, parameterLimit: 1000 } as const;

/**
 * Stripe's special cases (https://docs.stripe.com/currencies#special-cases): ISK and UGX are
 * "effectively zero-decimal", but "to maintain backwards compatibility, you must pass in amounts with
 * two decimals ... The amount value must be evenly divisible by 100". Kept here apart from the adapter's
 * own table (gateways/stripe/mapping.ts) so a mistake there shows up against this, as against Stripe.
 */
const TWO_DECIMAL_ON_THE_WIRE = new Set(['isk', 'ugx']);

/**
 * Stripe's three-decimal currencies "require the least-significant (last) digit to be 0"
 * (https://docs.stripe.com/currencies#three-decimal): refused here as there, charge or refund.
 */
const THREE_DECIMAL = new Set(['bhd', 'jod', 'kwd', 'omr', 'tnd']);

/** Refuses an amount Stripe would refuse for its currency (charge or refund): ISK/UGX, three-decimal. */
function checkWholeUnits(amount: number, currency: string, param: string): void {
  if (THREE_DECIMAL.has(currency) && amount % 10 !== 0) {
    throw invalid(
      `Invalid amount. Amounts in ${currency.toUpperCase()} must have 0 as their last digit. See https://stripe.com/docs/currencies#three-decimal for more information.`,
      param,
      'invalid_charge_amount',
    );
  }
  if (TWO_DECIMAL_ON_THE_WIRE.has(currency) && amount % 100 !== 0) {
    throw invalid(
      `Invalid amount. Currency ${currency.toUpperCase()} has become effectively zero-decimal and charged amounts must be evenly divisible by 100. See https://stripe.com/docs/currencies#special-cases for more information.`,
      param,
      'invalid_charge_amount_no_decimal_compatible',
    );
  }
}

/** A wire amount as the ledger records money: ISO 4217 minor units. */
function isoMinor(amount: number, currency: string): number {
  return TWO_DECIMAL_ON_THE_WIRE.has(currency) ? amount / 100 : amount;
}

export async function startStripeEmulator(options: StripeEmulatorOptions): Promise<StripeEmulator> {
  const { ledger, faults } = options;
  const secretKey = options.secretKey ?? SANDBOX_STRIPE_SECRET_KEY;
  const intents = new Map<string, StoredIntent>();
  // Stripe keeps idempotency results for 24 hours; the emulator keeps them for its lifetime.
  const saved = new Map<string, SavedResponse>();
  const inFlight = new Set<string>();
  const deliveries: WebhookDelivery[] = [];
  const sender = createWebhookSender();
  const hanging = new Set<ServerResponse>();
  const requestLog: RequestRecord[] = [];
  // Set when the emulator answers (even if the client already gave up and will never read it).
  const recordOf = new WeakMap<ServerResponse, RequestRecord>();
  const timers = new Set<NodeJS.Timeout>();
  const webhookDelayMs = options.webhookDelayMs ?? DEFAULT_WEBHOOK_DELAY_MS;
  let closed = false;

  function signatureHeader(payload: string, timestampSeconds = nowSeconds()): string {
    if (!options.webhook) throw new Error('the Stripe emulator has no webhook secret configured');
    const signature = createHmac('sha256', options.webhook.secret)
      .update(`${timestampSeconds}.${payload}`, 'utf8')
      .digest('hex');
    return `t=${timestampSeconds},v1=${signature}`;
  }

  function emit(type: string, object: JsonObject, request?: { id: string; idempotencyKey?: string }): void {
    const webhook = options.webhook;
    if (!webhook || closed) return;
    const event: JsonObject = {
      id: newId('evt'),
      object: 'event',
      api_version: EMULATED_API_VERSION,
      created: nowSeconds(),
      data: { object: structuredClone(object) },
      livemode: false,
      pending_webhooks: 1,
      request: { id: request?.id ?? null, idempotency_key: request?.idempotencyKey ?? null },
      type,
    };
    const payload = JSON.stringify(event, null, 2);
    const record: WebhookDelivery = { eventId: event['id'] as string, type };
    deliveries.push(record);
    // Signed when sent, as Stripe signs each delivery attempt.
    sender.send(
      webhook.url,
      webhookDelayMs,
      () => ({
        headers: {
          'content-type': 'application/json; charset=utf-8',
          'stripe-signature': signatureHeader(payload),
          'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
        },
        body: payload,
      }),
      record,
    );
  }

  function view(stored: StoredIntent, expand: string[]): JsonObject {
    const intent = structuredClone(stored.intent);
    if (expand.includes('payment_method') && stored.method && typeof intent['payment_method'] === 'string') {
      intent['payment_method'] = paymentMethodObject(
        intent['payment_method'],
        stored.method,
        intent['created'] as number,
      );
    }
    return intent;
  }

  function chargeObject(stored: StoredIntent): JsonObject {
    const intent = stored.intent;
    return {
      id: stored.chargeId ?? null,
      object: 'charge',
      amount: intent['amount'] as number,
      amount_captured: intent['amount_received'] as number,
      amount_refunded: stored.amountRefunded,
      created: intent['created'] as number,
      currency: intent['currency'] as string,
      livemode: false,
      metadata: structuredClone(intent['metadata'] as JsonObject),
      paid: true,
      payment_intent: intent['id'] as string,
      payment_method: intent['payment_method'] as string,
      refunded: stored.amountRefunded === intent['amount_received'],
      refunds: {
        object: 'list',
        data: [...stored.refunds].reverse().map((r) => structuredClone(r)),
        has_more: false,
        total_count: stored.refunds.length,
        url: `/v1/charges/${stored.chargeId}/refunds`,
      },
      status: 'succeeded',
    };
  }

  // --- settlement -------------------------------------------------------------------------------

  function settleOne(stored: StoredIntent): void {
    const method = stored.method;
    if (stored.settleTimer) {
      clearTimeout(stored.settleTimer);
      timers.delete(stored.settleTimer);
      stored.settleTimer = undefined;
    }
    if (stored.intent['status'] !== 'processing' || method?.type !== 'us_bank_account') return;
    const id = stored.intent['id'] as string;
    if (method.settles === 'stays_processing') return;
    if (method.settles === 'succeeded') {
      stored.intent['status'] = 'succeeded';
      stored.intent['amount_received'] = stored.intent['amount'] as number;
      ledger.updateStatus('stripe', id, 'succeeded');
      emit('payment_intent.succeeded', stored.intent);
      return;
    }
    stored.intent['status'] = 'requires_payment_method';
    stored.intent['last_payment_error'] = {
      type: 'invalid_request_error',
      code: method.settles.code,
      message: method.settles.message,
      payment_method: paymentMethodObject(
        stored.intent['payment_method'] as string,
        method,
        stored.intent['created'] as number,
      ),
    };
    ledger.updateStatus('stripe', id, 'failed');
    emit('payment_intent.payment_failed', stored.intent);
  }

  async function settleAch(): Promise<void> {
    for (const stored of intents.values()) settleOne(stored);
    await Promise.resolve();
  }

  async function settleRefunds(): Promise<void> {
    for (const stored of intents.values()) {
      for (const refund of stored.refunds) {
        const behaviour = stored.method?.type === 'card' ? stored.method.refund : 'immediate';
        if (behaviour === 'pending_then_succeeded' && refund['status'] === 'pending') {
          refund['status'] = 'succeeded';
          ledger.updateStatus('stripe', refund['id'] as string, 'succeeded');
          emit('refund.updated', refund);
        } else if (behaviour === 'succeeded_then_failed' && refund['status'] === 'succeeded') {
          refund['status'] = 'failed';
          refund['failure_reason'] = 'expired_or_canceled_card';
          stored.amountRefunded -= refund['amount'] as number;
          ledger.updateStatus('stripe', refund['id'] as string, 'failed');
          emit('refund.failed', refund);
        }
      }
    }
    await Promise.resolve();
  }

  // --- endpoints ----------------------------------------------------------------------------------

  function expandList(params: Record<string, unknown>): string[] {
    const expand = params['expand'];
    if (expand === undefined) return [];
    const list = Array.isArray(expand) ? expand : [expand];
    return list.map(String);
  }

  function createPaymentIntent(
    params: Record<string, unknown>,
    request: { id: string; idempotencyKey?: string },
  ): Reply {
    const amount = integerParam(params, 'amount', true)!;
    if (amount < 50) {
      throw invalid('Amount must be at least 50 cents', 'amount', 'amount_too_small');
    }
    const currency = stringParam(params, 'currency', true)!.toLowerCase();
    if (!/^[a-z]{3}$/.test(currency)) throw invalid(`Invalid currency: ${currency}.`, 'currency');
    checkWholeUnits(amount, currency, 'amount');
    const confirm = booleanParam(params, 'confirm');
    const offSession = booleanParam(params, 'off_session');
    if (offSession && !confirm) {
      throw invalid('off_session can only be used when confirm=true.', 'off_session');
    }
    const paymentMethodId = stringParam(params, 'payment_method', false);
    // API 2026-10-28 renamed payment_method_types to allowed_payment_method_types; accept either.
    const typesParam =
      params['allowed_payment_method_types'] !== undefined
        ? 'allowed_payment_method_types'
        : 'payment_method_types';
    const types = params[typesParam] === undefined ? ['card'] : arrayParam(params, typesParam);
    const metadata = metadataParam(params);
    const transferData = params['transfer_data'];
    let destination: string | undefined;
    if (transferData !== undefined) {
      if (typeof transferData !== 'object' || transferData === null)
        throw invalid('Invalid hash', 'transfer_data');
      const value = (transferData as Record<string, unknown>)['destination'];
      if (typeof value !== 'string' || !value.startsWith('acct_')) {
        throw invalid(
          `No such destination: '${String(value)}'`,
          'transfer_data[destination]',
          'resource_missing',
        );
      }
      destination = value;
    }

    let method: TestMethod | undefined;
    if (paymentMethodId !== undefined) {
      method = findTestMethod(paymentMethodId);
      if (!method) {
        throw invalid(`No such PaymentMethod: '${paymentMethodId}'`, 'payment_method', 'resource_missing');
      }
      if (!types.includes(method.type)) {
        throw invalid(
          `The PaymentMethod provided (${method.type}) is not allowed for this PaymentIntent. Please attach a PaymentMethod of one of the following types: ${types.join(', ')}.`,
          'payment_method',
          'payment_intent_incompatible_payment_method',
        );
      }
    } else if (confirm) {
      throw invalid(
        "You cannot confirm this PaymentIntent because it's missing a payment method.",
        'payment_method',
        'payment_intent_unexpected_state',
      );
    }

    const id = newId('pi');
    const created = nowSeconds();
    const intent: JsonObject = {
      id,
      object: 'payment_intent',
      amount,
      amount_capturable: 0,
      amount_received: 0,
      application: null,
      application_fee_amount: null,
      automatic_payment_methods: null,
      canceled_at: null,
      cancellation_reason: null,
      capture_method: 'automatic',
      client_secret: `${id}_secret_${newId('s').slice(2)}`,
      confirmation_method: 'automatic',
      created,
      currency,
      customer: typeof params['customer'] === 'string' ? params['customer'] : null,
      description: typeof params['description'] === 'string' ? params['description'] : null,
      invoice: null,
      last_payment_error: null,
      latest_charge: null,
      livemode: false,
      metadata,
      next_action: null,
      on_behalf_of: null,
      payment_method: paymentMethodId ?? null,
      payment_method_options: {},
      payment_method_types: types,
      processing: null,
      receipt_email: null,
      review: null,
      setup_future_usage: null,
      shipping: null,
      statement_descriptor: null,
      statement_descriptor_suffix: null,
      status: paymentMethodId ? 'requires_confirmation' : 'requires_payment_method',
      transfer_data: destination ? { destination } : null,
      transfer_group: null,
    };
    const stored: StoredIntent = { intent, method, amountRefunded: 0, refunds: [] };
    intents.set(id, stored);
    const expand = expandList(params);

    if (!confirm || !method) return { status: 200, body: view(stored, expand) };

    // Confirmation: a decline leaves the PaymentIntent asking for a new method, and the 402 carries it.
    const decline = method.type === 'card' ? method.decline : method.blockedAtConfirm;
    if (decline) {
      const chargeId = newId('ch');
      stored.chargeId = chargeId;
      intent['latest_charge'] = chargeId;
      intent['status'] = 'requires_payment_method';
      const lastError: JsonObject = {
        type: 'card_error',
        code: decline.code,
        message: decline.message,
        charge: chargeId,
        payment_method: paymentMethodObject(paymentMethodId!, method, created),
      };
      if (decline.declineCode) lastError['decline_code'] = decline.declineCode;
      lastError['doc_url'] = `https://stripe.com/docs/error-codes/${decline.code.replaceAll('_', '-')}`;
      intent['last_payment_error'] = lastError;
      emit('payment_intent.payment_failed', intent, request);
      throw new ApiError(402, {
        type: 'card_error',
        code: decline.code,
        ...(decline.declineCode ? { decline_code: decline.declineCode } : {}),
        message: decline.message,
        charge: chargeId,
        payment_intent: view(stored, expand),
        payment_method: paymentMethodObject(paymentMethodId!, method, created),
      });
    }

    stored.chargeId = newId(method.type === 'card' ? 'ch' : 'py');
    intent['latest_charge'] = stored.chargeId;
    const isAch = method.type === 'us_bank_account';
    intent['status'] = isAch ? 'processing' : 'succeeded';
    intent['amount_received'] = isAch ? 0 : amount;
    ledger.record({
      provider: 'stripe',
      kind: 'charge',
      id,
      paymentId: metadata['paygate_payment_id'] as string | undefined,
      amountMinor: isoMinor(amount, currency),
      currency,
      status: intent['status'] as string,
      idempotencyKey: request.idempotencyKey,
    });
    emit(isAch ? 'payment_intent.processing' : 'payment_intent.succeeded', intent, request);
    if (isAch && options.achSettleDelayMs !== undefined) scheduleSettle(stored);
    return { status: 200, body: view(stored, expand) };
  }

  function scheduleSettle(stored: StoredIntent): void {
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!closed) settleOne(stored);
    }, options.achSettleDelayMs);
    timer.unref();
    timers.add(timer);
    stored.settleTimer = timer;
  }

  function retrievePaymentIntent(id: string, params: Record<string, unknown>): Reply {
    const stored = intents.get(id);
    if (!stored) throw invalid(`No such payment_intent: '${id}'`, 'intent', 'resource_missing', 404);
    return { status: 200, body: view(stored, expandList(params)) };
  }

  /**
   * Stripe's search query language, only as far as the adapter uses it: `metadata['key']:'value'`
   * clauses joined by AND. Anything else is refused, so a new query is emulated on purpose.
   */
  function searchPaymentIntents(params: Record<string, unknown>): Reply {
    const query = stringParam(params, 'query', true)!;
    const clauses = query.split(/\s+AND\s+/);
    const filters: [string, string][] = [];
    for (const clause of clauses) {
      const match = /^metadata\[['"]([^'"]+)['"]\]:['"]([^'"]*)['"]$/.exec(clause.trim());
      if (!match) throw invalid(`The sandbox does not emulate this search query: ${clause}`, 'query');
      filters.push([match[1]!, match[2]!]);
    }
    const expand = expandList(params)
      .filter((e) => e.startsWith('data.'))
      .map((e) => e.slice('data.'.length));
    const data = [...intents.values()]
      .filter((s) => filters.every(([k, v]) => (s.intent['metadata'] as JsonObject)[k] === v))
      // Newest first, as Stripe orders search results by default.
      .sort((a, b) => (b.intent['created'] as number) - (a.intent['created'] as number))
      .map((s) => view(s, expand));
    return {
      status: 200,
      body: {
        object: 'search_result',
        data,
        has_more: false,
        next_page: null,
        url: '/v1/payment_intents/search',
      },
    };
  }

  function createRefund(
    params: Record<string, unknown>,
    request: { id: string; idempotencyKey?: string },
  ): Reply {
    const intentId = stringParam(params, 'payment_intent', true)!;
    const stored = intents.get(intentId);
    if (!stored) throw invalid(`No such payment_intent: '${intentId}'`, 'payment_intent', 'resource_missing');
    if (stored.intent['status'] !== 'succeeded') {
      throw invalid(
        `This PaymentIntent (${intentId}) does not have a successful charge to refund.`,
        'payment_intent',
        'charge_not_refundable',
      );
    }
    const received = stored.intent['amount_received'] as number;
    const remaining = received - stored.amountRefunded;
    if (remaining <= 0) {
      throw invalid(
        `Charge ${stored.chargeId} has already been refunded.`,
        undefined,
        'charge_already_refunded',
      );
    }
    const amount = integerParam(params, 'amount', false) ?? remaining;
    if (amount <= 0) throw invalid('Invalid positive integer', 'amount');
    if (amount > remaining) {
      throw invalid(
        `Refund amount (${amount}) is greater than unrefunded amount on charge (${remaining})`,
        'amount',
        'amount_too_large',
      );
    }
    checkWholeUnits(amount, stored.intent['currency'] as string, 'amount');
    const reason = stringParam(params, 'reason', false);
    if (reason !== undefined && !['duplicate', 'fraudulent', 'requested_by_customer'].includes(reason)) {
      throw invalid(
        `Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer`,
        'reason',
      );
    }
    const behaviour = stored.method?.type === 'card' ? stored.method.refund : 'immediate';
    const refund: JsonObject = {
      id: newId('re'),
      object: 'refund',
      amount,
      balance_transaction: null,
      charge: stored.chargeId ?? null,
      created: nowSeconds(),
      currency: stored.intent['currency'] as string,
      metadata: metadataParam(params),
      payment_intent: intentId,
      reason: reason ?? null,
      receipt_number: null,
      source_transfer_reversal: null,
      status: behaviour === 'pending_then_succeeded' ? 'pending' : 'succeeded',
      transfer_reversal: null,
    };
    stored.refunds.push(refund);
    stored.amountRefunded += amount;
    ledger.record({
      provider: 'stripe',
      kind: 'refund',
      id: refund['id'] as string,
      paymentId: (stored.intent['metadata'] as JsonObject)['paygate_payment_id'] as string | undefined,
      refundOf: intentId,
      amountMinor: isoMinor(amount, refund['currency'] as string),
      currency: refund['currency'] as string,
      status: refund['status'] as string,
      idempotencyKey: request.idempotencyKey,
    });
    emit('charge.refunded', chargeObject(stored), request);
    return { status: 200, body: structuredClone(refund) };
  }

  /** GET /v1/refunds?payment_intent=...: how the adapter finds its refund after a timeout. */
  function listRefunds(params: Record<string, unknown>): Reply {
    const intentId = stringParam(params, 'payment_intent', false);
    const limit = integerParam(params, 'limit', false) ?? 10;
    if (limit < 1 || limit > 100) throw invalid('limit must be between 1 and 100', 'limit');
    const all = [...intents.values()]
      .filter((s) => intentId === undefined || s.intent['id'] === intentId)
      .flatMap((s) => s.refunds)
      .sort((a, b) => (b['created'] as number) - (a['created'] as number));
    return {
      status: 200,
      body: {
        object: 'list',
        data: all.slice(0, limit).map((r) => structuredClone(r)),
        has_more: all.length > limit,
        url: '/v1/refunds',
      },
    };
  }

  /** GET /v1/refunds/:id: the refund as it is now (pending until settleRefunds() moves it). */
  function retrieveRefund(id: string): Reply {
    for (const stored of intents.values()) {
      const refund = stored.refunds.find((r) => r['id'] === id);
      if (refund) return { status: 200, body: structuredClone(refund) };
    }
    throw invalid(`No such refund: '${id}'`, 'id', 'resource_missing', 404);
  }

  // --- HTTP plumbing ------------------------------------------------------------------------------

  function route(
    method: string,
    path: string,
    params: Record<string, unknown>,
    request: { id: string; idempotencyKey?: string },
  ): Reply {
    if (method === 'POST' && path === '/v1/payment_intents') return createPaymentIntent(params, request);
    if (method === 'GET' && path === '/v1/payment_intents/search') return searchPaymentIntents(params);
    const retrieve = /^\/v1\/payment_intents\/([^/]+)$/.exec(path);
    if (method === 'GET' && retrieve) return retrievePaymentIntent(decodeURIComponent(retrieve[1]!), params);
    if (method === 'POST' && path === '/v1/refunds') return createRefund(params, request);
    if (method === 'GET' && path === '/v1/refunds') return listRefunds(params);
    const refund = /^\/v1\/refunds\/([^/]+)$/.exec(path);
    if (method === 'GET' && refund) return retrieveRefund(decodeURIComponent(refund[1]!));
    throw invalid(`Unrecognized request URL (${method}: ${path}).`, undefined, undefined, 404);
  }

  function send(
    res: ServerResponse,
    status: number,
    body: JsonObject,
    headers: Record<string, string>,
  ): void {
    const record = recordOf.get(res);
    if (record) {
      record.status = status;
      if (headers['idempotent-replayed'] === 'true') record.replayed = true;
    }
    if (res.destroyed) return;
    const text = JSON.stringify(body, null, 2);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(text)),
      'stripe-version': EMULATED_API_VERSION,
      ...headers,
    });
    res.end(text);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = newId('req');
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const method = (req.method ?? 'GET').toUpperCase();
    const path = url.pathname;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const rawBody = Buffer.concat(chunks).toString('utf8');
    const record: RequestRecord = { method, path };
    requestLog.push(record);
    const idempotencyHeaderValue = req.headers['idempotency-key'];
    if (typeof idempotencyHeaderValue === 'string') record.idempotencyKey = idempotencyHeaderValue;
    recordOf.set(res, record);
    const baseHeaders: Record<string, string> = { 'request-id': requestId };

    const fail = (error: ApiError, headers: Record<string, string> = {}) =>
      send(res, error.status, errorBody(error.fields, requestId), { ...baseHeaders, ...headers });

    const auth = req.headers.authorization ?? '';
    const key = auth.startsWith('Bearer ') ? auth.slice('Bearer '.length) : '';
    if (key !== secretKey) {
      const shown = key
        ? `${key.slice(0, 8)}${'*'.repeat(Math.max(0, key.length - 12))}${key.slice(-4)}`
        : '';
      return fail(
        invalid(
          key ? `Invalid API Key provided: ${shown}` : 'You did not provide an API key.',
          undefined,
          undefined,
          401,
        ),
      );
    }

    let fault: Fault | undefined;
    try {
      const header = req.headers[FAULT_HEADER];
      fault = faults.take('stripe', { method, path, header: Array.isArray(header) ? header[0] : header });
    } catch (error) {
      return fail(invalid((error as Error).message, FAULT_HEADER));
    }
    if (fault) record.fault = fault.kind;
    if (fault?.kind === 'latency') await sleep(fault.latencyMs ?? 0);
    if (fault?.kind === 'http_500') {
      return fail(
        new ApiError(500, {
          type: 'api_error',
          message: 'Sandbox: an injected internal error. Please retry.',
        }),
      );
    }
    if (fault?.kind === 'http_429') {
      return fail(
        new ApiError(429, {
          type: 'invalid_request_error',
          code: 'rate_limit',
          message: 'Too many requests hit the API too quickly. Sandbox: an injected rate limit.',
        }),
        fault.retryAfterSeconds !== undefined ? { 'retry-after': String(fault.retryAfterSeconds) } : {},
      );
    }

    if (fault?.kind === 'stale_search' && path.endsWith('/search')) {
      return send(
        res,
        200,
        { object: 'search_result', data: [], has_more: false, next_page: null, url: path },
        baseHeaders,
      );
    }

    const params: Record<string, unknown> =
      method === 'GET' ? qs.parse(url.search.slice(1), parseOptions) : qs.parse(rawBody, parseOptions);
    const idempotencyHeader = req.headers['idempotency-key'];
    const idempotencyKey =
      method === 'POST' && typeof idempotencyHeader === 'string' ? idempotencyHeader : undefined;
    const fingerprint = `${method} ${path} ${canonical(params)}`;

    if (idempotencyKey !== undefined) {
      const previous = saved.get(idempotencyKey);
      if (previous) {
        if (previous.fingerprint !== fingerprint) {
          return fail(
            new ApiError(400, {
              type: 'idempotency_error',
              message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
            }),
          );
        }
        return send(res, previous.status, structuredClone(previous.body), {
          'request-id': previous.requestId,
          'idempotent-replayed': 'true',
          'original-request': previous.requestId,
          'idempotency-key': idempotencyKey,
        });
      }
      if (inFlight.has(idempotencyKey)) {
        return fail(
          new ApiError(409, {
            type: 'idempotency_error',
            message:
              'There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): ' +
              `${idempotencyKey}. Please try again later.`,
          }),
          { 'stripe-should-retry': 'true' },
        );
      }
    }

    let reply: Reply;
    try {
      if (idempotencyKey !== undefined) inFlight.add(idempotencyKey);
      // Stripe is working on it, its key taken: a concurrent request with the key gets the 409 above.
      if (fault?.kind === 'slow_processing') await processingDelay(fault);
      reply = route(method, path, params, { id: requestId, idempotencyKey });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      reply = { status: error.status, body: errorBody(error.fields, requestId) };
    } finally {
      if (idempotencyKey !== undefined) inFlight.delete(idempotencyKey);
    }

    // The endpoint ran: its result is saved under the key, exactly as Stripe saves it (errors too),
    // before any injected hang, because on Stripe's side the work is done whether or not we answer.
    if (idempotencyKey !== undefined) {
      saved.set(idempotencyKey, {
        fingerprint,
        status: reply.status,
        body: structuredClone(reply.body),
        requestId,
      });
    }

    const headers = { ...baseHeaders, ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}) };
    if (fault?.kind === 'timeout_after_charge') {
      if (fault.hangMs === undefined) {
        // Never answer: the client's own timeout fires. close() destroys the socket.
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      await sleep(fault.hangMs);
      if (res.destroyed) return;
    }
    send(res, reply.status, reply.body, headers);
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      send(res, 500, { error: { type: 'api_error', message: `Sandbox bug: ${message}` } }, {});
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;

  return {
    url: `http://${address.address}:${address.port}`,
    requests: () => requestLog.map((r) => ({ ...r })),
    settleAch,
    settleRefunds,
    deliveries: () => deliveries.map((d) => ({ ...d })),
    webhooksIdle: () => sender.idle(),
    signatureHeader,
    close: async () => {
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const res of hanging) res.destroy();
      await sender.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// --- parameter parsing, as Stripe validates form parameters -----------------------------------------

function stringParam(params: Record<string, unknown>, name: string, required: boolean): string | undefined {
  const value = params[name];
  if (value === undefined || value === '') {
    if (required) throw invalid(`Missing required param: ${name}.`, name, 'parameter_missing');
    return undefined;
  }
  if (typeof value !== 'string') throw invalid(`Invalid string: ${name}`, name);
  return value;
}

function integerParam(params: Record<string, unknown>, name: string, required: boolean): number | undefined {
  const text = stringParam(params, name, required);
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw invalid(`Invalid integer: ${text}`, name);
  }
  return Number(text);
}

function booleanParam(params: Record<string, unknown>, name: string): boolean {
  const text = stringParam(params, name, false);
  if (text === undefined) return false;
  if (text !== 'true' && text !== 'false') throw invalid(`Invalid boolean: ${text}`, name);
  return text === 'true';
}

function arrayParam(params: Record<string, unknown>, name: string): string[] {
  const value = params[name];
  const list = Array.isArray(value)
    ? value
    : typeof value === 'object' && value !== null
      ? Object.values(value)
      : null;
  if (!list?.every((v) => typeof v === 'string')) throw invalid('Invalid array', name);
  return list as string[];
}

function metadataParam(params: Record<string, unknown>): JsonObject {
  const value = params['metadata'];
  if (value === undefined || value === '') return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid('Invalid hash', 'metadata');
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw invalid(`Invalid metadata value for ${k}`, `metadata[${k}]`);
    if (v.length > 500) throw invalid('Metadata values can have up to 500 characters.', `metadata[${k}]`);
    out[k] = v;
  }
  return out;
}

/** Parameters in a key-order-independent form, so a replay is recognised however the SDK orders them. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, Json>).sort(([a], [b]) =>
      a < b ? -1 : a > b ? 1 : 0,
    );
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
