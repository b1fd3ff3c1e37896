import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../../src/db/pool.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

describe('prepared statements', () => {
  let t: TestDatabase;
  let db: Db;

  beforeAll(async () => {
    t = await createTestDatabase();
    // One connection, so every transaction below reuses the same session and its prepared statements.
    db = createDb(t.url, { max: 1 });
    await db.withSystem((c) => c.query('CREATE TABLE probe (x int); INSERT INTO probe VALUES (1)'));
  });
  afterAll(async () => {
    await db.close();
    await t.drop();
  });

  const read = (value: number) =>
    db.withSystem(
      async (c) => (await c.query<{ x: number }>('SELECT x FROM probe WHERE x = $1', [value])).rows,
    );

  it('prepares a parameterised statement once per connection and then reuses it', async () => {
    await read(1);
    await read(1);
    const prepared = await db.withSystem(
      async (c) =>
        (
          await c.query<{ name: string; calls: number }>(
            `SELECT name, (generic_plans + custom_plans)::int AS calls FROM pg_prepared_statements
             WHERE statement = 'SELECT x FROM probe WHERE x = $1'`,
          )
        ).rows,
    );
    expect(prepared).toHaveLength(1);
    expect(prepared[0]!.name).toMatch(/^paygate_[0-9a-f]{24}$/);
    expect(prepared[0]!.calls).toBe(2);
  });

  it('replaces a connection whose prepared statement a migration broke, so the next call works', async () => {
    expect(await read(1)).toEqual([{ x: 1 }]);
    // What another process's migration can do under a running one: change a returned column's type.
    await db.withSystem((c) => c.query('ALTER TABLE probe ALTER COLUMN x TYPE bigint'));
    await expect(read(1)).rejects.toThrow(/cached plan must not change result type/);
    // The broken connection was closed; a new one prepares the statement afresh.
    expect(await read(1)).toEqual([{ x: 1 }]);
    expect(await read(1)).toEqual([{ x: 1 }]);
  });
});
