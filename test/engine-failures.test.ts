/** The seed's rules per failure kind, through the real SDKs against the sandbox. */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Queryable } from '../src/db/pool.js';
import { nextBusinessDay } from '../src/payments/calendar.js';
import { recordHeldPaymentNotMade } from '../src/payments/held.js';
import { transitionInvoice } from '../src/payments/invoices.js';
import { type ApprovalRequired, PaymentFailedError, payInvoice } from '../src/payments/pay.js';
import { applyPaymentOutcome, getPayment, type Payment } from '../src/payments/payments.js';
import { handleFailure, insertSubmission, reconcilePayment } from '../src/payments/phases.js';
import { executeScheduledPayment } from '../src/payments/scheduled.js';
import { getPaymentStatus } from '../src/payments/status.js';
import { MAX_SUBMIT_ATTEMPTS, RESUBMIT_WINDOW_MS } from '../src/worker/index.js';
import { count } from './sidecar/support.js';
import { deferred } from './support/deferred.js';
import { createFixture, type Fixture, payThroughEngine } from './support/fixture.js';

describe('failures follow the rules', () => {
  let base: Fixture;
  let n = 0;
  beforeAll(async () => {
    base = await createFixture({ slug: 'base' });
  });
  afterAll(async () => base.close());

  /** Until `n` sessions wait for a lock backend `pid` holds; `what` is the failure's message. */
  async function untilWaitingFor(f: Fixture, pid: number, n: number, what: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (
      (await count(
        f,
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))',
        [pid],
      )) < n
    ) {
      if (Date.now() > deadline) throw new Error(what);
    }
  }

  /** Another payment of `failed`'s invoice (42.00 USD by its method), as phase 1 writes one. */
  const anotherPayment = (
    f: Fixture,
    failed: Payment,
    extra: { id?: string; scheduledPaymentId?: string } = {},
  ) => ({
    id: extra.id ?? randomUUID(),
    tenantId: f.tenant.id,
    invoiceId: failed.invoiceId,
    agentKeyId: f.agentKey.id,
    approvalId: failed.approvalId,
    ...(extra.scheduledPaymentId ? { scheduledPaymentId: extra.scheduledPaymentId } : {}),
    amountMinor: 42_00,
    currency: 'USD',
    rail: 'stripe' as const,
    provider: 'stripe' as const,
    paymentMethodId: failed.paymentMethodId,
    approvedBy: ['admin@example.com'],
  });

  /** A fresh tenant whose stripe rail is `token`, and one approved attempt to pay 42.00 USD. */
  async function attempt(token: string) {
    const f = await createFixture({ slug: `fail-${++n}`, t: base.t, sandbox: base.sandbox });
    await f.addMethod({ rail: 'stripe', token });
    await f.addInvoice('INV-F', 42_00);
    const input = { invoice: 'INV-F', amount: '42.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    const result = await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { ...input, approval_token: await f.approveAs(f.admin, ask.approval_id) },
    ).catch((e: unknown) => e);
    const invoice = await f.t.db.withTenant(
      f.tenant.id,
      async (c) =>
        (await c.query<{ status: string }>("SELECT status FROM invoices WHERE number = 'INV-F'")).rows[0]!
          .status,
    );
    const alerts = await f.t.db.withTenant(
      f.tenant.id,
      async (c) =>
        (
          await c.query<{ kind: string; code: string; next_step: string }>(
            'SELECT kind, code, next_step FROM alerts',
          )
        ).rows,
    );
    const scheduled = await f.t.db.withTenant(
      f.tenant.id,
      async (c) =>
        (
          await c.query<{ status: string; reschedule_count: number }>(
            'SELECT status, reschedule_count FROM scheduled_payments',
          )
        ).rows,
    );
    return { f, result, invoice, alerts, scheduled };
  }

  it('declined: failed, not paid, an alert for manual review', async () => {
    const { result, invoice, alerts } = await attempt('pm_card_visa_chargeDeclined');
    expect(result).toBeInstanceOf(PaymentFailedError);
    expect((result as PaymentFailedError).code).toBe('declined');
    expect((result as PaymentFailedError).payment.status).toBe('failed');
    expect(invoice).toBe('approved');
    expect(alerts).toEqual([expect.objectContaining({ kind: 'payment_manual_review', code: 'declined' })]);
  });

  it('insufficient funds: an alert and a reschedule to the next business day', async () => {
    const { result, invoice, alerts, scheduled } = await attempt(
      'pm_card_visa_chargeDeclinedInsufficientFunds',
    );
    expect((result as PaymentFailedError).code).toBe('insufficient_funds');
    expect(invoice).toBe('scheduled');
    expect(scheduled).toEqual([{ status: 'scheduled', reschedule_count: 1 }]);
    expect(alerts[0]).toMatchObject({ kind: 'payment_reschedule', code: 'insufficient_funds' });
  });

  it("insufficient funds on a machine whose clock runs a year ahead: rescheduled by the database's day", async () => {
    const f = await createFixture({ slug: `fail-${++n}`, t: base.t, sandbox: base.sandbox });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa_chargeDeclinedInsufficientFunds' });
    await f.addInvoice('INV-F', 42_00);
    const input = { invoice: 'INV-F', amount: '42.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, ask.approval_id);
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 365 * 86_400_000 });
    const result = await payInvoice(f.deps, { agentKey: f.agentKey }, { ...input, approval_token: token })
      .catch((e: unknown) => e)
      .finally(() => vi.useRealTimers());
    expect((result as PaymentFailedError).code).toBe('insufficient_funds');
    const { rows } = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ scheduled_date: string; today: string }>(
        `SELECT to_char(s.scheduled_date, 'YYYY-MM-DD') AS scheduled_date,
                to_char(now() AT TIME ZONE t.timezone, 'YYYY-MM-DD') AS today
           FROM scheduled_payments s JOIN tenants t ON t.id = s.tenant_id`,
      ),
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.scheduled_date).toBe(nextBusinessDay(rows[0]!.today));
  });

  it('invalid payment method: an alert asking for an updated method', async () => {
    const { result, alerts } = await attempt('pm_card_chargeDeclinedExpiredCard');
    expect((result as PaymentFailedError).code).toBe('payment_method_invalid');
    expect(alerts[0]).toMatchObject({ kind: 'payment_request_payment_method' });
    expect(alerts[0]!.next_step).toMatch(/updated payment method/);
  });

  it('API errors are retried with the same idempotency key, then succeed once', async () => {
    base.sandbox.faults.next('stripe', {
      kind: 'http_500',
      times: 2,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    const { result } = await attempt('pm_card_visa');
    const paymentId = (result as { payment_id: string }).payment_id;
    expect(result).toMatchObject({ status: 'paid' });
    expect(base.sandbox.ledger.charges(paymentId)).toHaveLength(1);
    const keys = base.sandbox.stripe
      .requests()
      .filter(
        (r) =>
          r.method === 'POST' && r.path === '/v1/payment_intents' && r.idempotencyKey === `pay:${paymentId}`,
      );
    expect(keys.length).toBe(3);
  });

  it('a timeout after the charge took effect: the outcome is asked for, one charge, paid', async () => {
    base.sandbox.faults.next('stripe', {
      kind: 'timeout_after_charge',
      times: 1,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    const { f, result } = await attempt('pm_card_visa');
    // Either the retry policy found the charge (paid) or left it processing for the reconciler.
    const paymentId = (result as { payment_id: string }).payment_id;
    expect(base.sandbox.ledger.charges(paymentId)).toHaveLength(1);
    const final = await reconcilePayment(f.deps, f.tenant.id, paymentId);
    expect(final.status).toBe('succeeded');
    expect(base.sandbox.ledger.charges(paymentId)).toHaveLength(1);
    const status = await getPaymentStatus(f.deps, { agentKey: f.agentKey }, { payment: paymentId });
    expect(status).toMatchObject({ status: 'paid' });
  });

  /** A card payment Stripe charged whose answer was lost, and asking at once failed too: processing, no reference. */
  async function chargedUnanswered() {
    base.sandbox.faults.next('stripe', {
      kind: 'timeout_after_charge',
      times: 1,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    base.sandbox.faults.next('stripe', {
      kind: 'http_500',
      times: 1,
      match: { method: 'GET', path: '/v1/payment_intents/search' },
    });
    const { f, result } = await attempt('pm_card_visa');
    const paymentId =
      (result as { payment_id?: string }).payment_id ?? (result as PaymentFailedError).payment.payment_id;
    expect(base.sandbox.ledger.charges(paymentId)).toHaveLength(1);
    const row = async () =>
      (
        await f.t.db.withSystem((c) =>
          c.query<{ status: string; next_check_at: Date | null }>(
            'SELECT status, next_check_at FROM payments WHERE id = $1',
            [paymentId],
          ),
        )
      ).rows[0]!;
    const alerts = async () =>
      (
        await f.t.db.withSystem((c) =>
          c.query<{ kind: string }>('SELECT kind FROM alerts WHERE payment_id = $1', [paymentId]),
        )
      ).rows.map((a) => a.kind);
    const staleSearch = (times: number) =>
      base.sandbox.faults.next('stripe', {
        kind: 'stale_search',
        times,
        match: { method: 'GET', path: '/v1/payment_intents/search' },
      });
    return { f, paymentId, row, alerts, staleSearch };
  }

  const resubmit = { maxAttempts: MAX_SUBMIT_ATTEMPTS, withinMs: RESUBMIT_WINDOW_MS };

  it('a charge whose answers were lost, past the sends the worker may make, is never failed on a search that has not indexed it yet', async () => {
    const { f, paymentId, alerts, staleSearch } = await chargedUnanswered();
    // The worker has sent it as often as it may; Stripe's search does not show it yet.
    await f.t.db.withSystem((c) =>
      c.query('UPDATE payments SET submit_attempts = $2 WHERE id = $1', [paymentId, MAX_SUBMIT_ATTEMPTS]),
    );
    staleSearch(1);
    const later = new Date(Date.now() + 10 * 60_000);
    const held = await reconcilePayment(f.deps, f.tenant.id, paymentId, { now: later, resubmit });
    expect(held.status).toBe('processing');
    expect(await alerts()).toContain('payment_outcome_unverifiable');
    expect(await alerts()).not.toContain('payment_not_submitted');
    // Once the search shows it, the next look records what Stripe did: the one charge.
    const found = await reconcilePayment(f.deps, f.tenant.id, paymentId, { now: later, resubmit });
    expect(found.status).toBe('succeeded');
    expect(base.sandbox.ledger.charges(paymentId)).toHaveLength(1);
  });

  it("the worker's last send failing on Stripe's side after an unanswered one: unknown, never failed", async () => {
    const { f, paymentId, row, alerts, staleSearch } = await chargedUnanswered();
    await f.t.db.withSystem((c) =>
      c.query('UPDATE payments SET submit_attempts = $2 WHERE id = $1', [paymentId, MAX_SUBMIT_ATTEMPTS - 1]),
    );
    // The last send meets Stripe failing (every retry of it), and the search has not caught up.
    staleSearch(2);
    base.sandbox.faults.next('stripe', {
      kind: 'http_500',
      times: 3,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    const later = new Date(Date.now() + 10 * 60_000);
    const held = await reconcilePayment(f.deps, f.tenant.id, paymentId, { now: later, resubmit });
    expect(held.status).toBe('processing');
    expect((await row()).status).toBe('processing');
    // The next look (the search caught up) records the one charge.
    await reconcilePayment(f.deps, f.tenant.id, paymentId, { now: later, resubmit });
    expect((await row()).status).toBe('succeeded');
    expect(await alerts()).not.toContain('payment_retry');
    expect(base.sandbox.ledger.charges(paymentId)).toHaveLength(1);
  });

  it('a payment the worker sent again, found with no record past the window: held with one alert, not not_submitted', async () => {
    const { f, paymentId, row, alerts, staleSearch } = await chargedUnanswered();
    // A resend whose process died mid-call leaves it at `started`, sent twice.
    await f.t.db.withSystem((c) =>
      c.query("UPDATE payments SET recovery_point = 'started', submit_attempts = 2 WHERE id = $1", [
        paymentId,
      ]),
    );
    staleSearch(1);
    const late = new Date(Date.now() + RESUBMIT_WINDOW_MS + 10 * 60_000);
    await reconcilePayment(f.deps, f.tenant.id, paymentId, { now: late, resubmit });
    expect((await row()).status).toBe('processing');
    expect(await alerts()).toContain('payment_outcome_unverifiable');
    expect(await alerts()).not.toContain('payment_not_submitted');
  });

  it("an agent's status refresh never pushes back the worker's next check", async () => {
    const { f, paymentId, row, staleSearch } = await chargedUnanswered();
    await f.t.db.withSystem((c) =>
      c.query("UPDATE payments SET next_check_at = now() + interval '1 minute' WHERE id = $1", [paymentId]),
    );
    const due = (await row()).next_check_at!;
    staleSearch(1);
    await reconcilePayment(f.deps, f.tenant.id, paymentId);
    expect((await row()).next_check_at!.getTime()).toBeLessThanOrEqual(due.getTime());
  });

  it('a success the provider reports after we recorded a failure is never ignored', async () => {
    const { f, result } = await attempt('pm_card_visa_chargeDeclined');
    const paymentId = (result as PaymentFailedError).payment.payment_id;
    const applied = await f.t.db.withTenant(f.tenant.id, (c) =>
      applyPaymentOutcome(
        c,
        paymentId,
        { status: 'succeeded', providerReference: 'pi_late' },
        { actorType: 'provider', actorId: 'stripe' },
      ),
    );
    expect(applied.payment.status).toBe('succeeded');
    const state = await f.t.db.withTenant(f.tenant.id, async (c) => ({
      invoice: (await c.query<{ status: string }>("SELECT status FROM invoices WHERE number = 'INV-F'"))
        .rows[0]!.status,
      alerts: (
        await c.query<{ kind: string; severity: string }>(
          "SELECT kind, severity FROM alerts WHERE code = 'late_success'",
        )
      ).rows,
    }));
    expect(state.invoice).toBe('paid');
    expect(state.alerts).toEqual([{ kind: 'payment_succeeded_after_failure', severity: 'critical' }]);
    // Nothing can pay it again now.
    await expect(
      payInvoice(
        f.deps,
        { agentKey: f.agentKey },
        { invoice: 'INV-F', amount: '42.00', currency: 'USD', method: 'stripe' },
      ),
    ).rejects.toMatchObject({
      code: 'invoice_already_paid',
    });
  });

  it('a late success while another payment of the invoice is live raises a paid-twice alert', async () => {
    const { f, result } = await attempt('pm_card_visa_chargeDeclined');
    const failedId = (result as PaymentFailedError).payment.payment_id;
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa' });
    const input = { invoice: 'INV-F', amount: '42.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    const paid = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { ...input, approval_token: await f.approveAs(f.admin, ask.approval_id) },
    )) as { status: string };
    expect(paid.status).toBe('paid');
    const applied = await f.t.db.withTenant(f.tenant.id, (c) =>
      applyPaymentOutcome(c, failedId, { status: 'succeeded' }, { actorType: 'provider', actorId: 'stripe' }),
    );
    expect(applied.payment.status).toBe('failed');
    const alerts = await f.t.db.withTenant(
      f.tenant.id,
      async (c) =>
        (await c.query<{ kind: string }>("SELECT kind FROM alerts WHERE code = 'late_success'")).rows,
    );
    expect(alerts).toEqual([{ kind: 'invoice_paid_twice' }]);
  });
  /**
   * Another path of the invoice takes its first lock in a transaction of its own (`lock`), holds it while
   * the provider's late success for `failed` arrives and waits for it, then writes (`write`) and commits:
   * both finish (neither is chosen as a deadlock's victim), and the invoice is paid twice, alerted.
   */
  async function lateSuccessWhile(
    f: Fixture,
    failed: Payment,
    lock: (c: Queryable) => Promise<string | undefined>,
    write: (c: Queryable, locked: string | undefined) => Promise<void>,
  ) {
    const locked = deferred<number>();
    const proceed = deferred();
    const other = f.t.db.withTenant(f.tenant.id, async (c) => {
      const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const held = await lock(c);
      locked.resolve(pid);
      await proceed.promise;
      await write(c, held);
    });
    const otherPid = await Promise.race([locked.promise, other.then(() => 0)]);
    const late = f.t.db.withTenant(f.tenant.id, (c) =>
      applyPaymentOutcome(
        c,
        failed.id,
        { status: 'succeeded' },
        { actorType: 'provider', actorId: 'stripe' },
      ),
    );
    await untilWaitingFor(f, otherPid, 1, 'the late success never waited for the other path');
    proceed.resolve();
    const [started, applied] = await Promise.allSettled([other, late]);
    expect(started.status).toBe('fulfilled');
    expect(applied).toMatchObject({ status: 'fulfilled', value: { payment: { status: 'failed' } } });
    const alerts = await f.t.db.withTenant(
      f.tenant.id,
      async (c) =>
        (await c.query<{ kind: string }>("SELECT kind FROM alerts WHERE code = 'late_success'")).rows,
    );
    expect(alerts).toEqual([{ kind: 'invoice_paid_twice' }]);
  }

  const failedPayment = async (f: Fixture, result: unknown) =>
    (await f.t.db.withTenant(f.tenant.id, (c) =>
      getPayment(c, (result as PaymentFailedError).payment.payment_id!),
    ))!;

  it('a late success while a new payment of the invoice is in its phase 1 waits for it, and says paid twice: no deadlock', async () => {
    const { f, result } = await attempt('pm_card_visa_chargeDeclined');
    const failed = await failedPayment(f, result);
    // Phase 1 of a new payment of the invoice, as openCall runs it: the invoice locked, then the payment
    // inserted and the invoice moved.
    await lateSuccessWhile(
      f,
      failed,
      async (c) => {
        await c.query('SELECT id FROM invoices WHERE id = $1 FOR UPDATE', [failed.invoiceId]);
        return undefined;
      },
      async (c) => {
        await insertSubmission(c, anotherPayment(f, failed));
        await transitionInvoice(c, failed.invoiceId, 'approved', 'processing');
      },
    );
  });

  it("a late success while the worker starts the failed payment's reschedule waits for it, and says paid twice: no deadlock", async () => {
    const { f, result, scheduled } = await attempt('pm_card_visa_chargeDeclinedInsufficientFunds');
    expect(scheduled).toEqual([{ status: 'scheduled', reschedule_count: 1 }]);
    const failed = await failedPayment(f, result);
    // The worker starting the reschedule, as executeScheduledPayment does: the schedule locked, then the
    // schedule marked running, the invoice moved and the payment inserted.
    await lateSuccessWhile(
      f,
      failed,
      async (c) =>
        (
          await c.query<{ id: string }>(
            "SELECT id FROM scheduled_payments WHERE invoice_id = $1 AND status = 'scheduled' FOR UPDATE",
            [failed.invoiceId],
          )
        ).rows[0]!.id,
      async (c, scheduleId) => {
        await c.query("UPDATE scheduled_payments SET status = 'running' WHERE id = $1", [scheduleId]);
        await transitionInvoice(c, failed.invoiceId, 'scheduled', 'processing');
        await insertSubmission(c, anotherPayment(f, failed, { scheduledPaymentId: scheduleId }));
      },
    );
  });

  it("a late success while a failure of the invoice's running schedule reschedules it, and the worker then starts that schedule, is no deadlock", async () => {
    // Hostile pass on 135abe2: applyLateSuccess locks the invoice's *waiting* schedules before it waits
    // for the invoice. A schedule that becomes waiting while it waits (the holder of the invoice is a
    // failure that reschedules it: handleFailure moves the running schedule back to `scheduled`) was not
    // locked, and the worker starting that schedule (schedule, then the live-payment slot, then the
    // invoice) and the late success (the invoice, then the slot, then the schedule, to cancel it) take
    // them in opposite orders.
    const { f } = await attempt('pm_card_visa_chargeDeclined');
    const failed = (await f.t.db.withTenant(f.tenant.id, async (c) => {
      const { rows } = await c.query<{ id: string }>("SELECT id FROM payments WHERE status = 'failed'");
      return getPayment(c, rows[0]!.id);
    }))!;
    // The invoice is being paid again by a schedule that is running: its payment is live (processing).
    const { scheduledId, runningId } = await f.t.db.withTenant(f.tenant.id, async (c) => {
      const { rows } = await c.query<{ id: string }>(
        `INSERT INTO scheduled_payments (tenant_id, invoice_id, agent_key_id, approval_id, amount_minor, currency, rail,
                                         payment_method_id, scheduled_date, status, approved_by)
         VALUES ($1, $2, $3, $4, 4200, 'USD', 'stripe', $5, (now() AT TIME ZONE 'UTC')::date, 'running', $6) RETURNING id`,
        [
          f.tenant.id,
          failed.invoiceId,
          f.agentKey.id,
          failed.approvalId,
          failed.paymentMethodId,
          ['admin@example.com'],
        ],
      );
      const id = randomUUID();
      await insertSubmission(c, {
        id,
        tenantId: f.tenant.id,
        invoiceId: failed.invoiceId,
        agentKeyId: f.agentKey.id,
        approvalId: failed.approvalId,
        scheduledPaymentId: rows[0]!.id,
        amountMinor: 42_00,
        currency: 'USD',
        rail: 'stripe',
        provider: 'stripe',
        paymentMethodId: failed.paymentMethodId,
        approvedBy: ['admin@example.com'],
      });
      await c.query('UPDATE scheduled_payments SET payment_id = $2 WHERE id = $1', [rows[0]!.id, id]);
      await transitionInvoice(c, failed.invoiceId, 'approved', 'processing');
      return { scheduledId: rows[0]!.id, runningId: id };
    });
    // Its payment fails for insufficient funds (phase 3's transaction, as the real code runs it), which
    // reschedules it; held before its commit while the late success and the worker arrive.
    const failing = deferred<number>();
    const commit = deferred();
    const failure = { code: 'insufficient_funds' as const, message: 'insufficient funds' };
    const phase3 = f.t.db.withTenant(f.tenant.id, async (c) => {
      const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const applied = await applyPaymentOutcome(
        c,
        runningId,
        { status: 'failed', failure },
        { actorType: 'provider', actorId: 'stripe' },
      );
      await handleFailure(c, applied.payment, failure);
      failing.resolve(pid);
      await commit.promise;
    });
    const phase3Pid = await Promise.race([failing.promise, phase3.then(() => 0)]);
    const waitingOn = (n: number) =>
      untilWaitingFor(f, phase3Pid, n, `fewer than ${n} waited for the failing payment`);
    // The provider reports the first, failed, payment succeeded after all: it waits for the invoice.
    const late = f.t.db.withTenant(f.tenant.id, (c) =>
      applyPaymentOutcome(
        c,
        failed.id,
        { status: 'succeeded' },
        { actorType: 'provider', actorId: 'stripe' },
      ),
    );
    await waitingOn(1);
    // The worker starts the schedule (executeScheduledPayment): it waits for the schedule.
    const worker = executeScheduledPayment(f.deps, f.tenant.id, scheduledId);
    await waitingOn(2);
    commit.resolve();
    const [failedFirst, applied, started] = await Promise.allSettled([phase3, late, worker]);
    expect(failedFirst.status).toBe('fulfilled');
    // Neither is chosen as a deadlock's victim.
    const errors = [applied, started].flatMap((r) =>
      r.status === 'rejected' ? [String((r.reason as Error).message)] : [],
    );
    expect(errors).toEqual([]);
  }, 30_000);

  it('a late success reported while a held payment of the invoice was live is not lost when an admin records the held one not made: the invoice is paid, not up for payment again', async () => {
    // Hostile pass on 0758c3d: the provider reports the invoice's earlier, failed, payment succeeded
    // while a later payment of it is held (processing, outcome unverifiable). applyLateSuccess leaves the
    // earlier one failed with an invoice_paid_twice alert ("refund one of the two"). An admin then finds
    // the held one was never made and records it: the invoice goes back to approved, the one payment
    // that did move money stays recorded failed (so it cannot be refunded either), and a new approval
    // pays the vendor a second time.
    const { f, result } = await attempt('pm_card_visa_chargeDeclined');
    const earlierId = (result as PaymentFailedError).payment.payment_id!;
    const earlier = (await f.t.db.withTenant(f.tenant.id, (c) => getPayment(c, earlierId)))!;
    // A new payment of the invoice whose calls got no answer (phase 3 of a network_timeout), sent as
    // often as the worker may.
    const heldId = randomUUID();
    await f.t.db.withTenant(f.tenant.id, async (c) => {
      await insertSubmission(c, anotherPayment(f, earlier, { id: heldId }));
      await c.query(
        "UPDATE payments SET recovery_point = 'provider_called', submit_attempts = $2 WHERE id = $1",
        [heldId, MAX_SUBMIT_ATTEMPTS],
      );
      await transitionInvoice(c, earlier.invoiceId, 'approved', 'processing');
    });
    const later = new Date(Date.now() + RESUBMIT_WINDOW_MS + 10 * 60_000);
    const held = await reconcilePayment(f.deps, f.tenant.id, heldId, { now: later, resubmit });
    expect(held.status).toBe('processing');
    // Stripe's word, late: the earlier payment succeeded after all.
    const applied = await f.t.db.withTenant(f.tenant.id, (c) =>
      applyPaymentOutcome(
        c,
        earlierId,
        { status: 'succeeded' },
        { actorType: 'provider', actorId: 'stripe' },
      ),
    );
    expect(applied.payment.status).toBe('failed');
    // The admin finds no such PaymentIntent for the held one, and records it.
    await f.t.db.withTenant(f.tenant.id, (c) =>
      recordHeldPaymentNotMade(c, f.tenant.id, heldId, f.admin, 'no such PaymentIntent'),
    );
    const invoice = await f.t.db.withTenant(
      f.tenant.id,
      async (c) =>
        (await c.query<{ status: string }>('SELECT status FROM invoices WHERE id = $1', [earlier.invoiceId]))
          .rows[0]!.status,
    );
    // The vendor was paid, once, by the earlier payment: nothing may put the invoice up for payment again,
    // and that payment is recorded as what it is (succeeded, so refundable).
    expect(invoice).toBe('paid');
    const earlierNow = (await f.t.db.withTenant(f.tenant.id, (c) => getPayment(c, earlierId)))!;
    expect(earlierNow.status).toBe('succeeded');
  });

  it('a payment moved while a refund webhook held its lock is answered with that refund counted', async () => {
    const f = await createFixture({ slug: `fail-${++n}`, t: base.t, sandbox: base.sandbox });
    await f.addMethod({
      rail: 'ach',
      token: 'pm_usBankAccount_processing',
      provider: 'stripe',
      bankName: 'STRIPE TEST BANK',
      last4: '0009',
    });
    const started = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-R',
      amountMinor: 42_00,
      method: 'ach',
    });
    expect(started.status).toBe('processing');
    const id = started.payment_id;

    // A provider's refund webhook records a refund made outside paygate, holding the payment's lock.
    const held = deferred();
    const refundWritten = deferred();
    let holderPid = 0;
    const holder = f.t.db.withTenant(f.tenant.id, async (c) => {
      holderPid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await c.query('SELECT id FROM payments WHERE id = $1 FOR UPDATE', [id]);
      await c.query(
        `INSERT INTO refunds (tenant_id, payment_id, amount_minor, currency, status, recovery_point, provider_reference, refunded_at)
         VALUES ($1, $2, 1000, 'USD', 'succeeded', 'finished', 're_outside', now())`,
        [f.tenant.id, id],
      );
      refundWritten.resolve();
      await held.promise;
    });
    // The holder's own failure ends the wait too, rather than leaving this test hanging on it.
    await Promise.race([refundWritten.promise, holder]);
    const moving = f.t.db.withTenant(f.tenant.id, (c) =>
      applyPaymentOutcome(c, id, { status: 'succeeded' }, { actorType: 'provider', actorId: 'stripe' }),
    );
    // Let the move start waiting for the holder's lock before the holder commits.
    await untilWaitingFor(f, holderPid, 1, 'the move never waited for the refund holder');
    held.resolve();
    await holder;
    const applied = await moving;
    expect(applied.payment.status).toBe('succeeded');
    expect(applied.payment.refundedMinor).toBe(10_00);
    const fresh = await f.t.db.withTenant(f.tenant.id, (c) => getPayment(c, id));
    expect(applied.payment).toEqual(fresh);
  });
});
