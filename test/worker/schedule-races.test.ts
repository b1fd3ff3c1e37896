/**
 * schedule_payment / cancel_scheduled_payment against the worker — "today" in the tenant's
 * time zone when it is another day in UTC, cancel racing the worker's execution, a second schedule of
 * the same invoice, and pay_invoice on an invoice already scheduled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { todayIn } from '../../src/payments/calendar.js';
import {
  type ApprovalRequired,
  type PaymentConfirmation,
  payInvoice,
  schedulePayment,
} from '../../src/payments/pay.js';
import { cancelScheduledPayment } from '../../src/payments/status.js';
import { createWorker } from '../../src/worker/index.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { scheduleApproved } from './support.js';

describe('Schedules', () => {
  let f: Fixture;
  let agent: Fixture['agentKey'];
  beforeAll(async () => {
    f = await createFixture({ slug: 'sched-co' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
    agent = (await f.newAgent({ name: 'scheduler', rateLimitPerMinute: 100_000 })).agentKey;
  });
  afterAll(async () => f?.close());

  const rows = async (invoice: string) =>
    (
      await f.t.db.withTenant(f.tenant.id, (c) =>
        c.query<{
          invoice_status: string;
          schedule_status: string | null;
          payment_id: string | null;
          payment_status: string | null;
        }>(
          `SELECT i.status AS invoice_status, s.status AS schedule_status, p.id AS payment_id, p.status AS payment_status
             FROM invoices i LEFT JOIN scheduled_payments s ON s.invoice_id = i.id LEFT JOIN payments p ON p.invoice_id = i.id
            WHERE i.number = $1`,
          [invoice],
        ),
      )
    ).rows;

  it("today in the tenant's time zone (another day in UTC) is accepted and run by the next pass; UTC's today is refused when it is past locally", async () => {
    const now = new Date();
    // A zone whose date differs from UTC's right now: UTC+14 late in the UTC day, UTC-11 early in it.
    const tz = now.getUTCHours() >= 10 ? 'Pacific/Kiritimati' : 'Pacific/Pago_Pago';
    const utcToday = now.toISOString().slice(0, 10);
    // The tenant's zone, as `tenant create --timezone` would have set it.
    await f.t.db.withSystem((c) =>
      c.query('UPDATE tenants SET timezone = $2 WHERE id = $1', [f.tenant.id, tz]),
    );
    f.tenant.timezone = tz;
    const localToday = todayIn(tz);
    expect(localToday).not.toBe(utcToday);
    await f.addInvoice('INV-TZ-1', 77_00);
    const input = { invoice: 'INV-TZ-1', amount: '77.00', currency: 'USD', method: 'stripe' };
    const ask = (await schedulePayment(
      f.deps,
      { agentKey: agent },
      { ...input, scheduled_date: localToday },
    )) as ApprovalRequired;
    expect(ask.status).toBe('approval_required');
    const token = await f.approveAs(f.admin, ask.approval_id);
    const done = (await schedulePayment(
      f.deps,
      { agentKey: agent },
      {
        ...input,
        scheduled_date: localToday,
        approval_token: token,
      },
    )) as PaymentConfirmation;
    expect(done.status).toBe('scheduled');
    const pass = await createWorker(f.deps).runOnce();
    expect(pass.errors).toBe(0);
    const [r] = await rows('INV-TZ-1');
    expect(r).toMatchObject({
      invoice_status: 'paid',
      schedule_status: 'executed',
      payment_status: 'succeeded',
    });
    expect(f.sandbox.ledger.charges(r!.payment_id!)).toHaveLength(1);

    if (utcToday < localToday) {
      await f.addInvoice('INV-TZ-2', 78_00);
      await expect(
        schedulePayment(
          f.deps,
          { agentKey: agent },
          {
            invoice: 'INV-TZ-2',
            amount: '78.00',
            currency: 'USD',
            method: 'stripe',
            scheduled_date: utcToday,
          },
        ),
      ).rejects.toMatchObject({ code: 'invalid_date' });
    }
    await f.t.db.withSystem((c) =>
      c.query("UPDATE tenants SET timezone = 'UTC' WHERE id = $1", [f.tenant.id]),
    );
    f.tenant.timezone = 'UTC';
  });

  it('cancel racing the worker, 12 times: either cancelled and never charged, or charged once and the cancel refused', async () => {
    for (let i = 0; i < 12; i++) {
      const invoice = `INV-RACE-${i}`;
      await f.addInvoice(invoice, 10_00 + i);
      const scheduledId = await scheduleApproved(f, agent, invoice, ((10_00 + i) / 100).toFixed(2), 'stripe');
      const worker = createWorker(f.deps);
      const [cancel, pass] = await Promise.allSettled([
        cancelScheduledPayment(f.deps, { agentKey: agent }, { scheduled_payment: scheduledId }),
        worker.runOnce(),
      ]);
      expect(pass.status).toBe('fulfilled');
      const [r] = await rows(invoice);
      if (cancel.status === 'fulfilled') {
        expect(r, `run ${i}`).toMatchObject({
          invoice_status: 'approved',
          schedule_status: 'cancelled',
          payment_id: null,
        });
      } else {
        expect((cancel.reason as { code?: string }).code, `run ${i}`).toBe('not_cancellable');
        expect(r, `run ${i}`).toMatchObject({
          invoice_status: 'paid',
          schedule_status: 'executed',
          payment_status: 'succeeded',
        });
        expect(f.sandbox.ledger.charges(r!.payment_id!)).toHaveLength(1);
      }
    }
  });

  it('a scheduled invoice cannot also be paid now, nor scheduled a second time', async () => {
    await f.addInvoice('INV-DUP-1', 55_00);
    await scheduleApproved(f, agent, 'INV-DUP-1', '55.00', 'stripe');
    const input = { invoice: 'INV-DUP-1', amount: '55.00', currency: 'USD', method: 'stripe' };
    await expect(payInvoice(f.deps, { agentKey: agent }, input)).rejects.toMatchObject({
      code: expect.any(String),
    });
    await expect(
      schedulePayment(f.deps, { agentKey: agent }, { ...input, scheduled_date: todayIn('UTC') }),
    ).rejects.toMatchObject({ code: expect.any(String) });
    await createWorker(f.deps).runOnce();
    const all = await rows('INV-DUP-1');
    expect(all).toHaveLength(1);
    expect(f.sandbox.ledger.charges(all[0]!.payment_id!)).toHaveLength(1);
  });
});
