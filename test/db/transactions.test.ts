/**
 * What withTenant sets for its transaction and for it only: the tenant, and (for bookkeeping that may
 * skip the disk flush) synchronous_commit. One connection, so a setting that leaked would show in the
 * next transaction on the same session.
 */
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
