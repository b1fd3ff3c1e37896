/**
 * idempotency_key on refund_payment once its phase 1 committed (the refund row exists, the approval
 * token is consumed): the key's answer is that refund's, whatever happened after. Here the provider
 * refuses the refund: the retry with the same key and token gets that failure again, naming the same
 * refund, never "approval token used" and never a second refund.
 */
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApprovalRequired } from '../src/payments/pay.js';
import { refundPayment } from '../src/payments/refund.js';
import { SANDBOX_STRIPE_SECRET_KEY } from '../src/sandbox/index.js';
import { createFixture, type Fixture, payThroughEngine, refundRows } from './support/fixture.js';

describe('refund_payment with an idempotency_key after its phase 1', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture({ slug: 'refund-idem' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
  });
  afterAll(async () => {
    await f?.close();
  });

  it('the provider refuses the refund: the retry with the same key and token answers that failure, one refund', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-RI-1',
      amountMinor: 40_00,
      method: 'stripe',
    });
    const caller = { agentKey: f.agentKey };
    const input = {
      payment: paid.payment_id,
      amount: '15.00',
      reason: 'damaged',
      idempotency_key: 'refund-k-1',
    };
    // The approval request releases the key: the call with the token uses it.
    const ask = (await refundPayment(f.deps, caller, input)) as ApprovalRequired;
    expect(ask.status).toBe('approval_required');
    const token = await f.approveAs(f.admin, ask.approval_id);

    // Meanwhile a human refunds the whole charge in the Stripe dashboard; its webhook has not arrived.
    const url = new URL(f.sandbox.stripeUrl);
    const stripe = new Stripe(SANDBOX_STRIPE_SECRET_KEY, {
      host: url.hostname,
      port: Number(url.port),
      protocol: 'http',
    });
    await stripe.refunds.create({ payment_intent: paid.gateway_reference! });

    type Failure = Error & { code: string; payment?: Record<string, unknown> };
    const call = () =>
      refundPayment(f.deps, caller, { ...input, approval_token: token }).then(
        (answer): { answer: unknown; error?: undefined } => ({ answer }),
        (error: unknown) => ({ error: error as Failure }),
      );
    const first = await call();
    expect(first.error).toMatchObject({ code: 'declined', retryable: false });
    const [made] = await refundRows(f, paid.payment_id);
    expect(made).toMatchObject({ status: 'failed', amount_minor: 15_00 });

    // The agent retries, same key, same token: the same answer, never "token used", no second refund.
    for (const _ of [1, 2]) {
      const retry = await call();
      expect(retry.error?.code).toBe('declined');
      expect(retry.error?.message).toBe(first.error?.message);
      expect(retry.error?.payment).toEqual(first.error?.payment);
    }
    expect(await refundRows(f, paid.payment_id)).toHaveLength(1);
    // Each answer names the payment and the refund that failed.
    expect(first.error?.payment).toMatchObject({
      payment_id: paid.payment_id,
      refund_id: made!.id,
      refund_status: 'failed',
      refund_amount: '15.00',
    });
    // Nothing presented the token a second time.
    const refused = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query("SELECT 1 FROM audit_log WHERE action = 'approval_token.refused'"),
    );
    expect(refused.rows).toHaveLength(0);
  });

  it('phase 3 fails after the provider refunded: the key is kept, the retry answers with that refund, not a new call', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-RI-2',
      amountMinor: 25_00,
      method: 'stripe',
    });
    const caller = { agentKey: f.agentKey };
    const input = { payment: paid.payment_id, amount: '10.00', idempotency_key: 'refund-k-2' };
    const ask = (await refundPayment(f.deps, caller, input)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, ask.approval_id);
    const keyed = { ...input, approval_token: token };
    // The database refuses to record any refund's outcome (an outage, a full disk) while the call runs.
    await f.t.db.withSystem((c) =>
      c.query(`
        CREATE FUNCTION test_refuse_refund_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the database refused phase 3'; END $$;
        CREATE TRIGGER test_refuse_refund_outcome BEFORE UPDATE ON refunds FOR EACH ROW
          WHEN (OLD.status = 'pending' AND NEW.status <> 'pending')
          EXECUTE FUNCTION test_refuse_refund_outcome();`),
    );
    try {
      await expect(refundPayment(f.deps, caller, keyed)).rejects.toThrow(/refused phase 3/);
    } finally {
      await f.t.db.withSystem((c) =>
        c.query(
          'DROP TRIGGER test_refuse_refund_outcome ON refunds; DROP FUNCTION test_refuse_refund_outcome()',
        ),
      );
    }
    const [made] = await refundRows(f, paid.payment_id);
    expect(made).toMatchObject({ status: 'pending', amount_minor: 10_00 });
    expect(f.sandbox.ledger.totalRefunded(paid.payment_id)).toBe(10_00);

    // At once: "in progress" (the refund is pending and the call recent), not a fresh call on a used token.
    await expect(refundPayment(f.deps, caller, keyed)).rejects.toMatchObject({
      code: 'request_in_progress',
      retryable: true,
    });
    // Later: the refund as it stands.
    await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query(
        "UPDATE idempotency_keys SET created_at = now() - interval '20 minutes' WHERE tenant_id = $1 AND key = $2",
        [f.tenant.id, input.idempotency_key],
      ),
    );
    expect(await refundPayment(f.deps, caller, keyed)).toMatchObject({
      success: true,
      refund_id: made!.id,
      refund_status: 'pending',
      refund_amount: '10.00',
    });
    expect(await refundRows(f, paid.payment_id)).toHaveLength(1);
    expect(f.sandbox.ledger.totalRefunded(paid.payment_id)).toBe(10_00);
  });
});
