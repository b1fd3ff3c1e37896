/**
 * PayPal end to end with the sandbox emulator delivering signed webhooks to a real sidecar: a PENDING
 * capture then DENIED, a refund of a PENDING capture, and a capture whose answer never came.
 */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refundPayment } from '../../src/payments/refund.js';
import { startSandbox } from '../../src/sandbox/index.js';
import { count, listeningServer, type RunningSidecar, serverUrl, startSidecar } from '../sidecar/support.js';
import { createFixture, type Fixture, payThroughEngine } from '../support/fixture.js';

const WEBHOOK_ID = 'WH-H3-PAYPAL';

async function until(check: () => Promise<boolean>, what: string) {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('PayPal', () => {
  let f: Fixture;
  let s: RunningSidecar;

  beforeAll(async () => {
    const listener = await listeningServer();
    const base = serverUrl(listener);
    const sandbox = await startSandbox({
      paypal: {
        webhookUrl: `${base}/webhooks/paypal`,
        webhookId: WEBHOOK_ID,
        webhookDelayMs: 0,
      },
    });
    f = await createFixture({ slug: 'paypal-edges', sandbox });
    const certCacheDir = await mkdtemp(path.join(os.tmpdir(), 'paygate-certs-'));
    s = await startSidecar(f, { paypalWebhookId: WEBHOOK_ID }, { certCacheDir }, listener);
  });
  afterAll(async () => {
    await s?.close();
    await f?.close();
    await f?.sandbox.close();
  });

  const paymentStatus = async (id: string) => {
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ status: string; provider_reference: string | null }>(
        'SELECT status, provider_reference FROM payments WHERE id = $1',
        [id],
      ),
    );
    return rows[0]!;
  };

  it('a PENDING capture cannot be refunded; DENIED by webhook fails it, reopens the invoice and alerts', async () => {
    await f.addMethod({ rail: 'paypal', token: 'pp_vault_pending', label: 'Company PayPal' });
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-PP3-1',
      amountMinor: 250_00,
      method: 'paypal',
    });
    expect(paid.status).toBe('processing');
    await f.sandbox.paypal.webhooksIdle();
    expect((await paymentStatus(paid.payment_id)).status).toBe('processing');

    // Refund while PENDING: refused before any approver is asked; nothing at PayPal.
    const approvalsBefore = await count(
      f,
      "SELECT count(*) AS n FROM approvals WHERE action = 'refund_payment'",
    );
    await expect(
      refundPayment(f.deps, { agentKey: f.agentKey }, { payment: paid.payment_id, reason: 'x' }),
    ).rejects.toMatchObject({
      code: 'payment_not_refundable',
    });
    expect(await count(f, "SELECT count(*) AS n FROM approvals WHERE action = 'refund_payment'")).toBe(
      approvalsBefore,
    );
    expect(f.sandbox.ledger.refunds(undefined, 'paypal')).toHaveLength(0);

    f.sandbox.paypal.settleCapture(paid.gateway_reference!, 'DECLINED');
    await f.sandbox.paypal.webhooksIdle();
    await until(async () => (await paymentStatus(paid.payment_id)).status === 'failed', 'payment failed');
    expect(
      await count(f, "SELECT count(*) AS n FROM invoices WHERE number = 'INV-PP3-1' AND status = 'approved'"),
    ).toBe(1);
    expect(
      await count(f, 'SELECT count(*) AS n FROM alerts WHERE payment_id = $1', [paid.payment_id]),
    ).toBeGreaterThan(0);
    const deliveries = f.sandbox.paypal.deliveries().filter((d) => d.type === 'PAYMENT.CAPTURE.DECLINED');
    expect(deliveries.map((d) => d.status)).toEqual([200]);
  });

  it('a capture that took effect but never answered: processing, then the signed webhook settles it; one capture only', async () => {
    await f.addMethod({ rail: 'paypal', token: 'pp_vault_success', label: 'Company PayPal 2' });
    f.sandbox.faults.next('paypal', {
      kind: 'timeout_after_charge',
      match: { method: 'POST', path: '/v2/checkout/orders/' },
    });
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-PP3-2',
      amountMinor: 99_99,
      method: 'paypal',
    });
    // Either the gateway's own look-up found the capture (paid) or the payment waits (processing).
    expect(['paid', 'processing']).toContain(paid.status);
    await f.sandbox.paypal.webhooksIdle();
    await until(
      async () => (await paymentStatus(paid.payment_id)).status === 'succeeded',
      'payment succeeded',
    );
    expect(f.sandbox.ledger.charges(paid.payment_id, 'paypal')).toHaveLength(1);
    expect(
      await count(f, "SELECT count(*) AS n FROM invoices WHERE number = 'INV-PP3-2' AND status = 'paid'"),
    ).toBe(1);
    // The capture request carried our derived PayPal-Request-Id; no second capture key was ever sent.
    const captures = f.sandbox.paypal
      .requests()
      .filter((r) => r.path.endsWith('/capture') && r.paypalRequestId === `capture:${paid.payment_id}`);
    expect(captures.length).toBeGreaterThanOrEqual(1);
    expect(new Set(captures.map((r) => r.paypalRequestId)).size).toBe(1);
  });
});
