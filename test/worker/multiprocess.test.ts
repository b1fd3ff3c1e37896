/**
 * Scale-out on one PostgreSQL: three `paygate worker --once` processes start together on 2,000 due
 * scheduled payments (two tenants, Stripe and PayPal). Each payment must be executed exactly once (the
 * payments table and, independently, the sandbox ledger), and the work must be spread: every process
 * did some, as the audit log's `payment.started` entries (written by each worker under its own id) show.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../../src/audit/verify.js';
import type { PassSummary } from '../../src/worker/index.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { envFor, runPaygate, seedDueSchedules } from './support.js';

const TOTAL = 2_000;
const WORKERS = 3;

describe('three worker processes', () => {
  let a: Fixture;
  let b: Fixture;
  beforeAll(async () => {
    a = await createFixture({ slug: 'acme' });
    b = await createFixture({ slug: 'globex', t: a.t, sandbox: a.sandbox });
    for (const f of [a, b]) {
      await f.addMethod({
        rail: 'stripe',
        token: 'pm_card_visa',
        label: 'Visa',
        brand: 'visa',
        last4: '4242',
      });
      await f.addMethod({ rail: 'paypal', token: 'pp_vault_success', label: 'PayPal' });
    }
    await seedDueSchedules(a, 900, { prefix: 'A-S-', rail: 'stripe' });
    await seedDueSchedules(a, 100, { prefix: 'A-P-', rail: 'paypal' });
    await seedDueSchedules(b, 900, { prefix: 'B-S-', rail: 'stripe' });
    await seedDueSchedules(b, 100, { prefix: 'B-P-', rail: 'paypal' });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it(`execute ${TOTAL} due payments exactly once, shared by all ${WORKERS}`, async () => {
    const ids = Array.from({ length: WORKERS }, (_, i) => `w${i + 1}`);
    const results = await Promise.all(
      ids.map((id) => runPaygate(['worker', '--once', '--worker-id', id, '--json'], envFor(a))),
    );
    const summaries = results.map((r) => {
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as PassSummary;
    });
    const paidBy = summaries.map((s) => s.scheduled.paid);
    expect(paidBy.reduce((x, y) => x + y, 0)).toBe(TOTAL);
    for (const s of summaries) {
      expect(s.errors).toBe(0);
      expect(s.scheduled.failed + s.scheduled.deferred + s.scheduled.pending).toBe(0);
    }

    const { rows: started } = await a.t.db.withSystem((c) =>
      c.query<{ actor_id: string; n: number }>(
        `SELECT actor_id, count(*)::int AS n FROM audit_log WHERE action = 'payment.started' GROUP BY actor_id ORDER BY actor_id`,
      ),
    );
    expect(started.map((r) => r.actor_id)).toEqual(ids);
    for (const r of started) expect(r.n).toBeGreaterThan(0);
    expect(started.map((r) => r.n)).toEqual(paidBy);

    const { rows } = await a.t.db.withSystem((c) =>
      c.query<{ payments: number; succeeded: number; invoices: number; paid: number; executed: number }>(
        `SELECT (SELECT count(*)::int FROM payments) AS payments,
                (SELECT count(*)::int FROM payments WHERE status = 'succeeded') AS succeeded,
                (SELECT count(DISTINCT invoice_id)::int FROM payments) AS invoices,
                (SELECT count(*)::int FROM invoices WHERE status = 'paid') AS paid,
                (SELECT count(*)::int FROM scheduled_payments WHERE status = 'executed') AS executed`,
      ),
    );
    expect(rows[0]).toEqual({
      payments: TOTAL,
      succeeded: TOTAL,
      invoices: TOTAL,
      paid: TOTAL,
      executed: TOTAL,
    });

    // The provider's side: one charge per payment, no payment charged twice, amounts as approved.
    const charges = a.sandbox.ledger.charges();
    expect(charges).toHaveLength(TOTAL);
    expect(new Set(charges.map((c) => c.paymentId)).size).toBe(TOTAL);
    const { rows: amounts } = await a.t.db.withSystem((c) =>
      c.query<{ id: string; amount_minor: number }>('SELECT id, amount_minor FROM payments'),
    );
    const byId = new Map(amounts.map((r) => [r.id, r.amount_minor]));
    for (const charge of charges) expect(charge.amountMinor).toBe(byId.get(charge.paymentId!));
    expect((await verifyAuditLog(a.t.db)).ok).toBe(true);
    process.stdout.write(`multi-process: ${TOTAL} payments, by worker ${JSON.stringify(paidBy)}\n`);
  }, 300_000);
});
