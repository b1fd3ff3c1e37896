/**
 * A pay-now payment (pay_invoice) left to the worker is held to the same rules as a scheduled one:
 *
 * - it is sent at most MAX_SUBMIT_ATTEMPTS times in all, its own call's send included. Phase 1 of a
 *   scheduled payment counted its first send and pay_invoice's did not, so the reconciler's re-sends
 *   made one send more for a pay-now payment than the documented limit;
 * - it is first checked only when a scheduled payment would be, not while its own call is still running.
 *   Phase 1 of pay_invoice set no check, so a worker took the payment once it was untouched for a lease
 *   (two minutes) and sent it again alongside the call still waiting on the provider.
 *
 * Driven through the engine and the worker with an injected clock; the sandbox's request log and ledger
 * judge what the provider received and charged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MAX_ATTEMPTS } from '../../src/gateways/retry.js';
import { type PaymentConfirmation, payInvoice } from '../../src/payments/pay.js';
import { createWorker, DEFAULT_LEASE_MS, MAX_SUBMIT_ATTEMPTS } from '../../src/worker/index.js';
import { deferred } from '../support/deferred.js';
import { approvedPayCall, createFixture, type Fixture, patientDeps } from '../support/fixture.js';
import { scheduleApproved } from './support.js';

const MINUTE = 60_000;
/** The first check of a payment phase 1 just started, scheduled or pay-now (docs/worker.md, "Crashes"). */
const FIRST_CHECK_MS = 5 * MINUTE;

describe('a pay-now payment left to the worker', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture({ slug: 'pay-now-recovery' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
  });
  afterAll(async () => f?.close());

  const approvedStripeCall = (invoice: string, amountMinor: number) =>
    approvedPayCall(f, f.agentKey, { invoice, amountMinor, method: 'stripe' });

  async function paymentRow(paymentId: string) {
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ status: string; failure_code: string | null; submit_attempts: number; invoice: string }>(
        `SELECT p.status, p.failure_code, p.submit_attempts, i.status AS invoice
           FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE p.id = $1`,
        [paymentId],
      ),
    );
    return rows[0]!;
  }

  /** The create requests Stripe received for this payment (each under its key, `pay:<payment id>`). */
  const sends = (paymentId: string) =>
    f.sandbox.stripe
      .requests()
      .filter(
        (r) =>
          r.method === 'POST' && r.path === '/v1/payment_intents' && r.idempotencyKey?.includes(paymentId),
      );

  it.each(['pay-now', 'scheduled'] as const)(
    '%s: a payment whose sends keep failing is sent MAX_SUBMIT_ATTEMPTS times in all, its first send included, then failed',
    async (kind) => {
      // Every create fails with a 500 (nothing charged), so each send is the gateway's own attempts.
      f.sandbox.faults.next('stripe', {
        kind: 'http_500',
        times: 100,
        match: { method: 'POST', path: '/v1/payment_intents' },
      });
      try {
        let paymentId: string;
        if (kind === 'pay-now') {
          const answer = (await payInvoice(
            f.deps,
            { agentKey: f.agentKey },
            await approvedStripeCall('NOW-FAILING', 61_00),
          )) as PaymentConfirmation;
          // The call's own send failed and Stripe has no record of it: left for the worker to send again.
          expect(answer).toMatchObject({ success: true, status: 'processing' });
          paymentId = answer.payment_id;
        } else {
          await f.addInvoice('SCHED-FAILING', 62_00);
          const scheduledId = await scheduleApproved(f, f.agentKey, 'SCHED-FAILING', '62.00', 'stripe');
          expect((await createWorker(f.deps, { random: () => 0 }).runOnce()).scheduled).toMatchObject({
            started: 1,
            deferred: 1,
          });
          const { rows } = await f.t.db.withSystem((c) =>
            c.query<{ id: string }>('SELECT id FROM payments WHERE scheduled_payment_id = $1', [scheduledId]),
          );
          paymentId = rows[0]!.id;
        }
        expect(sends(paymentId)).toHaveLength(DEFAULT_MAX_ATTEMPTS);

        // Worker passes ten minutes apart, each past the deferred retry and inside the resubmit window,
        // until the payment is resolved (a bound, so a bug cannot loop for ever).
        for (let pass = 1; pass <= MAX_SUBMIT_ATTEMPTS + 2; pass++) {
          if ((await paymentRow(paymentId)).status !== 'processing') break;
          const at = new Date(Date.now() + pass * 10 * MINUTE);
          expect((await createWorker(f.deps, { clock: () => at, random: () => 0 }).runOnce()).errors).toBe(0);
        }

        expect(await paymentRow(paymentId)).toMatchObject({
          status: 'failed',
          failure_code: 'api_error',
          submit_attempts: MAX_SUBMIT_ATTEMPTS,
          invoice: 'approved',
        });
        // What Stripe received: MAX_SUBMIT_ATTEMPTS sends, each the gateway's DEFAULT_MAX_ATTEMPTS
        // attempts, all under the one key, all answered 500. Nothing charged.
        const received = sends(paymentId);
        expect(received).toHaveLength(MAX_SUBMIT_ATTEMPTS * DEFAULT_MAX_ATTEMPTS);
        expect(new Set(received.map((r) => r.idempotencyKey))).toEqual(new Set([`pay:${paymentId}`]));
        expect(received.every((r) => r.status === 500)).toBe(true);
        expect(f.sandbox.ledger.charges(paymentId)).toHaveLength(0);
        const { rows: audit } = await f.t.db.withSystem((c) =>
          c.query<{ action: string }>(
            "SELECT action FROM audit_log WHERE subject_id = $1 AND action = 'payment.resubmitted'",
            [paymentId],
          ),
        );
        expect(audit).toHaveLength(MAX_SUBMIT_ATTEMPTS - 1);
      } finally {
        f.sandbox.faults.clear('stripe');
      }
    },
    60_000,
  );

  it('pay-now: a payment still in its own provider call is not checked before its first check, and is after', async () => {
    const input = await approvedStripeCall('NOW-SLOW', 63_00);
    // The agent's process: its Stripe client waits as long as a slow Stripe takes.
    const patient = patientDeps(f);
    // Stripe holds the create, its key taken, until the test releases it: the call is in flight for
    // exactly as long as the test needs.
    const released = deferred();
    f.sandbox.faults.next('stripe', {
      kind: 'slow_processing',
      until: released.promise,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    const firedBefore = f.sandbox.faults.fired('stripe').length;
    const call = payInvoice(patient, { agentKey: f.agentKey }, input);
    try {
      await expect
        .poll(() => f.sandbox.faults.fired('stripe').length, { timeout: 10_000 })
        .toBe(firedBefore + 1);
      const { rows } = await f.t.db.withSystem((c) =>
        c.query<{ id: string }>(
          `SELECT p.id FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = 'NOW-SLOW'`,
        ),
      );
      const paymentId = rows[0]!.id;
      expect(sends(paymentId)).toHaveLength(1);

      // Past the lease a worker waits on a payment with no check set, before the first check: the call
      // is the payment's own, so no worker asks about it or sends it.
      const early = new Date(Date.now() + FIRST_CHECK_MS - 30_000);
      expect(early.getTime() - Date.now()).toBeGreaterThan(DEFAULT_LEASE_MS);
      const before = await createWorker(f.deps, { clock: () => early, random: () => 0 }).runOnce();
      expect(before.errors).toBe(0);
      expect(before.reconciled.checked).toBe(0);
      expect(sends(paymentId)).toHaveLength(1);

      // At its first check the worker does take it (a call that outlasts it is as a crashed one): it asks,
      // finds nothing yet, and its send meets the first request in progress (Stripe's 409), which defers.
      const due = new Date(Date.now() + FIRST_CHECK_MS + 30_000);
      const after = await createWorker(f.deps, { clock: () => due, random: () => 0 }).runOnce();
      expect(after.errors).toBe(0);
      expect(after.reconciled).toMatchObject({ checked: 1, failed: 0, still_processing: 1 });
      expect(
        sends(paymentId)
          .slice(1)
          .every((r) => r.status === 409),
      ).toBe(true);

      released.resolve();
      const done = (await call) as PaymentConfirmation;
      expect(done).toMatchObject({ success: true, status: 'paid', payment_id: paymentId });
      expect(f.sandbox.ledger.charges(paymentId)).toHaveLength(1);
    } finally {
      released.resolve();
      await call.catch(() => undefined);
    }
  }, 60_000);
});
