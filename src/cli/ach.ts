/**
 * `paygate ach ...`: NACHA files. `validate` needs no database; the rest act on one tenant with an
 * admin's personal access token (listing corrections and files: any user of the tenant), except
 * `settle`, which only moves payments whose return window has passed (what the worker does).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { AchFileInvalidError } from '../ach/import-returns.js';
import {
  type AchDeps,
  achSettingsJson,
  approveCorrection,
  exportAchFile,
  importAchReturns,
  listAchFiles,
  listCorrections,
  parseStoredAchSettings,
  readStoredAchSettings,
  rejectCorrection,
  setAchSettings,
  settleAchPayments,
  writeAchFile,
} from '../ach/index.js';
import { createSealer, resolveSecret } from '../directory/encryption.js';
import { UsageError } from '../errors.js';
import { validateFiles } from '../gateways/nacha/validate-files.js';
import { formatIssue } from '../gateways/nacha/validator.js';
import { type CliContext, checkId, table } from './context.js';

type Run = (fn: (ctx: CliContext) => Promise<void>) => Promise<void>;

async function achDeps(ctx: CliContext): Promise<AchDeps> {
  return { db: await ctx.db(), sealer: createSealer(await resolveSecret(ctx.config)) };
}

function settlementDays(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 10) throw new UsageError(`--settlement-days "${value}" must be 0 to 10`);
  return n;
}

function accountType(value: string | undefined): 'checking' | 'savings' | undefined {
  if (value === undefined || value === 'checking' || value === 'savings') return value;
  throw new UsageError(`--offset-account-type "${value}" must be checking or savings`);
}

export function registerAchCommands(program: Command, run: Run): void {
  const ach = program.command('ach').description('bank ACH through NACHA files');

  ach
    .command('validate <files...>')
    .description('read and validate NACHA files; FILE:LINE: reason on stderr for each issue (no database)')
    .action((files: string[]) =>
      run(async (ctx) => {
        const results = await validateFiles(files);
        for (const r of results) {
          for (const issue of r.errors) process.stderr.write(`${formatIssue(r.file, issue)}\n`);
        }
        ctx.print(
          results.map((r) => ({
            file: r.file,
            valid: r.ok,
            errors: r.errors.map((e) => ({ line: e.line, reason: e.reason })),
          })),
          () =>
            results
              .map((r) => `${r.file}: ${r.ok ? 'valid' : `invalid (${r.errors.length} issues)`}`)
              .join('\n'),
        );
        if (results.some((r) => !r.ok)) process.exitCode = 1;
      }),
    );

  ach
    .command('settings')
    .description("show or change the tenant's ODFI settings (changing needs an admin's token)")
    .requiredOption('--tenant <slug>')
    .option('--immediate-destination <routing>', "the receiving bank's routing number")
    .option('--immediate-destination-name <name>')
    .option('--immediate-origin <id>', 'routing number or 10-digit id the bank knows you by')
    .option('--immediate-origin-name <name>')
    .option('--odfi-routing <routing>', 'routing number of your bank (starts every trace number)')
    .option('--company-name <name>', 'as shown on vendors’ statements (16 characters)')
    .option('--company-id <id>', 'company identification assigned by the bank (10 characters)')
    .option('--entry-description <text>', 'e.g. VENDOR PAY (10 characters)')
    .option('--balanced', 'the bank wants each batch balanced by an offset entry')
    .option('--unbalanced', 'the bank settles the net itself')
    .option('--offset-account <number>', 'your account at the bank, for balanced files (stored encrypted)')
    .option('--offset-account-type <type>', 'checking|savings')
    .option('--offset-account-name <name>')
    .option('--reference-code <code>')
    .option('--cutoff <HH:MM>', "the bank's cutoff in the tenant's time zone")
    .option('--settlement-days <n>', 'banking days after the effective date to wait for returns')
    .action(
      (o: {
        tenant: string;
        immediateDestination?: string;
        immediateDestinationName?: string;
        immediateOrigin?: string;
        immediateOriginName?: string;
        odfiRouting?: string;
        companyName?: string;
        companyId?: string;
        entryDescription?: string;
        balanced?: boolean;
        unbalanced?: boolean;
        offsetAccount?: string;
        offsetAccountType?: string;
        offsetAccountName?: string;
        referenceCode?: string;
        cutoff?: string;
        settlementDays?: string;
      }) =>
        run(async (ctx) => {
          if (o.balanced && o.unbalanced)
            throw new UsageError('--balanced and --unbalanced exclude each other');
          const t = await ctx.tenant(o.tenant);
          const user = (await ctx.human(t))!;
          const deps = await achDeps(ctx);
          const { tenant: _tenant, balanced, unbalanced, ...fields } = o;
          const changing = Object.values(fields).some((v) => v !== undefined) || balanced || unbalanced;
          if (!changing) {
            const { raw } = await deps.db.withTenant(t.id, (c) => readStoredAchSettings(c, t.id));
            const view = achSettingsJson(parseStoredAchSettings(raw));
            ctx.print(view, () =>
              Object.entries(view)
                .map(([k, v]) => `${k}: ${v ?? ''}`)
                .join('\n'),
            );
            return;
          }
          const stored = await setAchSettings(deps.db, t.id, user, deps.sealer, {
            immediateDestination: o.immediateDestination,
            immediateDestinationName: o.immediateDestinationName,
            immediateOrigin: o.immediateOrigin,
            immediateOriginName: o.immediateOriginName,
            odfiRouting: o.odfiRouting,
            companyName: o.companyName,
            companyId: o.companyId,
            entryDescription: o.entryDescription,
            balanced: balanced ? true : unbalanced ? false : undefined,
            offsetAccountNumber: o.offsetAccount,
            offsetAccountType: accountType(o.offsetAccountType),
            offsetAccountName: o.offsetAccountName,
            referenceCode: o.referenceCode,
            cutoff: o.cutoff,
            settlementDays: o.settlementDays === undefined ? undefined : settlementDays(o.settlementDays),
          });
          const view = achSettingsJson(stored);
          ctx.print(
            view,
            `ACH settings of ${t.slug} saved (company ${view.company_name}, ODFI ${view.odfi_routing})`,
          );
        }),
    );

  ach
    .command('export')
    .description("write every waiting NACHA payment into one new file (needs an admin's token)")
    .requiredOption('--tenant <slug>')
    .option('--out <dir>', 'folder to write the file to (default: <data-dir>/ach)')
    .action((o: { tenant: string; out?: string }) =>
      run(async (ctx) => {
        const t = await ctx.tenant(o.tenant);
        const user = (await ctx.human(t))!;
        const deps = await achDeps(ctx);
        const outDir = path.resolve(o.out ?? path.join(ctx.config.dataDir, 'ach'));
        const result = await exportAchFile(deps, t.id, user, { outDir });
        for (const x of result.excluded)
          process.stderr.write(
            `paygate: payment ${x.payment_id} (invoice ${x.invoice_number}) failed: ${x.reason}\n`,
          );
        const f = result.file;
        ctx.print(
          {
            path: result.path,
            ach_file_id: f?.ach_file_id ?? null,
            entry_count: f?.entry_count ?? 0,
            batch_count: f?.batch_count ?? 0,
            total_credit: f?.total_credit ?? '0.00',
            total_credit_minor: f?.total_credit_minor ?? 0,
            total_debit: f?.total_debit ?? '0.00',
            total_debit_minor: f?.total_debit_minor ?? 0,
            currency: 'USD',
            effective_date: f?.effective_date ?? null,
            return_window_ends: f?.return_window_ends ?? null,
            content_sha256: f?.content_sha256 ?? null,
            excluded: result.excluded,
            // Payments past the file's 12-digit control totals: the next export takes them.
            left_for_next_file: result.deferred,
          },
          f
            ? `${result.path}\n${f.entry_count} entries, credits ${f.total_credit} USD, debits ${f.total_debit} USD, effective ${f.effective_date}${result.deferred ? `\n${result.deferred} more payments did not fit this file's totals: run ach export again for the next file` : ''}`
            : 'nothing to export: no NACHA payment is waiting for a file',
        );
      }),
    );

  ach
    .command('import-returns <file>')
    .description("apply a bank return/NOC file to the tenant's payments (needs an admin's token)")
    .option('--tenant <slug>', "the tenant whose ODFI sent the file (default: your token's tenant)")
    .action((file: string, o: { tenant?: string }) =>
      run(async (ctx) => {
        // DESIGN.md: `ach import-returns FILE`. The admin's token names the tenant; nothing is guessed.
        const { tenant: t, user } = await ctx.tenantAndHuman(o.tenant);
        let bytes: Buffer;
        try {
          bytes = await fs.readFile(file);
        } catch (error) {
          throw new UsageError(`cannot read ${file}: ${(error as Error).message}`);
        }
        try {
          const result = await importAchReturns(await achDeps(ctx), t.id, user, { bytes, fileName: file });
          ctx.print(
            result,
            () =>
              [
                ...result.returns.map(
                  (r) =>
                    `return ${r.return_code} trace ${r.original_trace_number}: ${r.outcome}${r.invoice_number ? ` (invoice ${r.invoice_number})` : ''}`,
                ),
                ...result.corrections.map(
                  (c) =>
                    `notification of change ${c.change_code} trace ${c.original_trace_number}: ${c.outcome}${c.correction_id ? ` (approve with: paygate ach corrections approve ${c.correction_id} --tenant ${t.slug})` : ''}`,
                ),
              ].join('\n') || 'no returns or notifications of change in the file',
          );
        } catch (error) {
          if (error instanceof AchFileInvalidError)
            for (const issue of error.issues) process.stderr.write(`${formatIssue(file, issue)}\n`);
          throw error;
        }
      }),
    );

  ach
    .command('settle')
    .description('mark paid every NACHA payment whose return window has passed without a return')
    .option('--tenant <slug>', 'only this tenant')
    .action((o: { tenant?: string }) =>
      run(async (ctx) => {
        const tenantId = o.tenant ? (await ctx.tenant(o.tenant)).id : undefined;
        const { settled } = await settleAchPayments(await ctx.db(), new Date(), { tenantId });
        ctx.print(settled, `${settled.length} ACH payment${settled.length === 1 ? '' : 's'} settled`);
      }),
    );

  const files = ach.command('files').description('the NACHA files this tenant sent');
  files
    .command('list')
    .requiredOption('--tenant <slug>')
    .action((o: { tenant: string }) =>
      run(async (ctx) => {
        const rows = await ctx.readTenant(o.tenant, (c) => listAchFiles(c));
        ctx.print(rows, () =>
          table(rows as unknown as Record<string, unknown>[], [
            'ach_file_id',
            'created_at',
            'entry_count',
            'total_credit',
            'effective_date',
            'written_path',
          ]),
        );
      }),
    );
  files
    .command('write <id>')
    .description("write a recorded file again, byte for byte (after a crash or a lost copy; admin's token)")
    .requiredOption('--tenant <slug>')
    .option('--out <dir>', 'folder (default: <data-dir>/ach)')
    .action((id: string, o: { tenant: string; out?: string }) =>
      run(async (ctx) => {
        checkId(id, 'an ACH file id', 'use an ach_file_id from `paygate ach files list`');
        const t = await ctx.tenant(o.tenant);
        const user = (await ctx.human(t))!;
        const outDir = path.resolve(o.out ?? path.join(ctx.config.dataDir, 'ach'));
        const written = await writeAchFile(await achDeps(ctx), t.id, user, id, outDir);
        ctx.print({ path: written.path, ...written.file }, written.path);
      }),
    );

  const corrections = ach
    .command('corrections')
    .description('notifications of change: proposed bank detail corrections an admin approves');
  corrections
    .command('list')
    .requiredOption('--tenant <slug>')
    .option('--status <status>', 'pending|approved|rejected')
    .action((o: { tenant: string; status?: string }) =>
      run(async (ctx) => {
        if (o.status && !['pending', 'approved', 'rejected'].includes(o.status))
          throw new UsageError(`--status "${o.status}" must be pending, approved or rejected`);
        const rows = await ctx.readTenant(o.tenant, (c) =>
          listCorrections(c, { status: o.status as 'pending' | undefined }),
        );
        ctx.print(rows, () =>
          table(rows as unknown as Record<string, unknown>[], [
            'correction_id',
            'vendor',
            'change_code',
            'corrected_routing_number',
            'corrected_account_last4',
            'corrected_account_type',
            'status',
          ]),
        );
      }),
    );
  corrections
    .command('approve <id>')
    .description("apply a correction to the vendor's bank details (needs an admin's token)")
    .requiredOption('--tenant <slug>')
    .action((id: string, o: { tenant: string }) =>
      run(async (ctx) => {
        checkId(id, 'a correction id', 'use a correction_id from `paygate ach corrections list`');
        const t = await ctx.tenant(o.tenant);
        const user = (await ctx.human(t))!;
        const view = await approveCorrection(await achDeps(ctx), t.id, user, id);
        ctx.print(view, `approved ${view.change_code} for ${view.vendor}`);
      }),
    );
  corrections
    .command('reject <id>')
    .requiredOption('--tenant <slug>')
    .option('--reason <text>')
    .action((id: string, o: { tenant: string; reason?: string }) =>
      run(async (ctx) => {
        checkId(id, 'a correction id', 'use a correction_id from `paygate ach corrections list`');
        const t = await ctx.tenant(o.tenant);
        const user = (await ctx.human(t))!;
        const view = await rejectCorrection(await achDeps(ctx), t.id, user, id, o.reason);
        ctx.print(view, `rejected ${view.change_code} for ${view.vendor}`);
      }),
    );
}
