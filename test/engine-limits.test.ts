/** Limits that must hold across calls (the daily cap, dual control), not only within one. */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approve } from '../src/approvals/approvals.js';
import { advisoryLockKey } from '../src/db/pool.js';
import { addUser } from '../src/directory/users.js';
import { todayIn } from '../src/payments/calendar.js';
import { type ApprovalRequired, payInvoice, schedulePayment } from '../src/payments/pay.js';
import { refundPayment } from '../src/payments/refund.js';
import { createFixture, type Fixture } from './support/fixture.js';

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('limits across calls', () => {
  let f: Fixture;
  let owner: pg.Client;
  beforeAll(async () => {
    f = await createFixture({ dualAbove: 1_000_00 });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa' });
    owner = new pg.Client({ connectionString: f.t.adminUrl });
    await owner.connect();
  });
  afterAll(async () => {
    await owner.end();
    await f.close();
  });

  /** A 1500.00 card payment of a new invoice, approved by the admin and a new approver (dual control). */
  async function paidByTwo(invoice: string, cfoEmail: string) {
    const cfo = await addUser(f.t.db, f.tenant.id, f.admin, { email: cfoEmail, role: 'approver' });
    await f.addInvoice(invoice, 1_500_00);
    const input = { invoice, amount: '1500.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    await approve(f.t.db, f.tenant.id, f.admin, ask.approval_id);
    const token = (await approve(f.t.db, f.tenant.id, cfo.user, ask.approval_id)).approvalToken;
    const paid = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { ...input, approval_token: token },
    )) as { payment_id: string };
    return { payment_id: paid.payment_id, cfo };
  }

  /**
   * Start `calls` while a table lock holds their writes, so both are inside their transaction at once;
   * release it once two backends wait on a lock (the table's, or whatever a fix serialises them on), or
   * after 10 s (a fix that makes the second wait where this does not see it), and return their outcomes.
   */
  async function together<T>(lockTable: string, calls: () => Promise<T>[]): Promise<T[]> {
    const holder = new pg.Client({ connectionString: f.t.adminUrl });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE ${lockTable} IN SHARE MODE`);
    const started = calls();
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { rows } = await owner.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> $1`,
        [(holder as unknown as { processID: number }).processID],
      );
      if (rows[0]!.n >= 2 || Date.now() > deadline) break;
      await settle(20);
    }
    await holder.query('COMMIT');
    await holder.end();
    return Promise.all(started);
  }

  it('the daily cap holds for two approved payments started at the same time', async () => {
    const capped = await f.newAgent({ name: 'race-capped', maxPerDayMinor: 600_00, capsCurrency: 'USD' });
    const caller = { agentKey: capped.agentKey };
    const inputs = ['INV-RACE-1', 'INV-RACE-2'].map((invoice) => ({
      invoice,
      amount: '500.00',
      currency: 'USD',
      method: 'stripe',
    }));
    for (const i of inputs) await f.addInvoice(i.invoice, 500_00);
    // Each is within the cap when asked (nothing paid yet), and a human approves each.
    const tokens: string[] = [];
    for (const i of inputs) {
      const ask = (await payInvoice(f.deps, caller, i)) as ApprovalRequired;
      tokens.push((await f.approveAs(f.admin, ask.approval_id))!);
    }
    // Inserts into payments held (reads pass), so both calls are inside phase 1 at once.
    const results = await together('payments', () =>
      inputs.map((i, n) =>
        payInvoice(f.deps, caller, { ...i, approval_token: tokens[n] }).then(
          (r) => ({ ok: true as const, r }),
          (e: unknown) => ({ ok: false as const, code: (e as { code?: string }).code }),
        ),
      ),
    );
    const paid = results.filter((r) => r.ok);
    // 1000.00 against a cap of 600.00 per day: at most one of them may move money.
    expect(paid).toHaveLength(1);
    expect(results.filter((r) => !r.ok).map((r) => (r as { code?: string }).code)).toEqual([
      'agent_daily_cap_exceeded',
    ]);
  });

  /**
   * A capped key with an approved token to pay `invoice` (100.00), and another process of the key inside
   * its phase 1, paused before its commit: it holds the key's daily-cap lock until `release`.
   */
  async function stalledInPhase1(name: string, invoice: string) {
    const capped = await f.newAgent({ name, maxPerDayMinor: 600_00, capsCurrency: 'USD' });
    const caller = { agentKey: capped.agentKey };
    const input = { invoice, amount: '100.00', currency: 'USD', method: 'stripe' };
    await f.addInvoice(invoice, 100_00);
    const ask = (await payInvoice(f.deps, caller, input)) as ApprovalRequired;
    const token = (await f.approveAs(f.admin, ask.approval_id))!;
    const stalled = new pg.Client({ connectionString: f.t.adminUrl });
    await stalled.connect();
    await stalled.query('BEGIN');
    await stalled.query('SELECT pg_advisory_xact_lock($1)', [
      advisoryLockKey(`daily-cap:${capped.agentKey.id}`),
    ]);
    const release = async () => {
      await stalled.query('ROLLBACK');
      await stalled.end();
    };
    return { capped, caller, input, token, stalled, release };
  }

  it("a call stalled while holding its key's daily cap makes the key's next call give up, retryable, consuming nothing", async () => {
    const { capped, caller, input, token, release } = await stalledInPhase1('stalled-cap', 'INV-STALLED-CAP');
    try {
      const refused = await payInvoice(f.deps, caller, { ...input, approval_token: token }).catch(
        (e: { code?: string; retryable?: boolean }) => e,
      );
      expect(refused).toMatchObject({ code: 'rate_limited', retryable: true });
    } finally {
      await release();
    }
    // Nothing was consumed or written: the same token pays once the holder is gone.
    const paid = (await payInvoice(f.deps, caller, { ...input, approval_token: token })) as {
      status: string;
    };
    expect(paid.status).toBe('paid');
    const { rows } = await owner.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM payments WHERE agent_key_id = $1 AND status = 'succeeded'",
      [capped.agentKey.id],
    );
    expect(rows[0]!.n).toBe(1);
  });

  it("a call stalled in phase 1 of an invoice makes the key's next call for that invoice give up after the cap's lock timeout, not wait for ever", async () => {
    // The stalled process is inside phase 1 of this very invoice (the agent's first try of this call):
    // whichever order phase 1 takes them in, by then it holds the key's daily cap and the invoice's row
    // lock. The key's retry must get the cap's bounded wait (DAILY_CAP_LOCK_TIMEOUT, then a retryable
    // refusal), not queue without a timeout on the invoice's row, holding a pooled connection, for as
    // long as the stalled one stays stalled.
    const { caller, input, token, stalled, release } = await stalledInPhase1(
      'stalled-invoice',
      'INV-STALLED-PHASE1',
    );
    await stalled.query('SELECT id FROM invoices WHERE number = $1 FOR UPDATE', [input.invoice]);
    const retry = payInvoice(f.deps, caller, { ...input, approval_token: token }).then(
      (answer) => ({ answer }),
      (e: { code?: string; retryable?: boolean }) => ({ refused: e }),
    );
    try {
      const settledWhileStalled = await Promise.race([
        retry,
        settle(12_000).then(() => 'still waiting' as const),
      ]);
      expect(settledWhileStalled).toMatchObject({ refused: { code: 'rate_limited', retryable: true } });
    } finally {
      await release();
      await retry;
    }
  });

  it('the daily cap counts a schedule overdue from an earlier day: it runs today', async () => {
    const capped = await f.newAgent({ name: 'overdue-capped', maxPerDayMinor: 600_00, capsCurrency: 'USD' });
    const caller = { agentKey: capped.agentKey };
    await f.addInvoice('INV-OVERDUE', 500_00);
    const scheduled = {
      invoice: 'INV-OVERDUE',
      amount: '500.00',
      currency: 'USD',
      method: 'stripe',
      scheduled_date: todayIn(f.tenant.timezone),
    };
    const ask = (await schedulePayment(f.deps, caller, scheduled)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, ask.approval_id);
    await schedulePayment(f.deps, caller, { ...scheduled, approval_token: token });
    // The worker was stopped yesterday: the schedule is overdue, and its next pass runs it today.
    await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query(
        `UPDATE scheduled_payments SET scheduled_date = scheduled_date - 1
          WHERE agent_key_id = $1 AND status = 'scheduled'`,
        [capped.agentKey.id],
      ),
    );
    await f.addInvoice('INV-OVER-CAP', 200_00);
    await f.addInvoice('INV-UNDER-CAP', 100_00);
    const now = (invoice: string, amount: string) =>
      payInvoice(f.deps, caller, { invoice, amount, currency: 'USD', method: 'stripe' }).catch(
        (e: unknown) => (e as { code?: string }).code,
      );
    // 500.00 overdue + 200.00 now is over 600.00 today; 100.00 more is exactly the cap.
    expect(await now('INV-OVER-CAP', '200.00')).toBe('agent_daily_cap_exceeded');
    expect(await now('INV-UNDER-CAP', '100.00')).toMatchObject({ status: 'approval_required' });
  });

  it('two refunds made at the same time are counted against each other (dual control, and the amount left)', async () => {
    const paid = await paidByTwo('INV-SPLIT-RACE', 'cfo3@example.com');
    const parts = ['race a', 'race b'].map((reason) => ({
      payment: paid.payment_id,
      amount: '600.00',
      reason,
    }));
    const tokens: string[] = [];
    for (const part of parts) {
      const asked = (await refundPayment(f.deps, { agentKey: f.agentKey }, part)) as ApprovalRequired;
      tokens.push((await f.approveAs(f.admin, asked.approval_id))!);
    }
    const before = f.sandbox.ledger.refunds().length;
    // Inserts into refunds held: the first call waits holding the payment's lock, the second for that lock.
    const outcomes = await together('refunds', () =>
      parts.map((part, n) =>
        refundPayment(f.deps, { agentKey: f.agentKey }, { ...part, approval_token: tokens[n] }).then(
          () => 'refunded',
          (e: unknown) => (e as { code?: string }).code ?? 'error',
        ),
      ),
    );
    // 1200.00 in all on one approver each: one is made, the other needs two humans.
    expect(outcomes.sort()).toEqual(['dual_approval_required', 'refunded']);
    expect(f.sandbox.ledger.refunds()).toHaveLength(before + 1);
  });

  it('dual control cannot be split into refund requests asked before either is made', async () => {
    const paid = await paidByTwo('INV-SPLIT', 'cfo2@example.com');
    const cfo = paid.cfo;
    // Two requests of 600.00, both asked while nothing is refunded: each alone is under 1000.00.
    const a = { payment: paid.payment_id, amount: '600.00', reason: 'part a' };
    const b = { payment: paid.payment_id, amount: '600.00', reason: 'part b' };
    const ledgerBefore = f.sandbox.ledger.refunds().length;
    const askA = (await refundPayment(f.deps, { agentKey: f.agentKey }, a)) as ApprovalRequired;
    const askB = (await refundPayment(f.deps, { agentKey: f.agentKey }, b)) as ApprovalRequired;
    const tokenA = await f.approveAs(f.admin, askA.approval_id);
    const tokenB = await f.approveAs(f.admin, askB.approval_id);
    await refundPayment(f.deps, { agentKey: f.agentKey }, { ...a, approval_token: tokenA });
    // 1200.00 refunded in all, above the 1000.00 threshold, on one human's word: must be refused.
    const second = await refundPayment(
      f.deps,
      { agentKey: f.agentKey },
      { ...b, approval_token: tokenB },
    ).then(
      () => 'refunded',
      (e: unknown) => (e as { code?: string }).code ?? 'error',
    );
    expect(second).toBe('dual_approval_required');
    expect(f.sandbox.ledger.refunds()).toHaveLength(ledgerBefore + 1);
    // Asked again, it needs two humans, and with them it is made.
    const again = (await refundPayment(f.deps, { agentKey: f.agentKey }, b)) as ApprovalRequired;
    expect(again.status).toBe('approval_required');
    await approve(f.t.db, f.tenant.id, f.admin, again.approval_id);
    const both = (await approve(f.t.db, f.tenant.id, cfo.user, again.approval_id)).approvalToken!;
    const made = (await refundPayment(f.deps, { agentKey: f.agentKey }, { ...b, approval_token: both })) as {
      refund_status: string;
    };
    expect(made.refund_status).toBe('succeeded');
    expect(f.sandbox.ledger.refunds()).toHaveLength(ledgerBefore + 2);
  });
});
