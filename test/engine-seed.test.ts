/** The seed's three requests, end to end in the sandbox: request, human approval, confirmation. */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approve } from '../src/approvals/approvals.js';
import { verifyAuditLog } from '../src/audit/verify.js';
import { addDays, nextBusinessDay, todayIn } from '../src/payments/calendar.js';
import { type ApprovalRequired, payInvoice, schedulePayment } from '../src/payments/pay.js';
import { reconcilePayment } from '../src/payments/phases.js';
import { refundPayment } from '../src/payments/refund.js';
import { executeScheduledPayment } from '../src/payments/scheduled.js';
import { getPaymentStatus } from '../src/payments/status.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('the seed requests', () => {
  let f: Fixture;
  const caller = () => ({ agentKey: f.agentKey });

  beforeAll(async () => {
    f = await createFixture();
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    await f.addMethod({
      rail: 'ach',
      token: 'pm_usBankAccount_success',
      provider: 'stripe',
      bankName: 'STRIPE TEST BANK',
      last4: '6789',
    });
    await f.addMethod({ rail: 'paypal', token: 'pp_vault_success', label: 'PayPal business' });
    await f.addInvoice('INV-2025-002', 1_250_00);
    await f.addInvoice('INV-2025-003', 320_00);
  });
  afterAll(async () => f.close());

  it('seed 2: schedule INV-2025-002 by ACH for a date, approved by jdoe; it runs when due and settles later', async () => {
    // A week ahead, on a banking day (ACH is scheduled on banking days only): the first from day 7.
    const date = nextBusinessDay(addDays(todayIn(f.tenant.timezone), 6));
    const input = {
      invoice: 'INV-2025-002',
      amount: '1250.00',
      currency: 'USD',
      method: 'ach',
      scheduled_date: date,
    };
    const ask = (await schedulePayment(f.deps, caller(), input)) as ApprovalRequired;
    expect(ask.summary).toContain(`on ${date}`);
    const token = await f.approveAs(f.approver, ask.approval_id);
    const scheduled = (await schedulePayment(f.deps, caller(), {
      ...input,
      approval_token: token,
    })) as unknown as unknown as unknown as Record<string, string>;
    expect(scheduled).toMatchObject({
      success: true,
      status: 'scheduled',
      scheduled_date: date,
      approved_by: 'jdoe@example.com',
      payment_method: 'ach',
    });
    expect(f.sandbox.ledger.charges()).toHaveLength(0);

    // The date arrives: the worker's pass runs it (here called directly).
    const payment = (await executeScheduledPayment(f.deps, f.tenant.id, scheduled.scheduled_payment_id!))!;
    expect(payment.status).toBe('processing');
    expect(payment.providerReference).toMatch(/^pi_/);
    // Running it twice does nothing: the schedule is no longer due.
    expect(await executeScheduledPayment(f.deps, f.tenant.id, scheduled.scheduled_payment_id!)).toBeNull();
    // ACH settles later; asking the provider moves it to paid.
    await f.sandbox.stripe.settleAch();
    const settled = await reconcilePayment(f.deps, f.tenant.id, payment.id);
    expect(settled.status).toBe('succeeded');
    const status = await getPaymentStatus(f.deps, caller(), { invoice: 'INV-2025-002' });
    expect(status).toMatchObject({ status: 'paid', approved_by: 'jdoe@example.com', amount: '1250.00' });
    expect(f.sandbox.ledger.charges(payment.id)).toHaveLength(1);
  });

  it('seed 3: pay INV-2025-003 by PayPal, then refund it (partial, then the rest)', async () => {
    const input = { invoice: 'INV-2025-003', amount: '320.00', currency: 'USD', method: 'paypal' };
    const ask = (await payInvoice(f.deps, caller(), input)) as ApprovalRequired;
    const paid = (await payInvoice(f.deps, caller(), {
      ...input,
      approval_token: await f.approveAs(f.admin, ask.approval_id),
    })) as unknown as unknown as Record<string, string>;
    expect(paid).toMatchObject({ status: 'paid', payment_method: 'paypal' });

    const part = { payment: paid.payment_id!, amount: '20.00', reason: 'damaged item' };
    const refundAsk = (await refundPayment(f.deps, caller(), part)) as ApprovalRequired;
    expect(refundAsk.summary).toContain('Refund 20.00 USD');
    const first = await refundPayment(f.deps, caller(), {
      ...part,
      approval_token: await f.approveAs(f.approver, refundAsk.approval_id),
    });
    expect(first).toMatchObject({ success: true, status: 'partially_refunded', refunded_amount: '20.00' });

    const rest = { payment: paid.gateway_reference!, reason: 'order cancelled' }; // by the provider's reference, no amount: the rest
    const restAsk = (await refundPayment(f.deps, caller(), rest)) as ApprovalRequired;
    expect(restAsk.summary).toContain('Refund 300.00 USD');
    const second = await refundPayment(f.deps, caller(), {
      ...rest,
      approval_token: await f.approveAs(f.approver, restAsk.approval_id),
    });
    expect(second).toMatchObject({ status: 'refunded', refunded_amount: '320.00' });
    expect(f.sandbox.ledger.totalRefunded(paid.payment_id)).toBe(320_00);
    expect((await verifyAuditLog(f.t.db)).ok).toBe(true);
  });

  it('property: random sequences of partial refunds, some concurrent, never exceed the capture', async () => {
    let n = 0;
    // A busy agent: this test makes far more calls a minute than the default rate limit allows.
    const busy = (await f.newAgent({ name: 'refund-bot', rateLimitPerMinute: 10_000 })).agentKey;
    const caller = () => ({ agentKey: busy });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(fc.integer({ min: 1, max: 6_000 }), { minLength: 1, maxLength: 3 }), {
          minLength: 1,
          maxLength: 4,
        }),
        async (rounds) => {
          n++;
          const number = `INV-P-${n}`;
          await f.addInvoice(number, 100_00);
          const input = { invoice: number, amount: '100.00', currency: 'USD', method: 'stripe' };
          const ask = (await payInvoice(f.deps, caller(), input)) as ApprovalRequired;
          const paid = (await payInvoice(f.deps, caller(), {
            ...input,
            approval_token: await f.approveAs(f.admin, ask.approval_id),
          })) as unknown as unknown as Record<string, string>;
          for (const round of rounds) {
            // Each refund in a round is approved first, then all are presented at once.
            const tokens: { amount: string; token: string; reason: string }[] = [];
            for (const [i, minor] of round.entries()) {
              const amount = `${Math.floor(minor / 100)}.${String(minor % 100).padStart(2, '0')}`;
              const reason = `r${n}-${tokens.length}-${i}-${Math.random()}`;
              const r = await refundPayment(f.deps, caller(), {
                payment: paid.payment_id!,
                amount,
                reason,
              }).catch((e) => e);
              if ((r as ApprovalRequired).status === 'approval_required') {
                tokens.push({
                  amount,
                  reason,
                  token: (await approve(f.t.db, f.tenant.id, f.admin, (r as ApprovalRequired).approval_id))
                    .approvalToken!,
                });
              }
            }
            await Promise.allSettled(
              tokens.map((t) =>
                refundPayment(f.deps, caller(), {
                  payment: paid.payment_id!,
                  amount: t.amount,
                  reason: t.reason,
                  approval_token: t.token,
                }),
              ),
            );
          }
          const refunded = f.sandbox.ledger.totalRefunded(paid.payment_id);
          expect(refunded).toBeLessThanOrEqual(100_00);
          const { rows } = await f.t.db.withTenant(f.tenant.id, (c) =>
            c.query<{ total: number }>(
              "SELECT COALESCE(sum(amount_minor), 0)::bigint AS total FROM refunds WHERE payment_id = $1 AND status <> 'failed'",
              [paid.payment_id],
            ),
          );
          expect(rows[0]!.total).toBe(refunded);
        },
      ),
      { numRuns: 12 },
    );
  });
});
