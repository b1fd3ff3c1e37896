/** Find the database (DATABASE_URL, or the embedded server in the data directory), migrate it, open it. */
import type { Config } from '../config.js';
import { ensureEmbeddedServer } from './embedded.js';
import { migrate } from './migrate.js';
import { createDb, type Db, type DbOptions } from './pool.js';

export async function databaseUrl(config: Pick<Config, 'databaseUrl' | 'dataDir'>): Promise<string> {
  return config.databaseUrl ?? (await ensureEmbeddedServer(config.dataDir));
}

/** Connect, applying any pending migrations first (idempotent, and serialized across processes). */
export async function openDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir'>,
  options: DbOptions = {},
): Promise<Db> {
  const url = await databaseUrl(config);
  await migrate(url);
  return createDb(url, options);
}
