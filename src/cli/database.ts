/** The database itself: migrations, the embedded server's lifecycle, and the audit chain's integrity. */

import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { type ChainHead, verifyAuditLog } from '../audit/verify.js';
import { databaseUrl } from '../db/connect.js';
import { embeddedStatus, stopEmbeddedServer } from '../db/embedded.js';
import { migrate } from '../db/migrate.js';
import { isUuid } from '../db/pool.js';
import { RefusedError, UsageError } from '../errors.js';
import type { CliContext } from './context.js';

type Run = (fn: (ctx: CliContext) => Promise<void>) => Promise<void>;

export function registerDatabaseCommands(program: Command, run: Run): void {
  program
    .command('migrate')
    .description('apply pending migrations (idempotent)')
    .action(() =>
      run(async (ctx) => {
        const result = await migrate(await databaseUrl(ctx.config));
        ctx.print(
          { applied: result.applied, already_applied: result.alreadyApplied.length },
          result.applied.length
            ? `applied ${result.applied.join(', ')}`
            : `up to date (${result.alreadyApplied.length} migrations)`,
        );
      }),
    );

  const db = program
    .command('db')
    .description('the embedded PostgreSQL server (when DATABASE_URL is not set)');
  db.command('status').action(() =>
    run(async (ctx) => {
      if (ctx.config.databaseUrl) {
        ctx.print({ embedded: false }, 'DATABASE_URL is set: paygate uses that server, not an embedded one');
        return;
      }
      const s = await embeddedStatus(ctx.config.dataDir);
      ctx.print(
        {
          embedded: true,
          running: s.running,
          answering: s.answering,
          initialised: s.initialised,
          data_dir: s.dataDir,
          port: s.port ?? null,
        },
        s.running && s.answering
          ? `running on 127.0.0.1:${s.port} (data in ${s.dataDir})`
          : s.running
            ? `running on 127.0.0.1:${s.port} but not accepting our connection (every connection slot taken, or server.json does not match it); \`paygate db stop\` stops it (data in ${s.dataDir})`
            : s.initialised
              ? `stopped (data in ${s.dataDir})`
              : `not created yet (${s.dataDir})`,
      );
    }),
  );
  db.command('stop').action(() =>
    run(async (ctx) => {
      if (ctx.config.databaseUrl)
        throw new RefusedError('not_embedded', 'DATABASE_URL is set: paygate does not manage that server');
      const stopped = await stopEmbeddedServer(ctx.config.dataDir);
      ctx.print({ stopped }, stopped ? 'stopped' : 'was not running');
    }),
  );

  program
    .command('audit')
    .description('the hash-chained audit log')
    .command('verify')
    .description(
      "recompute every chain; exit 1 naming the first broken entry. Keep the --json output (its heads) outside the database and pass it to a later run as --since, which also catches entries removed from a chain's end",
    )
    .option('--tenant <slug>')
    .option(
      '--since <file>',
      'the --json output of an earlier run: each chain head recorded in it must still be there',
    )
    .action((o: { tenant?: string; since?: string }) =>
      run(async (ctx) => {
        const tenantId = o.tenant ? (await ctx.tenant(o.tenant)).id : undefined;
        const anchors = o.since ? await readHeads(o.since) : undefined;
        if (anchors && tenantId && !anchors.some((a) => a.tenantId === tenantId))
          throw new UsageError(
            `--since ${o.since} recorded no head for tenant ${o.tenant}: nothing to check it against`,
          );
        const result = await verifyAuditLog(await ctx.db(), { tenantId, anchors });
        const out = {
          ok: result.ok,
          tenants_checked: result.tenantsChecked,
          entries_checked: result.entriesChecked,
          first_broken: result.firstBroken
            ? {
                tenant_id: result.firstBroken.tenantId,
                seq: result.firstBroken.seq,
                reason: result.firstBroken.reason,
              }
            : null,
          heads: result.heads.map((h) => ({ tenant_id: h.tenantId, seq: h.seq, hash: h.hash })),
          recorded_heads_checked: anchors
            ? anchors.filter((a) => !tenantId || a.tenantId === tenantId).length
            : 0,
        };
        if (!result.ok) {
          const b = result.firstBroken!;
          if (ctx.json) ctx.print(out, '');
          throw new RefusedError(
            'audit_chain_broken',
            `audit chain broken at tenant ${b.tenantId} entry ${b.seq}: ${b.reason}`,
          );
        }
        ctx.print(
          out,
          `audit log intact: ${result.entriesChecked} entries in ${result.tenantsChecked} chains${anchors ? `; ${out.recorded_heads_checked} recorded heads still in place` : ''}`,
        );
      }),
    );
}

/** The heads of an earlier `audit verify --json` run. */
async function readHeads(file: string): Promise<ChainHead[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new UsageError(
      `--since ${file}: ${(error as Error).message}; give the --json output of an earlier audit verify`,
    );
  }
  const heads = (parsed as { heads?: unknown }).heads;
  const valid =
    Array.isArray(heads) &&
    heads.every(
      (h) =>
        typeof h?.tenant_id === 'string' &&
        isUuid(h.tenant_id) &&
        Number.isSafeInteger(h?.seq) &&
        typeof h?.hash === 'string' &&
        /^[0-9a-f]{64}$/.test(h.hash),
    );
  if (!valid)
    throw new UsageError(`--since ${file} has no heads: give the --json output of an earlier audit verify`);
  if ((parsed as { ok?: unknown }).ok === false)
    throw new UsageError(
      `--since ${file} is the output of a run that found a broken chain: give one of an intact run`,
    );
  return (heads as { tenant_id: string; seq: number; hash: string }[]).map((h) => ({
    tenantId: h.tenant_id,
    seq: h.seq,
    hash: h.hash,
  }));
}
