/**
 * Applies migrations/NNN_name.sql in order, each in its own transaction, recording a SHA-256 checksum
 * per file. An applied file that has since changed is refused: migrations are append-only. A
 * transaction-level advisory lock keeps two processes from migrating the same database at once.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

/** Arbitrary but fixed: the advisory lock key every paygate process uses for migrations. */
const MIGRATION_LOCK_KEY = 0x70617967; // "payg"

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');
// When running from dist/src/db the migrations folder is three levels up; find whichever exists.
const CANDIDATE_DIRS = [
  MIGRATIONS_DIR,
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../migrations'),
];

export class MigrationError extends Error {}

export interface MigrationResult {
  applied: string[];
  alreadyApplied: string[];
}

async function migrationsDir(): Promise<string> {
  for (const dir of CANDIDATE_DIRS) {
    if (
      await fs.stat(dir).then(
        (s) => s.isDirectory(),
        () => false,
      )
    )
      return dir;
  }
  throw new MigrationError(`migrations folder not found (looked in ${CANDIDATE_DIRS.join(', ')})`);
}

/** Run every pending migration against `connectionString` (connecting as its own user, not paygate_app). */
export async function migrate(connectionString: string, dir?: string): Promise<MigrationResult> {
  const folder = dir ?? (await migrationsDir());
  const files = (await fs.readdir(folder)).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort();
  const client = new pg.Client({ connectionString });
  await client.connect();
  const result: MigrationResult = { applied: [], alreadyApplied: [] };
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      filename   text PRIMARY KEY,
      checksum   text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ filename: string; checksum: string }>(
      'SELECT filename, checksum FROM schema_migrations',
    );
    const applied = new Map(rows.map((r) => [r.filename, r.checksum]));
    for (const file of files) {
      const sql = await fs.readFile(path.join(folder, file), 'utf8');
      const checksum = createHash('sha256').update(sql).digest('hex');
      const recorded = applied.get(file);
      if (recorded !== undefined) {
        if (recorded !== checksum) {
          throw new MigrationError(
            `migration ${file} was changed after it was applied (recorded checksum ${recorded.slice(0, 12)}…, ` +
              `file now ${checksum.slice(0, 12)}…). Migrations are append-only: restore the file and add a new one.`,
          );
        }
        result.alreadyApplied.push(file);
        continue;
      }
      await client.query('BEGIN');
      try {
        await client.query(sql);
        await client.query('INSERT INTO schema_migrations (filename, checksum) VALUES ($1, $2)', [
          file,
          checksum,
        ]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw new MigrationError(`migration ${file} failed: ${(error as Error).message}`);
      }
      result.applied.push(file);
    }
    const unknown = [...applied.keys()].filter((f) => !files.includes(f));
    if (unknown.length) {
      throw new MigrationError(
        `the database has migrations this version does not know: ${unknown.join(', ')}`,
      );
    }
    return result;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {});
    await client.end();
  }
}
