/**
 * Generated failures that embed values which must never leave the process: keys and tokens of every
 * shape we know, credentials after a key word, card and account numbers, email addresses. Each generated
 * value says which strings must then be absent from what is sent.
 */
import fc from 'fast-check';
import type { FailureContext } from '../../src/analysis/types.js';
import type { GatewayErrorCode } from '../../src/gateways/types.js';

export interface Sensitive {
  kind: 'secret' | 'number' | 'email';
  /** The text as it is embedded in the failure. */
  embedded: string;
  /** Strings that must not appear in the request (for an email: only when the tenant does not allow it). */
  forbidden: string[];
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const chars = (set: string) => fc.constantFrom(...set.split(''));
const text = (set: string, minLength: number, maxLength: number) =>
  fc.string({ unit: chars(set), minLength, maxLength });

const alnum = (min: number, max: number) => text(ALNUM, min, max);
const base64url = (min: number, max: number) => text(`${ALNUM}-_`, min, max);
// A password: any printable character but whitespace, quotes and the separators that end a value.
const passwordChars = `${ALNUM}!#$%()*+-./:<=>?@[]^_\`{|~`;

const secret = (value: string): Sensitive => ({ kind: 'secret', embedded: value, forbidden: [value] });

export const secretArb: fc.Arbitrary<Sensitive> = fc.oneof(
  fc
    .tuple(fc.constantFrom('sk', 'rk', 'pk'), fc.constantFrom('test', 'live'), alnum(24, 99))
    .map(([kind, mode, body]) => secret(`${kind}_${mode}_${body}`)),
  alnum(32, 64).map((s) => secret(`whsec_${s}`)),
  fc.tuple(alnum(14, 24), alnum(16, 32)).map(([id, s]) => secret(`pi_${id}_secret_${s}`)),
  base64url(22, 43).map((s) => secret(`apt_${s}`)),
  base64url(24, 43).map((s) => secret(`pgk_${s}`)),
  base64url(40, 90).map((s) => secret(`sk-ant-api03-${s}`)),
  // PayPal client secrets and access tokens: opaque, no prefix of ours.
  alnum(60, 80).map(secret),
  base64url(40, 90).map((s) => secret(`A21AA${s}`)),
  text(`${ALNUM}-_.~+/=`, 20, 60).map((token) => ({
    kind: 'secret' as const,
    embedded: `Bearer ${token}`,
    forbidden: [token],
  })),
  fc
    .tuple(
      fc.constantFrom(
        'password',
        'client_secret',
        'access_token',
        'Authorization',
        'api_key',
        'PAYPAL_CLIENT_SECRET',
        'token',
      ),
      fc.constantFrom('=', ': ', ':', '":"', ' '),
      text(passwordChars, 12, 40),
    )
    .map(([key, sep, value]) => ({
      kind: 'secret' as const,
      embedded: sep === '":"' ? `"${key}":"${value}"` : `${key}${sep}${value}`,
      forbidden: [value],
    })),
);

const digits = (n: number) => text('0123456789', n, n);

export const numberArb: fc.Arbitrary<Sensitive> = fc
  .oneof(
    fc.integer({ min: 8, max: 17 }).chain(digits),
    fc
      .tuple(digits(4), digits(4), digits(4), digits(4), fc.constantFrom(' ', '-'))
      .map(([a, b, c, d, sep]) => [a, b, c, d].join(sep)),
  )
  .map((n) => ({ kind: 'number', embedded: n, forbidden: [...new Set([n, n.replace(/[ -]/g, '')])] }));

export const emailArb: fc.Arbitrary<Sensitive> = fc
  .emailAddress()
  .map((e) => ({ kind: 'email', embedded: e, forbidden: [e] }));

const FIELDS = ['message', 'providerCode', 'invoiceNumber', 'status', 'note'] as const;
type Field = (typeof FIELDS)[number];

export interface GeneratedFailure {
  context: FailureContext;
  allowEmail: boolean;
  sensitive: Sensitive[];
}

const CODES: Array<GatewayErrorCode | 'unclassified'> = [
  'insufficient_funds',
  'payment_method_invalid',
  'declined',
  'rate_limited',
  'api_error',
  'network_timeout',
  'configuration_error',
  'unclassified',
];

export const failureArb: fc.Arbitrary<GeneratedFailure> = fc
  .record({
    items: fc.array(
      fc.record({
        value: fc.oneof(secretArb, numberArb, emailArb),
        field: fc.constantFrom<Field>(...FIELDS),
        before: fc.string({ maxLength: 30 }),
        after: fc.string({ maxLength: 30 }),
        // Separators that cannot glue the value to the text around it.
        sep: fc.constantFrom(' ', '\n', ', ', '; ', ' (', ': ', '\t'),
      }),
      { minLength: 1, maxLength: 6 },
    ),
    allowEmail: fc.boolean(),
    code: fc.constantFrom(...CODES),
    kind: fc.constantFrom('payment', 'refund', 'scheduled_payment', 'webhook' as const),
    rail: fc.constantFrom('stripe', 'paypal', 'ach' as const),
    // Below 10^8 minor units, so the formatted amount has no run of 8 digits to collide with a number.
    amountMinor: fc.integer({ min: 1, max: 99_999_999 }),
    currency: fc.constantFrom('USD', 'EUR', 'JPY'),
    previousAttempts: fc.integer({ min: 0, max: 5 }),
  })
  .map(({ items, allowEmail, code, kind, rail, amountMinor, currency, previousAttempts }) => {
    const fields: Record<Field, string> = {
      message: '',
      providerCode: '',
      invoiceNumber: '',
      status: '',
      note: '',
    };
    for (const { value, field, before, after, sep } of items) {
      fields[field] += `${before}${sep}${value.embedded}${sep}${after}`;
    }
    const context: FailureContext = {
      kind,
      code,
      providerCode: fields.providerCode,
      message: fields.message,
      rail,
      amountMinor,
      currency,
      invoiceNumber: fields.invoiceNumber,
      previousAttempts,
      history: [
        { at: '2026-11-25T09:00:00Z', status: 'processing', note: 'sent to provider' },
        { at: new Date('2026-11-25T09:00:05Z'), status: fields.status, note: fields.note },
      ],
    };
    return { context, allowEmail, sensitive: items.map((i) => i.value) };
  });

/** The strings from `failure` that must not be in `sent`, given the tenant's email setting. */
export function leaks(failure: GeneratedFailure, sent: string): string[] {
  return failure.sensitive
    .filter((s) => s.kind !== 'email' || !failure.allowEmail)
    .flatMap((s) => s.forbidden)
    .filter((f) => sent.includes(f));
}
