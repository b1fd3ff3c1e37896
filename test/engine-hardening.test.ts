/** Cases a hostile review found; each was reproduced first, then fixed. */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approve } from '../src/approvals/approvals.js';
import { advisoryLockKey } from '../src/db/pool.js';
import { removePaymentMethod } from '../src/directory/payment-methods.js';
import { addUser } from '../src/directory/users.js';
import { RefusedError } from '../src/errors.js';
import { addDays, todayIn } from '../src/payments/calendar.js';
import { type ApprovalRequired, payInvoice, schedulePayment } from '../src/payments/pay.js';
import { refundPayment } from '../src/payments/refund.js';
import { executeScheduledPayment } from '../src/payments/scheduled.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('engine hardening', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture({ dualAbove: 1_000_00 });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa' });
    await f.addInvoice('INV-IDEM', 77_00);
    await f.addInvoice('INV-1500', 1_500_00);
    await f.addInvoice('INV-SCH', 60_00);
    await f.addInvoice('INV-PIN', 61_00);
    await f.addInvoice('INV-MOVED', 62_00);
  });
  afterAll(async () => f.close());

  it('a retry with the same idempotency key after success replays the answer, it is not refused', async () => {
    const input = {
      invoice: 'INV-IDEM',
      amount: '77.00',
      currency: 'USD',
      method: 'stripe',
      idempotency_key: 'order-77',
    };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, ask.approval_id);
    const first = await payInvoice(f.deps, { agentKey: f.agentKey }, { ...input, approval_token: token });
    const again = await payInvoice(f.deps, { agentKey: f.agentKey }, { ...input, approval_token: token });
    expect(again).toEqual(first);
    expect(f.sandbox.ledger.charges((first as { payment_id: string }).payment_id)).toHaveLength(1);
    await expect(
      payInvoice(f.deps, { agentKey: f.agentKey }, { ...input, amount: '77.01' }),
    ).rejects.toMatchObject({ code: 'idempotency_key_reused' });
  });

  it('dual control counts everything refunded from a payment, so it cannot be split into small refunds', async () => {
    const cfo = await addUser(f.t.db, f.tenant.id, f.admin, { email: 'cfo@example.com', role: 'approver' });
    const input = { invoice: 'INV-1500', amount: '1500.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    await approve(f.t.db, f.tenant.id, f.admin, ask.approval_id);
    const paymentToken = (await approve(f.t.db, f.tenant.id, cfo.user, ask.approval_id)).approvalToken;
    const paid = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { ...input, approval_token: paymentToken },
    )) as {
      payment_id: string;
    };
    // Two refunds of 600.00: each alone is under the 1000.00 threshold, together they are not.
    const half = { payment: paid.payment_id, amount: '600.00', reason: 'first part' };
    const first = (await refundPayment(f.deps, { agentKey: f.agentKey }, half)) as ApprovalRequired;
    expect(first.required_approvals).toBe(1);
    await refundPayment(
      f.deps,
      { agentKey: f.agentKey },
      { ...half, approval_token: await f.approveAs(f.admin, first.approval_id) },
    );
    const second = (await refundPayment(
      f.deps,
      { agentKey: f.agentKey },
      { ...half, reason: 'second part' },
    )) as ApprovalRequired;
    expect(second.required_approvals).toBe(2);
    expect((await approve(f.t.db, f.tenant.id, f.admin, second.approval_id)).approvalToken).toBeUndefined();
    expect((await approve(f.t.db, f.tenant.id, cfo.user, second.approval_id)).approvalToken).toMatch(/^apt_/);
  });

  /** A Stripe payment of `invoice` scheduled for tomorrow and approved by the admin: the schedule's id. */
  const scheduleApproved = async (invoice: string, amount: string): Promise<string> => {
    const input = {
      invoice,
      amount,
      currency: 'USD',
      method: 'stripe',
      scheduled_date: addDays(todayIn('UTC'), 1),
    };
    const ask = (await schedulePayment(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    const scheduled = (await schedulePayment(
      f.deps,
      { agentKey: f.agentKey },
      { ...input, approval_token: await f.approveAs(f.admin, ask.approval_id) },
    )) as unknown as { scheduled_payment_id: string };
    return scheduled.scheduled_payment_id;
  };

  it('a scheduled payment never charges a payment method removed after the approval', async () => {
    const scheduledId = await scheduleApproved('INV-SCH', '60.00');
    const methodId = await f.t.db.withTenant(
      f.tenant.id,
      async (c) =>
        (
          await c.query<{ id: string }>(
            "SELECT id FROM payment_methods WHERE provider_token = 'pm_card_visa'",
          )
        ).rows[0]!.id,
    );
    await removePaymentMethod(f.t.db, f.tenant.id, f.admin, methodId);
    const before = f.sandbox.ledger.charges().length;
    expect(await executeScheduledPayment(f.deps, f.tenant.id, scheduledId)).toBeNull();
    expect(f.sandbox.ledger.charges()).toHaveLength(before);
    const state = await f.t.db.withTenant(f.tenant.id, async (c) => ({
      schedule: (
        await c.query<{ status: string }>('SELECT status FROM scheduled_payments WHERE id = $1', [
          scheduledId,
        ])
      ).rows[0]!.status,
      invoice: (await c.query<{ status: string }>("SELECT status FROM invoices WHERE number = 'INV-SCH'"))
        .rows[0]!.status,
      alerts: (
        await c.query<{ code: string }>('SELECT code FROM alerts WHERE scheduled_payment_id = $1', [
          scheduledId,
        ])
      ).rows,
    }));
    expect(state).toEqual({
      schedule: 'failed',
      invoice: 'approved',
      alerts: [{ code: 'payment_method_invalid' }],
    });
  });

  it('an approval pins the payment method: a method added after it is a different action', async () => {
    await f.addMethod({ rail: 'stripe', token: 'pm_card_mastercard' });
    const input = { invoice: 'INV-PIN', amount: '61.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, ask.approval_id);
    await f.addMethod({ rail: 'stripe', token: 'pm_card_amex' });
    await expect(
      payInvoice(f.deps, { agentKey: f.agentKey }, { ...input, approval_token: token }),
    ).rejects.toMatchObject({ code: 'approval_token_mismatch' });
  });

  it('the daily cap counts schedules waiting for that day', async () => {
    const capped = await f.newAgent({ name: 'daily-capped', maxPerDayMinor: 150_00, capsCurrency: 'USD' });
    const day = todayIn('UTC');
    for (const n of ['INV-DAY-1', 'INV-DAY-2']) await f.addInvoice(n, 100_00);
    const first = {
      invoice: 'INV-DAY-1',
      amount: '100.00',
      currency: 'USD',
      method: 'stripe',
      scheduled_date: day,
    };
    const ask = (await schedulePayment(f.deps, { agentKey: capped.agentKey }, first)) as ApprovalRequired;
    await schedulePayment(
      f.deps,
      { agentKey: capped.agentKey },
      { ...first, approval_token: await f.approveAs(f.admin, ask.approval_id) },
    );
    await expect(
      schedulePayment(f.deps, { agentKey: capped.agentKey }, { ...first, invoice: 'INV-DAY-2' }),
    ).rejects.toMatchObject({ code: 'agent_daily_cap_exceeded' });
    await expect(
      payInvoice(
        f.deps,
        { agentKey: capped.agentKey },
        { invoice: 'INV-DAY-2', amount: '100.00', currency: 'USD', method: 'stripe' },
      ),
    ).rejects.toMatchObject({ code: 'agent_daily_cap_exceeded' });
  });
  it('a burst of concurrent money-moving calls cannot get past the rate limit', async () => {
    const { agentKey } = await f.newAgent({ name: 'burst', rateLimitPerMinute: 3 });
    await f.addInvoice('INV-BURST', 12_00);
    const input = { invoice: 'INV-BURST', amount: '12.00', currency: 'USD', method: 'stripe' };
    const answers = await Promise.all(
      Array.from({ length: 8 }, () =>
        payInvoice(f.deps, { agentKey }, input).then(
          (answer) => (answer as ApprovalRequired).status,
          (error: unknown) => (error as { code?: string }).code,
        ),
      ),
    );
    expect(answers.filter((a) => a === 'approval_required')).toHaveLength(3);
    expect(answers.filter((a) => a === 'rate_limited')).toHaveLength(5);
    // Every call is on the record, finished: three asked a human, five were refused.
    const runs = await f.t.db.withTenant(
      f.tenant.id,
      async (c) =>
        (
          await c.query<{ outcome: string; n: number }>(
            'SELECT outcome, count(*)::int AS n FROM agent_runs WHERE agent_key_id = $1 GROUP BY 1 ORDER BY 1',
            [agentKey.id],
          )
        ).rows,
    );
    expect(runs).toEqual([
      { outcome: 'approval_required', n: 3 },
      { outcome: 'refused', n: 5 },
    ]);
  });
  it('a stalled admission of one key holds up that key alone, and only for a bounded time', async () => {
    const { agentKey } = await f.newAgent({ name: 'stalled', rateLimitPerMinute: 100 });
    await f.addInvoice('INV-STALL', 13_00);
    const input = { invoice: 'INV-STALL', amount: '13.00', currency: 'USD', method: 'stripe' };
    // Another process paused inside this key's admission: it holds the key's lock and does not let go.
    const stalled = new pg.Client({ connectionString: f.t.url });
    await stalled.connect();
    try {
      await stalled.query('SELECT pg_advisory_lock($1)', [advisoryLockKey(`rate-limit:${agentKey.id}`)]);
      const waiting = payInvoice(f.deps, { agentKey }, input).catch((error: unknown) => error);
      // Other keys are not held up.
      const other = await payInvoice(f.deps, { agentKey: f.agentKey }, input);
      expect(other).toMatchObject({ status: 'approval_required' });
      const refused = await waiting;
      expect(refused).toBeInstanceOf(RefusedError);
      expect(refused).toMatchObject({ code: 'rate_limited', retryable: true });
      expect((refused as Error).message).toMatch(/has been starting for over/);
    } finally {
      await stalled.end();
    }
    // The lock released, the key's next call is admitted.
    expect(await payInvoice(f.deps, { agentKey }, input)).toMatchObject({ status: 'approval_required' });
  });

  it('a scheduled payment whose invoice was moved by hand does not start, and says why', async () => {
    const scheduledId = await scheduleApproved('INV-MOVED', '62.00');
    await f.t.db.withSystem((c) =>
      c.query("UPDATE invoices SET status = 'approved' WHERE number = 'INV-MOVED'"),
    );
    const before = f.sandbox.ledger.charges().length;
    await expect(executeScheduledPayment(f.deps, f.tenant.id, scheduledId)).rejects.toThrow(
      /cannot start: its invoice is not scheduled/,
    );
    expect(f.sandbox.ledger.charges()).toHaveLength(before);
    const state = await f.t.db.withTenant(f.tenant.id, async (c) => ({
      schedule: (
        await c.query<{ status: string; payment_id: string | null }>(
          'SELECT status, payment_id FROM scheduled_payments WHERE id = $1',
          [scheduledId],
        )
      ).rows[0],
      payments: (await c.query('SELECT id FROM payments WHERE scheduled_payment_id = $1', [scheduledId])).rows
        .length,
    }));
    expect(state).toEqual({ schedule: { status: 'scheduled', payment_id: null }, payments: 0 });
  });

  it('a refusal whose record cannot be written is still the answer, and the process log says so', async () => {
    const owner = new pg.Client({ connectionString: f.t.url });
    await owner.connect();
    const warnings: { obj: Record<string, unknown>; msg?: string }[] = [];
    const deps = {
      ...f.deps,
      logger: {
        warn: (obj: object, msg?: string) => warnings.push({ obj: obj as Record<string, unknown>, msg }),
      },
    };
    try {
      // The database refuses to record a refused call (as a full disk or a lost connection would).
      await owner.query(`CREATE FUNCTION refuse_refused_run() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'agent_runs is unavailable'; END $$`);
      await owner.query(`CREATE TRIGGER refuse_refused_run BEFORE INSERT OR UPDATE ON agent_runs FOR EACH ROW
        WHEN (NEW.outcome = 'refused') EXECUTE FUNCTION refuse_refused_run()`);
      const input = { invoice: 'INV-PIN', amount: '61.00', currency: 'USD', method: 'stripe' };
      await expect(
        payInvoice(deps, { agentKey: f.agentKey }, { ...input, approval_token: 'apt_not-a-real-token' }),
      ).rejects.toMatchObject({ code: 'invalid_approval_token' });
      expect(warnings).toEqual([
        expect.objectContaining({
          msg: 'the record of an agent call could not be written',
          obj: expect.objectContaining({
            tool: 'pay_invoice',
            outcome: 'refused',
            refusal: 'invalid_approval_token',
          }),
        }),
      ]);
    } finally {
      await owner.query('DROP TRIGGER IF EXISTS refuse_refused_run ON agent_runs');
      await owner.query('DROP FUNCTION IF EXISTS refuse_refused_run()');
      await owner.end();
    }
  });
});
