/**
 * pass 5: the worker against a real database and the sandbox emulators. Schedules are made
 * through the real approval protocol (scheduleApproved).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { addDays, todayIn } from '../../src/payments/calendar.js';
import { createWorker } from '../../src/worker/index.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { scheduleApproved } from './support.js';

async function scheduleRow(f: Fixture, id: string) {
  const { rows } = await f.t.db.withSystem((c) =>
    c.query<{ status: string; payment_id: string | null }>(
      'SELECT status, payment_id FROM scheduled_payments WHERE id = $1',
      [id],
    ),
  );
  return rows[0]!;
}

describe('the worker against a wrong clock and removed methods', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture({ slug: 'worker-test' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
  });
  afterAll(async () => {
    await f?.close();
  });

  it("a worker whose clock runs far ahead does not pay a schedule before its approved date, nor prune today's keys", async () => {
    await f.addInvoice('INV-W-FUT', 123_00);
    const date = addDays(todayIn(f.tenant.timezone), 30);
    const id = await scheduleApproved(f, f.agentKey, 'INV-W-FUT', '123.00', 'stripe', date);
    const before = f.sandbox.ledger.charges().length;
    // A host whose clock is a year ahead (NTP broken, a VM restored from a snapshot, ...): this process's
    // Date, which a worker without an injected clock reads, moved; the database's clock did not.
    // An idempotency key from today, which a year-ahead pruning would delete as past its 7 days.
    await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query(
        `INSERT INTO idempotency_keys (tenant_id, agent_key_id, key, action, request_digest)
         VALUES ($1, $2, 'k-clock-ahead', 'pay_invoice', '\\x00')`,
        [f.tenant.id, f.agentKey.id],
      ),
    );
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 365 * 86_400_000 });
    try {
      await createWorker(f.deps).runOnce();
    } finally {
      vi.useRealTimers();
    }
    expect(f.sandbox.ledger.charges().length - before).toBe(0);
    expect((await scheduleRow(f, id)).status).toBe('scheduled');
    const { rows: keys } = await f.t.db.withSystem((c) =>
      c.query("SELECT 1 FROM idempotency_keys WHERE key = 'k-clock-ahead'"),
    );
    expect(keys).toHaveLength(1);
  });

  it('a schedule whose method was removed before its date: failed, alert raised and handed to onAlert (analysis)', async () => {
    await f.addMethod({ rail: 'stripe', token: 'pm_card_mastercard', label: 'Old card' });
    await f.addInvoice('INV-W-GONE', 77_00);
    const id = await scheduleApproved(f, f.agentKey, 'INV-W-GONE', '77.00', 'stripe');
    const { rows: methods } = await f.t.db.withSystem((c) =>
      c.query<{ id: string }>(
        "SELECT id FROM payment_methods WHERE tenant_id = $1 AND provider_token = 'pm_card_mastercard'",
        [f.tenant.id],
      ),
    );
    const { removePaymentMethod } = await import('../../src/directory/payment-methods.js');
    await removePaymentMethod(f.t.db, f.tenant.id, f.admin, methods[0]!.id);
    const before = f.sandbox.ledger.charges().length;
    const noticesBefore = f.alerts.length;
    const pass = await createWorker(f.deps).runOnce();
    expect(pass.errors).toBe(0);
    expect(f.sandbox.ledger.charges().length).toBe(before);
    expect((await scheduleRow(f, id)).status).toBe('failed');
    const { rows: alerts } = await f.t.db.withSystem((c) =>
      c.query<{ id: string; code: string }>('SELECT id, code FROM alerts WHERE scheduled_payment_id = $1', [
        id,
      ]),
    );
    expect(alerts).toHaveLength(1);
    // Every committed alert is handed to onAlert, which is how it gets its analysis (src/runtime.ts).
    expect(f.alerts.slice(noticesBefore).map((a) => a.alertId)).toContain(alerts[0]!.id);
  });

  it('the failed schedule leaves an audit entry of its failure (every state change is audited)', async () => {
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ action: string; subject_id: string }>(
        `SELECT a.action, a.subject_id::text FROM audit_log a
          WHERE a.tenant_id = $1 AND a.subject_id::text IN
                (SELECT id::text FROM scheduled_payments WHERE tenant_id = $1 AND status = 'failed')`,
        [f.tenant.id],
      ),
    );
    expect(rows.map((r) => r.action)).toEqual(expect.arrayContaining([expect.stringMatching(/fail/)]));
  });
});
