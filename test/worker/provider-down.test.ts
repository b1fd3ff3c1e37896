/**
 * A provider that is down when the worker pays: the connection is refused or reset, so the call gets no
 * answer at all (network_timeout) and phase 3 records the payment processing at `provider_called`
 * with no reference and an "outcome unknown" alert. Once the provider is back it has no record of the
 * payment, and asking again can never change that: such a payment stayed processing for good, its
 * invoice blocked and the approved payment never made, its schedule marked executed. The reconciler now
 * sends it again under its own payment id (the same idempotency key, so a request that did arrive is
 * replayed, not made twice); past the resubmit window it stays processing with a critical alert for a
 * human (it may have reached the provider: failing it would let its invoice be paid twice). A payment
 * whose method an admin removed meanwhile is never sent again (the resend took the removed card).
 *
 * Real processes: `paygate worker --once` against a listener that resets every connection (the
 * provider down), then `paygate worker --once` against the sandbox; the sandbox ledger is the judge.
 */
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addPaymentMethod, removePaymentMethod } from '../../src/directory/payment-methods.js';
import { type ApprovalRequired, payInvoice } from '../../src/payments/pay.js';
import { getPaymentStatus } from '../../src/payments/status.js';
import { createWorker, RESUBMIT_WINDOW_MS } from '../../src/worker/index.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { envFor, runPaygate, scheduleApproved } from './support.js';

describe('a payment sent while its provider was down', () => {
  let f: Fixture;
  let down: net.Server;
  let downUrl: string;
  beforeAll(async () => {
    f = await createFixture({ slug: 'provider-down' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
    await f.addMethod({ rail: 'paypal', token: 'pp_vault_success', label: 'PayPal' });
    // Held by this test for its whole run, so no other program can answer on it.
    down = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve));
    downUrl = `http://127.0.0.1:${(down.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => down?.close(resolve));
    await f?.close();
  });

  async function state(scheduledId: string) {
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{
        id: string;
        status: string;
        recovery_point: string;
        provider_reference: string | null;
        failure_code: string | null;
        schedule: string;
        invoice: string;
      }>(
        `SELECT p.id, p.status, p.recovery_point, p.provider_reference, p.failure_code,
                s.status AS schedule, i.status AS invoice
           FROM scheduled_payments s JOIN payments p ON p.id = s.payment_id JOIN invoices i ON i.id = s.invoice_id
          WHERE s.id = $1`,
        [scheduledId],
      ),
    );
    return rows[0]!;
  }

  /** The payment of a schedule is due for its next check now (as if the wait the worker set had passed). */
  const makeDue = (scheduledId: string) =>
    f.t.db.withSystem((c) =>
      c.query(
        "UPDATE payments SET next_check_at = now() - interval '1 second' WHERE scheduled_payment_id = $1",
        [scheduledId],
      ),
    );

  /** A worker process runs the due schedule while every connection to the provider is reset. */
  async function payWhileDown(invoice: string, rail: 'stripe' | 'paypal'): Promise<string> {
    await f.addInvoice(invoice, 77_00);
    const scheduledId = await scheduleApproved(f, f.agentKey, invoice, '77.00', rail);
    const first = await runPaygate(['worker', '--once', '--json'], {
      ...envFor(f),
      PAYGATE_SANDBOX_STRIPE_URL: downUrl,
      PAYGATE_SANDBOX_PAYPAL_URL: downUrl,
    });
    expect(first.code, first.stderr).toBe(0);
    const unknown = await state(scheduledId);
    expect(unknown).toMatchObject({
      status: 'processing',
      recovery_point: 'provider_called',
      provider_reference: null,
      // Nothing is known to have happened: the schedule is not "executed" yet.
      schedule: 'running',
      invoice: 'processing',
    });
    expect(f.sandbox.ledger.charges(unknown.id)).toHaveLength(0);
    return scheduledId;
  }

  /**
   * payWhileDown with a Stripe card of the payment's own (the newest active method of a rail is the one a
   * payment takes), so a test may remove it and the other tests keep theirs.
   */
  async function payWhileDownWithOwnCard(invoice: string) {
    const method = await addPaymentMethod(f.t.db, f.tenant.id, f.admin, {
      rail: 'stripe',
      token: 'pm_card_mastercard',
      label: `Mastercard for ${invoice}`,
      brand: 'mastercard',
      last4: '4444',
    });
    return { method, scheduledId: await payWhileDown(invoice, 'stripe') };
  }

  it.each(['stripe', 'paypal'] as const)(
    '%s: once the provider is back, the next worker process sends it under its own key, charged exactly once',
    async (rail) => {
      const scheduledId = await payWhileDown(`DOWN-${rail}`, rail);
      // The check the first process set (a minute on) is due: as if that minute had passed.
      await makeDue(scheduledId);
      const back = await runPaygate(['worker', '--once', '--json'], envFor(f));
      expect(back.code, back.stderr).toBe(0);
      expect(JSON.parse(back.stdout).reconciled).toMatchObject({ checked: 1, succeeded: 1 });
      const paid = await state(scheduledId);
      expect(paid).toMatchObject({ status: 'succeeded', schedule: 'executed', invoice: 'paid' });
      const charges = f.sandbox.ledger.charges(paid.id, rail);
      expect(charges).toHaveLength(1);
      expect(charges[0]!.amountMinor).toBe(77_00);

      // Another pass, made due the same way, changes nothing and charges nothing.
      await makeDue(scheduledId);
      expect((await runPaygate(['worker', '--once'], envFor(f))).code).toBe(0);
      expect(f.sandbox.ledger.charges(paid.id)).toHaveLength(1);
    },
    60_000,
  );

  it('found only after the resubmit window: neither failed nor sent again (it may have reached Stripe); one critical alert', async () => {
    const scheduledId = await payWhileDown('DOWN-LATE', 'stripe');
    const late = new Date(Date.now() + RESUBMIT_WINDOW_MS + 10 * 60_000);
    const pass = await createWorker(f.deps, { clock: () => late }).runOnce();
    expect(pass.errors).toBe(0);
    // Its call got no answer: a "no record" cannot tell a request that never arrived from a charge the
    // search has not shown yet, and failing it would put the invoice up for payment again.
    const held = await state(scheduledId);
    expect(held).toMatchObject({ status: 'processing', schedule: 'running', invoice: 'processing' });
    expect(f.sandbox.ledger.charges(held.id)).toHaveLength(0);
    const { rows: alerts } = await f.t.db.withSystem((c) =>
      c.query<{ kind: string }>('SELECT kind FROM alerts WHERE payment_id = $1 ORDER BY created_at', [
        held.id,
      ]),
    );
    expect(alerts.map((a) => a.kind)).toContain('payment_outcome_unverifiable');
    expect(alerts.map((a) => a.kind)).not.toContain('payment_not_submitted');
  }, 60_000);

  it('held, then found not made at Stripe: an admin records it (`payments resolve --not-made`), and the invoice is paid again, once', async () => {
    const scheduledId = await payWhileDown('DOWN-NOT-MADE', 'stripe');
    const { id: paymentId } = await state(scheduledId);
    const resolve = (token: string, ...extra: string[]) =>
      runPaygate(['payments', 'resolve', paymentId, ...extra, '--json'], {
        ...envFor(f),
        PAYGATE_USER_TOKEN: token,
      });
    // Still being found out by the worker (its check is not due): not held, so not a human's to decide.
    const early = await resolve(f.admin.token, '--not-made');
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(/is processing and paygate is still finding out/);

    const late = new Date(Date.now() + RESUBMIT_WINDOW_MS + 10 * 60_000);
    expect((await createWorker(f.deps, { clock: () => late }).runOnce()).errors).toBe(0);
    expect(await state(scheduledId)).toMatchObject({ status: 'processing', invoice: 'processing' });
    const heldAlert = await f.t.db.withSystem(
      async (c) =>
        (
          await c.query<{ id: string; next_step: string }>(
            "SELECT id, next_step FROM alerts WHERE payment_id = $1 AND kind = 'payment_outcome_unverifiable'",
            [paymentId],
          )
        ).rows[0]!,
    );
    expect(heldAlert.next_step).toContain(`paygate payments resolve ${paymentId} --not-made`);
    // Its alert is resolved with it, not alone (which would leave it held with nothing saying so).
    const alertAlone = await runPaygate(['alerts', 'resolve', heldAlert.id], {
      ...envFor(f),
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(alertAlone.code).toBe(1);
    expect(alertAlone.stderr).toMatch(/holds payment .* resolved with the payment/);

    // What was found must be said; an approver may not put an invoice up for payment again.
    const unsaid = await resolve(f.admin.token);
    expect(unsaid.code).toBe(2);
    expect(unsaid.stderr).toMatch(/--not-made/);
    const approver = await resolve(f.approver.token, '--not-made');
    expect(approver.code).toBe(1);
    expect(approver.stderr).toMatch(/jdoe@example.com is an approver; .* needs an admin/);
    expect(await state(scheduledId)).toMatchObject({ status: 'processing', invoice: 'processing' });

    const done = await resolve(
      f.admin.token,
      '--not-made',
      '--note',
      'no such PaymentIntent in the dashboard',
    );
    expect(done.code, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({
      payment_id: paymentId,
      status: 'failed',
      failure: { code: 'not_made', message: expect.stringContaining('no such PaymentIntent') },
    });
    expect(await state(scheduledId)).toMatchObject({
      status: 'failed',
      failure_code: 'not_made',
      schedule: 'failed',
      invoice: 'approved',
    });
    const after = await f.t.db.withSystem(async (c) => ({
      alerts: (
        await c.query<{ kind: string; status: string }>(
          'SELECT kind, status FROM alerts WHERE payment_id = $1 ORDER BY created_at',
          [paymentId],
        )
      ).rows,
      audit: (
        await c.query<{ actor_type: string; actor_id: string }>(
          "SELECT actor_type, actor_id FROM audit_log WHERE action = 'payment.recorded_not_made' AND subject_id = $1",
          [paymentId],
        )
      ).rows,
    }));
    // Nothing is left open about it: the hold, and the failure's own (info) alert, are resolved.
    expect(after.alerts.every((a) => a.status === 'resolved')).toBe(true);
    expect(after.alerts.map((a) => a.kind)).toEqual(
      expect.arrayContaining(['payment_outcome_unverifiable', 'payment_not_made']),
    );
    expect(after.audit).toEqual([{ actor_type: 'user', actor_id: 'admin@example.com' }]);
    // Said once: it is no longer held.
    const again = await resolve(f.admin.token, '--not-made');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/is already failed/);
    // The agent is told what happened and what to do.
    const status = await getPaymentStatus(f.deps, { agentKey: f.agentKey }, { payment: paymentId });
    expect((status as { failure?: unknown }).failure).toMatchObject({
      code: 'not_made',
      next_step: expect.stringMatching(/new approval/),
    });

    // The invoice is paid again, under a new approval, and charged once in all.
    const input = { invoice: 'DOWN-NOT-MADE', amount: '77.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    expect(ask.status).toBe('approval_required');
    const paid = await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { ...input, approval_token: await f.approveAs(f.admin, ask.approval_id) },
    );
    expect(paid.status).toBe('paid');
    const charged = await f.t.db.withSystem(
      async (c) =>
        (
          await c.query<{ id: string }>(
            "SELECT p.id FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = 'DOWN-NOT-MADE'",
          )
        ).rows,
    );
    expect(charged.flatMap((p) => f.sandbox.ledger.charges(p.id))).toHaveLength(1);
  }, 60_000);

  it('paypal, first asked after PayPal stops finding orders by our request id: neither failed nor sent again; one critical alert', async () => {
    const scheduledId = await payWhileDown('DOWN-FORGOTTEN', 'paypal');
    // The worker was away for 7 hours: PayPal keeps a create's request id for 6, so its "no record"
    // no longer shows the order was never made.
    const late = new Date(Date.now() + 7 * 3600_000);
    for (let pass = 0; pass < 2; pass++) {
      await makeDue(scheduledId);
      expect((await createWorker(f.deps, { clock: () => late }).runOnce()).errors).toBe(0);
    }
    const held = await state(scheduledId);
    expect(held).toMatchObject({ status: 'processing', schedule: 'running', invoice: 'processing' });
    expect(f.sandbox.ledger.charges(held.id)).toHaveLength(0);
    const { rows: alerts } = await f.t.db.withSystem((c) =>
      c.query<{ kind: string; severity: string }>(
        'SELECT kind, severity FROM alerts WHERE payment_id = $1 ORDER BY created_at',
        [held.id],
      ),
    );
    expect(alerts.filter((a) => a.kind === 'payment_outcome_unverifiable')).toEqual([
      { kind: 'payment_outcome_unverifiable', severity: 'critical' },
    ]);
    expect(alerts.map((a) => a.kind)).not.toContain('payment_not_submitted');
  }, 60_000);

  it('its payment method removed by an admin while it waited: never sent again, so nothing is charged; held with the critical alert', async () => {
    const { method, scheduledId } = await payWhileDownWithOwnCard('DOWN-REMOVED');
    await removePaymentMethod(f.t.db, f.tenant.id, f.admin, method.id);
    for (const clock of [new Date(), new Date(Date.now() + 10 * 60_000)]) {
      await makeDue(scheduledId);
      expect((await createWorker(f.deps, { clock: () => clock }).runOnce()).errors).toBe(0);
    }
    const held = await state(scheduledId);
    expect(held).toMatchObject({ status: 'processing', schedule: 'running', invoice: 'processing' });
    expect(f.sandbox.ledger.charges(held.id)).toHaveLength(0);
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ kind: string }>('SELECT kind FROM alerts WHERE payment_id = $1', [held.id]),
    );
    expect(rows.map((a) => a.kind)).toContain('payment_outcome_unverifiable');
  }, 60_000);

  it('its method removed while the worker is deciding to send it again: the removal is waited for, and nothing is charged', async () => {
    const { method, scheduledId } = await payWhileDownWithOwnCard('DOWN-REMOVING');
    await makeDue(scheduledId);
    // An admin's removal, written but not yet committed when the worker looks at the method.
    let commit!: () => void;
    const committed = new Promise<void>((resolve) => {
      commit = resolve;
    });
    const removal = f.t.db.withSystem(async (c) => {
      await c.query("UPDATE payment_methods SET status = 'removed', removed_at = now() WHERE id = $1", [
        method.id,
      ]);
      await committed;
    });
    const pass = createWorker(f.deps).runOnce();
    await new Promise((resolve) => setTimeout(resolve, 500));
    commit();
    await removal;
    expect((await pass).errors).toBe(0);
    const held = await state(scheduledId);
    expect(held).toMatchObject({ status: 'processing', invoice: 'processing' });
    expect(f.sandbox.ledger.charges(held.id)).toHaveLength(0);
  }, 60_000);
});
