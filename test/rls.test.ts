import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTenant } from '../src/directory/tenants.js';
import { addUser } from '../src/directory/users.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

describe('row-level security', () => {
  let t: TestDatabase;
  let a: string;
  let b: string;

  beforeAll(async () => {
    t = await createTestDatabase();
    a = (await createTenant(t.db, { slug: 'tenant-a' })).id;
    b = (await createTenant(t.db, { slug: 'tenant-b' })).id;
    await addUser(t.db, a, null, { email: 'admin@a.test', role: 'admin' });
    await addUser(t.db, b, null, { email: 'admin@b.test', role: 'admin' });
  });
  afterAll(async () => t.drop());

  it('tenant A sees only its own rows', async () => {
    const emails = await t.db.withTenant(
      a,
      async (c) => (await c.query<{ email: string }>('SELECT email FROM users')).rows,
    );
    expect(emails).toEqual([{ email: 'admin@a.test' }]);
    const tenants = await t.db.withTenant(
      a,
      async (c) => (await c.query<{ slug: string }>('SELECT slug FROM tenants')).rows,
    );
    expect(tenants).toEqual([{ slug: 'tenant-a' }]);
  });

  it('tenant A cannot write rows into tenant B', async () => {
    await expect(
      t.db.withTenant(a, (c) =>
        c.query(`INSERT INTO counterparties (tenant_id, name) VALUES ($1, 'smuggled')`, [b]),
      ),
    ).rejects.toThrow(/row-level security/);
  });

  it('tenant A cannot update or delete tenant B rows (they do not exist for it)', async () => {
    const updated = await t.db.withTenant(a, (c) =>
      c.query(`UPDATE users SET role = 'viewer' WHERE tenant_id = $1`, [b]),
    );
    expect(updated.rowCount).toBe(0);
    const deleted = await t.db.withTenant(a, (c) => c.query('DELETE FROM users WHERE tenant_id = $1', [b]));
    expect(deleted.rowCount).toBe(0);
    const still = await t.db.withTenant(
      b,
      async (c) => (await c.query<{ role: string }>('SELECT role FROM users')).rows,
    );
    expect(still).toEqual([{ role: 'admin' }]);
  });

  it('a connection without a tenant sees no tenant rows at all', async () => {
    const { rows } = await t.db.pool.query<{ n: number }>(
      'SELECT (SELECT count(*) FROM users)::int + (SELECT count(*) FROM tenants)::int + (SELECT count(*) FROM audit_log)::int AS n',
    );
    expect(rows[0]!.n).toBe(0);
    // ... while the rows are there for the system path.
    const all = await t.db.withSystem(
      async (c) => (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM users')).rows[0]!.n,
    );
    expect(all).toBe(2);
  });

  it('the application role is neither superuser nor owner, so it cannot bypass RLS or the audit trigger', async () => {
    const client = new pg.Client({ connectionString: t.url, options: '-c role=paygate_app' });
    await client.connect();
    try {
      const { rows } = await client.query<{ rolsuper: boolean; rolbypassrls: boolean }>(
        'SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user',
      );
      expect(rows[0]).toEqual({ rolsuper: false, rolbypassrls: false });
      await client.query('BEGIN');
      await client.query("SELECT set_config('app.tenant_id', $1, true)", [a]);
      await expect(client.query('ALTER TABLE users DISABLE ROW LEVEL SECURITY')).rejects.toThrow(
        /must be owner/,
      );
      await client.query('ROLLBACK');
      await client.query('BEGIN');
      await client.query("SELECT set_config('app.tenant_id', $1, true)", [a]);
      await expect(client.query('DELETE FROM audit_log')).rejects.toThrow(/permission denied|append-only/);
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
  });
});
