/**
 * One database server for the whole bench run: the machine's PostgreSQL (DATABASE_URL, default the local
 * superuser) when it answers, otherwise the embedded one in a temporary directory. Each bench gets a
 * fresh, migrated database of its own, dropped when it ends, so no run sees another's rows.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { embeddedAdminUrl, serverAnswers, stopEmbeddedServer } from '../../src/db/embedded.js';
import { migrate } from '../../src/db/migrate.js';

export const DEFAULT_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export interface BenchServer {
  adminUrl: string;
  /** 'machine' or 'embedded', for BENCHMARKS.md. */
  kind: 'machine' | 'embedded';
  version: string;
  createDatabase(label: string): Promise<BenchDatabase>;
  close(): Promise<void>;
}

export interface BenchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function adminQuery<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

export async function openBenchServer(): Promise<BenchServer> {
  const configured = process.env.DATABASE_URL ?? DEFAULT_ADMIN_URL;
  let adminUrl = configured;
  let kind: BenchServer['kind'] = 'machine';
  let dataDir: string | undefined;
  if (!(await serverAnswers(configured))) {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'paygate-bench-'));
    await fs.chmod(dataDir, 0o755);
    adminUrl = await embeddedAdminUrl(dataDir);
    kind = 'embedded';
  }
  const [{ server_version }] = (await adminQuery<{ server_version: string }>(
    adminUrl,
    'SHOW server_version',
  )) as [{ server_version: string }];
  const runId = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const created: string[] = [];
  return {
    adminUrl,
    kind,
    version: server_version,
    async createDatabase(label) {
      const name = `paygate_bench_${label}_${runId}`;
      await adminQuery(adminUrl, `CREATE DATABASE ${name}`);
      created.push(name);
      const url = withDatabase(adminUrl, name);
      await migrate(url);
      return {
        name,
        url,
        async drop() {
          await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        },
      };
    },
    async close() {
      for (const name of created) await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      if (dataDir) {
        await stopEmbeddedServer(dataDir);
        await fs.rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}
