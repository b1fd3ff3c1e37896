/**
 * The reconciler and a live call sending the same payment at once. A pay-now payment's first check is
 * FIRST_CHECK_AFTER_START_MS after phase 1, as a scheduled one's; a call still waiting on a Stripe slow
 * enough can outlast it, and the reconciler then takes the payment as it would a crashed one. The reconciler
 * finds nothing yet (Stripe has not finished the PaymentIntent) and sends the payment again under the
 * same idempotency key; Stripe answers 409, another request with this key in progress. That says the
 * payment is being made, not that it failed: stripe-node raises it as a StripeAPIError (by status), our
 * mapping makes it a retryable api_error, and the worker defers the payment instead of failing it and
 * putting its invoice back up for payment while Stripe charges it.
 *
 * The first call is held inside Stripe with its key taken (sandbox fault slow_processing, released by
 * the test), so the overlap is certain, not a timing race; the sandbox ledger judges what was charged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PaymentConfirmation, payInvoice } from '../../src/payments/pay.js';
import { FIRST_CHECK_AFTER_START_MS } from '../../src/payments/payments.js';
import { createWorker, MAX_SUBMIT_ATTEMPTS } from '../../src/worker/index.js';
import { deferred } from '../support/deferred.js';
import { approvedPayCall, createFixture, type Fixture, patientDeps } from '../support/fixture.js';

describe('a payment sent again while its first request is still in progress at Stripe', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture({ slug: 'in-progress' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
  });
  afterAll(async () => f?.close());

  /**
   * An approved pay_invoice of `invoice` whose request Stripe holds in progress, its key taken, until
   * `released` settles; the call's process waits long enough for a slow Stripe.
   */
  async function heldAtStripe(invoice: string, amountMinor: number) {
    const args = await approvedPayCall(f, f.agentKey, { invoice, amountMinor, method: 'stripe' });
    const released = deferred();
    const firedBefore = f.sandbox.faults.fired('stripe').length;
    f.sandbox.faults.next('stripe', {
      kind: 'slow_processing',
      until: released.promise,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    const call = payInvoice(patientDeps(f), { agentKey: f.agentKey }, args);
    // Stripe has the request (the fault fired): the payment is committed and its key taken.
    await expect
      .poll(() => f.sandbox.faults.fired('stripe').length, { timeout: 10_000 })
      .toBe(firedBefore + 1);
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ id: string }>(
        'SELECT p.id FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = $1',
        [invoice],
      ),
    );
    return { paymentId: rows[0]!.id, released, call };
  }

  it('is left processing for a later check, never failed; the first request charges it, exactly once', async () => {
    const { paymentId, released, call } = await heldAtStripe('INV-409', 615_00);

    // A worker whose clock is past the payment's first check: the call still running is as a crashed one.
    const later = new Date(Date.now() + FIRST_CHECK_AFTER_START_MS + 60_000);
    const pass = await createWorker(f.deps, { clock: () => later, random: () => 0 }).runOnce();
    expect(pass.errors).toBe(0);
    // The worker's resend met the first request in progress: Stripe's 409, not a second PaymentIntent.
    expect(
      f.sandbox.stripe.requests().filter((r) => r.idempotencyKey === `pay:${paymentId}` && r.status === 409),
    ).not.toHaveLength(0);
    expect(pass.reconciled).toMatchObject({ checked: 1, failed: 0, still_processing: 1 });
    const { rows: during } = await f.t.db.withSystem((c) =>
      c.query<{ status: string; recovery_point: string; invoice: string }>(
        `SELECT p.status, p.recovery_point, i.status AS invoice FROM payments p JOIN invoices i ON i.id = p.invoice_id
          WHERE p.id = $1`,
        [paymentId],
      ),
    );
    // Not failed, and its invoice not payable again while Stripe is charging it.
    expect(during[0]).toMatchObject({
      status: 'processing',
      recovery_point: 'started',
      invoice: 'processing',
    });

    released.resolve();
    const done = (await call) as PaymentConfirmation;
    expect(done).toMatchObject({ success: true, status: 'paid', payment_id: paymentId });
    const charges = f.sandbox.ledger.charges(paymentId);
    expect(charges).toHaveLength(1);
    expect(charges[0]!.amountMinor).toBe(615_00);
    const { rows: alerts } = await f.t.db.withSystem((c) =>
      c.query<{ kind: string }>('SELECT kind FROM alerts WHERE payment_id = $1', [paymentId]),
    );
    expect(alerts).toEqual([]);

    // The deferred check, when it comes, finds the payment paid and sends nothing.
    const check = new Date(Date.now() + 24 * 3600_000);
    expect((await createWorker(f.deps, { clock: () => check }).runOnce()).errors).toBe(0);
    expect(f.sandbox.ledger.charges(paymentId)).toHaveLength(1);
  });

  it("on the worker's last send too: Stripe's 409 leaves the outcome unknown, never failed; one charge", async () => {
    const { paymentId, released, call } = await heldAtStripe('INV-409-LAST', 616_00);
    // The worker's next send is the last it may make.
    await f.t.db.withSystem((c) =>
      c.query('UPDATE payments SET submit_attempts = $2 WHERE id = $1', [paymentId, MAX_SUBMIT_ATTEMPTS - 1]),
    );

    const later = new Date(Date.now() + FIRST_CHECK_AFTER_START_MS + 10 * 60_000);
    const pass = await createWorker(f.deps, { clock: () => later, random: () => 0 }).runOnce();
    expect(pass.errors).toBe(0);
    expect(
      f.sandbox.stripe.requests().filter((r) => r.idempotencyKey === `pay:${paymentId}` && r.status === 409),
    ).not.toHaveLength(0);
    const { rows: during } = await f.t.db.withSystem((c) =>
      c.query<{ status: string; invoice: string }>(
        `SELECT p.status, i.status AS invoice FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE p.id = $1`,
        [paymentId],
      ),
    );
    expect(during[0]).toEqual({ status: 'processing', invoice: 'processing' });

    released.resolve();
    expect(await call).toMatchObject({ success: true, status: 'paid', payment_id: paymentId });
    expect(f.sandbox.ledger.charges(paymentId)).toHaveLength(1);
  });
});
