/**
 * The Stripe API objects the emulator returns, built to the shapes in Stripe's OpenAPI spec (the
 * contract test validates them against ../shared/reference/stripe/spec3.trimmed.json). Pure data: no
 * I/O, no state.
 */
import { randomBytes } from 'node:crypto';
import type { TestMethod } from './test-methods.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** The API version whose shapes these objects follow (the reference spec's). */
export const EMULATED_API_VERSION = '2023-08-16';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Stripe-style ids: a prefix and 24 random base62 characters. */
export function newId(prefix: string): string {
  const bytes = randomBytes(24);
  let out = '';
  for (const byte of bytes) out += ALPHABET[byte % ALPHABET.length];
  return `${prefix}_${out}`;
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export function paymentMethodObject(id: string, method: TestMethod, created: number): JsonObject {
  const base: JsonObject = {
    id,
    object: 'payment_method',
    billing_details: {
      address: { city: null, country: null, line1: null, line2: null, postal_code: null, state: null },
      email: null,
      name: method.type === 'us_bank_account' ? 'Jenny Rosen' : null,
      phone: null,
    },
    created,
    customer: null,
    livemode: false,
    metadata: {},
    type: method.type,
  };
  if (method.type === 'card') {
    base['card'] = {
      brand: method.brand,
      checks: { address_line1_check: null, address_postal_code_check: null, cvc_check: 'pass' },
      country: 'US',
      exp_month: 12,
      exp_year: 2034,
      fingerprint: `fp${method.last4}sandbox`,
      funding: 'credit',
      generated_from: null,
      last4: method.last4,
      networks: { available: [method.brand], preferred: null },
      three_d_secure_usage: { supported: true },
      wallet: null,
    };
  } else {
    base['us_bank_account'] = {
      account_holder_type: 'individual',
      account_type: 'checking',
      bank_name: method.bankName,
      financial_connections_account: null,
      fingerprint: `fp${method.last4}sandbox`,
      last4: method.last4,
      networks: { preferred: 'ach', supported: ['ach'] },
      routing_number: '110000000',
      status_details: null,
    };
  }
  return base;
}

export interface ErrorFields {
  type: 'api_error' | 'card_error' | 'idempotency_error' | 'invalid_request_error';
  message: string;
  code?: string;
  decline_code?: string;
  param?: string;
  charge?: string;
  payment_intent?: JsonObject;
  payment_method?: JsonObject;
}

/** Stripe's error body: `{error: {...}}`, with a doc_url for coded errors as Stripe sends. */
export function errorBody(fields: ErrorFields, requestId: string): JsonObject {
  const error: JsonObject = { ...(fields as unknown as JsonObject) };
  if (fields.code)
    error['doc_url'] = `https://stripe.com/docs/error-codes/${fields.code.replaceAll('_', '-')}`;
  error['request_log_url'] = `https://dashboard.stripe.com/test/logs/${requestId}`;
  return { error };
}
