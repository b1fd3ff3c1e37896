import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reject } from '../src/approvals/approvals.js';
import { verifyAuditLog } from '../src/audit/verify.js';
import { RefusedError } from '../src/errors.js';
import { type ApprovalRequired, type PaymentConfirmation, payInvoice } from '../src/payments/pay.js';
import { getPaymentStatus } from '../src/payments/status.js';
import { createFixture, type Fixture } from './support/fixture.js';

function required(r: unknown): ApprovalRequired {
  expect(r).toMatchObject({ status: 'approval_required' });
  return r as ApprovalRequired;
}

describe('pay_invoice through the engine', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture();
    await f.addMethod({
      rail: 'stripe',
      token: 'pm_card_visa',
      label: 'Corporate Visa',
      brand: 'visa',
      last4: '4242',
    });
    await f.addInvoice('INV-2025-001', 500_00);
  });
  afterAll(async () => f.close());

  it('seed 1: pay INV-2025-001 $500.00 by Stripe, approved by admin@example.com', async () => {
    const caller = { agentKey: f.agentKey };
    const input = { invoice: 'INV-2025-001', amount: '500.00', currency: 'USD', method: 'stripe' };
    const ask = required(await payInvoice(f.deps, caller, input));
    expect(ask.approve_url).toBe(`http://127.0.0.1:8787/approvals/${ask.approval_id}`);
    expect(ask.summary).toContain(
      '500.00 USD to Acme Supplies for invoice INV-2025-001 by stripe (Corporate Visa ····4242)',
    );
    // Asking again returns the same pending request.
    expect(required(await payInvoice(f.deps, caller, input)).approval_id).toBe(ask.approval_id);
    expect(f.sandbox.ledger.charges()).toHaveLength(0);

    const token = await f.approveAs(f.admin, ask.approval_id);
    expect(token).toMatch(/^apt_/);
    const done = (await payInvoice(f.deps, caller, {
      ...input,
      approval_token: token,
    })) as PaymentConfirmation;
    expect(done).toMatchObject({
      success: true,
      status: 'paid',
      invoice_number: 'INV-2025-001',
      amount: '500.00',
      amount_minor: 50000,
      currency: 'USD',
      payment_method: 'stripe',
      approved_by: 'admin@example.com',
    });
    expect(done.gateway_reference).toMatch(/^pi_/);
    expect(done.confirmation_number).toMatch(/^PG-/);
    expect(done.paid_at).toBeTruthy();
    const charges = f.sandbox.ledger.charges(done.payment_id);
    expect(charges).toHaveLength(1);
    expect(charges[0]!.amountMinor).toBe(50000);

    // The invoice is paid, so presenting the token again is refused before it is even looked at.
    await expect(payInvoice(f.deps, caller, { ...input, approval_token: token })).rejects.toMatchObject({
      code: 'invoice_already_paid',
    });
    // The invoice is paid: a new request is refused.
    await expect(payInvoice(f.deps, caller, input)).rejects.toMatchObject({ code: 'invoice_already_paid' });

    const status = await getPaymentStatus(f.deps, caller, { invoice: 'INV-2025-001' });
    expect(status).toMatchObject({ status: 'paid', payment_id: done.payment_id });
    expect((status as { history: { status: string }[] }).history.map((h) => h.status)).toEqual([
      'processing',
      'paid',
    ]);
    expect((await verifyAuditLog(f.t.db)).ok).toBe(true);
  });

  it('a rejected approval never yields a token', async () => {
    await f.addInvoice('INV-REJ', 10_00);
    const ask = required(
      await payInvoice(
        f.deps,
        { agentKey: f.agentKey },
        { invoice: 'INV-REJ', amount: '10.00', currency: 'USD', method: 'stripe' },
      ),
    );
    const rejected = await reject(f.t.db, f.tenant.id, f.approver, ask.approval_id, 'not this one');
    expect(rejected.status).toBe('rejected');
    await expect(f.approveAs(f.admin, ask.approval_id)).rejects.toMatchObject({
      code: 'approval_not_pending',
    });
  });

  it('20 concurrent calls with one valid token make exactly one payment and one provider charge', async () => {
    await f.addInvoice('INV-RACE', 123_45);
    const caller = { agentKey: f.agentKey };
    const input = { invoice: 'INV-RACE', amount: '123.45', currency: 'USD', method: 'stripe' };
    const ask = required(await payInvoice(f.deps, caller, input));
    const token = await f.approveAs(f.approver, ask.approval_id);
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, () => payInvoice(f.deps, caller, { ...input, approval_token: token })),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    expect(ok).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') {
        expect(r.reason).toBeInstanceOf(RefusedError);
        expect(['approval_token_used', 'invoice_payment_in_progress', 'invoice_already_paid']).toContain(
          (r.reason as RefusedError).code,
        );
      }
    }
    const paymentId = (ok[0] as PromiseFulfilledResult<PaymentConfirmation>).value.payment_id;
    expect(f.sandbox.ledger.charges(paymentId)).toHaveLength(1);
    const { rows } = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = 'INV-RACE'",
      ),
    );
    expect(rows[0]!.n).toBe(1);
  });

  it('two approved ways to pay one invoice, used at once: one payment, and the other approval is left unused', async () => {
    await f.addMethod({ rail: 'paypal', token: 'pp_vault_success', label: 'Company PayPal' });
    await f.addInvoice('INV-TWICE', 77_00);
    const caller = { agentKey: f.agentKey };
    const byCard = { invoice: 'INV-TWICE', amount: '77.00', currency: 'USD', method: 'stripe' };
    const byPaypal = { ...byCard, method: 'paypal' };
    const cardAsk = required(await payInvoice(f.deps, caller, byCard));
    const paypalAsk = required(await payInvoice(f.deps, caller, byPaypal));
    expect(paypalAsk.approval_id).not.toBe(cardAsk.approval_id);
    const tokens = [
      await f.approveAs(f.approver, cardAsk.approval_id),
      await f.approveAs(f.approver, paypalAsk.approval_id),
    ];
    const results = await Promise.allSettled([
      payInvoice(f.deps, caller, { ...byCard, approval_token: tokens[0] }),
      payInvoice(f.deps, caller, { ...byPaypal, approval_token: tokens[1] }),
    ]);
    const paid = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value as PaymentConfirmation] : []));
    expect(paid).toHaveLength(1);
    const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason).toBeInstanceOf(RefusedError);
    expect(['invoice_payment_in_progress', 'invoice_already_paid']).toContain(refused.reason.code);
    const statuses = await f.t.db.withTenant(f.tenant.id, async (c) => ({
      payments: (
        await c.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = 'INV-TWICE'",
        )
      ).rows[0]!.n,
      approvals: (
        await c.query<{ id: string; status: string }>('SELECT id, status FROM approvals WHERE id = ANY($1)', [
          [cardAsk.approval_id, paypalAsk.approval_id],
        ])
      ).rows,
    }));
    expect(statuses.payments).toBe(1);
    // The loser's refusal rolled back with everything else it did: its approval can still be used once
    // the human decides (a refund of the first, say), rather than burned for nothing.
    const paidWith = paid[0]!.provider === 'stripe' ? cardAsk.approval_id : paypalAsk.approval_id;
    expect(statuses.approvals).toEqual(
      expect.arrayContaining([
        { id: paidWith, status: 'consumed' },
        {
          id: paidWith === cardAsk.approval_id ? paypalAsk.approval_id : cardAsk.approval_id,
          status: 'approved',
        },
      ]),
    );
  });
});
