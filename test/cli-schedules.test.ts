/**
 * `paygate schedules cancel` (the BUILT CLI): a human stops a payment an agent scheduled and a human
 * approved, for example after disabling the agent's key, which does not stop what was approved.
 */

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser, changeUserAccess } from '../src/directory/users.js';
import { addDays, todayIn } from '../src/payments/calendar.js';
import { createWorker } from '../src/worker/index.js';
import { cliFor } from './support/cli.js';
import { createFixture, type Fixture, instantSleep } from './support/fixture.js';
import { scheduleApproved } from './worker/support.js';

describe('paygate schedules cancel', () => {
  let f: Fixture;
  let cli: ReturnType<typeof cliFor>['cli'];

  const scheduleOf = async (id: string) => {
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ status: string; invoice_status: string }>(
        `SELECT s.status, i.status AS invoice_status FROM scheduled_payments s JOIN invoices i ON i.id = s.invoice_id
         WHERE s.id = $1`,
        [id],
      ),
    );
    return rows[0]!;
  };

  beforeAll(async () => {
    f = await createFixture({ slug: 'schedules-cli' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    cli = cliFor(f.t.url).cli;
  }, 120_000);
  afterAll(async () => {
    await f.close();
  });

  it('an approver cancels a schedule of a disabled key; it never runs; the invoice is approved again', async () => {
    const { agentKey } = await f.newAgent({ name: 'leaked' });
    await f.addInvoice('INV-SC-1', 300_00);
    const tomorrow = addDays(todayIn(f.tenant.timezone), 1);
    const scheduleId = await scheduleApproved(f, agentKey, 'INV-SC-1', '300.00', 'stripe', tomorrow);
    await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query('UPDATE agent_keys SET disabled_at = now() WHERE id = $1', [agentKey.id]),
    );

    const result = await cli(
      ['schedules', 'cancel', '--tenant', 'schedules-cli', '--invoice', 'INV-SC-1', '--json'],
      {
        PAYGATE_USER_TOKEN: f.approver.token,
      },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      status: 'cancelled',
      scheduled_payment_id: scheduleId,
      scheduled_date: tomorrow,
    });
    expect(await scheduleOf(scheduleId)).toEqual({ status: 'cancelled', invoice_status: 'approved' });
    const { rows: audit } = await f.t.db.withSystem((c) =>
      c.query<{ actor_type: string; actor_id: string }>(
        "SELECT actor_type, actor_id FROM audit_log WHERE action = 'payment.schedule_cancelled' AND subject_id = $1",
        [scheduleId],
      ),
    );
    expect(audit).toEqual([{ actor_type: 'user', actor_id: 'jdoe@example.com' }]);

    // On its date the worker finds nothing to pay.
    const due = new Date(`${tomorrow}T12:00:00Z`);
    await createWorker(f.deps, { clock: () => due, sleep: instantSleep }).runOnce();
    expect(await scheduleOf(scheduleId)).toMatchObject({ status: 'cancelled' });
    expect(f.sandbox.ledger.charges().filter((c) => c.amountMinor === 300_00)).toHaveLength(0);
  });

  it('a viewer cannot, and a schedule no longer waiting cannot be cancelled', async () => {
    await f.addInvoice('INV-SC-2', 40_00);
    const tomorrow = addDays(todayIn(f.tenant.timezone), 1);
    const scheduleId = await scheduleApproved(f, f.agentKey, 'INV-SC-2', '40.00', 'stripe', tomorrow);
    const viewer = await addUser(f.t.db, f.tenant.id, f.admin, {
      email: 'viewer@example.com',
      role: 'viewer',
    });
    const refused = await cli(['schedules', 'cancel', '--tenant', 'schedules-cli', '--id', scheduleId], {
      PAYGATE_USER_TOKEN: viewer.token,
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/viewer/);
    expect(await scheduleOf(scheduleId)).toMatchObject({ status: 'scheduled' });

    const usage = await cli(['schedules', 'cancel', '--tenant', 'schedules-cli'], {
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(usage.code).toBe(2);

    const first = await cli(['schedules', 'cancel', '--tenant', 'schedules-cli', '--id', scheduleId], {
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(first.code, first.stderr).toBe(0);
    const again = await cli(['schedules', 'cancel', '--tenant', 'schedules-cli', '--id', scheduleId], {
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/cancelled; only a payment still waiting/);
  });

  it('an approver demoted to viewer after the token was read cancels nothing (the act re-reads them, as alerts resolve does)', async () => {
    // The CLI reads the human from the token in one transaction and cancels in another; `user set`
    // can demote them in between. Here the cancel's transaction waits on the schedule row (held by the
    // test) while the demotion commits: the cancel then goes through on the viewer's stale copy. A
    // cancel ordered before the demotion is fine; one after it must be refused.
    const approver = await addUser(f.t.db, f.tenant.id, f.admin, {
      email: 'approver-stale@example.com',
      role: 'approver',
    });
    await f.addInvoice('INV-SC-3', 50_00);
    const tomorrow = addDays(todayIn(f.tenant.timezone), 1);
    const scheduleId = await scheduleApproved(f, f.agentKey, 'INV-SC-3', '50.00', 'stripe', tomorrow);
    const holder = new pg.Client({ connectionString: f.t.url });
    await holder.connect();
    const waitingOnLocks = async () =>
      (
        await f.t.db.withSystem((c) =>
          c.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
          ),
        )
      ).rows[0]!.n;
    try {
      await holder.query('BEGIN');
      const held = await holder.query('SELECT 1 FROM scheduled_payments WHERE id = $1 FOR UPDATE', [
        scheduleId,
      ]);
      expect(held.rowCount).toBe(1);
      const cancelling = cli(['schedules', 'cancel', '--tenant', 'schedules-cli', '--id', scheduleId], {
        PAYGATE_USER_TOKEN: approver.token,
      });
      // The cancel has read the human and waits on the schedule row.
      while ((await waitingOnLocks()) < 1) await new Promise((r) => setTimeout(r, 20));
      let demoted = false;
      const demoting = changeUserAccess(f.t.db, f.tenant.id, f.admin, approver.user.email, {
        role: 'viewer',
      }).then(() => {
        demoted = true;
      });
      // The demotion either commits or waits on the cancel's lock on the human (then it comes after it).
      while (!demoted && (await waitingOnLocks()) < 2) await new Promise((r) => setTimeout(r, 20));
      await holder.query('COMMIT');
      const result = await cancelling;
      await demoting;
      const { rows } = await f.t.db.withSystem((c) =>
        c.query<{ action: string }>(
          `SELECT action FROM audit_log WHERE tenant_id = $1 AND action IN ('user.access_changed', 'payment.schedule_cancelled')
             AND (subject_id = $2 OR subject_id = $3) ORDER BY seq`,
          [f.tenant.id, scheduleId, approver.user.id],
        ),
      );
      const outcome = {
        code: result.code,
        order: rows.map((r) => r.action),
        schedule: (await scheduleOf(scheduleId)).status,
      };
      expect([
        { code: 0, order: ['payment.schedule_cancelled', 'user.access_changed'], schedule: 'cancelled' },
        { code: 1, order: ['user.access_changed'], schedule: 'scheduled' },
      ]).toContainEqual(outcome);
    } finally {
      await holder.end();
    }
  }, 60_000);
});
