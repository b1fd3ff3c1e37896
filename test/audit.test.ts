import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit } from '../src/audit/log.js';
import { verifyAuditLog } from '../src/audit/verify.js';
import { createTenant } from '../src/directory/tenants.js';
import { cliFor } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

describe('audit log', () => {
  let t: TestDatabase;
  let tenantId: string;
  let other: string;

  beforeAll(async () => {
    t = await createTestDatabase();
    tenantId = (await createTenant(t.db, { slug: 'audited' })).id;
    other = (await createTenant(t.db, { slug: 'other' })).id;
    for (let i = 0; i < 20; i++) {
      await t.db.withTenant(tenantId, (c) =>
        appendAudit(c, { tenantId, actorType: 'system', action: 'test.event', details: { i } }),
      );
    }
  });
  afterAll(async () => t.drop());

  it('chains entries per tenant and verifies clean', async () => {
    const result = await verifyAuditLog(t.db);
    expect(result).toMatchObject({ ok: true, tenantsChecked: 2, entriesChecked: 22 });
    const cli = cliFor(t.url);
    const out = await cli.json(['audit', 'verify']);
    expect(out).toMatchObject({ ok: true, entries_checked: 22 });
  });

  it('concurrent appends to one tenant keep a gapless chain', async () => {
    await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        t.db.withTenant(other, (c) =>
          appendAudit(c, { tenantId: other, actorType: 'system', action: 'test.concurrent', details: { i } }),
        ),
      ),
    );
    expect((await verifyAuditLog(t.db, { tenantId: other })).ok).toBe(true);
  });

  it('refuses UPDATE and DELETE even from the owner', async () => {
    const owner = new pg.Client({ connectionString: t.adminUrl });
    await owner.connect();
    try {
      await expect(
        owner.query(`UPDATE audit_log SET action = 'x' WHERE tenant_id = $1 AND seq = 3`, [tenantId]),
      ).rejects.toThrow(/append-only/);
      await expect(owner.query('DELETE FROM audit_log WHERE tenant_id = $1', [tenantId])).rejects.toThrow(
        /append-only/,
      );
    } finally {
      await owner.end();
    }
  });

  it('finds tampering done by a superuser with the trigger disabled, and names the entry', async () => {
    const owner = new pg.Client({ connectionString: t.adminUrl });
    await owner.connect();
    try {
      await owner.query('ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only');
      await owner.query(
        `UPDATE audit_log SET content = replace(content, '"i":7', '"i":700') WHERE tenant_id = $1 AND seq = 9`,
        [tenantId],
      );
      await owner.query('ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only');
    } finally {
      await owner.end();
    }
    const result = await verifyAuditLog(t.db);
    expect(result.ok).toBe(false);
    expect(result.firstBroken).toMatchObject({ tenantId, seq: 9 });
    const cli = cliFor(t.url);
    const run = await cli.cli(['audit', 'verify']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`tenant ${tenantId} entry 9`);
    expect(run.stderr).toMatch(/altered/);
  });

  it('finds a deleted entry as a gap', async () => {
    const owner = new pg.Client({ connectionString: t.adminUrl });
    await owner.connect();
    try {
      await owner.query('ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only');
      await owner.query('DELETE FROM audit_log WHERE tenant_id = $1 AND seq = 5', [other]);
      await owner.query('ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only');
    } finally {
      await owner.end();
    }
    const result = await verifyAuditLog(t.db, { tenantId: other });
    expect(result.firstBroken).toMatchObject({ tenantId: other, seq: 6 });
    expect(result.firstBroken?.reason).toMatch(/missing/);
  });
});
