/**
 * What withTenant sets for its transaction and for it only: the tenant, and (for bookkeeping that may
 * skip the disk flush) synchronous_commit. One connection, so a setting that leaked would show in the
 * next transaction on the same session.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { appendAudit } from '../../src/audit/log.js';
import { createDb, type Db } from '../../src/db/pool.js';
import { createTenant } from '../../src/directory/tenants.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

let t: TestDatabase;
let db: Db;
let tenantId: string;

beforeAll(async () => {
  t = await createTestDatabase();
  db = createDb(t.url, { max: 1 });
  tenantId = (await createTenant(db, { slug: 'settings' })).id;
});
afterAll(async () => {
  await db.close();
  await t.drop();
});

const settings = (options?: { waitForDisk?: boolean }) =>
  db.withTenant(
    tenantId,
    async (c) =>
      (
        await c.query<{ tenant: string; sync: string }>(
          "SELECT current_setting('app.tenant_id') AS tenant, current_setting('synchronous_commit') AS sync",
        )
      ).rows[0]!,
    options,
  );

it('waits for the disk unless told not to, and the exception ends with its transaction', async () => {
  expect(await settings()).toEqual({ tenant: tenantId, sync: 'on' });
  expect(await settings({ waitForDisk: false })).toEqual({ tenant: tenantId, sync: 'off' });
  expect(await settings()).toEqual({ tenant: tenantId, sync: 'on' });
  const { rows } = await db.withSystem((c) =>
    c.query<{ sync: string }>("SELECT current_setting('synchronous_commit') AS sync"),
  );
  expect(rows[0]!.sync).toBe('on');
});

it('refuses an audit entry in a transaction that does not wait for the disk, and writes nothing', async () => {
  await expect(
    db.withTenant(tenantId, (c) => appendAudit(c, { tenantId, actorType: 'system', action: 'test.async' }), {
      waitForDisk: false,
    }),
  ).rejects.toThrow(/waitForDisk: false/);
  const { rows } = await db.withTenant(tenantId, (c) =>
    c.query("SELECT count(*)::int AS n FROM audit_log WHERE action = 'test.async'"),
  );
  expect(rows[0]!.n).toBe(0);
});

it('a connection lost in the middle of a transaction is that transaction’s error, not the process’s, and the pool goes on', async () => {
  const owner = new pg.Client({ connectionString: t.adminUrl });
  await owner.connect();
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);
  process.on('uncaughtException', onUncaught);
  try {
    // The server ends this transaction's session (a restart, a failover, an administrator) while the
    // transaction waits on a statement.
    const lost = db
      .withTenant(tenantId, async (c) => {
        const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        await Promise.all([
          c.query('SELECT pg_sleep(5)'),
          owner.query('SELECT pg_sleep(0.1), pg_terminate_backend($1)', [pid]),
        ]);
      })
      .then(
        () => 'committed',
        (error: Error) => error.message,
      );
    expect(await lost).toMatch(/terminat/i);
    // Give a stray 'error' event its turn on the event loop.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(uncaught).toEqual([]);
    // The lost connection is not handed out again: the next transaction (the pool holds one) works.
    expect(await settings()).toEqual({ tenant: tenantId, sync: 'on' });
  } finally {
    process.off('uncaughtException', onUncaught);
    await owner.end();
  }
});
