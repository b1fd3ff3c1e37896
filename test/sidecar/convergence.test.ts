/**
 * Webhooks arrive late, twice, and out of order. 1,000 signed Stripe deliveries (700 distinct events,
 * 300 repeats) about 50 payments go to two tenants: to one in order, one at a time; to the other
 * shuffled and 8 at a time. Both must end in the same state: the same payments paid or failed, the
 * same refunds, the same alerts, every event stored once.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { verifyAuditLog } from '../../src/audit/verify.js';
import type { AgentKey } from '../../src/directory/agent-keys.js';
import { signStripeWebhookForTest } from '../../src/gateways/stripe/webhook.js';
import { createFixture, type Fixture, payThroughEngine } from '../support/fixture.js';
import { referenceRoot } from '../support/reference.js';
import { type RunningSidecar, startSidecar } from './support.js';

const SECRET = 'whsec_convergence_0123456789abcdef';
const PAYMENTS = 50;
const DUPLICATES = 300;

/** Deterministic randomness, so a failure can be replayed. */
function mulberry32(seed: number) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Template = Record<string, unknown> & { data: { object: Record<string, unknown> } };
const reference = async (file: string) =>
  JSON.parse(await readFile(path.join(referenceRoot, 'stripe/events', file), 'utf8')) as Template;

interface Setup {
  f: Fixture;
  agent: AgentKey;
  sidecar: RunningSidecar;
  payments: { id: string; ref: string }[];
}

let ordered: Setup;
let shuffled: Setup;
let templates: Record<string, Template>;

async function setUp(f: Fixture): Promise<Setup> {
  await f.addMethod({ rail: 'ach', token: 'pm_usBankAccount_processing', last4: '0009' });
  const { agentKey } = await f.newAgent({ name: 'bulk', rateLimitPerMinute: 100_000 });
  const payments: Setup['payments'] = [];
  for (let i = 0; i < PAYMENTS; i++) {
    const paid = await payThroughEngine(f, agentKey, {
      invoice: `INV-C-${i}`,
      amountMinor: 10_00 + i,
      method: 'ach',
    });
    payments.push({ id: paid.payment_id, ref: paid.gateway_reference! });
  }
  return { f, agent: agentKey, sidecar: await startSidecar(f, { stripeSecret: SECRET }), payments };
}

beforeAll(async () => {
  templates = {
    succeeded: await reference('payment_intent.succeeded.json'),
    processing: await reference('payment_intent.processing.sepa_debit.json'),
    failed: await reference('payment_intent.payment_failed.json'),
    refunded: await reference('charge.refunded.json'),
  };
  const first = await createFixture({ slug: 'ordered' });
  ordered = await setUp(first);
  shuffled = await setUp(await createFixture({ slug: 'shuffled', t: first.t, sandbox: first.sandbox }));
}, 300_000);

afterAll(async () => {
  await shuffled.sidecar.close();
  await ordered.sidecar.close();
  await shuffled.f.close();
  await ordered.f.close();
});

/**
 * The distinct events about payment i, in the order Stripe would send them. Even payments settle and
 * are then partly refunded twice (each refund announced by charge.refunded and again by
 * refund.updated); odd payments fail. Every payment hears `processing` several times.
 */
function eventsFor(tenant: string, i: number, payment: { id: string; ref: string }): string[] {
  const out: string[] = [];
  const intentEvent = (kind: 'processing' | 'succeeded' | 'failed', k: number) => {
    const event = structuredClone(templates[kind]!);
    event.id = `evt_${tenant}_${i}_${kind}_${k}`;
    event.data.object.id = payment.ref;
    event.data.object.metadata = { paygate_payment_id: payment.id };
    return JSON.stringify(event);
  };
  const refundEvents = (k: number) => {
    const refund = {
      id: `re_${i}_${k}`,
      object: 'refund',
      amount: 1_00,
      currency: 'usd',
      status: 'succeeded',
      payment_intent: payment.ref,
      metadata: {},
    };
    const charge = structuredClone(templates.refunded!);
    charge.id = `evt_${tenant}_${i}_charge_refunded_${k}`;
    Object.assign(charge.data.object, {
      payment_intent: payment.ref,
      metadata: { paygate_payment_id: payment.id },
      refunds: { object: 'list', data: [refund], has_more: false },
    });
    const updated = structuredClone(templates.refunded!);
    updated.id = `evt_${tenant}_${i}_refund_updated_${k}`;
    updated.type = 'refund.updated';
    updated.data = { object: refund };
    return [JSON.stringify(charge), JSON.stringify(updated)];
  };
  if (i % 2 === 0) {
    for (let k = 0; k < 6; k++) out.push(intentEvent('processing', k));
    for (let k = 0; k < 4; k++) out.push(intentEvent('succeeded', k));
    out.push(...refundEvents(0), ...refundEvents(1));
  } else {
    for (let k = 0; k < 8; k++) out.push(intentEvent('processing', k));
    for (let k = 0; k < 6; k++) out.push(intentEvent('failed', k));
  }
  return out;
}

/** 700 distinct events, each of 300 picked again right after itself: 1,000 deliveries in order. */
function deliveries(setup: Setup, tenant: string): string[] {
  const random = mulberry32(42);
  const distinct = setup.payments.flatMap((p, i) => eventsFor(tenant, i, p));
  expect(distinct).toHaveLength(700);
  const repeats = new Map<number, number>();
  for (let n = 0; n < DUPLICATES; n++) {
    const index = Math.floor(random() * distinct.length);
    repeats.set(index, (repeats.get(index) ?? 0) + 1);
  }
  return distinct.flatMap((payload, index) => Array(1 + (repeats.get(index) ?? 0)).fill(payload));
}

async function deliver(setup: Setup, payloads: string[], concurrency: number): Promise<string[]> {
  const outcomes: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < payloads.length) {
      const payload = payloads[next++]!;
      const response = await fetch(`${setup.sidecar.url}/webhooks/stripe`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'stripe-signature': signStripeWebhookForTest(payload, SECRET),
        },
        body: payload,
      });
      expect(response.status).toBe(200);
      outcomes.push(((await response.json()) as { outcome: string }).outcome);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return outcomes;
}

/** Everything the events could have changed, per payment index, without ids that differ by tenant. */
async function finalState(setup: Setup) {
  return setup.f.t.db.withTenant(setup.f.tenant.id, async (client) => {
    const state = [];
    for (const [i, p] of setup.payments.entries()) {
      const { rows: pay } = await client.query(
        `SELECT p.status, p.failure_code, p.paid_at IS NOT NULL AS paid, i.status AS invoice_status
         FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE p.id = $1`,
        [p.id],
      );
      const { rows: refunds } = await client.query(
        'SELECT provider_reference, amount_minor, status FROM refunds WHERE payment_id = $1 ORDER BY provider_reference',
        [p.id],
      );
      const { rows: alerts } = await client.query(
        'SELECT kind, count(*)::int AS n FROM alerts WHERE payment_id = $1 GROUP BY kind ORDER BY kind',
        [p.id],
      );
      state.push({ i, ...pay[0], refunds, alerts });
    }
    const { rows: hooks } = await client.query(
      'SELECT count(*)::int AS n, count(processed_at)::int AS processed FROM webhook_events',
    );
    return { payments: state, hooks: hooks[0] };
  });
}

it('1,000 deliveries with 30% repeats converge to the same state in order and shuffled', async () => {
  const inOrder = deliveries(ordered, 'ordered');
  expect(inOrder).toHaveLength(1000);
  const orderedOutcomes = await deliver(ordered, inOrder, 1);

  const random = mulberry32(7);
  const mixed = deliveries(shuffled, 'shuffled');
  for (let i = mixed.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [mixed[i], mixed[j]] = [mixed[j]!, mixed[i]!];
  }
  const shuffledOutcomes = await deliver(shuffled, mixed, 8);

  for (const outcomes of [orderedOutcomes, shuffledOutcomes]) {
    expect(outcomes.filter((o) => o === 'duplicate')).toHaveLength(DUPLICATES);
    expect(outcomes.filter((o) => o === 'unmatched' || o === 'failed')).toHaveLength(0);
  }
  const a = await finalState(ordered);
  const b = await finalState(shuffled);
  expect(b).toEqual(a);
  expect(a.hooks).toEqual({ n: 700, processed: 700 });
  // And the state is the intended one, not merely the same twice.
  for (const p of a.payments) {
    if (p.i % 2 === 0) {
      expect(p).toMatchObject({ status: 'succeeded', paid: true, invoice_status: 'paid' });
      expect(p.refunds).toEqual([
        { provider_reference: `re_${p.i}_0`, amount_minor: 1_00, status: 'succeeded' },
        { provider_reference: `re_${p.i}_1`, amount_minor: 1_00, status: 'succeeded' },
      ]);
    } else {
      expect(p).toMatchObject({ status: 'failed', paid: false, refunds: [] });
      expect(p.alerts).toHaveLength(1);
    }
  }
  expect((await verifyAuditLog(ordered.f.t.db)).ok).toBe(true);
}, 300_000);
