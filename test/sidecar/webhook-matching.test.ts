/**
 * Which payment a verified Stripe event is applied to. An event is about one PaymentIntent
 * (data.object.id); its metadata is free-form and editable by anyone with access to the Stripe account
 * (dashboard, another integration, a support agent). When the metadata's payment id and the
 * PaymentIntent disagree, the event must not move a payment whose own PaymentIntent it is not about.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { signStripeWebhookForTest } from '../../src/gateways/stripe/webhook.js';
import { createFixture, type Fixture, payThroughEngine } from '../support/fixture.js';
import { type RunningSidecar, startSidecar, stripeEventFor } from './support.js';

const SECRET = 'whsec_test_matching_0123456789abcdef';

async function post(s: RunningSidecar, payload: string) {
  const response = await fetch(`${s.url}/webhooks/stripe`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'stripe-signature': signStripeWebhookForTest(payload, SECRET),
    },
    body: payload,
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function statusOf(f: Fixture, paymentId: string) {
  const { rows } = await f.t.db.withSystem((c) =>
    c.query<{ status: string; provider_reference: string; invoice_status: string }>(
      `SELECT p.status, p.provider_reference, i.status AS invoice_status
         FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE p.id = $1`,
      [paymentId],
    ),
  );
  return rows[0]!;
}

describe('Stripe events whose metadata names another payment than their PaymentIntent', () => {
  let one: Fixture;
  let two: Fixture;
  let s: RunningSidecar;

  beforeAll(async () => {
    one = await createFixture({ slug: 'match-one' });
    two = await createFixture({ slug: 'match-two', t: one.t, sandbox: one.sandbox });
    for (const f of [one, two]) {
      await f.addMethod({
        rail: 'ach',
        token: 'pm_usBankAccount_processing',
        bankName: 'STRIPE TEST BANK',
        last4: '0009',
      });
    }
    s = await startSidecar(one, { stripeSecret: SECRET });
  }, 120_000);

  afterAll(async () => {
    await s.close();
    await two.close();
    await one.close();
  });

  it('same tenant: payment_intent.succeeded about pi_B with metadata naming A does not mark A paid', async () => {
    const a = await payThroughEngine(one, one.agentKey, {
      invoice: 'INV-M-A',
      amountMinor: 500_00,
      method: 'ach',
    });
    const b = await payThroughEngine(one, one.agentKey, {
      invoice: 'INV-M-B',
      amountMinor: 1_00,
      method: 'ach',
    });
    expect(a.status).toBe('processing');
    expect(b.status).toBe('processing');
    expect(a.gateway_reference).not.toBe(b.gateway_reference);

    // The event is about B's PaymentIntent (the 1.00 one); only its metadata names A (the 500.00 one).
    const payload = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_hm_1',
      a.payment_id,
      b.gateway_reference!,
    );
    const answer = await post(s, payload);
    expect(answer.status).toBeLessThan(500);

    const after = await statusOf(one, a.payment_id);
    // A's own PaymentIntent has not succeeded: A must still be processing, its invoice not paid.
    expect(after.provider_reference).toBe(a.gateway_reference);
    expect(after.status).toBe('processing');
    expect(after.invoice_status).toBe('processing');
    // The PaymentIntent it is about is B's, so B is what succeeded.
    expect(answer.body).toMatchObject({ outcome: 'applied' });
    expect((await statusOf(one, b.payment_id)).status).toBe('succeeded');
  });

  it("cross tenant: tenant one's succeeded PaymentIntent with metadata naming tenant two's payment", async () => {
    const mine = await payThroughEngine(one, one.agentKey, {
      invoice: 'INV-M-1',
      amountMinor: 40_00,
      method: 'ach',
    });
    const theirs = await payThroughEngine(two, two.agentKey, {
      invoice: 'INV-M-2',
      amountMinor: 900_00,
      method: 'ach',
    });

    const payload = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_hm_2',
      theirs.payment_id,
      mine.gateway_reference!,
    );
    await post(s, payload);

    // Tenant two's payment was never charged through this PaymentIntent: nothing about it may change.
    const theirsAfter = await statusOf(two, theirs.payment_id);
    expect(theirsAfter.status).toBe('processing');
    expect(theirsAfter.invoice_status).toBe('processing');
    const { rows } = await one.t.db.withSystem((c) =>
      c.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM audit_log WHERE tenant_id = $1 AND action = 'payment.succeeded' AND subject_id = $2",
        [two.tenant.id, theirs.payment_id],
      ),
    );
    expect(rows[0]!.n).toBe(0);
    expect((await statusOf(one, mine.payment_id)).status).toBe('succeeded');
    expect((await verifyAuditLog(one.t.db)).ok).toBe(true);
  });

  it('a payment whose reference is not recorded yet is matched by metadata only for its own amount', async () => {
    // The reference event's PaymentIntent is for 20.00 USD.
    const small = await payThroughEngine(one, one.agentKey, {
      invoice: 'INV-M-NOREF-1',
      amountMinor: 500_00,
      method: 'ach',
    });
    const exact = await payThroughEngine(one, one.agentKey, {
      invoice: 'INV-M-NOREF-2',
      amountMinor: 20_00,
      method: 'ach',
    });
    // The window before our phase 3 records the reference (a slow answer, or one lost to a crash).
    await one.t.db.withSystem((c) =>
      c.query('UPDATE payments SET provider_reference = NULL WHERE id = ANY($1)', [
        [small.payment_id, exact.payment_id],
      ]),
    );
    await post(
      s,
      stripeEventFor('payment_intent.succeeded.json', 'evt_hm_3', small.payment_id, 'pi_someone_else_20'),
    );
    expect(await statusOf(one, small.payment_id)).toMatchObject({
      status: 'processing',
      provider_reference: null,
    });
    // The same event for the payment it is for is the early webhook it looks like, and is applied.
    await post(
      s,
      stripeEventFor('payment_intent.succeeded.json', 'evt_hm_4', exact.payment_id, 'pi_early_20'),
    );
    expect(await statusOf(one, exact.payment_id)).toMatchObject({
      status: 'succeeded',
      provider_reference: 'pi_early_20',
    });
  });
});
