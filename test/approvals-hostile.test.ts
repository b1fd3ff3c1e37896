/**
 * Hostile probes of the approval promise: "no money moves until a human with the right to approve has
 * approved the exact action". These look at what happens when that right goes away between the human's
 * decision and the money moving (disabled, demoted, limit lowered), and at dual control under races.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approve } from '../src/approvals/approvals.js';
import { addUser, type User } from '../src/directory/users.js';
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

  /** Pay with `token` (if any); true when money moved. Refusals are fine, they are what we want. */
  async function tryPay(invoice: string, amount: string, token: string | undefined): Promise<boolean> {
    if (!token) return false;
    try {
      const done = (await payInvoice(
        f.deps,
        { agentKey: f.agentKey },
        { ...pay(invoice, amount), approval_token: token },
      )) as {
        success?: boolean;
      };
      return done.success === true;
    } catch {
      return false;
    }
  }

  beforeAll(async () => {
    f = await createFixture({ slug: 'hostile-approvals', dualAbove: 10_000_00 });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', last4: '4242' });
  });
  afterAll(async () => {
    await f?.close();
  });

  it('dual control: a partial approval by a human disabled since does not count as one of the two', async () => {
    await f.addInvoice('INV-H-DUAL-DIS', 12_000_00);
    const a = await newApprover();
    const b = await newApprover();
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-H-DUAL-DIS', '12000.00'),
    )) as ApprovalRequired;
    expect(ask.required_approvals).toBe(2);
    expect((await approve(f.t.db, f.tenant.id, a, ask.approval_id)).approvalToken).toBeUndefined();
    // The first approver is let go (or their account is suspected compromised) before the second decides.
    await sql('UPDATE users SET disabled_at = now() WHERE id = $1', [a.id]);
    const second = await approve(f.t.db, f.tenant.id, b, ask.approval_id).catch(() => undefined);
    const moved = await tryPay('INV-H-DUAL-DIS', '12000.00', second?.approvalToken);
    expect(moved, 'one live approver plus a disabled one is not dual control').toBe(false);
    expect(await paymentsOf('INV-H-DUAL-DIS')).toBe(0);
  });

  it('dual control: a partial approval by a human demoted to viewer since does not count as one of the two', async () => {
    await f.addInvoice('INV-H-DUAL-DEM', 12_500_00);
    const a = await newApprover();
    const b = await newApprover();
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-H-DUAL-DEM', '12500.00'),
    )) as ApprovalRequired;
    expect((await approve(f.t.db, f.tenant.id, a, ask.approval_id)).approvalToken).toBeUndefined();
    await sql("UPDATE users SET role = 'viewer' WHERE id = $1", [a.id]);
    const second = await approve(f.t.db, f.tenant.id, b, ask.approval_id).catch(() => undefined);
    const moved = await tryPay('INV-H-DUAL-DEM', '12500.00', second?.approvalToken);
    expect(moved, 'a viewer cannot be one of the two approvers').toBe(false);
    expect(await paymentsOf('INV-H-DUAL-DEM')).toBe(0);
  });

  it('dual control: a partial approval over the first approver’s since-lowered limit does not count', async () => {
    await f.addInvoice('INV-H-DUAL-LIM', 13_000_00);
    const a = await newApprover('approver', 50_000_00);
    const b = await newApprover();
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-H-DUAL-LIM', '13000.00'),
    )) as ApprovalRequired;
    expect((await approve(f.t.db, f.tenant.id, a, ask.approval_id)).approvalToken).toBeUndefined();
    await sql('UPDATE users SET approval_limit_minor = 100000 WHERE id = $1', [a.id]);
    const second = await approve(f.t.db, f.tenant.id, b, ask.approval_id).catch(() => undefined);
    const moved = await tryPay('INV-H-DUAL-LIM', '13000.00', second?.approvalToken);
    expect(moved, '13,000 USD is over the first approver’s limit of 1,000 USD by the time it moves').toBe(
      false,
    );
    expect(await paymentsOf('INV-H-DUAL-LIM')).toBe(0);
  });

  it('a token whose only approver was disabled before it was used moves no money', async () => {
    await f.addInvoice('INV-H-DIS', 200_00);
    const a = await newApprover();
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-H-DIS', '200.00'),
    )) as ApprovalRequired;
    const token = (await approve(f.t.db, f.tenant.id, a, ask.approval_id)).approvalToken;
    expect(token).toMatch(/^apt_/);
    await sql('UPDATE users SET disabled_at = now() WHERE id = $1', [a.id]);
    // Refused, saying why and what to do; and refused again on every try.
    await expect(
      payInvoice(f.deps, { agentKey: f.agentKey }, { ...pay('INV-H-DIS', '200.00'), approval_token: token }),
    ).rejects.toMatchObject({
      code: 'approval_lapsed',
      message: expect.stringContaining(`${a.email} has been disabled`),
      nextStep: expect.stringContaining('request a new approval'),
    });
    expect(await tryPay('INV-H-DIS', '200.00', token)).toBe(false);
    expect(await paymentsOf('INV-H-DIS')).toBe(0);
  });

  it('a token whose only approver was demoted to viewer before it was used moves no money', async () => {
    await f.addInvoice('INV-H-DEM', 210_00);
    const a = await newApprover();
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-H-DEM', '210.00'),
    )) as ApprovalRequired;
    const token = (await approve(f.t.db, f.tenant.id, a, ask.approval_id)).approvalToken;
    await sql("UPDATE users SET role = 'viewer' WHERE id = $1", [a.id]);
    expect(await tryPay('INV-H-DEM', '210.00', token)).toBe(false);
    expect(await paymentsOf('INV-H-DEM')).toBe(0);
  });

  it('a token whose approver’s limit was lowered below its amount before use moves no money', async () => {
    await f.addInvoice('INV-H-LIM', 4_000_00);
    const a = await newApprover('approver', 5_000_00);
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-H-LIM', '4000.00'),
    )) as ApprovalRequired;
    const token = (await approve(f.t.db, f.tenant.id, a, ask.approval_id)).approvalToken;
    await sql('UPDATE users SET approval_limit_minor = 100000 WHERE id = $1', [a.id]);
    expect(await tryPay('INV-H-LIM', '4000.00', token)).toBe(false);
    expect(await paymentsOf('INV-H-LIM')).toBe(0);
  });

  // Probes expected to hold (they pass today): races on the human side of dual control.
  it('dual control race: one human approving twice at once records one decision and mints no token', async () => {
    await f.addInvoice('INV-H-RACE1', 11_000_00);
    const a = await newApprover();
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-H-RACE1', '11000.00'),
    )) as ApprovalRequired;
    const results = await Promise.allSettled([
      approve(f.t.db, f.tenant.id, a, ask.approval_id),
      approve(f.t.db, f.tenant.id, a, ask.approval_id),
      approve(f.t.db, f.tenant.id, a, ask.approval_id),
    ]);
    const tokens = results.filter((r) => r.status === 'fulfilled' && r.value.approvalToken);
    expect(tokens).toHaveLength(0);
    const decisions = await sql<{ n: number }>(
      'SELECT count(*)::int AS n FROM approval_decisions WHERE approval_id = $1',
      [ask.approval_id],
    );
    expect(decisions[0]!.n).toBe(1);
  });

  it('dual control race: two humans approving at once mint exactly one token, which pays once', async () => {
    await f.addInvoice('INV-H-RACE2', 11_500_00);
    const a = await newApprover();
    const b = await newApprover();
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-H-RACE2', '11500.00'),
    )) as ApprovalRequired;
    const results = await Promise.all([
      approve(f.t.db, f.tenant.id, a, ask.approval_id),
      approve(f.t.db, f.tenant.id, b, ask.approval_id),
    ]);
    const tokens = results.map((r) => r.approvalToken).filter(Boolean) as string[];
    expect(tokens).toHaveLength(1);
    const moved = await Promise.all([
      tryPay('INV-H-RACE2', '11500.00', tokens[0]),
      tryPay('INV-H-RACE2', '11500.00', tokens[0]),
    ]);
    expect(moved.filter(Boolean)).toHaveLength(1);
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
