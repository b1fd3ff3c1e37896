/**
 * The emulator's table of Stripe test payment methods agrees with Stripe's documentation as transcribed
 * in ../shared/reference/stripe/test-payment-methods.json, and every documented pm_ id is either
 * emulated or listed as deliberately not modelled, with a reason.
 */
import { describe, expect, it } from 'vitest';
import { NOT_MODELLED, TEST_METHODS } from '../../src/sandbox/stripe/test-methods.js';
import { readReferenceJson } from '../support/reference.js';

interface ReferenceEntry {
  id_or_number: string;
  aliases: string[];
  rail: string;
  expected_outcome: string;
  error_code: string | null;
  decline_code: string | null;
}

const reference = readReferenceJson<{ entries: ReferenceEntry[] }>(
  'stripe/test-payment-methods.json',
).entries;

function pmIds(entry: ReferenceEntry): string[] {
  return [entry.id_or_number, ...entry.aliases].filter((id) => id.startsWith('pm_'));
}

describe('Stripe test payment methods', () => {
  it('every documented pm_ id is emulated or deliberately left out', () => {
    const documented = reference.flatMap(pmIds);
    expect(documented.length).toBeGreaterThan(20);
    const unaccounted = documented.filter((id) => !(id in TEST_METHODS) && !(id in NOT_MODELLED));
    expect(unaccounted).toEqual([]);
  });

  it('declines carry the documented error code and decline code', () => {
    for (const entry of reference) {
      if (entry.error_code === null) continue;
      for (const id of pmIds(entry)) {
        const method = TEST_METHODS[id];
        expect(method?.type, id).toBe('card');
        if (method?.type !== 'card') continue;
        expect(method.decline?.code, id).toBe(entry.error_code);
        expect(method.decline?.declineCode ?? null, id).toBe(entry.decline_code);
      }
    }
  });

  it('documented successes do not decline; ACH accounts documented to fail do fail at settlement', () => {
    for (const entry of reference) {
      for (const id of pmIds(entry)) {
        const method = TEST_METHODS[id];
        if (!method) continue;
        const outcome = entry.expected_outcome.toLowerCase();
        if (method.type === 'card' && outcome.startsWith('payment succeeds'))
          expect(method.decline, id).toBeUndefined();
        if (method.type === 'card' && outcome.startsWith('charge succeeds'))
          expect(method.decline, id).toBeUndefined();
        if (method.type === 'us_bank_account') {
          if (outcome.includes('payment fails')) expect(typeof method.settles, id).toBe('object');
          if (outcome.includes('payment succeeds')) expect(method.settles, id).toBe('succeeded');
          if (outcome.includes('blocked by radar')) expect(method.blockedAtConfirm, id).toBeDefined();
          if (outcome.includes('processing indefinitely'))
            expect(method.settles, id).toBe('stays_processing');
        }
      }
    }
  });
});
