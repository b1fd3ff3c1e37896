/**
 * Refunds racing their own webhooks and each other. Both emulators deliver signed events to a
 * live sidecar; the provider's answer to the refund call is held back (timeout_after_charge with a
 * hang shorter than the client's timeout) so the webhook lands before our phase 3.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { refundPayment } from '../../src/payments/refund.js';
import { type Sandbox, startSandbox } from '../../src/sandbox/index.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { createFixture, type Fixture, payThroughEngine, refundRows } from '../support/fixture.js';
import { listeningServer, type RunningSidecar, serverUrl, startSidecar } from './support.js';

const SECRET = 'whsec_refund_races_0123456789abcdef';
const PAYPAL_WEBHOOK_ID = 'WH-REFUND-RACES';

async function askAndApprove(f: Fixture, payment: string, amount?: string) {
  const input = { payment, ...(amount ? { amount } : {}) };
  const ask = (await refundPayment(f.deps, { agentKey: f.agentKey }, input)) as { approval_id: string };
  const token = await f.approveAs(f.admin, ask.approval_id);
  return { ...input, approval_token: token! };
}

describe('refunds racing their webhooks and each other', () => {
  let t: TestDatabase;
  let sandbox: Sandbox;
  let f: Fixture;
  let sidecar: RunningSidecar;
  let certCacheDir: string;

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
      paypal: {
        webhookUrl: `${base}/webhooks/paypal`,
        webhookId: PAYPAL_WEBHOOK_ID,
        webhookDelayMs: 0,
      },
    });
    certCacheDir = await mkdtemp(path.join(os.tmpdir(), 'paygate-certs-'));
    f = await createFixture({ slug: 'refund-races', t, sandbox });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    await f.addMethod({ rail: 'paypal', token: 'pp_vault_success', label: 'Company PayPal' });
    sidecar = await startSidecar(
      f,
      { stripeSecret: SECRET, paypalWebhookId: PAYPAL_WEBHOOK_ID },
      { certCacheDir },
      listener,
    );
  }, 120_000);

  afterAll(async () => {
    await sandbox.stripe.webhooksIdle();
    await sandbox.paypal.webhooksIdle();
    await sidecar.close();
    await f.close();
    await sandbox.close();
    await t.drop();
    await rm(certCacheDir, { recursive: true, force: true });
  });

  for (const provider of ['stripe', 'paypal'] as const) {
    it(`${provider}: the refund's webhook before our phase 3 is matched to our refund, never recorded as a second one`, async () => {
      const paid = await payThroughEngine(f, f.agentKey, {
        invoice: `INV-RR-${provider}`,
        amountMinor: 100_00,
        method: provider,
      });
      expect(paid.status).toBe('paid');
      await sandbox.stripe.webhooksIdle();
      await sandbox.paypal.webhooksIdle();
      const call = await askAndApprove(f, paid.payment_id, '40.00');
      // The provider acts (and sends its event) at once, and answers only later.
      sandbox.faults.next(provider, {
        kind: 'timeout_after_charge',
        hangMs: 700,
        match: { method: 'POST', path: provider === 'stripe' ? '/v1/refunds' : '/v2/payments/captures' },
      });
      const done = (await refundPayment(f.deps, { agentKey: f.agentKey }, call)) as Record<string, unknown>;
      expect(done.success).toBe(true);
      await sandbox.stripe.webhooksIdle();
      await sandbox.paypal.webhooksIdle();

      // The race was run: the provider's refund event applied our pending refund (before our phase 3).
      const { rows: hooks } = await t.db.withSystem((c) =>
        c.query<{ outcome: string; note: string }>(
          `SELECT outcome, note FROM webhook_events
            WHERE event_type = $2 AND tenant_id = $1 AND note = 'refund pending -> succeeded'
              AND received_at > now() - interval '1 minute'`,
          [f.tenant.id, provider === 'stripe' ? 'charge.refunded' : 'PAYMENT.CAPTURE.REFUNDED'],
        ),
      );
      expect(hooks.length).toBeGreaterThan(0);
      const rows = await refundRows(f, paid.payment_id);
      expect(rows).toHaveLength(1);
      expect(rows[0]!.status).toBe('succeeded');
      expect(rows[0]!.amount_minor).toBe(40_00);
      expect(rows[0]!.approval_id).not.toBeNull();
      expect(rows[0]!.provider_reference).not.toBeNull();
      const { rows: alerts } = await t.db.withSystem((c) =>
        c.query("SELECT 1 FROM alerts WHERE payment_id = $1 AND kind = 'refund_outside_paygate'", [
          paid.payment_id,
        ]),
      );
      expect(alerts).toHaveLength(0);
    });
  }

  it('two approved partial refunds that together exceed the payment, sent at once: one goes through', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-RR-C',
      amountMinor: 100_00,
      method: 'stripe',
    });
    const first = await askAndApprove(f, paid.payment_id, '60.00');
    const second = await askAndApprove(f, paid.payment_id, '60.01');
    const results = await Promise.all(
      [first, second].map((input) =>
        refundPayment(f.deps, { agentKey: f.agentKey }, input).then(
          (r) => ({ ok: true as const, r }),
          (e: unknown) => ({ ok: false as const, e }),
        ),
      ),
    );
    expect(results.filter((x) => x.ok)).toHaveLength(1);
    const refused = results.find((x) => !x.ok) as { e: { code?: string } };
    expect(refused.e.code).toBe('refund_exceeds_captured');
    const rows = await refundRows(f, paid.payment_id);
    expect(
      rows.reduce((sum, r) => sum + (r.status === 'succeeded' ? r.amount_minor : 0), 0),
    ).toBeLessThanOrEqual(100_00);
    const charged = sandbox.ledger.refunds().filter((e) => e.refundOf === paid.gateway_reference);
    expect(charged).toHaveLength(1);
    expect((await verifyAuditLog(t.db)).ok).toBe(true);
  });
});
