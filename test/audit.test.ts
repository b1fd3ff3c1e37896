import canonicalizeModule from 'canonicalize';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit, contentAround } from '../src/audit/log.js';
import { verifyAuditLog } from '../src/audit/verify.js';
import { openTransactionOf } from '../src/db/pool.js';
import { createTenant } from '../src/directory/tenants.js';
import { cliFor } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';
import { deferred } from './support/deferred.js';

const canonicalize = canonicalizeModule as unknown as (value: unknown) => string | undefined;

describe('audit content', () => {
  it('is the RFC 8785 text of the whole entry once its time and seq are put between its parts', () => {
    const text = fc.string({ unit: 'binary' });
    const details = fc.dictionary(
      fc.oneof(text, fc.constantFrom('seq', 'subjectId', 'action', '')),
      fc.jsonValue({ maxDepth: 3 }),
    );
    fc.assert(
      fc.property(
        fc.record({
          at: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
          actorType: fc.constantFrom('agent', 'user', 'system', 'provider', 'cli'),
          actorId: fc.option(text),
          action: text,
          subjectId: fc.option(text),
          details: details as fc.Arbitrary<Record<string, unknown>>,
        }),
        fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        (entry, seq) => {
          const { at, ...fields } = entry;
          const { beforeAt, betweenAtAndSeq, afterSeq } = contentAround(fields);
          expect(`${beforeAt}${JSON.stringify(at)}${betweenAtAndSeq}${seq}${afterSeq}`).toBe(
            canonicalize({ ...entry, seq }),
          );
        },
      ),
      { numRuns: 500 },
    );
  });
});

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

  it("writes a transaction's entries at its commit, chained in the order appended, and none if it fails", async () => {
    const third = (await createTenant(t.db, { slug: 'batched' })).id;
    const entries = async (c: pg.ClientBase) =>
      (await c.query('SELECT count(*)::int AS n FROM audit_log WHERE tenant_id = $1', [third])).rows[0].n;
    const created = await t.db.withTenant(third, entries);
    await t.db.withTenant(third, async (c) => {
      for (const step of ['first', 'second', 'third'])
        await appendAudit(c, { tenantId: third, actorType: 'system', action: `test.${step}` });
      // Nothing is written before the commit: the chain's lock is not held while the work goes on.
      expect(await entries(c)).toBe(created);
    });
    await expect(
      t.db.withTenant(third, async (c) => {
        await appendAudit(c, { tenantId: third, actorType: 'system', action: 'test.rolled_back' });
        throw new Error('the work failed');
      }),
    ).rejects.toThrow('the work failed');
    // A client outside withTenant/withSystem (its own transaction): the entry is written at once.
    const client = await t.db.pool.connect();
    try {
      await client.query(`BEGIN; SELECT set_config('app.tenant_id', '${third}', true)`);
      await appendAudit(client, { tenantId: third, actorType: 'system', action: 'test.direct' });
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const { rows } = await t.db.withTenant(third, (c) =>
      c.query('SELECT seq, action FROM audit_log WHERE tenant_id = $1 AND seq > $2 ORDER BY seq', [
        third,
        created,
      ]),
    );
    expect(rows).toEqual([
      { seq: created + 1, action: 'test.first' },
      { seq: created + 2, action: 'test.second' },
      { seq: created + 3, action: 'test.third' },
      { seq: created + 4, action: 'test.direct' },
    ]);
    expect(await verifyAuditLog(t.db, { tenantId: third })).toMatchObject({
      ok: true,
      entriesChecked: created + 4,
    });
  });

  it('an entry appended by a later beforeCommit hook is written too', async () => {
    await t.db.withTenant(tenantId, async (c) => {
      await appendAudit(c, { tenantId, actorType: 'system', action: 'probe.first' });
      openTransactionOf(c)!.beforeCommit.push(() =>
        appendAudit(c, { tenantId, actorType: 'system', action: 'probe.from_hook' }),
      );
    });
    const { rows } = await t.db.withTenant(tenantId, (c) =>
      c.query("SELECT action FROM audit_log WHERE action LIKE 'probe.%' ORDER BY seq"),
    );
    expect(rows.map((r) => r.action)).toEqual(['probe.first', 'probe.from_hook']);
  });

  it("takes the chain's lock only inside COMMIT: a transaction paused after asking to append holds none", async () => {
    const held = deferred();
    const paused = deferred<number>();
    const first = t.db.withTenant(tenantId, async (c) => {
      const { rows } = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await appendAudit(c, { tenantId, actorType: 'system', action: 'commit_lock.first' });
      // Runs after the audit's own hook has sent its append request: the client is between that and COMMIT.
      openTransactionOf(c)!.beforeCommit.push(async () => {
        paused.resolve(rows[0]!.pid);
        await held.promise;
      });
    });
    // Should the transaction end before it pauses (a failed request), say so instead of waiting forever.
    const pid = await Promise.race([
      paused.promise,
      first.then(() => {
        throw new Error('the transaction committed without pausing');
      }),
    ]);
    try {
      const { rows: locks } = await t.db.withSystem((c) =>
        c.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", [pid]),
      );
      expect(locks[0]!.n).toBe(0);
      // So another transaction of the tenant appends and commits meanwhile, and is first in the chain.
      await t.db.withTenant(tenantId, (c) =>
        appendAudit(c, { tenantId, actorType: 'system', action: 'commit_lock.second' }),
      );
    } finally {
      // Released whatever happened above, so that a failure fails instead of leaving the transaction open.
      held.resolve();
      await first;
    }
    const { rows } = await t.db.withTenant(tenantId, (c) =>
      c.query<{ action: string }>(
        "SELECT action FROM audit_log WHERE action LIKE 'commit_lock.%' ORDER BY seq",
      ),
    );
    expect(rows.map((r) => r.action)).toEqual(['commit_lock.second', 'commit_lock.first']);
    const { rows: pending } = await t.db.withSystem((c) =>
      c.query('SELECT count(*)::int AS n FROM audit_append_requests'),
    );
    expect(pending[0]!.n).toBe(0);
  });

  it("time follows the chain: an entry's time is when it was written under the lock", async () => {
    // A transaction that began first but commits second is second in the chain, and later in time.
    const held = deferred();
    const appended = deferred();
    const first = t.db.withTenant(tenantId, async (c) => {
      await appendAudit(c, { tenantId, actorType: 'system', action: 'time.began_first' });
      appended.resolve();
      await held.promise;
    });
    await appended.promise;
    await new Promise((resolve) => setTimeout(resolve, 5));
    await t.db.withTenant(tenantId, (c) =>
      appendAudit(c, { tenantId, actorType: 'system', action: 'time.began_second' }),
    );
    held.resolve();
    await first;
    const { rows: raced } = await t.db.withTenant(tenantId, (c) =>
      c.query<{ action: string; at: Date }>(
        "SELECT action, at FROM audit_log WHERE action LIKE 'time.%' ORDER BY seq",
      ),
    );
    expect(raced.map((r) => r.action)).toEqual(['time.began_second', 'time.began_first']);
    expect(raced[1]!.at.getTime()).toBeGreaterThanOrEqual(raced[0]!.at.getTime());
    const { rows } = await t.db.withSystem((c) =>
      c.query<{ tenant_id: string; seq: number; at: Date; content: string }>(
        'SELECT tenant_id, seq, at, content FROM audit_log ORDER BY tenant_id, seq',
      ),
    );
    for (let i = 1; i < rows.length; i++) {
      if (rows[i]!.tenant_id !== rows[i - 1]!.tenant_id) continue;
      expect(rows[i]!.at.getTime()).toBeGreaterThanOrEqual(rows[i - 1]!.at.getTime());
    }
    // The time in the hashed content is the stored time, as JavaScript prints it.
    for (const row of rows) expect(JSON.parse(row.content).at).toBe(row.at.toISOString());
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
