/**
 * The record of a money-moving call (its agent_runs row) and the audit entry of its refusal: what one
 * says, the other says too, even when the process or its connection dies while writing them.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { advisoryLockKey, createDb } from '../src/db/pool.js';
import { payInvoice } from '../src/payments/pay.js';
import { createFixture, type Fixture } from './support/fixture.js';

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the record of a refused call', () => {
  let f: Fixture;
  let owner: pg.Client;
  beforeAll(async () => {
    f = await createFixture({ slug: 'run-records' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa' });
    owner = new pg.Client({ connectionString: f.t.adminUrl });
    await owner.connect();
  });
  afterAll(async () => {
    await owner.end();
    await f.close();
  });

  /** The backend (other than `except`) waiting on an advisory lock, once one is. */
  async function waiterOnAdvisoryLock(except: number): Promise<number> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { rows } = await owner.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'
            AND pid <> $1`,
        [except],
      );
      if (rows[0]) return rows[0].pid;
      if (Date.now() > deadline) throw new Error('nothing waited on the advisory lock');
      await settle(20);
    }
  }

  it('a refused pay_invoice is never on the record as refused without its audit entry, even when its connection dies while writing them', async () => {
    const { agentKey } = await f.newAgent({ name: 'refused-on-record' });
    const warnings: object[] = [];
    // A process of its own, so that the connection lost below is one of its pool's.
    const db = createDb(f.t.url);
    const deps = { ...f.deps, db, logger: { warn: (o: object) => warnings.push(o) } };
    // The tenant's audit chain held by another transaction, so the refusal's entry waits in its COMMIT;
    // that backend is then lost (the process killed, the connection dropped) before the entry is written.
    const chain = new pg.Client({ connectionString: f.t.adminUrl });
    await chain.connect();
    await chain.query('BEGIN');
    await chain.query('SELECT pg_advisory_xact_lock($1)', [advisoryLockKey(`audit:${f.tenant.id}`)]);
    const call = payInvoice(
      deps,
      { agentKey },
      { invoice: 'INV-NOT-THERE', amount: '10.00', currency: 'USD', method: 'stripe' },
    ).catch((e: { code?: string }) => e);
    try {
      const writer = await waiterOnAdvisoryLock((chain as unknown as { processID: number }).processID);
      await owner.query('SELECT pg_terminate_backend($1)', [writer]);
      expect(await call).toMatchObject({ code: 'invoice_not_found' });
    } finally {
      await chain.query('ROLLBACK');
      await chain.end();
      await db.close();
    }
    expect(warnings).toHaveLength(1);
    const { rows } = await owner.query<{ refused_runs: number; refusal_entries: number }>(
      `SELECT (SELECT count(*)::int FROM agent_runs
                WHERE agent_key_id = $1 AND tool = 'pay_invoice' AND outcome = 'refused') AS refused_runs,
              (SELECT count(*)::int FROM audit_log
                WHERE tenant_id = $2 AND actor_id = $1::text AND action = 'pay_invoice.refused') AS refusal_entries`,
      [agentKey.id, f.tenant.id],
    );
    // One transaction wrote both, or neither: the row may stay `running` (as a dying process leaves it),
    // but it must not say `refused` while the audit log has no such refusal.
    expect(rows[0]!.refused_runs).toBe(rows[0]!.refusal_entries);
  });
});
