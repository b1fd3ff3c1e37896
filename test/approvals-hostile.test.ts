/**
 * Hostile probes of the approval promise: "no money moves until a human with the right to approve has
 * approved the exact action". These look at what happens when that right goes away between the human's
 * decision and the money moving (disabled, demoted, limit lowered), and at dual control under races.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approve } from '../src/approvals/approvals.js';
import { addUser, type User } from '../src/directory/users.js';
import { RefusedError } from '../src/errors.js';
import { addDays, todayIn } from '../src/payments/calendar.js';
import { type ApprovalRequired, payInvoice, schedulePayment } from '../src/payments/pay.js';
import { createFixture, type Fixture } from './support/fixture.js';

const pay = (invoice: string, amount: string) => ({ invoice, amount, currency: 'USD', method: 'stripe' });

describe('approvals: the approver must still have the right when money moves', () => {
  let f: Fixture;
  let n = 0;

  async function sql<T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> {
    const { rows } = await f.t.db.withSystem((c) => c.query(text, params));
    return rows as T[];
  }

  const paymentsOf = async (invoice: string) =>
    (
      await sql<{ n: number }>(
        "SELECT count(*)::int AS n FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = $1 AND p.status <> 'failed'",
        [invoice],
      )
    )[0]!.n;

  async function newApprover(role: 'approver' | 'admin' = 'approver', limitMinor?: number): Promise<User> {
    n += 1;
    const added = await addUser(f.t.db, f.tenant.id, f.admin, {
      email: `approver${n}@example.com`,
      role,
      ...(limitMinor ? { limit: { amountMinor: limitMinor, currency: 'USD' } } : {}),
    });
    return added.user;
  }

  /** Pay with `token`: 'paid' when money moved, else the refusal's code (anything but a refusal throws). */
  async function payWith(invoice: string, amount: string, token: string): Promise<string> {
    try {
      const done = (await payInvoice(
        f.deps,
        { agentKey: f.agentKey },
        { ...pay(invoice, amount), approval_token: token },
      )) as { success?: boolean };
      return done.success === true ? 'paid' : 'not paid';
    } catch (error) {
      if (error instanceof RefusedError) return error.code;
      throw error;
    }
  }

  beforeAll(async () => {
    f = await createFixture({ slug: 'hostile-approvals', dualAbove: 10_000_00 });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', last4: '4242' });
  });
  afterAll(async () => {
    await f?.close();
  });

  /** Ways a human loses the right to approve after approving, done as an operator would (SQL). */
  const lapses = [
    {
      id: 'DIS',
      how: 'disabled',
      change: 'UPDATE users SET disabled_at = now() WHERE id = $1',
      limitMinor: undefined,
      reason: /has been disabled/,
    },
    {
      id: 'DEM',
      how: 'demoted to viewer',
      change: "UPDATE users SET role = 'viewer' WHERE id = $1",
      limitMinor: undefined,
      reason: /is a viewer/,
    },
    {
      id: 'LIM',
      how: 'given a limit below the amount',
      change: 'UPDATE users SET approval_limit_minor = 100000 WHERE id = $1',
      limitMinor: 50_000_00,
      reason: /over .*approval limit of 1000\.00 USD/,
    },
  ];

  async function ask(invoice: string, amountMinor: number, amount: string): Promise<ApprovalRequired> {
    await f.addInvoice(invoice, amountMinor);
    return (await payInvoice(f.deps, { agentKey: f.agentKey }, pay(invoice, amount))) as ApprovalRequired;
  }

  it.each(lapses)(
    'dual control: a first approval by a human $how since does not count as one of the two',
    async ({ id, change, limitMinor }) => {
      const invoice = `INV-H-DUAL-${id}`;
      const a = await newApprover('approver', limitMinor);
      const b = await newApprover();
      const request = await ask(invoice, 12_000_00, '12000.00');
      expect(request.required_approvals).toBe(2);
      expect((await approve(f.t.db, f.tenant.id, a, request.approval_id)).approvalToken).toBeUndefined();
      await sql(change, [a.id]);
      // b's approval is recorded, but with a's no longer standing it completes nothing.
      expect((await approve(f.t.db, f.tenant.id, b, request.approval_id)).approvalToken).toBeUndefined();
      expect(await paymentsOf(invoice)).toBe(0);
    },
  );

  it.each(lapses)(
    'a token whose only approver was $how before it was used moves no money (approval_lapsed, every time)',
    async ({ id, change, limitMinor, reason }) => {
      const invoice = `INV-H-${id}`;
      const a = await newApprover('approver', limitMinor);
      const request = await ask(invoice, 4_000_00, '4000.00');
      const token = (await approve(f.t.db, f.tenant.id, a, request.approval_id)).approvalToken;
      expect(token).toMatch(/^apt_/);
      await sql(change, [a.id]);
      await expect(
        payInvoice(f.deps, { agentKey: f.agentKey }, { ...pay(invoice, '4000.00'), approval_token: token }),
      ).rejects.toMatchObject({
        code: 'approval_lapsed',
        message: expect.stringMatching(reason),
        nextStep: expect.stringContaining('request a new approval'),
      });
      // Every time: a second try is refused the same way.
      expect(await payWith(invoice, '4000.00', token!)).toBe('approval_lapsed');
      expect(await paymentsOf(invoice)).toBe(0);
    },
  );

  it("a token whose approver is disabled while its consumption waits for the approval's row lock moves no money (approval_lapsed)", async () => {
    const invoice = 'INV-H-WAIT-DIS';
    const a = await newApprover();
    const request = await ask(invoice, 4_000_00, '4000.00');
    const token = (await approve(f.t.db, f.tenant.id, a, request.approval_id)).approvalToken;
    // Any transaction holding the approval's row lock that then ends without changing it (a human's
    // decision refused under that lock, a consumer that rolled back): the paying call waits for it.
    const holder = new pg.Client({ connectionString: f.t.adminUrl });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT id FROM approvals WHERE id = $1 FOR UPDATE', [request.approval_id]);
    const holderPid = (holder as unknown as { processID: number }).processID;
    const call = payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { ...pay(invoice, '4000.00'), approval_token: token },
    ).catch((e: { code?: string }) => e);
    try {
      for (const deadline = Date.now() + 10_000; ; ) {
        const waiting = await sql<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> $1`,
          [holderPid],
        );
        if (waiting[0]!.n > 0) break;
        if (Date.now() > deadline) throw new Error('the paying call never waited for the approval');
        await new Promise((r) => setTimeout(r, 20));
      }
      // Disabled (and committed) while the call waits, before it holds the approval: when it gets the
      // lock, the approver as they are now may no longer approve.
      await sql('UPDATE users SET disabled_at = now() WHERE id = $1', [a.id]);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect(await call).toMatchObject({
      code: 'approval_lapsed',
      message: expect.stringMatching(/has been disabled/),
    });
    expect(await paymentsOf(invoice)).toBe(0);
  });

  // Races on the human side of dual control (these held before the fix above too).
  it('dual control race: one human approving twice at once records one decision and mints no token', async () => {
    const a = await newApprover();
    const request = await ask('INV-H-RACE1', 11_000_00, '11000.00');
    const results = await Promise.allSettled([
      approve(f.t.db, f.tenant.id, a, request.approval_id),
      approve(f.t.db, f.tenant.id, a, request.approval_id),
      approve(f.t.db, f.tenant.id, a, request.approval_id),
    ]);
    const tokens = results.filter((r) => r.status === 'fulfilled' && r.value.approvalToken);
    expect(tokens).toHaveLength(0);
    const decisions = await sql<{ n: number }>(
      'SELECT count(*)::int AS n FROM approval_decisions WHERE approval_id = $1',
      [request.approval_id],
    );
    expect(decisions[0]!.n).toBe(1);
  });

  it('dual control race: two humans approving at once mint exactly one token, which pays once', async () => {
    const a = await newApprover();
    const b = await newApprover();
    const request = await ask('INV-H-RACE2', 11_500_00, '11500.00');
    const results = await Promise.all([
      approve(f.t.db, f.tenant.id, a, request.approval_id),
      approve(f.t.db, f.tenant.id, b, request.approval_id),
    ]);
    const tokens = results.map((r) => r.approvalToken).filter(Boolean) as string[];
    expect(tokens).toHaveLength(1);
    const outcomes = await Promise.all([
      payWith('INV-H-RACE2', '11500.00', tokens[0]!),
      payWith('INV-H-RACE2', '11500.00', tokens[0]!),
    ]);
    expect(outcomes.filter((o) => o === 'paid')).toHaveLength(1);
    expect(['approval_token_used', 'invoice_payment_in_progress', 'invoice_already_paid']).toContain(
      outcomes.find((o) => o !== 'paid'),
    );
    expect(await paymentsOf('INV-H-RACE2')).toBe(1);
  });
  it('race: two agents of the tenant, each with its own approved pay_invoice token for one invoice, plus a schedule token: one payment', async () => {
    await f.addInvoice('INV-H-RACE3', 300_00);
    const other = await f.newAgent({ name: 'second', rateLimitPerMinute: 1000 });
    const date = addDays(todayIn(f.tenant.timezone), 7);
    const sched = { ...pay('INV-H-RACE3', '300.00'), scheduled_date: date };
    const a1 = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-H-RACE3', '300.00'),
    )) as ApprovalRequired;
    const a2 = (await payInvoice(
      f.deps,
      { agentKey: other.agentKey },
      pay('INV-H-RACE3', '300.00'),
    )) as ApprovalRequired;
    const a3 = (await schedulePayment(f.deps, { agentKey: f.agentKey }, sched)) as ApprovalRequired;
    const [t1, t2, t3] = await Promise.all(
      [a1, a2, a3].map(
        async (a) => (await approve(f.t.db, f.tenant.id, f.admin, a.approval_id)).approvalToken!,
      ),
    );
    const results = await Promise.allSettled([
      payInvoice(f.deps, { agentKey: f.agentKey }, { ...pay('INV-H-RACE3', '300.00'), approval_token: t1 }),
      payInvoice(
        f.deps,
        { agentKey: other.agentKey },
        { ...pay('INV-H-RACE3', '300.00'), approval_token: t2 },
      ),
      schedulePayment(f.deps, { agentKey: f.agentKey }, { ...sched, approval_token: t3 }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const started = await sql<{ n: number }>(
      `SELECT (SELECT count(*) FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = $1)
            + (SELECT count(*) FROM scheduled_payments s JOIN invoices i ON i.id = s.invoice_id WHERE i.number = $1) AS n`,
      ['INV-H-RACE3'],
    );
    expect(Number(started[0]!.n)).toBe(1);
  });
});
