/**
 * The database handle every module uses: a `pg` pool whose sessions run as the non-superuser role
 * `paygate_app`, so row-level security applies to everything, and two ways to open a transaction:
 * scoped to one tenant, or (for the few cross-tenant jobs: the worker's claim, webhook matching,
 * migrations, tenant creation) as the connecting user.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';

// bigint (int8) columns are money and counts: return exact integers, and refuse rather than round
// anything beyond 2^53 (money.ts keeps amounts far below that).
pg.types.setTypeParser(pg.types.builtins.INT8, (text: string) => {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new RangeError(`bigint ${text} is beyond the exact integer range`);
  return value;
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `text` can be one of our ids: checked before a lookup, so that anything else is "not found"
 * rather than the database refusing the cast in its own words. */
export function isUuid(text: string): boolean {
  return UUID.test(text);
}

export type Queryable = Pick<pg.PoolClient, 'query'>;

/**
 * Work a module defers to the end of the caller's transaction: each `beforeCommit` runs, in order, just
 * before COMMIT (and never if the transaction fails); `locals` is state for this transaction only.
 */
export interface OpenTransaction {
  readonly beforeCommit: (() => Promise<void>)[];
  readonly locals: Map<symbol, unknown>;
  /** False when opened with `waitForDisk: false`: its COMMIT does not wait for the WAL flush. */
  readonly waitsForDisk: boolean;
}

const openTransactions = new WeakMap<object, OpenTransaction>();

/** The transaction `client` is in, when it is one opened by withTenant or withSystem. */
export function openTransactionOf(client: Queryable): OpenTransaction | undefined {
  return openTransactions.get(client);
}

/** Statement name by text: one hash per distinct statement text in the process. */
const statementNames = new Map<string, string>();

function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) {
    name = `paygate_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return name;
}

/**
 * A client that prepares every parameterised statement once per connection, named by its text, and from
 * then on only binds and executes it. Planning a join under row-level security costs several times what
 * running it does here (reading a payment: ~0.4 ms to plan, ~0.1 ms to run), and every payment runs the
 * same two dozen statements. Our statement texts are constants (a few variants at most, never values
 * spliced in), so each connection holds a small, fixed set of prepared statements.
 */
class PreparingClient extends pg.Client {
  // biome-ignore lint/suspicious/noExplicitAny: forwards pg's overloaded query signature unchanged
  override query(...args: any[]): any {
    const [config, values] = args;
    if (typeof config === 'string' && Array.isArray(values) && values.length > 0) {
      return super.query({ name: statementName(config), text: config, values }, ...args.slice(2));
    }
    return super.query(...(args as Parameters<pg.Client['query']>));
  }
}

/**
 * Errors after which a connection's prepared statements fail every time: a migration changed the type of
 * a column a statement returns (its cached plan "must not change result type"), or pg lost track of a
 * statement it had prepared. Only a new connection (which prepares afresh) recovers.
 */
function spoilsPreparedStatements(error: unknown): boolean {
  const code = pgErrorCode(error);
  return (
    code === '26000' ||
    (code === '0A000' && /cached plan must not change result type/.test((error as Error).message))
  );
}

export interface Db {
  readonly pool: pg.Pool;
  /** Run `fn` in one transaction in which only `tenantId`'s rows exist. */
  withTenant<T>(
    tenantId: string,
    fn: (client: pg.PoolClient) => Promise<T>,
    options?: TransactionOptions,
  ): Promise<T>;
  /** Run `fn` in one transaction as the connecting user (no row-level security): cross-tenant jobs only. */
  withSystem<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface TransactionOptions {
  /**
   * false: COMMIT returns without waiting for the WAL flush (`synchronous_commit` off for this transaction
   * only). What it wrote is visible at once and made durable by the next commit that writes and waits
   * (the log is flushed in order); a crash in between can lose it. Only for bookkeeping whose loss is
   * harmless: never money or approvals, and appendAudit refuses to write in such a transaction. Default true.
   */
  waitForDisk?: boolean;
}

export interface DbOptions {
  max?: number;
  applicationName?: string;
}

export function createDb(connectionString: string, options: DbOptions = {}): Db {
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 10,
    Client: PreparingClient,
    application_name: options.applicationName ?? 'paygate',
    // The session role for every connection: RLS applies unless a transaction says otherwise.
    options: '-c role=paygate_app',
  });
  // An idle client's error (server restart) must not crash the process; the pool discards the client.
  pool.on('error', () => {});

  /**
   * One transaction. `opening` is sent as one simple-protocol query with BEGIN, so opening a transaction
   * costs one round trip rather than two; it may hold only constants we produced (no parameters).
   */
  async function transaction<T>(
    opening: string,
    fn: (client: pg.PoolClient) => Promise<T>,
    waitsForDisk = true,
  ) {
    const client = await pool.connect();
    // A connection lost while the client is out of the pool (a server restart, a failover, a terminated
    // session): the statement in flight fails with the error, and the client emits it too, which with no
    // listener would end the process. The pool listens only while the client is idle.
    let lost: Error | undefined;
    const onLost = (error: Error) => {
      lost = error;
    };
    client.on('error', onLost);
    const open: OpenTransaction = { beforeCommit: [], locals: new Map(), waitsForDisk };
    let broken: Error | undefined;
    try {
      await client.query(`BEGIN; ${opening}`);
      openTransactions.set(client, open);
      const result = await fn(client);
      for (const work of open.beforeCommit) await work();
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      if (spoilsPreparedStatements(error)) broken = error as Error;
      throw error;
    } finally {
      // The client goes back to the pool; the next transaction on it starts with nothing deferred.
      openTransactions.delete(client);
      client.off('error', onLost);
      // A connection lost, or whose prepared statements no longer work, is closed rather than reused.
      client.release(lost ?? broken);
    }
  }

  return {
    pool,
    withTenant: (tenantId, fn, options = {}) => {
      // Inlined into the opening query, so it must be exactly a UUID (it always is: it comes from us).
      if (!isUuid(tenantId)) return Promise.reject(new Error(`not a tenant id: ${JSON.stringify(tenantId)}`));
      const opening = `SELECT set_config('app.tenant_id', '${tenantId}', true)`;
      return options.waitForDisk === false
        ? transaction(`${opening}, set_config('synchronous_commit', 'off', true)`, fn, false)
        : transaction(opening, fn);
    },
    withSystem: (fn) => transaction('SET LOCAL ROLE NONE', fn),
    close: () => pool.end(),
  };
}

/**
 * A 64-bit advisory lock key (as a decimal string) for a named critical section: the first 8 bytes of
 * sha256(name), signed big-endian. Names carry their owner's prefix (`ach:`, `rate-limit:`).
 */
export function advisoryLockKey(name: string): string {
  return createHash('sha256').update(name).digest().readBigInt64BE(0).toString();
}

/** PostgreSQL error codes we react to by name. */
export const PgError = {
  uniqueViolation: '23505',
  checkViolation: '23514',
  foreignKeyViolation: '23503',
  serializationFailure: '40001',
  lockNotAvailable: '55P03',
} as const;

export function pgErrorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error
    ? String((error as { code: unknown }).code)
    : undefined;
}
