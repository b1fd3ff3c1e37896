/**
 * The audit chain under concurrency and against a superuser: many writers of one tenant at once, and
 * tampering the verifier must see (an altered row, a removed tail).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit } from '../src/audit/log.js';
import { verifyAuditLog } from '../src/audit/verify.js';
import { createTenant } from '../src/directory/tenants.js';
import { cliFor } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

describe('the audit chain under concurrency and tampering', () => {
  let t: TestDatabase;
  let tenantId: string;

  beforeAll(async () => {
    t = await createTestDatabase();
    tenantId = (await createTenant(t.db, { slug: 'audit-tampering' })).id;
  });
  afterAll(async () => t?.drop());

  async function asOwner(fn: (c: pg.Client) => Promise<void>) {
    const owner = new pg.Client({ connectionString: t.adminUrl });
    await owner.connect();
    try {
      await owner.query('ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only');
      await fn(owner);
      await owner.query('ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only');
    } finally {
      await owner.end();
    }
  }

  it('60 concurrent transactions of one tenant, 3 entries each: one gapless chain that verifies', async () => {
    await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        t.db.withTenant(tenantId, async (client) => {
          for (let j = 0; j < 3; j++)
            await appendAudit(client, {
              tenantId,
              actorType: 'system',
              actorId: 'test',
              action: 'audit.concurrent',
              details: { i, j },
            });
        }),
      ),
    );
    const { rows } = await t.db.withSystem((c) =>
      c.query<{ n: number; max: number }>(
        'SELECT count(*)::int AS n, max(seq)::int AS max FROM audit_log WHERE tenant_id = $1',
        [tenantId],
      ),
    );
    expect(rows[0]!.n).toBeGreaterThanOrEqual(180);
    expect(rows[0]!.max).toBe(rows[0]!.n);
    const result = await verifyAuditLog(t.db, { tenantId });
    expect(result.ok).toBe(true);
    // A transaction's own entries stay together, in order.
    const { rows: order } = await t.db.withSystem((c) =>
      c.query<{ i: number; j: number }>(
        `SELECT (content::jsonb->'details'->>'i')::int AS i, (content::jsonb->'details'->>'j')::int AS j
           FROM audit_log WHERE tenant_id = $1 AND action = 'audit.concurrent' ORDER BY seq`,
        [tenantId],
      ),
    );
    for (let k = 0; k < order.length; k += 3) {
      expect(order.slice(k, k + 3).map((r) => r.j)).toEqual([0, 1, 2]);
      expect(new Set(order.slice(k, k + 3).map((r) => r.i)).size).toBe(1);
    }
  });

  it('a superuser changing only the action column (content untouched) is caught', async () => {
    await asOwner(async (c) => {
      await c.query(`UPDATE audit_log SET action = 'audit.innocent' WHERE tenant_id = $1 AND seq = 10`, [
        tenantId,
      ]);
    });
    const result = await verifyAuditLog(t.db, { tenantId });
    expect(result.firstBroken).toMatchObject({ tenantId, seq: 10 });
    await asOwner(async (c) => {
      await c.query(`UPDATE audit_log SET action = 'audit.concurrent' WHERE tenant_id = $1 AND seq = 10`, [
        tenantId,
      ]);
    });
    expect((await verifyAuditLog(t.db, { tenantId })).ok).toBe(true);
  });

  it('a superuser deleting the newest entries is caught against the heads an earlier run recorded', async () => {
    await t.db.withTenant(tenantId, (client) =>
      appendAudit(client, {
        tenantId,
        actorType: 'user',
        actorId: 'approver@example.com',
        action: 'approval.approved',
        subjectId: null,
      }),
    );
    // The operator's routine: keep `audit verify --json` (its heads) outside the database.
    const dir = await mkdtemp(path.join(tmpdir(), 'paygate-heads-'));
    try {
      const cli = cliFor(t.url).cli;
      const recorded = await cli(['audit', 'verify', '--json']);
      expect(recorded.code, recorded.stderr).toBe(0);
      const heads = JSON.parse(recorded.stdout).heads as { tenant_id: string; seq: number }[];
      const head = heads.find((h) => h.tenant_id === tenantId)!;
      const file = path.join(dir, 'heads.json');
      await writeFile(file, recorded.stdout);

      await asOwner(async (c) => {
        await c.query('DELETE FROM audit_log WHERE tenant_id = $1 AND seq = $2', [tenantId, head.seq]);
      });
      // What is left is a valid chain on its own...
      expect((await verifyAuditLog(t.db, { tenantId })).ok).toBe(true);
      // ...but not against what was recorded.
      const later = await cli(['audit', 'verify', '--since', file]);
      expect(later.code).toBe(1);
      expect(later.stderr).toMatch(
        new RegExp(`entry ${head.seq} was recorded: entries were removed from its end`),
      );

      // A rewrite of the recorded head (its content and hash recomputed) is caught as well.
      await t.db.withTenant(tenantId, (client) =>
        appendAudit(client, { tenantId, actorType: 'system', actorId: 'forger', action: 'audit.forged' }),
      );
      const rewritten = await cli(['audit', 'verify', '--since', file]);
      expect(rewritten.code).toBe(1);
      expect(rewritten.stderr).toMatch(/differs from the one recorded for it/);

      // A file that is not an intact run's heads is bad usage (exit 2), never taken for a broken chain.
      for (const content of [
        JSON.stringify({ ok: true, heads: [{ tenant_id: 'not-a-uuid', seq: 1, hash: '0'.repeat(64) }] }),
        JSON.stringify({ ok: false, heads: [{ tenant_id: tenantId, seq: 1, hash: '0'.repeat(64) }] }),
      ]) {
        await writeFile(file, content);
        const bad = await cli(['audit', 'verify', '--since', file]);
        expect(bad.code, `${content}: ${bad.stderr}`).toBe(2);
      }
      // A tenant the file recorded no head for has nothing to be checked against: said, not passed.
      await writeFile(
        file,
        JSON.stringify({
          ok: true,
          heads: [{ tenant_id: '00000000-0000-4000-8000-000000000001', seq: 1, hash: '0'.repeat(64) }],
        }),
      );
      const other = await cli(['audit', 'verify', '--tenant', 'audit-tampering', '--since', file]);
      expect(other.code, other.stderr).toBe(2);
      expect(other.stderr).toMatch(/recorded no head for tenant audit-tampering/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
