/** A column changed behind the append-only trigger, where it is also in the hashed content, is reported by `audit verify`. */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../src/audit/verify.js';
import { createFixture, type Fixture, payThroughEngine } from './support/fixture.js';

describe('audit verify: the columns against the hashed content', () => {
  let f: Fixture;
  let owner: pg.Client;
  beforeAll(async () => {
    f = await createFixture();
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa' });
    await payThroughEngine(f, f.agentKey, { invoice: 'INV-AUD-1', amountMinor: 42_00, method: 'stripe' });
    owner = new pg.Client({ connectionString: f.t.adminUrl });
    await owner.connect();
  });
  afterAll(async () => {
    await owner.end();
    await f.close();
  });

  /** Change one column of the approval.approved entry behind the append-only trigger, then verify. */
  const tamper = async (assignment: string) => {
    expect((await verifyAuditLog(f.t.db, { tenantId: f.tenant.id })).ok).toBe(true);
    await owner.query('BEGIN');
    await owner.query('ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only');
    const { rowCount } = await owner.query(
      `UPDATE audit_log SET ${assignment} WHERE tenant_id = $1 AND action = 'approval.approved'`,
      [f.tenant.id],
    );
    expect(rowCount).toBe(1);
    await owner.query('ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only');
    await owner.query('COMMIT');
    try {
      return await verifyAuditLog(f.t.db, { tenantId: f.tenant.id });
    } finally {
      // Undo, so each case starts from an intact chain.
      await owner.query('BEGIN');
      await owner.query('ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only');
      await owner.query(
        `UPDATE audit_log SET actor_id = (content::json)->>'actorId', actor_type = (content::json)->>'actorType',
                              at = ((content::json)->>'at')::timestamptz
          WHERE tenant_id = $1 AND action = 'approval.approved'`,
        [f.tenant.id],
      );
      await owner.query('ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only');
      await owner.query('COMMIT');
    }
  };

  it('who approved: a changed actor_id column is reported', async () => {
    const result = await tamper("actor_id = 'someone-else@example.com'");
    expect(result.ok).toBe(false);
  });

  it('when: a changed at column (the one payment history shows) is reported', async () => {
    const result = await tamper("at = at - interval '3 days'");
    expect(result.ok).toBe(false);
  });
});
