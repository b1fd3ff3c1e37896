/**
 * The worker in-process against a real database and the sandbox emulators: what is due (in the tenant's
 * time zone), deferred retries with the same payment id, insufficient-funds reschedules, reconciliation
 * of settling payments, refunds re-driven, housekeeping, and a graceful stop. The clock is injected, so
 * nothing here waits for a backoff or a lease.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { formatAmount } from '../../src/money.js';
import { nextBusinessDay, todayIn } from '../../src/payments/calendar.js';
import { transitionInvoice } from '../../src/payments/invoices.js';
import { type PaymentConfirmation, payInvoice } from '../../src/payments/pay.js';
import { FIRST_CHECK_AFTER_START_MS } from '../../src/payments/payments.js';
import { insertSubmission } from '../../src/payments/phases.js';
import { refundPayment } from '../../src/payments/refund.js';
import { createWorker, retryDelayMs } from '../../src/worker/index.js';
import { deferred } from '../support/deferred.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { envFor, runPaygate, scheduleApproved } from './support.js';

const MINUTE = 60_000;
const later = (ms: number) => () => new Date(Date.now() + ms);

async function scheduleRow(f: Fixture, id: string) {
  const { rows } = await f.t.db.withSystem((c) =>
    c.query<{
      status: string;
      payment_id: string | null;
      scheduled_date: string;
      reschedule_count: number;
      locked_until: Date | null;
    }>(
      `SELECT status, payment_id, to_char(scheduled_date, 'YYYY-MM-DD') AS scheduled_date, reschedule_count, locked_until
         FROM scheduled_payments WHERE id = $1`,
      [id],
    ),
  );
  return rows[0]!;
}

async function paymentsOf(f: Fixture, scheduledId: string) {
  const { rows } = await f.t.db.withSystem((c) =>
    c.query<{
      id: string;
      status: string;
      recovery_point: string;
      submit_attempts: number;
      failure_code: string | null;
    }>(
      'SELECT id, status, recovery_point, submit_attempts, failure_code FROM payments WHERE scheduled_payment_id = $1 ORDER BY created_at',
      [scheduledId],
    ),
  );
  return rows;
}

async function auditActions(f: Fixture, subjectId: string): Promise<string[]> {
  const { rows } = await f.t.db.withSystem((c) =>
    c.query<{ action: string }>(
      'SELECT action FROM audit_log WHERE subject_id = $1 ORDER BY tenant_id, seq',
      [subjectId],
    ),
  );
  return rows.map((r) => r.action);
}

describe('worker', () => {
  let f: Fixture;
  let agent: Fixture['agentKey'];
  beforeAll(async () => {
    f = await createFixture();
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
    await f.addMethod({ rail: 'ach', token: 'pm_usBankAccount_success', label: 'Operating account' });
    agent = (await f.newAgent({ name: 'scheduler', rateLimitPerMinute: 10_000 })).agentKey;
  });
  afterAll(async () => f.close());

  it('runs a schedule only once its date has come in the tenant time zone, and exactly once', async () => {
    // Pago Pago is UTC-11: at 05:00 UTC on 2 January it is still 1 January there.
    await f.t.db.withSystem((c) =>
      c.query("UPDATE tenants SET timezone = 'Pacific/Pago_Pago' WHERE id = $1", [f.tenant.id]),
    );
    f.tenant.timezone = 'Pacific/Pago_Pago';
    const year = new Date().getUTCFullYear() + 1;
    await f.addInvoice('TZ-001', 120_00);
    const id = await scheduleApproved(f, agent, 'TZ-001', '120.00', 'stripe', `${year}-01-02`);

    const before = createWorker(f.deps, { clock: () => new Date(`${year}-01-02T05:00:00Z`) });
    expect((await before.runOnce()).scheduled.claimed).toBe(0);
    expect((await scheduleRow(f, id)).status).toBe('scheduled');

    // 11:00 UTC is midnight in Pago Pago: due.
    const due = createWorker(f.deps, { clock: () => new Date(`${year}-01-02T11:00:00Z`) });
    const summary = await due.runOnce();
    expect(summary.scheduled).toMatchObject({ claimed: 1, started: 1, paid: 1 });
    const row = await scheduleRow(f, id);
    expect(row.status).toBe('executed');
    expect(f.sandbox.ledger.charges(row.payment_id!)).toHaveLength(1);

    // Another pass (another worker) finds nothing to do: no second payment, no second charge.
    expect((await due.runOnce()).scheduled.claimed).toBe(0);
    expect(await paymentsOf(f, id)).toHaveLength(1);
    expect(f.sandbox.ledger.charges(row.payment_id!)).toHaveLength(1);
    await f.t.db.withSystem((c) =>
      c.query("UPDATE tenants SET timezone = 'UTC' WHERE id = $1", [f.tenant.id]),
    );
    f.tenant.timezone = 'UTC';
  });

  it('defers a payment the provider keeps failing and sends the SAME payment again later', async () => {
    await f.addInvoice('RETRY-001', 75_00);
    const id = await scheduleApproved(f, agent, 'RETRY-001', '75.00', 'stripe');
    // Three 500s: the gateway's own three attempts all fail, and the provider has no record of it.
    f.sandbox.faults.next('stripe', {
      kind: 'http_500',
      times: 3,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    const first = await createWorker(f.deps, { random: () => 0 }).runOnce();
    expect(first.scheduled).toMatchObject({ started: 1, deferred: 1, paid: 0 });
    expect(f.sandbox.faults.pending('stripe')).toBe(0);
    const [deferred] = await paymentsOf(f, id);
    expect(deferred).toMatchObject({ status: 'processing', recovery_point: 'started', submit_attempts: 1 });
    expect(f.sandbox.ledger.charges(deferred!.id)).toHaveLength(0);
    expect((await scheduleRow(f, id)).status).toBe('running');

    // Not yet due: a pass on the real clock leaves it alone.
    expect((await createWorker(f.deps).runOnce()).reconciled.checked).toBe(0);

    const second = await createWorker(f.deps, { clock: later(retryDelayMs(1, () => 1) + 1000) }).runOnce();
    expect(second.reconciled).toMatchObject({ checked: 1, succeeded: 1 });
    const payments = await paymentsOf(f, id);
    expect(payments).toHaveLength(1);
    expect(payments[0]).toMatchObject({ id: deferred!.id, status: 'succeeded', submit_attempts: 2 });
    const charges = f.sandbox.ledger.charges(deferred!.id);
    expect(charges).toHaveLength(1);
    expect((await scheduleRow(f, id)).status).toBe('executed');
    expect(await auditActions(f, deferred!.id)).toEqual([
      'payment.started',
      'payment.retry_scheduled',
      'payment.resubmitted',
      'payment.succeeded',
    ]);
  });

  it('after three submissions records the failure with an alert, and nothing was charged', async () => {
    await f.addInvoice('RETRY-002', 80_00);
    const id = await scheduleApproved(f, agent, 'RETRY-002', '80.00', 'stripe');
    f.sandbox.faults.next('stripe', {
      kind: 'http_500',
      times: 9,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    await createWorker(f.deps).runOnce();
    await createWorker(f.deps, { clock: later(2 * MINUTE) }).runOnce();
    const [mid] = await paymentsOf(f, id);
    expect(mid).toMatchObject({ status: 'processing', submit_attempts: 2 });
    const third = await createWorker(f.deps, { clock: later(5 * MINUTE) }).runOnce();
    expect(third.reconciled).toMatchObject({ checked: 1, failed: 1 });
    expect(f.sandbox.faults.pending('stripe')).toBe(0);
    const payments = await paymentsOf(f, id);
    expect(payments).toHaveLength(1);
    expect(payments[0]).toMatchObject({ status: 'failed', failure_code: 'api_error', submit_attempts: 3 });
    expect(f.sandbox.ledger.charges(payments[0]!.id)).toHaveLength(0);
    expect(await scheduleRow(f, id)).toMatchObject({ status: 'failed' });
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ code: string }>('SELECT code FROM alerts WHERE payment_id = $1', [payments[0]!.id]),
    );
    expect(rows.map((r) => r.code)).toEqual(['api_error']);
  });

  it('reschedules an insufficient-funds failure to the next business day, up to the tenant limit', async () => {
    const poor = await createFixture({ slug: 'poor-co', t: f.t, sandbox: f.sandbox });
    try {
      await poor.addMethod({
        rail: 'stripe',
        token: 'pm_card_visa_chargeDeclinedInsufficientFunds',
        label: 'Low card',
      });
      await f.t.db.withSystem((c) =>
        c.query('UPDATE tenants SET max_insufficient_funds_reschedules = 1 WHERE id = $1', [poor.tenant.id]),
      );
      const poorAgent = (await poor.newAgent({ name: 'scheduler', rateLimitPerMinute: 10_000 })).agentKey;
      await poor.addInvoice('NSF-001', 900_00);
      const id = await scheduleApproved(poor, poorAgent, 'NSF-001', '900.00', 'stripe');

      const first = await createWorker(f.deps).runOnce();
      expect(first.scheduled).toMatchObject({ started: 1, failed: 1 });
      const after1 = await scheduleRow(f, id);
      expect(after1).toMatchObject({
        status: 'scheduled',
        reschedule_count: 1,
        scheduled_date: nextBusinessDay(todayIn('UTC')),
        payment_id: null,
      });
      // Not due again today.
      expect((await createWorker(f.deps).runOnce()).scheduled.claimed).toBe(0);

      // On that day it runs again (a new payment under the same approval), fails again, and the limit
      // (1 reschedule) hands it to a human.
      const second = await createWorker(f.deps, {
        clock: () => new Date(`${after1.scheduled_date}T12:00:00Z`),
      }).runOnce();
      expect(second.scheduled).toMatchObject({ started: 1, failed: 1 });
      expect(await scheduleRow(f, id)).toMatchObject({ status: 'failed', reschedule_count: 1 });
      const payments = await paymentsOf(f, id);
      expect(payments.map((p) => [p.status, p.failure_code])).toEqual([
        ['failed', 'insufficient_funds'],
        ['failed', 'insufficient_funds'],
      ]);
      for (const p of payments) expect(f.sandbox.ledger.charges(p.id)).toHaveLength(0);
      const { rows } = await f.t.db.withSystem((c) =>
        c.query<{ next_step: string }>(
          'SELECT next_step FROM alerts WHERE scheduled_payment_id = $1 ORDER BY created_at',
          [id],
        ),
      );
      expect(rows).toHaveLength(2);
      expect(rows[1]!.next_step).toContain('needs a human');
      const { rows: invoice } = await f.t.db.withSystem((c) =>
        c.query<{ status: string }>('SELECT status FROM invoices WHERE tenant_id = $1 AND number = $2', [
          poor.tenant.id,
          'NSF-001',
        ]),
      );
      expect(invoice[0]!.status).toBe('approved');
    } finally {
      await poor.close();
    }
  });

  it('resolves a settling ACH payment by asking the provider once its check is due', async () => {
    await f.addInvoice('ACH-001', 2_500_00);
    const id = await scheduleApproved(f, agent, 'ACH-001', '2500.00', 'ach');
    const first = await createWorker(f.deps).runOnce();
    expect(first.scheduled).toMatchObject({ started: 1, pending: 1 });
    const [payment] = await paymentsOf(f, id);
    expect(payment).toMatchObject({ status: 'processing', recovery_point: 'provider_called' });
    // Accepted by the provider: the schedule has done its job.
    expect((await scheduleRow(f, id)).status).toBe('executed');

    // Still settling at the first check: asked, and asked again later (the widening schedule).
    const early = await createWorker(f.deps, { clock: later(2 * MINUTE) }).runOnce();
    expect(early.reconciled).toMatchObject({ checked: 1, still_processing: 1 });
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ in_s: number }>(
        'SELECT extract(epoch FROM next_check_at - now())::int AS in_s FROM payments WHERE id = $1',
        [payment!.id],
      ),
    );
    expect(rows[0]!.in_s).toBeGreaterThan(4 * 60);

    await f.sandbox.stripe.settleAch();
    const settled = await createWorker(f.deps, { clock: later(10 * MINUTE) }).runOnce();
    expect(settled.reconciled).toMatchObject({ checked: 1, succeeded: 1 });
    expect((await paymentsOf(f, id))[0]).toMatchObject({ status: 'succeeded' });
    expect(f.sandbox.ledger.charges(payment!.id)).toHaveLength(1);
  });

  it('finds a pay-now payment whose process died after phase 1 and sends it once, under its own id', async () => {
    await f.addInvoice('NOW-001', 55_00);
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { invoice: 'NOW-001', amount: '55.00', currency: 'USD', method: 'stripe' },
    )) as { approval_id: string };
    await f.approveAs(f.admin, ask.approval_id);
    // What pay_invoice's phase 1 commits before the provider is called (insertSubmission: its first check
    // FIRST_CHECK_AFTER_START_MS ahead), left as a process killed right after it would leave it.
    const paymentId = randomUUID();
    await f.t.db.withTenant(f.tenant.id, async (c) => {
      const { rows } = await c.query<{ id: string; method: string }>(
        `SELECT i.id, (SELECT id FROM payment_methods WHERE rail = 'stripe' AND status = 'active') AS method
           FROM invoices i WHERE number = 'NOW-001'`,
      );
      await insertSubmission(c, {
        id: paymentId,
        tenantId: f.tenant.id,
        invoiceId: rows[0]!.id,
        agentKeyId: f.agentKey.id,
        approvalId: ask.approval_id,
        amountMinor: 55_00,
        currency: 'USD',
        rail: 'stripe',
        provider: 'stripe',
        paymentMethodId: rows[0]!.method,
        approvedBy: ['admin@example.com'],
      });
      await transitionInvoice(c, rows[0]!.id, 'approved', 'processing');
    });
    // Its process may still be working on it: left alone until its first check.
    expect((await createWorker(f.deps).runOnce()).reconciled.checked).toBe(0);
    const pass = await createWorker(f.deps, { clock: later(FIRST_CHECK_AFTER_START_MS + MINUTE) }).runOnce();
    expect(pass.reconciled).toMatchObject({ checked: 1, succeeded: 1 });
    expect(f.sandbox.ledger.charges(paymentId)).toHaveLength(1);
    expect(f.sandbox.ledger.charges(paymentId)[0]!.idempotencyKey).toContain(paymentId);
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ status: string }>("SELECT status FROM invoices WHERE tenant_id = $1 AND number = 'NOW-001'", [
        f.tenant.id,
      ]),
    );
    expect(rows[0]!.status).toBe('paid');
  });

  it('re-drives a pending refund with the same refund id', async () => {
    await f.addInvoice('REF-001', 40_00);
    const caller = { agentKey: f.agentKey };
    const pay = { invoice: 'REF-001', amount: '40.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, caller, pay)) as { approval_id: string };
    const paid = (await payInvoice(f.deps, caller, {
      ...pay,
      approval_token: await f.approveAs(f.admin, ask.approval_id),
    })) as PaymentConfirmation;
    const refundAsk = (await refundPayment(f.deps, caller, { payment: paid.payment_id })) as {
      approval_id: string;
    };
    f.sandbox.faults.next('stripe', {
      kind: 'http_500',
      times: 3,
      match: { method: 'POST', path: '/v1/refunds' },
    });
    const pending = (await refundPayment(f.deps, caller, {
      payment: paid.payment_id,
      approval_token: await f.approveAs(f.admin, refundAsk.approval_id),
    })) as { refund_id: string; refund_status: string };
    expect(pending.refund_status).toBe('pending');
    expect(f.sandbox.ledger.refunds(paid.payment_id)).toHaveLength(0);

    // Within the grace period its caller may still be on it: left alone.
    expect((await createWorker(f.deps).runOnce()).refunds.redriven).toBe(0);
    const pass = await createWorker(f.deps, { clock: later(2 * MINUTE) }).runOnce();
    expect(pass.refunds).toMatchObject({ redriven: 1, succeeded: 1 });
    expect(f.sandbox.ledger.refunds(paid.payment_id)).toHaveLength(1);
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ id: string; status: string }>('SELECT id, status FROM refunds WHERE payment_id = $1', [
        paid.payment_id,
      ]),
    );
    expect(rows).toEqual([{ id: pending.refund_id, status: 'succeeded' }]);
  });

  it('expires stale approvals and prunes old idempotency keys', async () => {
    await f.addInvoice('STALE-001', 10_00);
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { invoice: 'STALE-001', amount: '10.00', currency: 'USD', method: 'stripe' },
    )) as { approval_id: string };
    await f.t.db.withSystem(async (c) => {
      await c.query("UPDATE approvals SET expires_at = now() - interval '1 minute' WHERE id = $1", [
        ask.approval_id,
      ]);
      await c.query(
        `INSERT INTO idempotency_keys (tenant_id, agent_key_id, key, action, request_digest, created_at)
         VALUES ($1, $2, 'old-key', 'pay_invoice', '\\x00', now() - interval '8 days'),
                ($1, $2, 'new-key', 'pay_invoice', '\\x00', now())`,
        [f.tenant.id, f.agentKey.id],
      );
    });
    const pass = await createWorker(f.deps).runOnce();
    expect(pass.approvals_expired).toBe(1);
    expect(pass.idempotency_keys_pruned).toBe(1);
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ key: string }>('SELECT key FROM idempotency_keys WHERE tenant_id = $1 ORDER BY key', [
        f.tenant.id,
      ]),
    );
    expect(rows.map((r) => r.key)).toContain('new-key');
    expect(rows.map((r) => r.key)).not.toContain('old-key');
    expect(await auditActions(f, ask.approval_id)).toContain('approval.expired');
  });

  it('runs one batch whose schedules need different outcomes: each gets the per-payment outcome, none holds up the others', async () => {
    const amounts: Record<string, number> = {
      OK1: 31_00,
      OK2: 32_00,
      ACH: 33_00,
      VOID: 34_00,
      NSF: 35_00,
      GONE: 36_00,
    };
    for (const [name, amount] of Object.entries(amounts)) await f.addInvoice(`MIX-${name}`, amount);
    const schedule = (name: string, rail: 'stripe' | 'ach') =>
      scheduleApproved(f, agent, `MIX-${name}`, formatAmount(amounts[name]!, 'USD'), rail);
    const ok = [await schedule('OK1', 'stripe'), await schedule('OK2', 'stripe')];
    const ach = await schedule('ACH', 'ach');
    const moved = await schedule('VOID', 'stripe');
    // A schedule is bound to the method that was the rail's newest when it was approved.
    await f.addMethod({
      rail: 'stripe',
      token: 'pm_card_visa_chargeDeclinedInsufficientFunds',
      label: 'Low card',
    });
    const nsf = await schedule('NSF', 'stripe');
    await f.addMethod({ rail: 'stripe', token: 'pm_card_mastercard', label: 'Old card' });
    const gone = await schedule('GONE', 'stripe');
    await f.t.db.withSystem(async (c) => {
      // An admin removes the method after the approval; someone voids an invoice under its schedule.
      await c.query(
        "UPDATE payment_methods SET status = 'removed' WHERE tenant_id = $1 AND provider_token = 'pm_card_mastercard'",
        [f.tenant.id],
      );
      await c.query("UPDATE invoices SET status = 'void' WHERE tenant_id = $1 AND number = 'MIX-VOID'", [
        f.tenant.id,
      ]);
    });
    try {
      const pass = await createWorker(f.deps, { batchSize: 10 }).runOnce();
      expect(pass.scheduled).toMatchObject({
        claimed: 6,
        started: 4,
        paid: 2,
        pending: 1,
        failed: 1,
        deferred: 0,
      });
      // The voided invoice's schedule fails as it does on its own: an error, retried after its lease.
      expect(pass.errors).toBe(1);

      for (const id of ok) {
        const row = await scheduleRow(f, id);
        expect(row.status).toBe('executed');
        expect(await paymentsOf(f, id)).toMatchObject([{ status: 'succeeded' }]);
        expect(f.sandbox.ledger.charges(row.payment_id!)).toHaveLength(1);
      }
      expect((await scheduleRow(f, ach)).status).toBe('executed');
      expect(await paymentsOf(f, ach)).toMatchObject([
        { status: 'processing', recovery_point: 'provider_called' },
      ]);
      expect(await scheduleRow(f, nsf)).toMatchObject({
        status: 'scheduled',
        reschedule_count: 1,
        payment_id: null,
      });
      expect(await paymentsOf(f, nsf)).toMatchObject([
        { status: 'failed', failure_code: 'insufficient_funds' },
      ]);
      expect(await scheduleRow(f, gone)).toMatchObject({ status: 'failed', payment_id: null });
      expect(await paymentsOf(f, gone)).toHaveLength(0);
      expect(await scheduleRow(f, moved)).toMatchObject({ status: 'scheduled', payment_id: null });
      expect(await paymentsOf(f, moved)).toHaveLength(0);
      const { rows } = await f.t.db.withSystem((c) =>
        c.query<{ number: string; status: string }>(
          "SELECT number, status FROM invoices WHERE tenant_id = $1 AND number LIKE 'MIX-%' ORDER BY number",
          [f.tenant.id],
        ),
      );
      expect(Object.fromEntries(rows.map((r) => [r.number, r.status]))).toEqual({
        'MIX-ACH': 'processing',
        'MIX-GONE': 'approved',
        'MIX-NSF': 'scheduled',
        'MIX-OK1': 'paid',
        'MIX-OK2': 'paid',
        'MIX-VOID': 'void',
      });
      const { rows: alerts } = await f.t.db.withSystem((c) =>
        c.query<{ code: string }>(
          'SELECT code FROM alerts WHERE scheduled_payment_id = ANY($1::uuid[]) ORDER BY code',
          [[nsf, gone]],
        ),
      );
      expect(alerts.map((a) => a.code)).toEqual(['insufficient_funds', 'payment_method_invalid']);
      expect((await verifyAuditLog(f.t.db)).ok).toBe(true);
    } finally {
      // The later tests pay with the tenant's plain card and find nothing else due.
      await f.t.db.withSystem(async (c) => {
        await c.query(
          "UPDATE payment_methods SET status = 'removed' WHERE tenant_id = $1 AND provider_token = 'pm_card_visa_chargeDeclinedInsufficientFunds'",
          [f.tenant.id],
        );
        await c.query("UPDATE scheduled_payments SET status = 'cancelled' WHERE id = ANY($1::uuid[])", [
          [moved, nsf],
        ]);
      });
    }
  });

  it('a batch whose phase 1 fails as a whole says so, and its payments go one by one', async () => {
    await f.addInvoice('FALL-1', 41_00);
    await f.addInvoice('FALL-2', 42_00);
    const ids = [
      await scheduleApproved(f, agent, 'FALL-1', '41.00', 'stripe'),
      await scheduleApproved(f, agent, 'FALL-2', '42.00', 'stripe'),
    ];
    // What breaks a batch and not a single payment: a statement inserting several payments at once.
    await f.t.db.withSystem((c) =>
      c.query(`
        CREATE FUNCTION test_refuse_batches() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF (SELECT count(*) FROM inserted) > 1 THEN RAISE EXCEPTION 'no batches today'; END IF;
          RETURN NULL;
        END $$;
        CREATE TRIGGER test_refuse_batches AFTER INSERT ON payments REFERENCING NEW TABLE AS inserted
          FOR EACH STATEMENT EXECUTE FUNCTION test_refuse_batches();`),
    );
    const warnings: { fields: Record<string, unknown>; message: string }[] = [];
    const logger = {
      info: () => {},
      error: () => {},
      warn: (fields: Record<string, unknown>, message: string) => warnings.push({ fields, message }),
    };
    try {
      const pass = await createWorker(f.deps, { batchSize: 10, logger: logger as never }).runOnce();
      expect(pass.scheduled).toMatchObject({ claimed: 2, started: 2, paid: 2 });
      expect(pass.errors).toBe(0);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.fields).toMatchObject({ phase: 'phase 1', payments: 2, tenantId: f.tenant.id });
      expect(warnings[0]!.message).toMatch(/failed as a whole; its payments go one by one/);
      for (const id of ids) expect((await scheduleRow(f, id)).status).toBe('executed');
    } finally {
      await f.t.db.withSystem((c) =>
        c.query('DROP TRIGGER test_refuse_batches ON payments; DROP FUNCTION test_refuse_batches()'),
      );
    }
  });

  it('stops on its signal: finishes the batch in flight, releases the batches it claimed but did not start', async () => {
    // One claim, two tenants: two batches, the stop arrives during the first.
    const other = await createFixture({ slug: 'stop-co', t: f.t, sandbox: f.sandbox });
    try {
      await other.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa' });
      const otherAgent = (await other.newAgent({ name: 'scheduler', rateLimitPerMinute: 10_000 })).agentKey;
      for (const n of [1, 2, 3]) await f.addInvoice(`STOP-00${n}`, 10_00 + n);
      for (const n of [4, 5]) await other.addInvoice(`STOP-00${n}`, 10_00 + n);
      const first = [
        await scheduleApproved(f, agent, 'STOP-001', '10.01', 'stripe'),
        await scheduleApproved(f, agent, 'STOP-002', '10.02', 'stripe'),
        await scheduleApproved(f, agent, 'STOP-003', '10.03', 'stripe'),
      ];
      const second = [
        await scheduleApproved(other, otherAgent, 'STOP-004', '10.04', 'stripe'),
        await scheduleApproved(other, otherAgent, 'STOP-005', '10.05', 'stripe'),
      ];
      const controller = new AbortController();
      let sleeps = 0;
      // The jitter source is consulted for each payment of a batch, once its phase 1 has committed.
      const worker = createWorker(f.deps, {
        batchSize: 10,
        batchesInFlight: 1,
        random: () => {
          controller.abort();
          return 0.5;
        },
        sleep: async () => {
          sleeps += 1;
        },
      });
      await worker.run({ signal: controller.signal });
      expect(sleeps).toBe(0);
      for (const id of first) expect((await scheduleRow(f, id)).status).toBe('executed');
      for (const id of second)
        expect(await scheduleRow(f, id)).toMatchObject({ status: 'scheduled', locked_until: null });
      // The next worker takes them at once: nobody waits for a lease.
      expect((await createWorker(f.deps).runOnce()).scheduled.paid).toBe(2);
      expect((await verifyAuditLog(f.t.db)).ok).toBe(true);
    } finally {
      await other.close();
    }
  });

  it('paygate worker exits 0 on SIGTERM', async () => {
    let pid = 0;
    const ready = deferred();
    const done = runPaygate(
      ['worker'],
      { ...envFor(f), PAYGATE_LOG_LEVEL: 'info' },
      {
        onSpawn: (p) => {
          pid = p;
        },
        onStderr: (chunk) => {
          if (chunk.includes('worker started')) ready.resolve();
        },
      },
    );
    await ready.promise;
    process.kill(pid, 'SIGTERM');
    const result = await done;
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('worker stopped');
  });
});
