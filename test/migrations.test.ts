import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR, migrate } from '../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

describe('migrations', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(async () => t.drop());

  it('are idempotent: a second run applies nothing', async () => {
    const result = await migrate(t.url);
    expect(result.applied).toEqual([]);
    expect(result.alreadyApplied.length).toBeGreaterThanOrEqual(3);
  });

  it('refuse an applied file that was edited, naming it', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'paygate-migrations-'));
    for (const file of await fs.readdir(MIGRATIONS_DIR)) {
      await fs.copyFile(path.join(MIGRATIONS_DIR, file), path.join(dir, file));
    }
    await fs.appendFile(path.join(dir, '002_core_tables.sql'), '\n-- an edit after the fact\n');
    await expect(migrate(t.url, dir)).rejects.toThrow(
      /002_core_tables\.sql was changed after it was applied/,
    );
    await fs.rm(dir, { recursive: true });
  });

  it('two processes migrating one fresh database at once both succeed, applying each file once', async () => {
    const admin = new pg.Client({ connectionString: t.adminUrl });
    await admin.connect();
    const fresh = `${new URL(t.url).pathname.slice(1)}_fresh`;
    await admin.query(`CREATE DATABASE ${fresh}`);
    await admin.end();
    const url = new URL(t.url);
    url.pathname = `/${fresh}`;
    const [a, b] = await Promise.all([migrate(url.toString()), migrate(url.toString())]);
    expect([...a.applied, ...b.applied].sort()).toEqual(
      (await fs.readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.sql')).sort(),
    );
    const again = new pg.Client({ connectionString: t.adminUrl });
    await again.connect();
    await again.query(`DROP DATABASE ${fresh} WITH (FORCE)`);
    await again.end();
  });
});
