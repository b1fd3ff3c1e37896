/**
 * `paygate ach import-returns FILE`: apply the bank's return file to the tenant's payments.
 *
 * The file is read and validated first (a file we cannot trust changes nothing). Each return (addenda
 * 99) finds its payment by the original trace number, which the export made the payment's provider
 * reference, and then:
 *  - processing (in a file, inside the settlement window): the payment fails with the R-code mapped to
 *    our taxonomy, and the seed's rule runs (handleFailure: R01 reschedules and alerts, R02-R04 ask for
 *    new bank details, anything else is a manual review);
 *  - succeeded (a late return, after we called it paid): the state machine never moves a payment back,
 *    and the money has already come back to the originator's account, so the return is recorded and a
 *    critical `ach_return_after_settlement` alert asks a human to reconcile and, if need be, pay again;
 *  - failed already: recorded, nothing else.
 * Each notification of change (addenda 98) becomes a pending correction of the vendor's bank details
 * (src/ach/corrections.ts); nothing changes until an admin approves it.
 *
 * The whole file is applied in one transaction, and every return (matched in ach_returns, unmatched in
 * ach_unmatched_returns) and correction is recorded once, so importing the same file twice changes
 * nothing the second time: no second alert either. Importing needs an admin: a forged
 * return would fail (and reschedule) a payment that in truth reached the vendor.
 */
import { createHash } from 'node:crypto';
import { appendAudit } from '../audit/log.js';
import type { Queryable } from '../db/pool.js';
import { confirmStillAllowed, requireAdmin, type User } from '../directory/users.js';
import { RefusedError } from '../errors.js';
import type { NachaIssue } from '../gateways/nacha/reader.js';
import { type AchReturn, extractReturns, type NocCorrection } from '../gateways/nacha/returns.js';
import { readAndValidate } from '../gateways/nacha/validator.js';
import { formatAmount } from '../money.js';
import { createAlert } from '../payments/alerts.js';
import type { FailureNotice } from '../payments/context.js';
import { applyPaymentOutcome, getPayment } from '../payments/payments.js';
import { handleFailure } from '../payments/phases.js';
import { proposeCorrection } from './corrections.js';
import type { AchDeps } from './deps.js';
import { achLockKey } from './deps.js';

/** The file does not validate: nothing was applied. `issues` print as FILE:LINE: reason. */
export class AchFileInvalidError extends RefusedError {
  constructor(
    readonly fileName: string,
    readonly issues: NachaIssue[],
  ) {
    super(
      'ach_file_invalid',
      `${fileName} is not a valid NACHA file (${issues.length} issue${issues.length === 1 ? '' : 's'}); nothing was applied`,
      'ask the bank for the file again; paygate ach validate FILE shows every issue',
    );
  }
}

export type ReturnOutcome =
  | 'failed'
  | 'after_settlement'
  | 'already_failed'
  | 'duplicate'
  | 'unmatched'
  | 'not_a_payment_return';

export interface ImportedReturn {
  line: number;
  return_code: string;
  original_trace_number: string;
  payment_id: string | null;
  invoice_number: string | null;
  outcome: ReturnOutcome;
  failure_code: string;
  action: string;
}

export type CorrectionOutcome = 'proposed' | 'duplicate' | 'unmatched';

export interface ImportedCorrection {
  line: number;
  change_code: string;
  field: string;
  original_trace_number: string;
  payment_id: string | null;
  correction_id: string | null;
  outcome: CorrectionOutcome;
}

export interface ImportResult {
  file: string;
  content_sha256: string;
  returns: ImportedReturn[];
  corrections: ImportedCorrection[];
}

async function paymentByTrace(client: Queryable, trace: string): Promise<string | null> {
  const { rows } = await client.query<{ id: string }>(
    `SELECT id FROM payments WHERE provider = 'nacha' AND provider_reference = $1 AND ach_file_id IS NOT NULL FOR UPDATE`,
    [trace],
  );
  return rows[0]?.id ?? null;
}

async function applyReturn(
  client: Queryable,
  tenantId: string,
  actor: User,
  r: AchReturn,
  source: { file: string; sha256: Buffer },
  notices: FailureNotice[],
): Promise<ImportedReturn> {
  const base = {
    line: r.line,
    return_code: r.returnCode,
    original_trace_number: r.originalTraceNumber,
    failure_code: r.failure.code,
    action: r.action,
  };
  if (r.kind !== 'return') {
    // Dishonored and contested returns answer a return the originator sent; paygate sends none.
    await appendAudit(client, {
      tenantId,
      actorType: 'provider',
      actorId: 'nacha',
      action: 'ach.return_ignored',
      details: { ...base, kind: r.kind, file: source.file },
    });
    return { ...base, payment_id: null, invoice_number: null, outcome: 'not_a_payment_return' };
  }
  const paymentId = await paymentByTrace(client, r.originalTraceNumber);
  if (!paymentId) {
    // Recorded once, as a matched return is in ach_returns: the same return imported again (a retry
    // after a timeout, a second operator) is a duplicate and raises no second alert (migration 023).
    const recorded = await client.query(
      `INSERT INTO ach_unmatched_returns (tenant_id, return_code, original_trace_number, return_trace_number,
                                         amount_minor, source_file, source_sha256, imported_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (tenant_id, original_trace_number, return_code, return_trace_number) DO NOTHING`,
      [
        tenantId,
        r.returnCode,
        r.originalTraceNumber,
        r.traceNumber,
        r.amountMinor,
        source.file,
        source.sha256,
        actor.email,
      ],
    );
    const unmatched = { ...base, payment_id: null, invoice_number: null };
    if (recorded.rowCount === 0) return { ...unmatched, outcome: 'duplicate' };
    const message = `ACH return ${r.returnCode} in ${source.file} (line ${r.line}) names trace ${r.originalTraceNumber}, which matches no payment of this tenant`;
    await appendAudit(client, {
      tenantId,
      actorType: 'provider',
      actorId: 'nacha',
      action: 'ach.return_unmatched',
      details: { ...base, amount_minor: r.amountMinor, file: source.file },
    });
    await createAlert(client, {
      tenantId,
      kind: 'ach_return_unmatched',
      code: r.failure.code,
      message,
      nextStep: 'check with the bank which originator the entry belongs to; nothing was changed',
      severity: 'warning',
    });
    return { ...unmatched, outcome: 'unmatched' };
  }
  const payment = (await getPayment(client, paymentId))!;
  const outcome: 'failed' | 'after_settlement' | 'already_failed' =
    payment.status === 'processing'
      ? 'failed'
      : payment.status === 'succeeded'
        ? 'after_settlement'
        : 'already_failed';
  const inserted = await client.query(
    `INSERT INTO ach_returns (tenant_id, payment_id, return_code, original_trace_number, return_trace_number, amount_minor,
                              outcome, source_file, source_sha256, imported_by)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (payment_id, return_code, return_trace_number) DO NOTHING`,
    [
      tenantId,
      paymentId,
      r.returnCode,
      r.originalTraceNumber,
      r.traceNumber,
      r.amountMinor,
      outcome,
      source.file,
      source.sha256,
      actor.email,
    ],
  );
  const view = { ...base, payment_id: paymentId, invoice_number: payment.invoiceNumber };
  if (inserted.rowCount === 0) return { ...view, outcome: 'duplicate' };
  await appendAudit(client, {
    tenantId,
    actorType: 'provider',
    actorId: 'nacha',
    action: 'ach.return_received',
    subjectId: paymentId,
    details: {
      return_code: r.returnCode,
      original_trace_number: r.originalTraceNumber,
      return_trace_number: r.traceNumber,
      amount_minor: r.amountMinor,
      outcome,
      file: source.file,
      imported_by: actor.email,
    },
  });
  const amountNote =
    r.amountMinor !== payment.amountMinor
      ? ` (the return is for ${formatAmount(r.amountMinor, 'USD')}, the payment was ${formatAmount(payment.amountMinor, payment.currency)})`
      : '';
  switch (outcome) {
    case 'failed': {
      const applied = await applyPaymentOutcome(
        client,
        paymentId,
        { status: 'failed', failure: r.failure },
        {
          actorType: 'provider',
          actorId: 'nacha',
          note: `ACH return ${r.returnCode} in ${source.file}${amountNote}`,
        },
      );
      if (applied.changed) notices.push(await handleFailure(client, applied.payment, r.failure));
      break;
    }
    case 'after_settlement': {
      const message =
        `ACH return ${r.returnCode} for invoice ${payment.invoiceNumber} (${formatAmount(payment.amountMinor, payment.currency)} ${payment.currency} to ${payment.vendorName}) ` +
        `arrived after paygate marked it paid: the bank has reversed the credit${amountNote}. ${r.failure.message}`;
      const alertId = await createAlert(client, {
        tenantId,
        kind: 'ach_return_after_settlement',
        code: r.failure.code,
        message,
        nextStep:
          'confirm the funds came back with the bank; the payment stays paid in paygate (payments never move back), so void and re-issue the invoice to pay again after a new approval',
        severity: 'critical',
        paymentId,
      });
      notices.push({ tenantId, alertId, code: r.failure.code, message, paymentId });
      break;
    }
    case 'already_failed':
      break;
    default: {
      const unreachable: never = outcome;
      throw new Error(`unknown return outcome ${String(unreachable)}`);
    }
  }
  return { ...view, outcome };
}

async function applyCorrection(
  deps: AchDeps,
  client: Queryable,
  tenantId: string,
  c: NocCorrection,
  source: { file: string },
  notices: FailureNotice[],
): Promise<ImportedCorrection> {
  const base = {
    line: c.line,
    change_code: c.changeCode,
    field: c.field,
    original_trace_number: c.originalTrace,
  };
  const paymentId = await paymentByTrace(client, c.originalTrace);
  if (!paymentId) {
    await appendAudit(client, {
      tenantId,
      actorType: 'provider',
      actorId: 'nacha',
      action: 'ach.correction_unmatched',
      details: { ...base, file: source.file },
    });
    return { ...base, payment_id: null, correction_id: null, outcome: 'unmatched' };
  }
  const proposed = await proposeCorrection(deps, client, tenantId, paymentId, c, source.file);
  if (!proposed) return { ...base, payment_id: paymentId, correction_id: null, outcome: 'duplicate' };
  if (proposed.notice) notices.push(proposed.notice);
  return { ...base, payment_id: paymentId, correction_id: proposed.correctionId, outcome: 'proposed' };
}

/** Read, validate and apply a return/NOC file for one tenant. Admin only. */
export async function importAchReturns(
  deps: AchDeps,
  tenantId: string,
  actor: User,
  input: { bytes: Uint8Array | string; fileName: string },
): Promise<ImportResult> {
  requireAdmin(actor, tenantId);
  const { file, issues } = readAndValidate(input.bytes, input.fileName);
  if (issues.length > 0) throw new AchFileInvalidError(input.fileName, issues);
  const sha256 = createHash('sha256')
    .update(typeof input.bytes === 'string' ? Buffer.from(input.bytes, 'latin1') : input.bytes)
    .digest();
  const { returns, corrections } = extractReturns(file);
  const notices: FailureNotice[] = [];
  const result = await deps.db.withTenant(tenantId, async (client) => {
    // One import at a time per tenant, so a file imported twice at once is still applied once.
    await client.query('SELECT pg_advisory_xact_lock($1)', [achLockKey(`returns:${tenantId}`)]);
    await confirmStillAllowed(client, actor, ['admin']);
    const source = { file: input.fileName, sha256 };
    const appliedReturns: ImportedReturn[] = [];
    for (const r of returns)
      appliedReturns.push(await applyReturn(client, tenantId, actor, r, source, notices));
    const appliedCorrections: ImportedCorrection[] = [];
    for (const c of corrections)
      appliedCorrections.push(await applyCorrection(deps, client, tenantId, c, source, notices));
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: actor.email,
      action: 'ach.returns_imported',
      details: {
        file: input.fileName,
        content_sha256: sha256.toString('hex'),
        returns: appliedReturns.map((r) => ({
          code: r.return_code,
          payment_id: r.payment_id,
          outcome: r.outcome,
        })),
        corrections: appliedCorrections.map((c) => ({
          code: c.change_code,
          payment_id: c.payment_id,
          outcome: c.outcome,
        })),
      },
    });
    return {
      file: input.fileName,
      content_sha256: sha256.toString('hex'),
      returns: appliedReturns,
      corrections: appliedCorrections,
    };
  });
  for (const notice of notices) deps.onAlert?.(notice);
  return result;
}
