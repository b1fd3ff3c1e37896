import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_CONTEXT_BYTES, sanitizeFailure, scrubText, truncate } from '../../src/analysis/sanitize.js';
import type { FailureContext } from '../../src/analysis/types.js';
import { failureArb, leaks } from './arbitraries.js';

const strict = { allowEmail: false };

describe('scrubText', () => {
  it.each([
    [
      'Stripe secret key',
      'Invalid API Key provided: sk_live_51HxYzAbCdEfGhIjKlMnOp',
      'sk_live_51HxYzAbCdEfGhIjKlMnOp',
    ],
    [
      'Stripe restricted key',
      'key rk_test_4eC39HqLyjWDarjtT1zdp7dc rejected',
      'rk_test_4eC39HqLyjWDarjtT1zdp7dc',
    ],
    [
      'webhook secret',
      'signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
      'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    ],
    ['client secret', 'client_secret pi_3Ab12_secret_xYz789QwErTy', 'pi_3Ab12_secret_xYz789QwErTy'],
    ['approval token', 'token apt_Q2hhbmdlTWVQbGVhc2U', 'apt_Q2hhbmdlTWVQbGVhc2U'],
    ['agent key', 'agent pgk_abcDEF123_ghi-JKL456mnoPQR', 'pgk_abcDEF123_ghi-JKL456mnoPQR'],
    ['Anthropic key', 'x sk-ant-api03-AbCdEf_123-xyz', 'sk-ant-api03-AbCdEf_123-xyz'],
    [
      'Bearer token',
      'Authorization: Bearer A21AAFEpH4PsADK7qSS7pSRsgzfENtu',
      'A21AAFEpH4PsADK7qSS7pSRsgzfENtu',
    ],
    ['password after =', 'login failed password=hunter2!', 'hunter2!'],
    ['quoted JSON secret', '{"client_secret":"s3cr3t value here"}', 's3cr3t value here'],
    ['word after token', 'the token k9Tz2 was refused', 'k9Tz2'],
    ['URL credentials', 'GET https://admin:pa55w0rd@api.example.com/x', 'pa55w0rd'],
    ['PayPal client secret', `EJ${'a1B2c3D4e5'.repeat(7)}x`, 'a1B2c3D4e5a1B2c3'],
    ['JWT', 'jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl', 'eyJhbGciOiJIUzI1NiJ9'],
  ])('removes a %s', (_name, text, secret) => {
    const out = scrubText(text, strict);
    expect(out).not.toContain(secret);
    expect(out).toContain('[redacted]');
  });

  it('keeps only the last four digits of card and account numbers, spaced or not', () => {
    const out = scrubText('card 4242 4242 4242 4242, account 000123456789, routing 110000000', strict);
    expect(out).toBe('card [number …4242], account [number …6789], routing [number …0000]');
  });

  it('masks numbers written with no-break spaces or full-width digits too', () => {
    const out = scrubText(
      'card 4242\u00a04242\u00a04242\u00a04242, account ０００１２３４５６７８９',
      strict,
    );
    expect(out).toBe('card [number …4242], account [number …6789]');
  });

  it('keeps short numbers, amounts, dates and error codes that carry the meaning', () => {
    const text =
      'Your card was declined (card_declined, R01) on 2026-11-26 for 1,250.00 USD after 3 attempts';
    expect(scrubText(text, strict)).toBe(text);
    expect(scrubText('PAYER_ACCOUNT_LOCKED_OR_CLOSED: the token has expired', strict)).toBe(
      'PAYER_ACCOUNT_LOCKED_OR_CLOSED: the token has expired',
    );
  });

  it('removes email addresses unless the tenant allows them', () => {
    const text = 'PayPal account ap@vendor-example.com is restricted';
    expect(scrubText(text, strict)).toBe('PayPal account [email] is restricted');
    expect(scrubText(text, { allowEmail: true })).toBe(text);
  });
});

describe('sanitizeFailure', () => {
  const base: FailureContext = {
    kind: 'payment',
    code: 'insufficient_funds',
    providerCode: 'R01',
    provider: 'nacha',
    message: 'Insufficient funds in account 987654321012',
    rail: 'ach',
    amountMinor: 1_234_567_890,
    currency: 'USD',
    invoiceNumber: 'INV-2026-001',
    previousAttempts: 1,
    history: [{ at: new Date('2026-11-20T10:00:00Z'), status: 'processing', note: 'ACH file sent' }],
  };

  it('passes typed fields as they are and scrubs free text', () => {
    expect(sanitizeFailure(base, strict)).toEqual({
      kind: 'payment',
      code: 'insufficient_funds',
      provider_code: 'R01',
      provider: 'nacha',
      message: 'Insufficient funds in account [number …1012]',
      rail: 'ach',
      // A known-safe field: our own formatting of an integer, not masked although it has 10 digits.
      amount: '12345678.90',
      currency: 'USD',
      invoice_number: 'INV-2026-001',
      previous_attempts: 1,
      history: [{ at: '2026-11-20T10:00:00.000Z', status: 'processing', note: 'ACH file sent' }],
    });
  });

  it('drops values that are not what the types promise', () => {
    const odd = { ...base, rail: 'wire', currency: 'usd', previousAttempts: -1 } as unknown as FailureContext;
    const out = sanitizeFailure(odd, strict);
    expect(out.rail).toBeUndefined();
    expect(out.currency).toBeUndefined();
    expect(out.amount).toBeUndefined();
    expect(out.previous_attempts).toBeUndefined();
  });

  it(`stays within ${MAX_CONTEXT_BYTES} bytes however large the input, keeping the newest history`, () => {
    const huge: FailureContext = {
      ...base,
      message: 'é'.repeat(100_000),
      providerCode: 'x'.repeat(10_000),
      history: Array.from({ length: 200 }, (_, i) => ({
        at: new Date(0),
        status: `s${i}`,
        note: '€'.repeat(2000),
      })),
    };
    const out = sanitizeFailure(huge, strict);
    expect(Buffer.byteLength(JSON.stringify(out))).toBeLessThanOrEqual(MAX_CONTEXT_BYTES);
    expect(out.history.at(-1)?.status).toBe('s199');
  });

  it('cuts text without splitting a character and says so', () => {
    expect(truncate('😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀', 20)).not.toMatch(
      /[\ud800-\udbff](?![\udc00-\udfff])/,
    );
    expect(truncate('a'.repeat(50), 30)).toMatch(/…\[truncated\]$/);
  });
});

describe('sanitizeFailure, as a property', () => {
  it('leaves no generated secret, token, full number or disallowed email in what it returns', () => {
    fc.assert(
      fc.property(failureArb, (failure) => {
        const sent = JSON.stringify(sanitizeFailure(failure.context, { allowEmail: failure.allowEmail }));
        expect(leaks(failure, sent)).toEqual([]);
        expect(Buffer.byteLength(sent)).toBeLessThanOrEqual(MAX_CONTEXT_BYTES);
      }),
      { numRuns: 1000 },
    );
  });
});
