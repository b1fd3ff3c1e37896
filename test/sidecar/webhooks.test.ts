/**
 * Webhooks through the real HTTP endpoint with real signatures: Stripe's reference events signed with
 * stripe-node's generateTestHeaderString (via signStripeWebhookForTest), and PayPal's real signed
 * deliveries verified against their own certificate with the clock pinned to the capture time.
 * Anything not proven to come from the provider is refused with 400 and leaves no row behind.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SYSTEM_TENANT_ID } from '../../src/audit/log.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { signStripeWebhookForTest } from '../../src/gateways/stripe/webhook.js';
import { createFixture, type Fixture, payThroughEngine } from '../support/fixture.js';
import { referenceRoot } from '../support/reference.js';
import { count, type RunningSidecar, startSidecar, stripeEventFor } from './support.js';

const STRIPE_SECRET = 'whsec_sidecar_test_secret_0123456789';
const stripeEventsDir = path.join(referenceRoot, 'stripe/events');
const paypalEventsDir = path.join(referenceRoot, 'paypal/events');

/** The parts of a Stripe event the tests rewrite to aim it at one of our payments. */
interface StripeEventJson {
  id: string;
  data: {
    object: {
      id: string;
      metadata: Record<string, string>;
      payment_intent?: string | null;
      refunds: { data: { id: string; amount: number; currency: string }[] };
    };
  };
}

async function stripeReference(file: string): Promise<StripeEventJson> {
  return JSON.parse(await readFile(path.join(stripeEventsDir, file), 'utf8'));
}

interface Delivery {
  webhook_id: string;
  headers: Record<string, string>;
  raw_body: string;
  cert_pem: string;
}

async function paypalDelivery(type: string): Promise<Delivery> {
  return JSON.parse(await readFile(path.join(paypalEventsDir, `${type}.delivery.json`), 'utf8'));
}

async function postStripe(s: RunningSidecar, payload: string, signature?: string) {
  const response = await fetch(`${s.url}/webhooks/stripe`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(signature ? { 'stripe-signature': signature } : {}),
    },
    body: payload,
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function postPaypal(s: RunningSidecar, body: string, headers: Record<string, string>) {
  // Only the headers PayPal signs or names; content-length is recomputed by fetch.
  const { 'content-length': _ignored, ...rest } = headers;
  const response = await fetch(`${s.url}/webhooks/paypal`, { method: 'POST', headers: rest, body });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const events = (f: Fixture) => count(f, 'SELECT count(*) AS n FROM webhook_events');
const auditEntries = (f: Fixture) => count(f, 'SELECT count(*) AS n FROM audit_log');

describe('Stripe webhooks', () => {
  let f: Fixture;
  let s: RunningSidecar;
  beforeAll(async () => {
    f = await createFixture({ slug: 'stripe-hooks' });
    await f.addMethod({
      rail: 'ach',
      token: 'pm_usBankAccount_processing',
      bankName: 'STRIPE TEST BANK',
      last4: '0009',
    });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    s = await startSidecar(f, { stripeSecret: STRIPE_SECRET });
  });
  afterAll(async () => {
    await s.close();
    await f.close();
  });

  it('applies payment_intent.succeeded once; the same delivery again changes nothing', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-S-1',
      amountMinor: 120_00,
      method: 'ach',
    });
    expect(paid.status).toBe('processing');
    const payload = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_s1_succeeded',
      paid.payment_id,
      paid.gateway_reference!,
    );
    const signature = signStripeWebhookForTest(payload, STRIPE_SECRET);

    expect(await postStripe(s, payload, signature)).toEqual({
      status: 200,
      body: { received: true, outcome: 'applied' },
    });
    const status = () =>
      count(f, "SELECT count(*) AS n FROM payments WHERE id = $1 AND status = 'succeeded'", [
        paid.payment_id,
      ]);
    expect(await status()).toBe(1);
    expect(
      await count(f, "SELECT count(*) AS n FROM invoices WHERE number = 'INV-S-1' AND status = 'paid'"),
    ).toBe(1);

    const [stored, audit] = [await events(f), await auditEntries(f)];
    expect(await postStripe(s, payload, signature)).toEqual({
      status: 200,
      body: { received: true, outcome: 'duplicate' },
    });
    expect(await events(f)).toBe(stored);
    expect(await auditEntries(f)).toBe(audit);
  });

  it('an event confirming what our own call recorded is stored as ignored, once, even delivered concurrently', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-S-CONFIRM',
      amountMinor: 45_00,
      method: 'stripe',
    });
    expect(paid.status).toBe('paid');
    const payload = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_s_confirm',
      paid.payment_id,
      paid.gateway_reference!,
    );
    const signature = signStripeWebhookForTest(payload, STRIPE_SECRET);
    const [stored, audit] = [await events(f), await auditEntries(f)];

    const outcomes = await Promise.all(
      Array.from({ length: 6 }, () => postStripe(s, payload, signature).then((r) => r.body.outcome)),
    );
    expect(outcomes.filter((o) => o === 'ignored')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'duplicate')).toHaveLength(5);
    expect(await events(f)).toBe(stored + 1);
    // Confirming changes nothing, so nothing is audited.
    expect(await auditEntries(f)).toBe(audit);
    expect(
      await count(
        f,
        `SELECT count(*) AS n FROM webhook_events
          WHERE event_id = 'evt_s_confirm' AND outcome = 'ignored' AND note = 'payment already succeeded'
            AND tenant_id = $1 AND processed_at IS NOT NULL`,
        [f.tenant.id],
      ),
    ).toBe(1);
  });

  it('a late processing after succeeded is recorded and ignored: nothing moves backwards', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-S-2',
      amountMinor: 80_00,
      method: 'ach',
    });
    const succeeded = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_s2_succeeded',
      paid.payment_id,
      paid.gateway_reference!,
    );
    const processing = stripeEventFor(
      'payment_intent.processing.sepa_debit.json',
      'evt_s2_processing',
      paid.payment_id,
      paid.gateway_reference!,
    );
    expect(
      (await postStripe(s, succeeded, signStripeWebhookForTest(succeeded, STRIPE_SECRET))).body.outcome,
    ).toBe('applied');
    expect(
      (await postStripe(s, processing, signStripeWebhookForTest(processing, STRIPE_SECRET))).body.outcome,
    ).toBe('ignored');
    expect(
      await count(f, "SELECT count(*) AS n FROM payments WHERE id = $1 AND status = 'succeeded'", [
        paid.payment_id,
      ]),
    ).toBe(1);
    expect(
      await count(
        f,
        "SELECT count(*) AS n FROM audit_log WHERE action = 'payment.stale_outcome_ignored' AND subject_id = $1",
        [paid.payment_id],
      ),
    ).toBe(1);
    expect(
      await count(
        f,
        "SELECT count(*) AS n FROM webhook_events WHERE event_id = 'evt_s2_processing' AND outcome = 'ignored' AND note LIKE 'stale%'",
      ),
    ).toBe(1);
  });

  it('payment_intent.payment_failed fails the payment, raises an alert and follows the rule for its cause', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-S-3',
      amountMinor: 45_00,
      method: 'ach',
    });
    const payload = stripeEventFor(
      'payment_intent.payment_failed.json',
      'evt_s3_failed',
      paid.payment_id,
      paid.gateway_reference!,
    );
    expect(
      (await postStripe(s, payload, signStripeWebhookForTest(payload, STRIPE_SECRET))).body.outcome,
    ).toBe('applied');
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ status: string; failure_code: string }>(
        'SELECT status, failure_code FROM payments WHERE id = $1',
        [paid.payment_id],
      ),
    );
    expect(rows[0]!.status).toBe('failed');
    expect(await count(f, 'SELECT count(*) AS n FROM alerts WHERE payment_id = $1', [paid.payment_id])).toBe(
      1,
    );
    // The invoice can be paid again (a failed payment returns it to approved), unless the rule rescheduled it.
    expect(
      await count(
        f,
        "SELECT count(*) AS n FROM invoices WHERE number = 'INV-S-3' AND status IN ('approved', 'scheduled')",
      ),
    ).toBe(1);
    expect(f.alerts.map((a) => a.code)).toContain(rows[0]!.failure_code);
  });

  it('charge.refunded for a refund made outside paygate records it and alerts', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-S-4',
      amountMinor: 60_00,
      method: 'ach',
    });
    const succeeded = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_s4_succeeded',
      paid.payment_id,
      paid.gateway_reference!,
    );
    await postStripe(s, succeeded, signStripeWebhookForTest(succeeded, STRIPE_SECRET));
    const event = await stripeReference('charge.refunded.json');
    event.id = 'evt_s4_refunded';
    event.data.object.payment_intent = paid.gateway_reference;
    event.data.object.metadata = { paygate_payment_id: paid.payment_id };
    Object.assign(event.data.object.refunds.data[0]!, { id: 're_outside_1', amount: 15_00, currency: 'usd' });
    const payload = JSON.stringify(event);
    expect(
      (await postStripe(s, payload, signStripeWebhookForTest(payload, STRIPE_SECRET))).body.outcome,
    ).toBe('applied');
    const { rows } = await f.t.db.withSystem((c) =>
      c.query(
        'SELECT amount_minor, status, approval_id, provider_reference FROM refunds WHERE payment_id = $1',
        [paid.payment_id],
      ),
    );
    expect(rows).toEqual([
      { amount_minor: 15_00, status: 'succeeded', approval_id: null, provider_reference: 're_outside_1' },
    ]);
    expect(
      await count(
        f,
        "SELECT count(*) AS n FROM alerts WHERE kind = 'refund_outside_paygate' AND payment_id = $1",
        [paid.payment_id],
      ),
    ).toBe(1);
  });

  it('an event for a payment we do not know is kept without a tenant and alerted on the system chain', async () => {
    const payload = JSON.stringify(await stripeReference('payment_intent.succeeded.json'));
    const before = await count(f, 'SELECT count(*) AS n FROM audit_log WHERE tenant_id = $1', [
      SYSTEM_TENANT_ID,
    ]);
    expect(
      (await postStripe(s, payload, signStripeWebhookForTest(payload, STRIPE_SECRET))).body.outcome,
    ).toBe('unmatched');
    const { rows } = await f.t.db.withSystem((c) =>
      c.query(
        "SELECT tenant_id, outcome FROM webhook_events WHERE event_id = 'evt_000000000000000000000000'",
      ),
    );
    expect(rows).toEqual([{ tenant_id: null, outcome: 'unmatched' }]);
    expect(
      await count(
        f,
        "SELECT count(*) AS n FROM audit_log WHERE tenant_id = $1 AND action = 'webhook.unmatched'",
        [SYSTEM_TENANT_ID],
      ),
    ).toBe(before + 1);
  });

  it('refuses forged, stale, unsigned and re-signed-with-another-secret deliveries with 400, storing nothing', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-S-5',
      amountMinor: 30_00,
      method: 'ach',
    });
    const payload = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_s5_succeeded',
      paid.payment_id,
      paid.gateway_reference!,
    );
    const stored = await events(f);
    const forged = payload
      .replace('"amount": 2000', '"amount": 1')
      .replace(paid.payment_id, '00000000-0000-4000-8000-000000000001');
    expect(forged).not.toBe(payload);
    const stale = signStripeWebhookForTest(payload, STRIPE_SECRET, Math.floor(Date.now() / 1000) - 301);
    const future = signStripeWebhookForTest(payload, STRIPE_SECRET, Math.floor(Date.now() / 1000) + 3600);
    const attempts = [
      await postStripe(s, forged, signStripeWebhookForTest(payload, STRIPE_SECRET)),
      await postStripe(s, payload, stale),
      await postStripe(s, payload, future),
      await postStripe(s, payload),
      await postStripe(s, payload, signStripeWebhookForTest(payload, 'whsec_someone_else_entirely_000000')),
      await postStripe(s, payload, 't=1,v1=deadbeef'),
    ];
    for (const attempt of attempts) {
      expect(attempt.status).toBe(400);
      expect(attempt.body.error).toBe('webhook_not_verified');
    }
    expect(await events(f)).toBe(stored);
    expect(
      await count(f, "SELECT count(*) AS n FROM payments WHERE id = $1 AND status = 'processing'", [
        paid.payment_id,
      ]),
    ).toBe(1);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toMatch(
      /paygate_webhook_events_total\{provider="stripe",type="unverified",outcome="rejected"\} 6/,
    );
    expect(metrics).toMatch(
      /paygate_webhook_events_total\{provider="stripe",type="payment_intent.succeeded",outcome="applied"\} \d+/,
    );
    expect(metrics).toMatch(/paygate_payments\{status="succeeded"\} \d+/);
    expect(metrics).toMatch(
      /paygate_provider_request_seconds_count\{provider="stripe",operation="pay",result="ok"\} \d+/,
    );
    expect((await verifyAuditLog(f.t.db)).ok).toBe(true);
  });
});

describe('PayPal webhooks: real deliveries against their own certificate', () => {
  let f: Fixture;
  let s: RunningSidecar;
  let clock = new Date();
  const certFetches: string[] = [];
  const deliveries: Record<string, Delivery> = {};

  beforeAll(async () => {
    for (const file of (await readdir(paypalEventsDir)).filter((x) => x.endsWith('.delivery.json'))) {
      const type = file.replace('.delivery.json', '');
      deliveries[type] = await paypalDelivery(type);
    }
    f = await createFixture({ slug: 'paypal-hooks' });
    await f.addMethod({ rail: 'paypal', token: 'pp_vault_pending', label: 'Company PayPal' });
    s = await startSidecar(
      f,
      { paypalWebhookId: 'WEBHOOK_ID' },
      {
        now: () => clock,
        // PayPal's certificate for these deliveries, served only for the URL the delivery names.
        fetchCertificate: async (url) => {
          certFetches.push(url);
          const own = Object.values(deliveries).find((d) => d.headers['paypal-cert-url'] === url);
          if (!own) throw new Error(`unexpected certificate URL ${url}`);
          return own.cert_pem;
        },
      },
    );
  });
  afterAll(async () => {
    await s.close();
    await f.close();
  });

  /**
   * A sandbox payment renamed to the capture id PayPal's simulator used, so the real delivery is about
   * a payment we hold (the capture ids in the captured bodies are fixed by PayPal's signature).
   */
  async function paymentWithCapture(invoice: string, captureId: string) {
    const paid = await payThroughEngine(f, f.agentKey, { invoice, amountMinor: 30_00, method: 'paypal' });
    await f.t.db.withSystem((c) =>
      c.query('UPDATE payments SET provider_reference = $2 WHERE id = $1', [paid.payment_id, captureId]),
    );
    return paid;
  }

  function send(type: string, overrides: Record<string, string> = {}, body?: string) {
    const d = deliveries[type]!;
    clock = new Date(d.headers['paypal-transmission-time']!);
    return postPaypal(s, body ?? d.raw_body, { ...d.headers, ...overrides });
  }

  it('PAYMENT.CAPTURE.COMPLETED marks our pending payment paid; the same delivery again changes nothing', async () => {
    const paid = await paymentWithCapture('INV-P-1', '12A34567BC123456S');
    expect(paid.status).toBe('processing');
    expect(await send('PAYMENT.CAPTURE.COMPLETED')).toEqual({
      status: 200,
      body: { received: true, outcome: 'applied' },
    });
    expect(
      await count(f, "SELECT count(*) AS n FROM payments WHERE id = $1 AND status = 'succeeded'", [
        paid.payment_id,
      ]),
    ).toBe(1);
    const [stored, audit] = [await events(f), await auditEntries(f)];
    expect((await send('PAYMENT.CAPTURE.COMPLETED')).body.outcome).toBe('duplicate');
    expect([await events(f), await auditEntries(f)]).toEqual([stored, audit]);
    expect(certFetches.every((u) => u.startsWith('https://api.paypal.com/v1/notifications/certs/'))).toBe(
      true,
    );
  });

  it('PAYMENT.CAPTURE.DECLINED fails our pending payment with an alert', async () => {
    const paid = await paymentWithCapture('INV-P-2', '7U133281TB3277326');
    expect((await send('PAYMENT.CAPTURE.DECLINED')).body.outcome).toBe('applied');
    expect(
      await count(f, "SELECT count(*) AS n FROM payments WHERE id = $1 AND status = 'failed'", [
        paid.payment_id,
      ]),
    ).toBe(1);
    expect(await count(f, 'SELECT count(*) AS n FROM alerts WHERE payment_id = $1', [paid.payment_id])).toBe(
      1,
    );
  });

  it('PAYMENT.CAPTURE.REFUNDED records the refund of our captured payment', async () => {
    // The newest method on the rail is used: this one captures at once.
    await f.addMethod({ rail: 'paypal', token: 'pp_vault_success', label: 'Company PayPal (instant)' });
    const paid = await paymentWithCapture('INV-P-3', '0JF852973C016714D');
    expect(paid.status).toBe('paid');
    expect((await send('PAYMENT.CAPTURE.REFUNDED')).body.outcome).toBe('applied');
    const { rows } = await f.t.db.withSystem((c) =>
      c.query('SELECT amount_minor, status, provider_reference FROM refunds WHERE payment_id = $1', [
        paid.payment_id,
      ]),
    );
    expect(rows).toEqual([
      { amount_minor: 99, status: 'succeeded', provider_reference: '1Y107995YT783435V' },
    ]);
  });

  it('refuses forged, replayed-late, tampered and re-signed-with-another-key deliveries with 400, storing nothing', async () => {
    const { generateKeyPairSync, sign } = await import('node:crypto');
    const { paypalSignedMessage } = await import('../../src/gateways/paypal/webhook.js');
    const d = deliveries['PAYMENT.CAPTURE.COMPLETED']!;
    const stored = await events(f);
    const attempts = [
      // One byte of the body changed.
      await send('PAYMENT.CAPTURE.COMPLETED', {}, d.raw_body.replace('"30.00"', '"31.00"')),
      // Another transmission id than the one signed.
      await send('PAYMENT.CAPTURE.COMPLETED', {
        'paypal-transmission-id': '00000000-5106-11ef-9b66-89f3f924d48a',
      }),
      // A certificate URL off PayPal's hosts.
      await send('PAYMENT.CAPTURE.COMPLETED', {
        'paypal-cert-url': 'https://evil.example/v1/notifications/certs/CERT',
      }),
      // No signature at all.
      await send('PAYMENT.CAPTURE.COMPLETED', { 'paypal-transmission-sig': '' }),
    ];
    // Re-signed with a key of our own: valid RSA, but not PayPal's certificate.
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const message = paypalSignedMessage(
      d.headers['paypal-transmission-id']!,
      d.headers['paypal-transmission-time']!,
      'WEBHOOK_ID',
      Buffer.from(d.raw_body),
    );
    attempts.push(
      await send('PAYMENT.CAPTURE.COMPLETED', {
        'paypal-transmission-sig': sign('sha256', Buffer.from(message), privateKey).toString('base64'),
      }),
    );
    // The genuine delivery replayed an hour after it was sent.
    clock = new Date(Date.parse(d.headers['paypal-transmission-time']!) + 3600_000);
    attempts.push(
      await postPaypal(s, d.raw_body, {
        ...d.headers,
        'paypal-transmission-id': d.headers['paypal-transmission-id']!,
      }),
    );
    for (const attempt of attempts) {
      expect(attempt.status).toBe(400);
      expect(attempt.body.error).toBe('webhook_not_verified');
    }
    expect(await events(f)).toBe(stored);
  });
});
