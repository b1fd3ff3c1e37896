/**
 * Refunds at the edges of currency exponents (JPY 0 decimals, KWD 3), through the engine and
 * the Stripe emulator: partial refunds down to the smallest step Stripe takes, then the rest, never above the capture.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { payInvoice } from '../src/payments/pay.js';
import { refundPayment } from '../src/payments/refund.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('refunds in JPY and KWD', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture({ slug: 'refund-exponents' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
  }, 120_000);
  afterAll(async () => {
    await f.close();
  });

  async function pay(invoice: string, amountMinor: number, amount: string, currency: string) {
    await f.addInvoice(invoice, amountMinor, currency);
    const call = { invoice, amount, currency, method: 'stripe' as const };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, call)) as { approval_id: string };
    const token = await f.approveAs(f.admin, ask.approval_id);
    return (await payInvoice(f.deps, { agentKey: f.agentKey }, { ...call, approval_token: token })) as {
      payment_id: string;
      status: string;
      gateway_reference: string;
    };
  }

  async function refund(payment: string, amount?: string) {
    const input = { payment, ...(amount ? { amount } : {}) };
    const ask = (await refundPayment(f.deps, { agentKey: f.agentKey }, input)) as { approval_id: string };
    const token = await f.approveAs(f.admin, ask.approval_id);
    return (await refundPayment(
      f.deps,
      { agentKey: f.agentKey },
      { ...input, approval_token: token },
    )) as Record<string, unknown>;
  }

  for (const c of [
    { currency: 'JPY', minor: 1000, amount: '1000', one: '1', over: '1000' },
    // Stripe takes three-decimal currencies in steps of 0.010 (engine-provider-limits.test.ts).
    { currency: 'KWD', minor: 1230, amount: '1.230', one: '0.010', over: '1.230' },
  ]) {
    it(`${c.currency}: the smallest step, then the rest; a refund above what is left is refused`, async () => {
      const paid = await pay(`INV-X-${c.currency}`, c.minor, c.amount, c.currency);
      expect(paid.status).toBe('paid');
      expect(f.sandbox.ledger.charges(paid.payment_id)[0]!.amountMinor).toBe(c.minor);
      const first = await refund(paid.payment_id, c.one);
      expect(first.refund_amount).toBe(c.one);
      expect(first.status).toBe('partially_refunded');
      await expect(refund(paid.payment_id, c.over)).rejects.toMatchObject({
        code: 'refund_exceeds_captured',
      });
      const rest = await refund(paid.payment_id);
      expect(rest.status).toBe('refunded');
      const refunded = f.sandbox.ledger
        .refunds()
        .filter((r) => r.refundOf === paid.gateway_reference)
        .reduce((s, r) => s + r.amountMinor, 0);
      expect(refunded).toBe(c.minor);
    });
  }
});
