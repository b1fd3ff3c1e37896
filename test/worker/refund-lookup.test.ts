/**
 * A pending refund whose webhook never arrives (no webhook URL: Stripe's events are lost, an endpoint
 * down for longer than Stripe retries). Stripe's documented pm_card_pendingRefund leaves the refund
 * pending and settles it later. The worker (with a moved clock) and get_payment_status with refresh
 * must ask Stripe about the refund by its re_ id, not send the create again (the same key only replays
 * Stripe's first answer, "pending"), and a refund still pending at the end of the re-drive window is a
 * human's to look at. Refunds are made through the engine (approval, token, phases).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { getPayment } from '../../src/payments/payments.js';
import { REFUND_PENDING_TOO_LONG } from '../../src/payments/refund.js';
import { applyRefundReport, REFUND_AMOUNT_MISMATCH } from '../../src/payments/refund-outcome.js';
import { getPaymentStatus } from '../../src/payments/status.js';
import { createWorker, REFUND_REDRIVE_WINDOW_MS } from '../../src/worker/index.js';
import {
  createFixture,
  type Fixture,
  instantSleep,
  payThroughEngine,
  refundRows,
  refundThroughEngine,
} from '../support/fixture.js';

const MINUTE = 60_000;

async function alertsOf(f: Fixture, refundId: string) {
  const { rows } = await f.t.db.withSystem((c) =>
    c.query<{ kind: string }>('SELECT kind FROM alerts WHERE refund_id = $1 ORDER BY created_at', [refundId]),
  );
  return rows.map((r) => r.kind);
}

/** Worker passes at the given offsets from now, each a fresh worker as a cron'd `worker --once` is. */
async function passes(f: Fixture, offsetsMs: number[]) {
  const start = Date.now();
  const summaries = [];
  for (const [i, offset] of offsetsMs.entries()) {
    const at = new Date(start + offset);
    const worker = createWorker(f.deps, { clock: () => at, sleep: instantSleep, workerId: `w${i}` });
    summaries.push(await worker.runOnce());
  }
  return summaries;
}

/** Requests the worker or a refresh sent for one refund: creates (with their replays) and lookups. */
function stripeCalls(f: Fixture, reference: string, since: number) {
  const requests = f.sandbox.stripe.requests().slice(since);
  return {
    creates: requests.filter((r) => r.method === 'POST' && r.path === '/v1/refunds'),
    lookups: requests.filter((r) => r.method === 'GET' && r.path === `/v1/refunds/${reference}`),
  };
}

describe('a pending refund whose webhook never arrives', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture({ slug: 'refund-lookup' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_pendingRefund', brand: 'visa', last4: '7726' });
  }, 120_000);
  afterAll(async () => {
    await f.close();
  });

  it('is resolved by the worker once Stripe has settled it: looked up by its re_ id, not sent again', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-RL-1',
      amountMinor: 50_00,
      method: 'stripe',
    });
    const done = await refundThroughEngine(f, paid.payment_id, '20.00');
    expect(done.refund_status).toBe('pending');
    const [pending] = await refundRows(f, paid.payment_id);
    expect(pending!.provider_reference).toMatch(/^re_/);
    const since = f.sandbox.stripe.requests().length;

    // Stripe settles the refund: it is succeeded at Stripe now, and nobody is told.
    await f.sandbox.stripe.settleRefunds();

    const [first, ...later] = await passes(f, [10 * MINUTE, 20 * MINUTE, 30 * MINUTE]);
    expect(first!.refunds).toMatchObject({ looked_up: 1, redriven: 0, succeeded: 1, alerted: 0 });
    for (const s of later) expect(s.refunds).toMatchObject({ looked_up: 0, redriven: 0 });

    const calls = stripeCalls(f, pending!.provider_reference!, since);
    // The refund has a reference: asked about once, never re-sent (a re-send replays "pending").
    expect(calls.creates).toEqual([]);
    expect(calls.lookups).toHaveLength(1);
    const rows = await refundRows(f, paid.payment_id);
    expect(rows).toMatchObject([{ id: pending!.id, status: 'succeeded', amount_minor: 20_00 }]);
    const status = (await getPaymentStatus(
      f.deps,
      { agentKey: f.agentKey },
      { payment: paid.payment_id },
    )) as { status: string; history: { status: string; note: string }[] };
    expect(status.status).toBe('partially_refunded');
    expect(status.history.some((h) => h.status === 'refunded' && /looked up at stripe/.test(h.note))).toBe(
      true,
    );
    // The amount is no longer held: the rest of the payment can be refunded.
    const rest = await refundThroughEngine(f, paid.payment_id);
    expect(rest.refund_amount).toBe('30.00');
    // Settled and recorded, so the next tests' worker passes find only their own refunds.
    await f.sandbox.stripe.settleRefunds();
    const refreshed = (await getPaymentStatus(
      f.deps,
      { agentKey: f.agentKey },
      { payment: paid.payment_id, refresh: true },
    )) as { status: string };
    expect(refreshed.status).toBe('refunded');
    expect((await verifyAuditLog(f.t.db)).ok).toBe(true);
  });

  it('is resolved by get_payment_status with refresh: true, through a lookup', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-RL-2',
      amountMinor: 60_00,
      method: 'stripe',
    });
    await refundThroughEngine(f, paid.payment_id, '15.00');
    const [pending] = await refundRows(f, paid.payment_id);
    const since = f.sandbox.stripe.requests().length;

    // Not settled yet: refresh asks, and it stays pending.
    const before = (await getPaymentStatus(
      f.deps,
      { agentKey: f.agentKey },
      { payment: paid.payment_id, refresh: true },
    )) as { status: string };
    expect(before.status).toBe('refund_pending');

    await f.sandbox.stripe.settleRefunds();
    const after = (await getPaymentStatus(
      f.deps,
      { agentKey: f.agentKey },
      { payment: paid.payment_id, refresh: true },
    )) as { status: string; refunds: { status: string }[] };
    expect(after.status).toBe('partially_refunded');
    expect(after.refunds).toMatchObject([{ status: 'succeeded' }]);
    const calls = stripeCalls(f, pending!.provider_reference!, since);
    expect(calls.creates).toEqual([]);
    expect(calls.lookups).toHaveLength(2);
  });

  it('still pending at the end of the re-drive window: one alert for a human, then the worker stops asking', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-RL-3',
      amountMinor: 40_00,
      method: 'stripe',
    });
    await refundThroughEngine(f, paid.payment_id, '10.00');
    const [pending] = await refundRows(f, paid.payment_id);
    const since = f.sandbox.stripe.requests().length;
    // Stripe never settles this one.
    const window = REFUND_REDRIVE_WINDOW_MS;
    const [early, soon, end, after] = await passes(f, [
      10 * MINUTE,
      12 * MINUTE, // inside the next check's delay: not asked again
      window + MINUTE,
      window + 3 * 60 * MINUTE,
    ]);
    expect(early!.refunds).toMatchObject({ looked_up: 1, pending: 1, alerted: 0 });
    expect(soon!.refunds).toMatchObject({ looked_up: 0 });
    expect(end!.refunds).toMatchObject({ looked_up: 1, pending: 1, alerted: 1 });
    expect(after!.refunds).toMatchObject({ looked_up: 0, alerted: 0 });

    expect(await alertsOf(f, pending!.id)).toEqual([REFUND_PENDING_TOO_LONG]);
    expect(f.alerts.some((a) => a.code === REFUND_PENDING_TOO_LONG)).toBe(true);
    const calls = stripeCalls(f, pending!.provider_reference!, since);
    expect(calls.creates).toEqual([]);
    expect(calls.lookups).toHaveLength(2);
    expect((await refundRows(f, paid.payment_id))[0]!.status).toBe('pending');

    // A human (or an agent) can still ask: once Stripe settles it, a refresh records it.
    await f.sandbox.stripe.settleRefunds();
    const status = (await getPaymentStatus(
      f.deps,
      { agentKey: f.agentKey },
      { payment: paid.payment_id, refresh: true },
    )) as { status: string };
    expect(status.status).toBe('partially_refunded');
  });

  it('the same report of another amount, twice (a lookup repeats it): pending, one open alert', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-RL-4',
      amountMinor: 80_00,
      method: 'stripe',
    });
    await refundThroughEngine(f, paid.payment_id, '10.00');
    const [row] = await refundRows(f, paid.payment_id);
    const report = {
      status: 'succeeded' as const,
      providerReference: row!.provider_reference!,
      refundId: row!.id,
      amountMinor: 75_00,
      currency: 'USD',
    };
    const source = {
      actorType: 'provider' as const,
      actorId: 'stripe',
      eventId: 'evt_1',
    };
    for (let i = 0; i < 2; i++) {
      const result = await f.t.db.withTenant(f.tenant.id, async (c) =>
        applyRefundReport(c, (await getPayment(c, paid.payment_id))!, report, source, []),
      );
      expect(result).toMatchObject({ outcome: 'ignored', status: 'pending' });
    }
    expect((await refundRows(f, paid.payment_id))[0]!.status).toBe('pending');
    expect(await alertsOf(f, row!.id)).toEqual([REFUND_AMOUNT_MISMATCH]);
  });
});
