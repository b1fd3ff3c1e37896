/**
 * The refusal table of the payment engine: each case is refused with its own code, and leaves the
 * database as it was but for the audit entry that records the refusal.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approve, reject } from '../src/approvals/approvals.js';
import { addUser } from '../src/directory/users.js';
import { RefusedError, UsageError } from '../src/errors.js';
import {
  addDays,
  isBusinessDay,
  nextBusinessDay,
  previousBusinessDay,
  todayIn,
} from '../src/payments/calendar.js';
import { type ApprovalRequired, payInvoice, schedulePayment } from '../src/payments/pay.js';
import { refundPayment } from '../src/payments/refund.js';
import { cancelScheduledPayment } from '../src/payments/status.js';
import { createFixture, type Fixture } from './support/fixture.js';

const pay = (invoice: string, amount: string, extra: Record<string, string> = {}) => ({
  invoice,
  amount,
  currency: 'USD',
  method: 'stripe',
  ...extra,
});

describe('the refusal table', () => {
  let f: Fixture;
  let beta: Fixture;
  let owner: pg.Client;

  async function snapshot() {
    const { rows } = await owner.query<{ s: string }>(`SELECT concat_ws('|',
      (SELECT string_agg(id || status, ',' ORDER BY id) FROM payments),
      (SELECT string_agg(id || status, ',' ORDER BY id) FROM scheduled_payments),
      (SELECT string_agg(id || status, ',' ORDER BY id) FROM refunds),
      (SELECT string_agg(id || status, ',' ORDER BY id) FROM approvals),
      (SELECT string_agg(id || status, ',' ORDER BY id) FROM invoices),
      (SELECT count(*) FROM approval_decisions)) AS s`);
    const audit = await owner.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log');
    return { state: rows[0]!.s, audit: audit.rows[0]!.n };
  }

  /** Run a call that must be refused with `code`; assert nothing changed but the audit log. */
  async function refused(code: string, call: () => Promise<unknown>) {
    const before = await snapshot();
    const error = await call().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error, `expected a refusal ${code}`).toBeDefined();
    expect(error instanceof RefusedError || error instanceof UsageError).toBe(true);
    expect((error as RefusedError).code).toBe(code);
    const after = await snapshot();
    expect(after.state).toBe(before.state);
    expect(after.audit).toBeGreaterThan(before.audit);
  }

  async function approvedToken(
    caller: { agentKey: Fixture['agentKey'] },
    input: ReturnType<typeof pay>,
    by = f.admin,
  ) {
    const ask = (await payInvoice(f.deps, caller, input)) as ApprovalRequired;
    return (await approve(f.t.db, f.tenant.id, by, ask.approval_id)).approvalToken!;
  }

  beforeAll(async () => {
    f = await createFixture({ dualAbove: 10_000_00 });
    beta = await createFixture({ slug: 'beta', t: f.t, sandbox: f.sandbox });
    owner = new pg.Client({ connectionString: f.t.adminUrl });
    await owner.connect();
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', last4: '4242' });
    await f.addMethod({ rail: 'ach', token: 'pm_usBankAccount_success', provider: 'stripe' });
    await beta.addMethod({ rail: 'stripe', token: 'pm_card_visa' });
    for (const [n, amount] of [
      ['INV-A', 100_00],
      ['INV-B', 200_00],
      ['INV-C', 300_00],
      ['INV-BIG', 12_000_00],
      ['INV-6K', 6_000_00],
      ['INV-CAP', 150_00],
      ['INV-PAID', 50_00],
      ['INV-SCHED', 75_00],
      ['INV-EXP', 80_00],
    ] as const) {
      await f.addInvoice(n, amount);
    }
    await beta.addInvoice('INV-B1', 100_00);
  });
  afterAll(async () => {
    await owner.end();
    await beta.close();
    await f.close();
  });

  it('no token: the answer is approval_required and no money moves', async () => {
    const before = f.sandbox.ledger.charges().length;
    const r = await payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-A', '100.00'));
    expect(r).toMatchObject({ status: 'approval_required' });
    expect(f.sandbox.ledger.charges()).toHaveLength(before);
  });

  it('unknown token, or a string that is not a token at all', async () => {
    await refused('invalid_approval_token', () =>
      payInvoice(
        f.deps,
        { agentKey: f.agentKey },
        pay('INV-A', '100.00', { approval_token: `apt_${'x'.repeat(43)}` }),
      ),
    );
    await refused('invalid_approval_token', () =>
      payInvoice(
        f.deps,
        { agentKey: f.agentKey },
        pay('INV-A', '100.00', { approval_token: 'approved-by-the-cfo' }),
      ),
    );
  });

  it('expired token', async () => {
    const token = await approvedToken({ agentKey: f.agentKey }, pay('INV-EXP', '80.00'));
    await owner.query(
      "UPDATE approvals SET expires_at = now() - interval '1 second' WHERE status = 'approved' AND params->>'amount_minor' = '8000'",
    );
    await refused('approval_token_expired', () =>
      payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-EXP', '80.00', { approval_token: token })),
    );
  });

  it('rejected: a rejected request yields no token, and cannot be approved afterwards', async () => {
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-C', '300.00'),
    )) as ApprovalRequired;
    await reject(f.t.db, f.tenant.id, f.approver, ask.approval_id, 'duplicate invoice');
    await refused('approval_not_pending', () => approve(f.t.db, f.tenant.id, f.admin, ask.approval_id));
  });

  it('already-used token', async () => {
    const date = todayIn('UTC');
    const input = { ...pay('INV-SCHED', '75.00'), scheduled_date: addDays(date, 3) };
    const ask = (await schedulePayment(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    const token = (await approve(f.t.db, f.tenant.id, f.admin, ask.approval_id)).approvalToken!;
    await schedulePayment(f.deps, { agentKey: f.agentKey }, { ...input, approval_token: token });
    await cancelScheduledPayment(f.deps, { agentKey: f.agentKey }, { invoice: 'INV-SCHED' });
    await refused('approval_token_used', () =>
      schedulePayment(f.deps, { agentKey: f.agentKey }, { ...input, approval_token: token }),
    );
  });

  it('an ACH schedule for a weekend or a Federal Reserve holiday: refused, naming the banking days either side', async () => {
    // Its own key: this file's calls on f.agentKey come near the key's 60 a minute.
    const { agentKey } = await f.newAgent({ name: 'ach-dates' });
    const today = todayIn(f.tenant.timezone);
    // The next Saturday, and the next weekday holiday (there is one within any year), from today.
    const days = Array.from({ length: 366 }, (_, i) => addDays(today, i + 1));
    const weekday = (d: string) => new Date(`${d}T00:00:00Z`).getUTCDay();
    const saturday = days.find((d) => weekday(d) === 6)!;
    const holiday = days.find((d) => ![0, 6].includes(weekday(d)) && !isBusinessDay(d))!;
    const ach = (date: string, extra: Record<string, string> = {}) => ({
      ...pay('INV-SCHED', '75.00', { method: 'ach', ...extra }),
      scheduled_date: date,
    });
    const refusal = (input: ReturnType<typeof ach>) =>
      schedulePayment(f.deps, { agentKey }, input).catch((e: unknown) => e) as Promise<UsageError>;
    for (const [date, reason] of [
      [saturday, 'is a Saturday'],
      [holiday, 'a Federal Reserve holiday'],
    ] as const) {
      await refused('invalid_date', () => schedulePayment(f.deps, { agentKey }, ach(date)));
      const error = await refusal(ach(date));
      expect(error.message).toContain(reason);
      expect(error.nextStep).toContain(`${nextBusinessDay(date)} (the banking day after)`);
      expect(error.nextStep).not.toContain('approval_token');
    }
    // The banking day before is offered only when it is not in the past.
    const dayBefore = `${previousBusinessDay(saturday)} (the banking day before)`;
    const offered = (await refusal(ach(saturday))).nextStep;
    if (previousBusinessDay(saturday) >= today) expect(offered).toContain(dayBefore);
    else expect(offered).not.toContain(dayBefore);
    const yesterday = `${addDays(today, -1)}`;
    expect(offered).not.toContain(yesterday);
    // With a token (one approved for that date before the rule): the new date needs a new approval.
    const withToken = await refusal(ach(saturday, { approval_token: `apt_${'x'.repeat(43)}` }));
    expect(withToken.code).toBe('invalid_date');
    expect(withToken.nextStep).toContain('without approval_token');
    // A card moves money any day; ACH on the next banking day is asked for as usual.
    const byCard = await schedulePayment(
      f.deps,
      { agentKey },
      { ...pay('INV-SCHED', '75.00'), scheduled_date: saturday },
    );
    expect(byCard).toMatchObject({ status: 'approval_required' });
    const onBankingDay = await schedulePayment(f.deps, { agentKey }, ach(nextBusinessDay(holiday)));
    expect(onBankingDay).toMatchObject({ status: 'approval_required' });
  });

  it("another tenant's token, and another agent's token", async () => {
    const betaAsk = (await payInvoice(
      beta.deps,
      { agentKey: beta.agentKey },
      pay('INV-B1', '100.00'),
    )) as ApprovalRequired;
    const betaToken = (await approve(beta.t.db, beta.tenant.id, beta.admin, betaAsk.approval_id))
      .approvalToken!;
    await refused('invalid_approval_token', () =>
      payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-A', '100.00', { approval_token: betaToken })),
    );
    const other = await f.newAgent({ name: 'other-agent' });
    const token = await approvedToken({ agentKey: f.agentKey }, pay('INV-A', '100.00'));
    await refused('approval_token_other_agent', () =>
      payInvoice(f.deps, { agentKey: other.agentKey }, pay('INV-A', '100.00', { approval_token: token })),
    );
  });

  it('a token for another invoice, method or date', async () => {
    const token = await approvedToken({ agentKey: f.agentKey }, pay('INV-B', '200.00'));
    // The same token presented for another invoice of the same amount would be a different action.
    await f.addInvoice('INV-B-TWIN', 200_00);
    await refused('approval_token_mismatch', () =>
      payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-B-TWIN', '200.00', { approval_token: token })),
    );
    await refused('approval_token_mismatch', () =>
      payInvoice(
        f.deps,
        { agentKey: f.agentKey },
        pay('INV-B', '200.00', { method: 'ach', approval_token: token }),
      ),
    );
    const d1 = addDays(todayIn('UTC'), 5);
    const ask = (await schedulePayment(
      f.deps,
      { agentKey: f.agentKey },
      { ...pay('INV-B-TWIN', '200.00'), scheduled_date: d1 },
    )) as ApprovalRequired;
    const dateToken = (await approve(f.t.db, f.tenant.id, f.admin, ask.approval_id)).approvalToken!;
    await refused('approval_token_mismatch', () =>
      schedulePayment(
        f.deps,
        { agentKey: f.agentKey },
        { ...pay('INV-B-TWIN', '200.00'), scheduled_date: addDays(d1, 1), approval_token: dateToken },
      ),
    );
  });

  it('a token for another amount or currency never gets that far: the invoice must match exactly', async () => {
    const token = await approvedToken({ agentKey: f.agentKey }, pay('INV-B', '200.00'));
    await refused('amount_mismatch', () =>
      payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-B', '199.99', { approval_token: token })),
    );
    await refused('currency_mismatch', () =>
      payInvoice(
        f.deps,
        { agentKey: f.agentKey },
        { ...pay('INV-B', '200.00', { approval_token: token }), currency: 'EUR' },
      ),
    );
    await refused('invalid_amount', () =>
      payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-B', '200.001', { approval_token: token })),
    );
  });

  it('approvers: without the role, over their limit, or the human the key acts for', async () => {
    const viewer = await addUser(f.t.db, f.tenant.id, f.admin, {
      email: 'viewer@example.com',
      role: 'viewer',
    });
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-6K', '6000.00'),
    )) as ApprovalRequired;
    await refused('approver_role_required', () => approve(f.t.db, f.tenant.id, viewer.user, ask.approval_id));
    await refused('over_approval_limit', () => approve(f.t.db, f.tenant.id, f.approver, ask.approval_id));
    const actsFor = await f.newAgent({ name: 'jdoe-assistant', actsForUserId: f.approver.id });
    const own = (await payInvoice(
      f.deps,
      { agentKey: actsFor.agentKey },
      pay('INV-A', '100.00'),
    )) as ApprovalRequired;
    await refused('approver_is_requester', () => approve(f.t.db, f.tenant.id, f.approver, own.approval_id));
  });

  it('dual control: one approver where two are required gives no token; the same person twice is refused', async () => {
    const cfo = await addUser(f.t.db, f.tenant.id, f.admin, { email: 'cfo@example.com', role: 'approver' });
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-BIG', '12000.00'),
    )) as ApprovalRequired;
    expect(ask.required_approvals).toBe(2);
    const first = await approve(f.t.db, f.tenant.id, f.admin, ask.approval_id);
    expect(first.approvalToken).toBeUndefined();
    expect(first.approval.status).toBe('pending');
    await refused('already_approved_by_you', () => approve(f.t.db, f.tenant.id, f.admin, ask.approval_id));
    const second = await approve(f.t.db, f.tenant.id, cfo.user, ask.approval_id);
    expect(second.approvalToken).toMatch(/^apt_/);
    expect(second.approval.approvedBy).toEqual(['admin@example.com', 'cfo@example.com']);
  });

  it('agent caps per payment and per day', async () => {
    const capped = await f.newAgent({
      name: 'capped',
      maxPerPaymentMinor: 100_00,
      maxPerDayMinor: 250_00,
      capsCurrency: 'USD',
    });
    await refused('agent_cap_exceeded', () =>
      payInvoice(f.deps, { agentKey: capped.agentKey }, pay('INV-CAP', '150.00')),
    );
    const daily = await f.newAgent({ name: 'daily', maxPerDayMinor: 120_00, capsCurrency: 'USD' });
    await f.addInvoice('INV-D1', 100_00);
    await f.addInvoice('INV-D2', 50_00);
    const ask = (await payInvoice(
      f.deps,
      { agentKey: daily.agentKey },
      pay('INV-D1', '100.00'),
    )) as ApprovalRequired;
    const token = (await approve(f.t.db, f.tenant.id, f.admin, ask.approval_id)).approvalToken!;
    await payInvoice(
      f.deps,
      { agentKey: daily.agentKey },
      pay('INV-D1', '100.00', { approval_token: token }),
    );
    await refused('agent_daily_cap_exceeded', () =>
      payInvoice(f.deps, { agentKey: daily.agentKey }, pay('INV-D2', '50.00')),
    );
  });

  it('invoice not approved, already paid, unknown; amount mismatch; rail not configured', async () => {
    await owner.query("UPDATE invoices SET status = 'draft' WHERE number = 'INV-C'");
    await refused('invoice_not_approved', () =>
      payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-C', '300.00')),
    );
    const token = await approvedToken({ agentKey: f.agentKey }, pay('INV-PAID', '50.00'));
    await payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-PAID', '50.00', { approval_token: token }));
    await refused('invoice_already_paid', () =>
      payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-PAID', '50.00')),
    );
    await refused('invoice_not_found', () =>
      payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-NOPE', '50.00')),
    );
    await refused('amount_mismatch', () =>
      payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-A', '100.01')),
    );
    await refused('rail_not_configured', () =>
      payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-A', '100.00', { method: 'paypal' })),
    );
    await refused('invalid_input', () =>
      payInvoice(f.deps, { agentKey: f.agentKey }, pay('INV-A', '100.00', { method: 'cash' })),
    );
  });

  it('a refund above what is left', async () => {
    const payment = await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-A', '100.00', {
        approval_token: await approvedToken({ agentKey: f.agentKey }, pay('INV-A', '100.00')),
      }),
    );
    const paymentId = (payment as { payment_id: string }).payment_id;
    await refused('refund_exceeds_captured', () =>
      refundPayment(f.deps, { agentKey: f.agentKey }, { payment: paymentId, amount: '100.01' }),
    );
  });
});
