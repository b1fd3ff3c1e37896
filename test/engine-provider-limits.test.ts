/**
 * What a provider itself cannot move is refused before a human is asked to approve it: Stripe's
 * three-decimal currencies in steps of ten, PayPal's currencies and its whole-unit HUF and TWD, a NACHA
 * entry's 10-digit amount field and US dollars only. Through the engine and the sandbox emulators.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApprovalRequired, type PaymentConfirmation, payInvoice } from '../src/payments/pay.js';
import { refundPayment } from '../src/payments/refund.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('amounts a provider does not take', () => {
  let f: Fixture;
  const caller = () => ({ agentKey: f.agentKey });

  const approvals = async () => {
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ n: number }>('SELECT count(*)::int AS n FROM approvals'),
    );
    return rows[0]!.n;
  };

  /** Ask, approve as the admin, pay with the token. */
  async function pay(invoice: string, amount: string, currency: string, method: string) {
    const input = { invoice, amount, currency, method };
    const ask = (await payInvoice(f.deps, caller(), input)) as ApprovalRequired;
    expect(ask.status).toBe('approval_required');
    const token = await f.approveAs(f.admin, ask.approval_id);
    return (await payInvoice(f.deps, caller(), { ...input, approval_token: token })) as PaymentConfirmation;
  }

  beforeAll(async () => {
    f = await createFixture({ slug: 'provider-limits' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    await f.addMethod({ rail: 'paypal', token: 'pp_vault_success', label: 'Company PayPal' });
    await f.addMethod({ rail: 'ach', token: 'nacha:operating', provider: 'nacha' });
  }, 120_000);
  afterAll(async () => {
    await f.close();
  });

  it('Stripe: a KWD amount whose last decimal is not 0 is refused before approval; one that is pays', async () => {
    await f.addInvoice('INV-KWD-1', 5_125, 'KWD');
    const before = await approvals();
    await expect(
      payInvoice(f.deps, caller(), {
        invoice: 'INV-KWD-1',
        amount: '5.125',
        currency: 'KWD',
        method: 'stripe',
      }),
    ).rejects.toMatchObject({
      code: 'amount_not_supported',
      message: expect.stringMatching(/Stripe takes KWD in steps of 0\.010 KWD/),
    });
    expect(await approvals()).toBe(before);

    await f.addInvoice('INV-KWD-2', 5_120, 'KWD');
    const paid = await pay('INV-KWD-2', '5.120', 'KWD', 'stripe');
    expect(paid).toMatchObject({ status: 'paid', amount: '5.120', currency: 'KWD' });
    // A partial refund must keep to the same step; nothing is asked of an approver when it does not.
    const beforeRefund = await approvals();
    await expect(
      refundPayment(f.deps, caller(), { payment: paid.payment_id, amount: '0.005' }),
    ).rejects.toMatchObject({ code: 'amount_not_supported' });
    expect(await approvals()).toBe(beforeRefund);
    await expect(
      refundPayment(f.deps, caller(), { payment: paid.payment_id, amount: '0.010' }),
    ).resolves.toMatchObject({
      status: 'approval_required',
    });
  });

  it('PayPal: a currency it does not take, and HUF with decimals, are refused; whole HUF pays', async () => {
    const before = await approvals();
    await f.addInvoice('INV-PP-KWD', 5_120, 'KWD');
    await expect(
      payInvoice(f.deps, caller(), {
        invoice: 'INV-PP-KWD',
        amount: '5.120',
        currency: 'KWD',
        method: 'paypal',
      }),
    ).rejects.toMatchObject({
      code: 'amount_not_supported',
      message: expect.stringMatching(/PayPal does not take KWD/),
    });
    await f.addInvoice('INV-PP-HUF-1', 10_050, 'HUF');
    await expect(
      payInvoice(f.deps, caller(), {
        invoice: 'INV-PP-HUF-1',
        amount: '100.50',
        currency: 'HUF',
        method: 'paypal',
      }),
    ).rejects.toMatchObject({
      code: 'amount_not_supported',
      message: expect.stringMatching(/whole units only/),
    });
    expect(await approvals()).toBe(before);

    await f.addInvoice('INV-PP-HUF-2', 10_000, 'HUF');
    const paid = await pay('INV-PP-HUF-2', '100.00', 'HUF', 'paypal');
    expect(paid).toMatchObject({ status: 'paid', amount: '100.00', currency: 'HUF' });
    // The emulator, like PayPal, refuses "100.00" HUF (DECIMALS_NOT_SUPPORTED): the order said "100".
    expect(f.sandbox.ledger.charges(paid.payment_id)).toMatchObject([
      { amountMinor: 10_000, currency: 'HUF' },
    ]);
  });

  it('NACHA: more than its 10-digit amount field, or another currency than USD, is refused before approval', async () => {
    const before = await approvals();
    await f.addInvoice('INV-ACH-BIG', 10_000_000_000);
    await expect(
      payInvoice(f.deps, caller(), {
        invoice: 'INV-ACH-BIG',
        amount: '100000000.00',
        currency: 'USD',
        method: 'ach',
      }),
    ).rejects.toMatchObject({
      code: 'amount_not_supported',
      message: expect.stringMatching(/at most 99,999,999\.99/),
    });
    await f.addInvoice('INV-ACH-EUR', 1_000, 'EUR');
    await expect(
      payInvoice(f.deps, caller(), {
        invoice: 'INV-ACH-EUR',
        amount: '10.00',
        currency: 'EUR',
        method: 'ach',
      }),
    ).rejects.toMatchObject({
      code: 'amount_not_supported',
      message: expect.stringMatching(/US dollars only/),
    });
    expect(await approvals()).toBe(before);
    // The largest amount the field holds is asked for as usual.
    await f.addInvoice('INV-ACH-MAX', 9_999_999_999);
    await expect(
      payInvoice(f.deps, caller(), {
        invoice: 'INV-ACH-MAX',
        amount: '99999999.99',
        currency: 'USD',
        method: 'ach',
      }),
    ).resolves.toMatchObject({ status: 'approval_required' });
  });
});
