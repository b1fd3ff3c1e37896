/**
 * Refunds and the provider's later word about them: the sandbox's Stripe emulator delivers its signed
 * events to a real sidecar on loopback; refunds are made through the engine (approval, token, phases).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { signStripeWebhookForTest } from '../../src/gateways/stripe/webhook.js';
import { getPaymentStatus } from '../../src/payments/status.js';
import { type Sandbox, startSandbox } from '../../src/sandbox/index.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import {
  createFixture,
  type Fixture,
  payThroughEngine,
  refundRows,
  refundThroughEngine,
} from '../support/fixture.js';
import { listeningServer, type RunningSidecar, serverUrl, startSidecar } from './support.js';

const SECRET = 'whsec_test_refunds_0123456789abcdef';

/** A Stripe event signed with the sidecar's secret, posted as Stripe would. */
function postSigned(url: string, event: object): Promise<Response> {
  const payload = JSON.stringify(event);
  return fetch(`${url}/webhooks/stripe`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'stripe-signature': signStripeWebhookForTest(payload, SECRET),
    },
    body: payload,
  });
}

describe('Stripe refunds with webhooks delivered by the sandbox to a live sidecar', () => {
  let t: TestDatabase;
  let sandbox: Sandbox;
  let f: Fixture;
  let sidecar: RunningSidecar;

  beforeAll(async () => {
    const listener = await listeningServer();
    const base = serverUrl(listener);
    t = await createTestDatabase();
    sandbox = await startSandbox({
      stripe: {
        webhookUrl: `${base}/webhooks/stripe`,
        webhookSecret: SECRET,
        webhookDelayMs: 0,
      },
    });
    f = await createFixture({ slug: 'refunds', t, sandbox });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_refundFail', brand: 'visa', last4: '5126' });
    sidecar = await startSidecar(f, { stripeSecret: SECRET }, {}, listener);
  }, 120_000);

  afterAll(async () => {
    await sandbox.stripe.webhooksIdle();
    await sidecar.close();
    await f.close();
    await sandbox.close();
    await t.drop();
  });

  it('a refund Stripe reports succeeded and later failed (refund.failed) ends failed, with an alert', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-RF-1',
      amountMinor: 70_00,
      method: 'stripe',
    });
    expect(paid.status).toBe('paid');
    const done = await refundThroughEngine(f, paid.payment_id);
    expect(done.refund_status).toBe('succeeded');
    await sandbox.stripe.webhooksIdle();

    // Stripe's documented pm_card_refundFail: the refund succeeds, then fails (refund.failed).
    await sandbox.stripe.settleRefunds();
    await sandbox.stripe.webhooksIdle();
    expect(sandbox.stripe.deliveries().some((d) => d.type === 'refund.failed')).toBe(true);

    const rows = await refundRows(f, paid.payment_id);
    expect(rows).toHaveLength(1);
    // The payer was not paid back: the refund must not stay `succeeded`.
    expect(rows[0]!.status).toBe('failed');
    const { rows: alerts } = await t.db.withSystem((c) =>
      c.query("SELECT kind FROM alerts WHERE refund_id = $1 AND kind = 'refund_failed'", [rows[0]!.id]),
    );
    expect(alerts).toHaveLength(1);
    const status = (await getPaymentStatus(
      f.deps,
      { agentKey: f.agentKey },
      { payment: paid.payment_id },
    )) as {
      status: string;
    };
    expect(status.status).not.toBe('refunded');
    const { rows: audit } = await t.db.withSystem((c) =>
      c.query<{ action: string }>('SELECT action FROM audit_log WHERE subject_id = $1 ORDER BY seq', [
        rows[0]!.id,
      ]),
    );
    expect(audit.map((a) => a.action)).toContain('refund.failed_after_success');
    expect((await verifyAuditLog(t.db)).ok).toBe(true);
  });
});

describe('a refund event about our refund with another amount', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture({ slug: 'refund-amount-mismatch' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_pendingRefund', brand: 'visa', last4: '7726' });
  }, 120_000);
  afterAll(async () => {
    await f.close();
  });

  it('is held for a human: our record unchanged, a critical alert', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-RP-2',
      amountMinor: 80_00,
      method: 'stripe',
    });
    const done = await refundThroughEngine(f, paid.payment_id, '10.00');
    expect(done.refund_status).toBe('pending');
    const [row] = await refundRows(f, paid.payment_id);
    const sidecar = await startSidecar(f, { stripeSecret: SECRET });
    try {
      // Signed by Stripe, about our refund (its id and metadata), but for 75.00, not 10.00.
      const event = {
        id: 'evt_amount_mismatch_1',
        object: 'event',
        api_version: '2023-08-16',
        created: Math.floor(Date.now() / 1000),
        type: 'refund.updated',
        data: {
          object: {
            id: row!.provider_reference,
            object: 'refund',
            amount: 75_00,
            currency: 'usd',
            status: 'succeeded',
            payment_intent: paid.gateway_reference,
            metadata: { paygate_refund_id: row!.id, paygate_payment_id: paid.payment_id },
          },
        },
      };
      const response = await postSigned(sidecar.url, event);
      expect(response.status).toBeLessThan(500);
    } finally {
      await sidecar.close();
    }
    // Neither sum is recorded over the other: ours stays as it was, and a human is told they disagree.
    const rows = await refundRows(f, paid.payment_id);
    expect(rows).toMatchObject([{ id: row!.id, status: 'pending', amount_minor: 10_00 }]);
    const { rows: alerts } = await f.t.db.withSystem((c) =>
      c.query<{ kind: string; severity: string }>('SELECT kind, severity FROM alerts WHERE payment_id = $1', [
        paid.payment_id,
      ]),
    );
    expect(alerts).toEqual([{ kind: 'refund_amount_mismatch', severity: 'critical' }]);
  });

  it('an event about another provider refund whose metadata names ours changes nothing of ours', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-RP-3',
      amountMinor: 60_00,
      method: 'stripe',
    });
    const done = await refundThroughEngine(f, paid.payment_id, '10.00');
    expect(done.refund_status).toBe('pending');
    const [ours] = await refundRows(f, paid.payment_id);
    expect(ours!.provider_reference).toMatch(/^re_/);
    const sidecar = await startSidecar(f, { stripeSecret: SECRET });
    try {
      // A failed refund re_other of the same payment and amount, its metadata edited to name ours: were it
      // taken as ours, our refund would read failed and its 10.00 be refundable a second time.
      const event = {
        id: 'evt_metadata_names_ours',
        object: 'event',
        api_version: '2023-08-16',
        created: Math.floor(Date.now() / 1000),
        type: 'refund.failed',
        data: {
          object: {
            id: 're_other_refund_0001',
            object: 'refund',
            amount: 10_00,
            currency: 'usd',
            status: 'failed',
            failure_reason: 'lost_or_stolen_card',
            payment_intent: paid.gateway_reference,
            metadata: { paygate_refund_id: ours!.id, paygate_payment_id: paid.payment_id },
          },
        },
      };
      const response = await postSigned(sidecar.url, event);
      expect(response.status).toBe(200);
    } finally {
      await sidecar.close();
    }
    expect(await refundRows(f, paid.payment_id)).toMatchObject([
      { id: ours!.id, status: 'pending', amount_minor: 10_00, provider_reference: ours!.provider_reference },
    ]);
  });
});
