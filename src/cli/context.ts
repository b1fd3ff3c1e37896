/** What every CLI command needs: configuration, the database (opened on first use), output, the human. */
import { createInterface } from 'node:readline';
import type { PoolClient } from 'pg';
import { type Config, loadConfig } from '../config.js';
import { openDatabase } from '../db/connect.js';
import { type Db, isUuid } from '../db/pool.js';
import { findTenantBySlug, getTenant, type Tenant } from '../directory/tenants.js';
import { authenticateUser, findUserByToken, type User } from '../directory/users.js';
import { RefusedError, UsageError } from '../errors.js';
import { type Money, MoneyError, parseMoney } from '../money.js';

export interface GlobalOptions {
  databaseUrl?: string;
  dataDir?: string;
  json?: boolean;
}

export class CliContext {
  private dbPromise?: Promise<Db>;
  readonly config: Config;

  constructor(readonly options: GlobalOptions) {
    this.config = loadConfig(process.env, { dataDir: options.dataDir, databaseUrl: options.databaseUrl });
  }

  get json(): boolean {
    return Boolean(this.options.json);
  }

  db(): Promise<Db> {
    this.dbPromise ??= openDatabase(this.config, { max: 4, applicationName: 'paygate-cli' });
    return this.dbPromise;
  }

  async close(): Promise<void> {
    if (this.dbPromise) await (await this.dbPromise).close();
  }

  /** Print `value` as JSON with --json, otherwise the human text. */
  print(value: unknown, human: string | (() => string)): void {
    process.stdout.write(
      `${this.json ? JSON.stringify(value, null, 2) : typeof human === 'function' ? human() : human}\n`,
    );
  }

  async tenant(slug: string): Promise<Tenant> {
    return findTenantBySlug(await this.db(), slug);
  }

  /**
   * Read something of one tenant as one of its humans: any user's personal access token of that tenant
   * will do for listings; the query runs inside the tenant's row-level security.
   */
  async readTenant<T>(slug: string, fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const t = await this.tenant(slug);
    await this.human(t);
    return (await this.db()).withTenant(t.id, fn);
  }

  /**
   * `--tenant SLUG` when given, else the tenant of the human whose personal access token this is (a
   * token belongs to one tenant's human, so it says where to look; nothing is guessed); and that human,
   * proven by the token to be one of the tenant's.
   */
  async tenantAndHuman(slug: string | undefined): Promise<{ tenant: Tenant; user: User }> {
    if (slug !== undefined) {
      const tenant = await this.tenant(slug);
      return { tenant, user: (await this.human(tenant))! };
    }
    const user = await this.tokenHolder('this command needs your personal access token');
    return { tenant: await getTenant(await this.db(), user.tenantId), user };
  }

  /**
   * The human whose personal access token this is, in whichever tenant (the token says which);
   * `needed` is the refusal's message when there is no token.
   */
  async tokenHolder(needed: string): Promise<User> {
    const token = await this.userToken();
    if (!token)
      throw new RefusedError(
        'user_token_required',
        needed,
        'set PAYGATE_USER_TOKEN or run it on a terminal to be prompted',
      );
    const user = await findUserByToken(await this.db(), token);
    if (!user)
      throw new RefusedError(
        'invalid_user_token',
        'that personal access token is not valid',
        'use your own token',
      );
    return user;
  }

  private tokenPromise?: Promise<string | undefined>;

  /** The human's personal access token: PAYGATE_USER_TOKEN, else asked once per command on a terminal. */
  userToken(): Promise<string | undefined> {
    this.tokenPromise ??= Promise.resolve(
      process.env.PAYGATE_USER_TOKEN?.trim() || promptSecret('personal access token: '),
    );
    return this.tokenPromise;
  }

  /**
   * The human running the command, proven by their personal access token (PAYGATE_USER_TOKEN, or a
   * prompt on a terminal). Never by an email address alone: an agent with a shell knows emails.
   */
  async human(tenant: Tenant, options: { optional?: boolean } = {}): Promise<User | null> {
    const token = await this.userToken();
    if (!token) {
      if (options.optional) return null;
      throw new RefusedError(
        'user_token_required',
        'this command needs your personal access token',
        'set PAYGATE_USER_TOKEN or run it on a terminal to be prompted',
      );
    }
    return authenticateUser(await this.db(), tenant.id, token);
  }
}

/** Read a secret from the terminal without echoing it; undefined when there is no terminal. */
async function promptSecret(question: string): Promise<string | undefined> {
  if (!process.stdin.isTTY || !process.stderr.isTTY) return undefined;
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  const output = rl as unknown as { _writeToOutput?: (s: string) => void };
  process.stderr.write(question);
  output._writeToOutput = () => {};
  try {
    return await new Promise<string>((resolve) => rl.question('', (answer) => resolve(answer.trim())));
  } finally {
    rl.close();
    process.stderr.write('\n');
  }
}

export function money(amount: string, currency: string | undefined, what: string): Money {
  if (!currency) throw new UsageError(`${what} needs --currency (e.g. --currency USD)`);
  try {
    return parseMoney(amount, currency);
  } catch (error) {
    if (error instanceof MoneyError) throw new UsageError(`${what}: ${error.message}`);
    throw error;
  }
}

/**
 * `--currency` names the currency of an amount flag; alone it changes nothing, and silently ignoring it
 * would, for `user add`, create an approver with no approval limit at all.
 */
export function currencyNeedsAmount(
  currency: string | undefined,
  amountFlags: Record<string, unknown>,
): void {
  if (currency === undefined || Object.values(amountFlags).some((v) => v !== undefined)) return;
  const names = Object.keys(amountFlags);
  throw new UsageError(
    `--currency ${currency} is the currency of ${names.join(' or ')}, which is missing: give ${names.length > 1 ? 'one of them' : 'it'} too, or leave --currency out`,
  );
}

/** A malformed id is bad usage (exit 2) before anyone is asked for a token, never a database error. */
export function checkId(value: string, what: string, hint: string): void {
  if (!isUuid(value)) throw new UsageError(`"${value}" is not ${what} (a UUID): ${hint}`);
}

export function table(rows: Record<string, unknown>[], columns: string[]): string {
  if (rows.length === 0) return '(none)';
  const cell = (v: unknown) =>
    v === null || v === undefined ? '' : v instanceof Date ? v.toISOString() : String(v);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(columns), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n');
}
