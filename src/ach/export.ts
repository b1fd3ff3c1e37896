/**
 * `paygate ach export`: every NACHA payment that is waiting for a file goes into exactly one file.
 *
 * One transaction claims the payments (row locks, after a per-tenant advisory lock that serializes
 * exports), writes the file with the file layer, re-validates it, records the file (sealed text, hash,
 * counts, totals) and each payment's file and trace number (the trace becomes the payment's provider
 * reference: it is how a return finds its payment). Only after that commit is the file written to disk,
 * atomically (temp file, fsync, rename). Exporting twice never puts a payment in two files: the second
 * export waits for the first and then finds nothing unclaimed. A crash between the commit and the write
 * loses nothing: `writeAchFile` writes the same bytes again from the stored text.
 */
import { createHash } from 'node:crypto';
import { appendAudit } from '../audit/log.js';
import type { Queryable } from '../db/pool.js';
import { confirmStillAllowed, requireAdmin, type User } from '../directory/users.js';
import { RefusedError } from '../errors.js';
import { readAndValidate } from '../gateways/nacha/validator.js';
import {
  MAX_ENTRY_MINOR,
  MAX_TOTAL_MINOR,
  NachaWriteError,
  type WriteEntry,
  type WriteResult,
  writeNacha,
} from '../gateways/nacha/writer.js';
import type { GatewayFailure } from '../gateways/types.js';
import { formatAmount } from '../money.js';
import { createAlert } from '../payments/alerts.js';
import type { FailureNotice } from '../payments/context.js';
import { applyPaymentOutcome } from '../payments/payments.js';
import { handleFailure } from '../payments/phases.js';
import type { AchDeps } from './deps.js';
import { achLockKey } from './deps.js';
import { type AchFileView, getAchFile, writeAchFile } from './files.js';
import {
  fileDates,
  nachaSettingsFor,
  parseStoredAchSettings,
  readStoredAchSettings,
  settingsFlag,
} from './settings.js';

const MAX_TRACE_SEQUENCE = 9_999_999;
const FILE_ID_MODIFIERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

interface ClaimRow {
  id: string;
  amount_minor: number;
  currency: string;
  invoice_number: string;
  counterparty_id: string;
  vendor_name: string;
  ach_routing_number: string | null;
  ach_account_ciphertext: Buffer | null;
  ach_account_type: 'checking' | 'savings';
}

export interface ExcludedPayment {
  payment_id: string;
  invoice_number: string;
  reason: string;
}

export interface ExportResult {
  /** The file written, or null when no payment was waiting. */
  file: AchFileView | null;
  /** Where it was written; null when nothing was exported. */
  path: string | null;
  /** Payments that could never be written (no bank details, not USD): failed with an alert. */
  excluded: ExcludedPayment[];
  /** Payments left queued for the next file because this one's 12-digit control totals were full. */
  deferred: number;
}

/**
 * NACHA names are printable ASCII: "Café Müller" is written "Cafe Muller" (accents dropped, anything
 * else a space), as banks transliterate, rather than refusing the whole file.
 */
export function asciiName(name: string): string {
  const ascii = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^\x20-\x7e]/g, ' ')
    .trim();
  return ascii === '' ? 'PAYEE' : ascii;
}

async function failUnwritable(
  client: Queryable,
  paymentId: string,
  failure: GatewayFailure,
  actor: User,
): Promise<FailureNotice | null> {
  const applied = await applyPaymentOutcome(
    client,
    paymentId,
    { status: 'failed', failure },
    {
      actorType: 'user',
      actorId: actor.email,
      note: 'ACH export: the payment cannot be written to a NACHA file',
    },
  );
  return applied.changed ? handleFailure(client, applied.payment, failure) : null;
}

/**
 * The writer refused the file or a batch header, not one entry (a NachaWriteError without reference):
 * the tenant's settings, never a vendor's details, so no payment is failed for it. The export is refused
 * as a whole, nothing of it recorded, the payments stay queued, and a human is alerted.
 */
async function refuseExport(
  deps: AchDeps,
  tenantId: string,
  actor: User,
  error: NachaWriteError,
): Promise<never> {
  const flag = settingsFlag(error.field);
  const fix = flag
    ? `an admin corrects it (paygate ach settings --tenant SLUG ${flag} ...) and exports again`
    : 'an admin corrects the ACH settings (paygate ach settings --tenant SLUG ...) and exports again';
  const message = `ACH export refused: the file cannot be written (${error.field}: ${error.message}); no payment was exported or failed, they stay queued`;
  const alertId = await deps.db.withTenant(tenantId, async (client) => {
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: actor.email,
      action: 'ach_file.refused',
      details: { field: error.field, reason: error.message },
    });
    return createAlert(client, {
      tenantId,
      kind: 'ach_export_refused',
      code: 'ach_export_refused',
      message,
      nextStep: fix,
      severity: 'critical',
    });
  });
  deps.onAlert?.({ tenantId, alertId, code: 'ach_export_refused', message });
  throw new RefusedError('ach_export_refused', message, fix);
}

/** Marks a writer refusal of the whole file, to leave the export's transaction by rolling it back. */
class WholeFileRefusal extends Error {
  constructor(readonly refusal: NachaWriteError) {
    super(refusal.message);
  }
}

/** Claim, write and record the file in one transaction; returns the recorded file (not yet on disk). */
export async function recordAchExport(
  deps: AchDeps,
  tenantId: string,
  actor: User,
  now: Date,
): Promise<{ file: AchFileView | null; excluded: ExcludedPayment[]; deferred: number }> {
  requireAdmin(actor, tenantId);
  try {
    return await recordAchExportOnce(deps, tenantId, actor, now);
  } catch (error) {
    if (error instanceof WholeFileRefusal) return refuseExport(deps, tenantId, actor, error.refusal);
    throw error;
  }
}

async function recordAchExportOnce(
  deps: AchDeps,
  tenantId: string,
  actor: User,
  now: Date,
): Promise<{ file: AchFileView | null; excluded: ExcludedPayment[]; deferred: number }> {
  const notices: FailureNotice[] = [];
  const result = await deps.db.withTenant(tenantId, async (client) => {
    // Exports of one tenant run one at a time; the row locks below would be enough for correctness,
    // the lock makes a concurrent second export wait and then see an empty queue, not half of it.
    await client.query('SELECT pg_advisory_xact_lock($1)', [achLockKey(`export:${tenantId}`)]);
    await confirmStillAllowed(client, actor, ['admin']);
    const { raw, timezone } = await readStoredAchSettings(client, tenantId);
    const stored = parseStoredAchSettings(raw);
    const settings = nachaSettingsFor(stored, deps.sealer);
    // provider_called: phase 3 has recorded the gateway's `nacha:<id>` reference, so nothing will
    // overwrite the trace we assign. A payment still at `started` is queued by the reconciler first.
    const { rows } = await client.query<ClaimRow>(
      `SELECT p.id, p.amount_minor, p.currency, i.number AS invoice_number, c.id AS counterparty_id, c.name AS vendor_name,
              c.ach_routing_number, c.ach_account_ciphertext, c.ach_account_type
       FROM payments p JOIN invoices i ON i.id = p.invoice_id JOIN counterparties c ON c.id = i.counterparty_id
       WHERE p.provider = 'nacha' AND p.status = 'processing' AND p.ach_file_id IS NULL
         AND p.recovery_point = 'provider_called' AND p.created_at <= $1
       ORDER BY p.created_at, p.id
       FOR UPDATE OF p`,
      [now],
    );
    const excluded: ExcludedPayment[] = [];
    const dates = fileDates(stored, timezone, now);
    let entries: (WriteEntry & { invoiceNumber: string })[] = [];
    for (const r of rows) {
      let failure: GatewayFailure | null = null;
      if (r.currency.trim() !== 'USD') {
        failure = {
          code: 'configuration_error',
          message: `NACHA files carry US dollars only; this payment is in ${r.currency.trim()}`,
        };
      } else if (r.amount_minor > MAX_ENTRY_MINOR) {
        // Not the vendor's bank details: no ACH entry carries more than its 10-digit amount field.
        failure = {
          code: 'declined',
          message: `${formatAmount(r.amount_minor, 'USD')} USD is more than one ACH entry can carry (${formatAmount(MAX_ENTRY_MINOR, 'USD')}); pay it by wire or split the invoice, each part approved`,
        };
      } else if (!r.ach_routing_number || !r.ach_account_ciphertext) {
        failure = {
          code: 'payment_method_invalid',
          message: `vendor ${r.vendor_name} has no bank account on file for ACH`,
        };
      }
      if (failure) {
        excluded.push({ payment_id: r.id, invoice_number: r.invoice_number, reason: failure.message });
        const notice = await failUnwritable(client, r.id, failure, actor);
        if (notice) notices.push(notice);
        continue;
      }
      entries.push({
        reference: r.id,
        invoiceNumber: r.invoice_number,
        secCode: 'CCD',
        direction: 'credit',
        company: {
          name: stored.companyName,
          identification: stored.companyId,
          entryDescription: stored.entryDescription,
        },
        effectiveDate: dates.effectiveDate,
        routingNumber: r.ach_routing_number!,
        accountNumber: deps.sealer.open(r.ach_account_ciphertext!),
        accountType: r.ach_account_type,
        amountMinor: r.amount_minor,
        name: asciiName(r.vendor_name),
        identificationNumber: asciiName(r.invoice_number).slice(0, 15),
        addenda: asciiName(`INVOICE ${r.invoice_number}`),
      });
    }
    // The batch and file control totals are 12 digits of cents. Payments are taken in queue order while
    // the file's credits fit (a balanced file's offsets debit the same net, so one bound covers both);
    // the rest stay queued for the next file. One entry (at most 10 digits) always fits.
    let total = 0;
    let fitting = 0;
    for (const e of entries) {
      if (total + e.amountMinor > MAX_TOTAL_MINOR) break;
      total += e.amountMinor;
      fitting++;
    }
    const deferred = entries.length - fitting;
    entries = entries.slice(0, fitting);
    if (entries.length === 0) return { file: null, excluded, deferred };

    const odfiPrefix = settings.odfiRouting.slice(0, 8);
    await client.query(
      'INSERT INTO ach_trace_sequences (odfi_prefix, next_sequence) VALUES ($1, 1) ON CONFLICT DO NOTHING',
      [odfiPrefix],
    );
    const seq = await client.query<{ next_sequence: number }>(
      'SELECT next_sequence FROM ach_trace_sequences WHERE odfi_prefix = $1 FOR UPDATE',
      [odfiPrefix],
    );
    let traceStart = seq.rows[0]!.next_sequence;
    // Offsets take at most one trace per batch beyond the entries; wrap before the 7 digits run out
    // (ten million entries per ODFI: older traces are long past any return window by then).
    if (traceStart + entries.length * 2 + 1 > MAX_TRACE_SEQUENCE) traceStart = 1;

    const { rows: sameDay } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ach_files WHERE (created_at AT TIME ZONE 'UTC')::date = ($1::timestamptz AT TIME ZONE 'UTC')::date`,
      [now],
    );
    const modifier = FILE_ID_MODIFIERS[sameDay[0]!.n];
    if (!modifier) {
      throw new RefusedError(
        'ach_file_limit',
        'this tenant already sent 36 files today (file id modifiers A-Z, 0-9)',
        'export again tomorrow',
      );
    }

    let written: WriteResult | undefined;
    while (!written) {
      try {
        written = writeNacha(entries, settings, {
          createdAt: now,
          fileIdModifier: modifier,
          traceSequenceStart: traceStart,
        });
      } catch (error) {
        if (!(error instanceof NachaWriteError)) throw error;
        // Without a reference the file itself cannot be written: refused whole (refuseExport).
        if (!error.reference) throw new WholeFileRefusal(error);
        // One entry the writer cannot write faithfully fails that payment, not the whole file.
        if (!entries.some((e) => e.reference === error.reference)) throw error;
        const bad = entries.find((e) => e.reference === error.reference)!;
        const failure: GatewayFailure = { code: 'payment_method_invalid', message: error.message };
        excluded.push({
          payment_id: bad.reference,
          invoice_number: bad.invoiceNumber,
          reason: error.message,
        });
        const notice = await failUnwritable(client, bad.reference, failure, actor);
        if (notice) notices.push(notice);
        entries = entries.filter((e) => e !== bad);
        if (entries.length === 0) return { file: null, excluded, deferred };
      }
    }
    // Never hand the bank a file we would refuse ourselves.
    const check = readAndValidate(written.text, 'export');
    if (check.issues.length > 0) {
      throw new Error(
        `the written NACHA file does not validate: line ${check.issues[0]!.line}: ${check.issues[0]!.reason}`,
      );
    }
    await client.query('UPDATE ach_trace_sequences SET next_sequence = $2 WHERE odfi_prefix = $1', [
      odfiPrefix,
      written.nextTraceSequence > MAX_TRACE_SEQUENCE ? 1 : written.nextTraceSequence,
    ]);

    const sha256 = createHash('sha256').update(written.text, 'latin1').digest();
    const { rows: fileRows } = await client.query<{ id: string }>(
      `INSERT INTO ach_files (tenant_id, created_at, created_by, file_id_modifier, effective_date, return_window_ends,
                              content_ciphertext, content_sha256, entry_count, batch_count, total_credit_minor, total_debit_minor)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id`,
      [
        tenantId,
        now,
        actor.email,
        modifier,
        dates.effectiveDate,
        dates.returnWindowEnds,
        deps.sealer.seal(written.text),
        sha256,
        entries.length,
        written.batchCount,
        written.totalCreditMinor,
        written.totalDebitMinor,
      ],
    );
    const fileId = fileRows[0]!.id;
    const byId = new Map(entries.map((e) => [e.reference, e]));
    for (const t of written.traces) {
      // next_check_at NULL: the reconciler has nothing to ask a bank file about; settlement and
      // returns decide these payments from here on.
      const updated = await client.query(
        `UPDATE payments SET ach_file_id = $2, provider_reference = $3, next_check_at = NULL, updated_at = now()
         WHERE id = $1 AND ach_file_id IS NULL AND status = 'processing'`,
        [t.reference, fileId, t.traceNumber],
      );
      if (updated.rowCount !== 1)
        throw new Error(`payment ${t.reference} changed while it was being exported`);
      const e = byId.get(t.reference)!;
      await appendAudit(client, {
        tenantId,
        actorType: 'user',
        actorId: actor.email,
        action: 'payment.submitted',
        subjectId: t.reference,
        details: {
          provider: 'nacha',
          ach_file_id: fileId,
          trace_number: t.traceNumber,
          batch_number: t.batchNumber,
          invoice_number: e.invoiceNumber,
          amount_minor: e.amountMinor,
          effective_date: dates.effectiveDate,
        },
      });
    }
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: actor.email,
      action: 'ach_file.created',
      subjectId: fileId,
      details: {
        content_sha256: sha256.toString('hex'),
        entry_count: entries.length,
        batch_count: written.batchCount,
        total_credit_minor: written.totalCreditMinor,
        total_debit_minor: written.totalDebitMinor,
        effective_date: dates.effectiveDate,
        return_window_ends: dates.returnWindowEnds,
        file_id_modifier: modifier,
        excluded: excluded.map((x) => x.payment_id),
        left_for_next_file: deferred,
      },
    });
    return { file: (await getAchFile(client, fileId))!, excluded, deferred };
  });
  for (const notice of notices) deps.onAlert?.(notice);
  return result;
}

/**
 * Export the tenant's waiting NACHA payments into one new file under `outDir`. Admin only. Returns the
 * file (null when nothing was waiting), where it was written, and any payment that had to be failed.
 */
export async function exportAchFile(
  deps: AchDeps,
  tenantId: string,
  actor: User,
  options: { outDir: string; now?: Date },
): Promise<ExportResult> {
  const { file, excluded, deferred } = await recordAchExport(
    deps,
    tenantId,
    actor,
    options.now ?? new Date(),
  );
  if (!file) return { file: null, path: null, excluded, deferred };
  const written = await writeAchFile(deps, tenantId, actor, file.ach_file_id, options.outDir, options.now);
  return { file: written.file, path: written.path, excluded, deferred };
}
