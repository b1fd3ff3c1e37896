/**
 * One database server per test run: the machine's PostgreSQL when DATABASE_URL is set, otherwise an
 * embedded server in a fresh temporary directory. A migrated template database is made once; each test
 * file clones its own database from it (test/support/db.ts), and everything is dropped at the end.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { embeddedAdminUrl, stopEmbeddedServer } from '../../src/db/embedded.js';
import { migrate } from '../../src/db/migrate.js';

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export default async function setup(project: TestProject) {
  const runId = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  let dataDir: string | undefined;
  let adminUrl: string;
  if (process.env.DATABASE_URL) {
    adminUrl = process.env.DATABASE_URL;
  } else {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'paygate-test-'));
    await fs.chmod(dataDir, 0o755);
    adminUrl = await embeddedAdminUrl(dataDir);
  }
  const template = `paygate_t_${runId}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${template}`);
  await migrate(withDatabase(adminUrl, template));
  await admin.end();

  project.provide('adminUrl', adminUrl);
  project.provide('templateDatabase', template);
  project.provide('testDataDir', dataDir ?? '');

  return async () => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    const { rows } = await client.query<{ datname: string }>(
      'SELECT datname FROM pg_database WHERE datname LIKE $1',
      [`paygate_t_${runId}%`],
    );
    for (const { datname } of rows) await client.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`);
    await client.end();
    if (dataDir) {
      await stopEmbeddedServer(dataDir);
      await fs.rm(dataDir, { recursive: true, force: true });
    }
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string;
    templateDatabase: string;
    testDataDir: string;
  }
}
