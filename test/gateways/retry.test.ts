/**
 * The one retry policy, observed through an injected sleep: every wait is recorded, none is slept.
 */
import { ExponentialBackoff, noJitterGenerator } from 'cockatiel';
import { describe, expect, it } from 'vitest';
import { withRetry } from '../../src/gateways/retry.js';
import { GatewayError, type GatewayErrorCode } from '../../src/gateways/types.js';

function recorder() {
  const waits: number[] = [];
  return { waits, sleep: async (ms: number) => void waits.push(ms) };
}

const fail = (code: GatewayErrorCode, details: GatewayError['details'] = {}) =>
  new GatewayError(code, code, 'stripe', details);

/** An operation that fails with the given errors in turn, then succeeds; counts its calls. */
function script(errors: GatewayError[], result = 'ok') {
  const calls: number[] = [];
  return {
    calls,
    run: async (attempt: number) => {
      calls.push(attempt);
      const error = errors[calls.length - 1];
      if (error) throw error;
      return result;
    },
  };
}

const deterministic = () =>
  new ExponentialBackoff({ generator: noJitterGenerator, initialDelay: 100, maxDelay: 10_000 });

describe('withRetry', () => {
  it('retries api_error and rate_limited with exponential backoff, up to 3 attempts', async () => {
    const { waits, sleep } = recorder();
    const op = script([fail('api_error'), fail('rate_limited')]);
    await expect(withRetry(op.run, { sleep, backoff: deterministic() })).resolves.toBe('ok');
    expect(op.calls).toEqual([1, 2, 3]);
    expect(waits).toEqual([100, 200]);

    const exhausted = script([fail('api_error'), fail('api_error'), fail('api_error'), fail('api_error')]);
    const waits2: number[] = [];
    await expect(
      withRetry(exhausted.run, { sleep: async (ms) => void waits2.push(ms), backoff: deterministic() }),
    ).rejects.toMatchObject({ code: 'api_error' });
    expect(exhausted.calls).toEqual([1, 2, 3]);
    expect(waits2).toEqual([100, 200]);
  });

  it('the default backoff is jittered, positive and bounded', async () => {
    const { waits, sleep } = recorder();
    const op = script([fail('api_error'), fail('api_error'), fail('api_error')]);
    await expect(withRetry(op.run, { sleep })).rejects.toMatchObject({ code: 'api_error' });
    expect(waits).toHaveLength(2);
    for (const wait of waits) {
      expect(wait).toBeGreaterThan(0);
      expect(wait).toBeLessThanOrEqual(30_000);
    }
  });

  it('never retries declines, invalid methods, insufficient funds or configuration errors', async () => {
    for (const code of [
      'declined',
      'payment_method_invalid',
      'insufficient_funds',
      'configuration_error',
    ] as const) {
      const { waits, sleep } = recorder();
      const op = script([fail(code)]);
      await expect(withRetry(op.run, { sleep })).rejects.toMatchObject({ code });
      expect(op.calls).toEqual([1]);
      expect(waits).toEqual([]);
    }
  });

  it("honours the provider's hints: Retry-After as a floor, Stripe-Should-Retry: false as a stop", async () => {
    const { waits, sleep } = recorder();
    const op = script([fail('rate_limited', { retryAfterSeconds: 7 })]);
    await expect(withRetry(op.run, { sleep, backoff: deterministic() })).resolves.toBe('ok');
    expect(waits).toEqual([7000]);

    const told = script([fail('api_error', { retryable: false })]);
    await expect(withRetry(told.run, { sleep })).rejects.toMatchObject({ code: 'api_error' });
    expect(told.calls).toEqual([1]);

    const tooLong = script([fail('rate_limited', { retryAfterSeconds: 3600 })]);
    await expect(withRetry(tooLong.run, { sleep, maxDelayMs: 60_000 })).rejects.toMatchObject({
      code: 'rate_limited',
    });
    expect(tooLong.calls).toEqual([1]);
  });

  it('after a timeout, asks for the outcome first: a known outcome ends it without a retry', async () => {
    const { waits, sleep } = recorder();
    const op = script([fail('network_timeout', { outcomeUnknown: true })]);
    const asked: number[] = [];
    const result = await withRetry(op.run, {
      sleep,
      checkOutcome: async () => {
        asked.push(op.calls.length);
        return 'found-it';
      },
    });
    expect(result).toBe('found-it');
    expect(op.calls).toEqual([1]);
    expect(asked).toEqual([1]);
    expect(waits).toEqual([]);
  });

  it('after a timeout the provider has no record of, retries (the same operation, so the same key)', async () => {
    const { waits, sleep } = recorder();
    const op = script([fail('network_timeout', { outcomeUnknown: true })]);
    await expect(
      withRetry(op.run, { sleep, backoff: deterministic(), checkOutcome: async () => null }),
    ).resolves.toBe('ok');
    expect(op.calls).toEqual([1, 2]);
    expect(waits).toEqual([100]);
  });

  it('a timeout with no way to ask, or when asking fails, stays "outcome unknown" and is not retried', async () => {
    const { sleep } = recorder();
    const op = script([fail('network_timeout', { outcomeUnknown: true })]);
    await expect(withRetry(op.run, { sleep })).rejects.toMatchObject({ code: 'network_timeout' });
    expect(op.calls).toEqual([1]);

    const op2 = script([fail('network_timeout', { outcomeUnknown: true })]);
    await expect(
      withRetry(op2.run, {
        sleep,
        checkOutcome: async () => {
          throw fail('api_error');
        },
      }),
    ).rejects.toMatchObject({ code: 'network_timeout' });
    expect(op2.calls).toEqual([1]);
  });

  it('does not touch errors that are not GatewayErrors', async () => {
    const bug = new TypeError('bug');
    const { sleep, waits } = recorder();
    await expect(withRetry(async () => Promise.reject(bug), { sleep })).rejects.toBe(bug);
    expect(waits).toEqual([]);
  });
});
