import { describe, expect, it } from 'vitest';
import { createFaults, parseFaultHeader } from '../../src/sandbox/faults.js';
import { createLedger } from '../../src/sandbox/ledger.js';

describe('ledger', () => {
  it('counts money that moved; a failed ACH debit stays in the history but leaves the totals', () => {
    const ledger = createLedger();
    ledger.record({
      provider: 'stripe',
      kind: 'charge',
      id: 'pi_1',
      paymentId: 'p1',
      amountMinor: 500,
      currency: 'usd',
      status: 'succeeded',
    });
    ledger.record({
      provider: 'stripe',
      kind: 'charge',
      id: 'pi_2',
      paymentId: 'p2',
      amountMinor: 700,
      currency: 'usd',
      status: 'processing',
    });
    ledger.record({
      provider: 'paypal',
      kind: 'charge',
      id: 'cap_1',
      paymentId: 'p3',
      amountMinor: 900,
      currency: 'USD',
      status: 'COMPLETED',
    });
    ledger.record({
      provider: 'stripe',
      kind: 'refund',
      id: 're_1',
      paymentId: 'p1',
      refundOf: 'pi_1',
      amountMinor: 200,
      currency: 'usd',
      status: 'succeeded',
    });
    expect(ledger.totalCharged()).toBe(2100);
    expect(ledger.totalCharged(undefined, 'stripe')).toBe(1200);
    ledger.updateStatus('stripe', 'pi_2', 'failed');
    expect(ledger.totalCharged(undefined, 'stripe')).toBe(500);
    expect(ledger.charges('p2')).toHaveLength(1);
    expect(ledger.refunds('p1').map((r) => r.amountMinor)).toEqual([200]);
    expect(ledger.totalRefunded('p1')).toBe(200);
    // Entries are copies: a test cannot rewrite what happened.
    ledger.charges('p1')[0]!.amountMinor = 1;
    expect(ledger.totalCharged('p1')).toBe(500);
  });
});

describe('faults', () => {
  it('parses the header forms and refuses unknown ones', () => {
    expect(parseFaultHeader('latency=200')).toEqual({ kind: 'latency', latencyMs: 200 });
    expect(parseFaultHeader('500')).toEqual({ kind: 'http_500' });
    expect(parseFaultHeader('429;retry_after=3')).toEqual({ kind: 'http_429', retryAfterSeconds: 3 });
    expect(parseFaultHeader('429')).toEqual({ kind: 'http_429', retryAfterSeconds: undefined });
    expect(parseFaultHeader('timeout_after_charge')).toEqual({
      kind: 'timeout_after_charge',
      hangMs: undefined,
    });
    expect(parseFaultHeader('timeout_after_charge=5000')).toEqual({
      kind: 'timeout_after_charge',
      hangMs: 5000,
    });
    expect(() => parseFaultHeader('503')).toThrow(/unknown fault/);
    expect(() => parseFaultHeader('latency=-1')).toThrow(/whole number/);
  });

  it('a queued fault applies to the next matching requests only, `times` times; a header wins', () => {
    const faults = createFaults();
    faults.next('stripe', {
      kind: 'http_500',
      times: 2,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    const post = { method: 'POST', path: '/v1/payment_intents' };
    expect(faults.take('stripe', { method: 'GET', path: '/v1/payment_intents/pi_1' })).toBeUndefined();
    expect(faults.take('paypal', post)).toBeUndefined();
    expect(faults.take('stripe', { ...post, header: 'latency=5' })).toEqual({
      kind: 'latency',
      latencyMs: 5,
    });
    expect(faults.pending('stripe')).toBe(2);
    expect(faults.take('stripe', post)?.kind).toBe('http_500');
    expect(faults.take('stripe', post)?.kind).toBe('http_500');
    expect(faults.take('stripe', post)).toBeUndefined();
    expect(faults.fired('stripe').map((f) => [f.kind, f.source])).toEqual([
      ['latency', 'header'],
      ['http_500', 'queue'],
      ['http_500', 'queue'],
    ]);
  });

  it('a queued stale_search waits for a search, whatever else comes first; PayPal refuses it', () => {
    const faults = createFaults();
    faults.next('stripe', { kind: 'stale_search' });
    expect(faults.take('stripe', { method: 'GET', path: '/v1/payment_intents/pi_1' })).toBeUndefined();
    expect(faults.take('stripe', { method: 'POST', path: '/v1/payment_intents' })).toBeUndefined();
    expect(faults.pending('stripe')).toBe(1);
    expect(faults.take('stripe', { method: 'GET', path: '/v1/payment_intents/search' })?.kind).toBe(
      'stale_search',
    );
    expect(faults.pending('stripe')).toBe(0);
    expect(() => faults.next('paypal', { kind: 'stale_search' })).toThrow(/Stripe fault/);
    expect(() =>
      faults.take('paypal', { method: 'POST', path: '/v2/checkout/orders', header: 'stale_search' }),
    ).toThrow(/Stripe fault/);
  });
});
