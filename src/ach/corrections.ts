/**
 * Notifications of change (NOC, addenda 98): the receiving bank posted our entry but tells us to fix
 * the vendor's bank details for next time. A NOC is only a proposal: a corrected account number is the
 * kind of change a fraudster wants, so an admin approves it (`paygate ach corrections approve ID`)
 * before the vendor's details change. NACHA expects corrections applied within six banking days or
 * before the next entry; the pending alert is the reminder.
 *
 * What paygate applies itself: routing number, account number, account type (C01, C02, C03, C05, C06,
 * C07). Other changes (receiver name, identification number, addenda format, SEC code) are shown as
 * the bank wrote them; approving one records the human's acknowledgement and changes nothing.
 */
import { createHash } from 'node:crypto';
import { appendAudit } from '../audit/log.js';
import type { Queryable } from '../db/pool.js';
import { validRoutingNumber } from '../directory/counterparties.js';
import { confirmStillAllowed, requireAdmin, type User } from '../directory/users.js';
import { RefusedError } from '../errors.js';
import type { NocCorrection } from '../gateways/nacha/returns.js';
import { createAlert } from '../payments/alerts.js';
import type { FailureNotice } from '../payments/context.js';
import type { AchDeps } from './deps.js';

export type CorrectionStatus = 'pending' | 'approved' | 'rejected';

export interface CorrectionView {
  correction_id: string;
  payment_id: string;
  vendor_id: string;
  vendor: string;
  change_code: string;
  field: string;
  corrected_routing_number: string | null;
  corrected_account_last4: string | null;
  corrected_account_type: string | null;
  corrected_other: Record<string, string>;
  /** The vendor's details now, to compare (account as last4 only). */
  current_routing_number: string | null;
  current_account_last4: string | null;
  current_account_type: string;
  original_trace_number: string;
  status: CorrectionStatus;
  decided_by: string | null;
  decided_at: string | null;
  created_at: string;
}

interface CorrectionRow {
  id: string;
  payment_id: string;
  counterparty_id: string;
  vendor_name: string;
  change_code: string;
  field: string;
  corrected_routing_number: string | null;
  corrected_account_ciphertext: Buffer | null;
  corrected_account_last4: string | null;
  corrected_account_type: string | null;
  corrected_other: Record<string, string>;
  ach_routing_number: string | null;
  ach_account_last4: string | null;
  ach_account_type: string;
  original_trace_number: string;
  status: CorrectionStatus;
  decided_by: string | null;
  decided_at: Date | null;
  created_at: Date;
}

const SELECT_CORRECTION = `SELECT k.id, k.payment_id, k.counterparty_id, c.name AS vendor_name, k.change_code, k.field,
  k.corrected_routing_number, k.corrected_account_ciphertext, k.corrected_account_last4, k.corrected_account_type,
  k.corrected_other, c.ach_routing_number, c.ach_account_last4, c.ach_account_type, k.original_trace_number, k.status,
  k.decided_by, k.decided_at, k.created_at
  FROM ach_corrections k JOIN counterparties c ON c.id = k.counterparty_id`;

function toView(r: CorrectionRow): CorrectionView {
  return {
    correction_id: r.id,
    payment_id: r.payment_id,
    vendor_id: r.counterparty_id,
    vendor: r.vendor_name,
    change_code: r.change_code,
    field: r.field,
    corrected_routing_number: r.corrected_routing_number,
    corrected_account_last4: r.corrected_account_last4,
    corrected_account_type: r.corrected_account_type,
    corrected_other: r.corrected_other,
    current_routing_number: r.ach_routing_number,
    current_account_last4: r.ach_account_last4,
    current_account_type: r.ach_account_type,
    original_trace_number: r.original_trace_number,
    status: r.status,
    decided_by: r.decided_by,
    decided_at: r.decided_at?.toISOString() ?? null,
    created_at: r.created_at.toISOString(),
  };
}

/**
 * Record a NOC as a pending correction of the vendor paid by `paymentId`, with an alert for an admin.
 * Returns null when the same correction was already recorded (the same file imported again).
 */
export async function proposeCorrection(
  deps: Pick<AchDeps, 'sealer'>,
  client: Queryable,
  tenantId: string,
  paymentId: string,
  noc: NocCorrection,
  sourceFile: string,
): Promise<{ correctionId: string; notice: FailureNotice | null } | null> {
  const { rows: vendorRows } = await client.query<{
    counterparty_id: string;
    invoice_number: string;
    name: string;
  }>(
    `SELECT i.counterparty_id, i.number AS invoice_number, c.name FROM payments p JOIN invoices i ON i.id = p.invoice_id
     JOIN counterparties c ON c.id = i.counterparty_id WHERE p.id = $1`,
    [paymentId],
  );
  const vendor = vendorRows[0]!;
  const v = noc.corrected;
  const other: Record<string, string> = {};
  if (v.name !== undefined) other.name = v.name;
  if (v.identificationNumber !== undefined) other.identification_number = v.identificationNumber;
  if (v.transactionCode !== undefined) other.transaction_code = v.transactionCode;
  if (
    noc.field === 'receiving_dfi_identification' ||
    noc.field === 'addenda_format' ||
    noc.field === 'sec_code' ||
    noc.field === 'unsupported'
  )
    other.corrected_data = noc.correctedValue;
  // Keyed (see Sealer.digest): the corrected value may be an account number. The same NOC imported
  // again gives the same digest, which the unique key (payment, change code, digest) turns into a
  // duplicate. A correction recorded before digests were keyed holds the plain SHA-256: it is rekeyed
  // here when its NOC is imported again, so that import is still a duplicate; until then it keeps the
  // older digest (no correction was recorded before this change outside test databases).
  const subject = `${noc.changeCode}\n${noc.correctedValue}`;
  const digest = deps.sealer.digest(subject);
  await client.query(
    `UPDATE ach_corrections SET corrected_digest = $4
     WHERE payment_id = $1 AND change_code = $2 AND corrected_digest = $3`,
    [paymentId, noc.changeCode, createHash('sha256').update(subject).digest(), digest],
  );
  const { rows } = await client.query<{ id: string }>(
    `INSERT INTO ach_corrections (tenant_id, payment_id, counterparty_id, change_code, field, corrected_routing_number,
                                  corrected_account_ciphertext, corrected_account_last4, corrected_account_type,
                                  corrected_other, corrected_digest, original_trace_number, source_file)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT (payment_id, change_code, corrected_digest) DO NOTHING RETURNING id`,
    [
      tenantId,
      paymentId,
      vendor.counterparty_id,
      noc.changeCode,
      noc.field,
      v.routingNumber && /^[0-9]{9}$/.test(v.routingNumber) ? v.routingNumber : null,
      v.accountNumber ? deps.sealer.seal(v.accountNumber) : null,
      v.accountNumber ? v.accountNumber.slice(-4) : null,
      v.accountType ?? null,
      JSON.stringify(other),
      digest,
      noc.originalTrace,
      sourceFile,
    ],
  );
  const correctionId = rows[0]?.id;
  if (!correctionId) return null;
  const changes = [
    v.routingNumber ? `routing ${v.routingNumber}` : null,
    v.accountNumber ? `account ····${v.accountNumber.slice(-4)}` : null,
    v.accountType ? `${v.accountType} account` : null,
    ...Object.entries(other).map(([k, value]) => `${k} ${value}`),
  ].filter((x): x is string => x !== null);
  await appendAudit(client, {
    tenantId,
    actorType: 'provider',
    actorId: 'nacha',
    action: 'ach.correction_proposed',
    subjectId: correctionId,
    details: {
      payment_id: paymentId,
      vendor_id: vendor.counterparty_id,
      change_code: noc.changeCode,
      field: noc.field,
      corrected_routing_number: v.routingNumber ?? null,
      corrected_account_last4: v.accountNumber?.slice(-4) ?? null,
      corrected_account_type: v.accountType ?? null,
      file: sourceFile,
    },
  });
  const message = `The bank sent a notification of change (${noc.changeCode}) for ${vendor.name} (invoice ${vendor.invoice_number}): ${changes.join(', ') || noc.field}`;
  const alertId = await createAlert(client, {
    tenantId,
    kind: 'ach_notification_of_change',
    code: noc.changeCode,
    message,
    nextStep: `an admin reviews it: paygate ach corrections approve ${correctionId} (or reject) before the vendor's next ACH payment`,
    severity: 'warning',
    paymentId,
  });
  return { correctionId, notice: { tenantId, alertId, code: noc.changeCode, message, paymentId } };
}

export async function listCorrections(
  client: Queryable,
  filter: { status?: CorrectionStatus } = {},
): Promise<CorrectionView[]> {
  const { rows } = await client.query<CorrectionRow>(
    `${SELECT_CORRECTION} WHERE ($1::text IS NULL OR k.status = $1) ORDER BY k.created_at, k.id`,
    [filter.status ?? null],
  );
  return rows.map(toView);
}

async function lockPending(client: Queryable, correctionId: string): Promise<CorrectionRow> {
  if (!/^[0-9a-f-]{36}$/i.test(correctionId))
    throw new RefusedError('correction_not_found', `no correction ${correctionId}`);
  const { rows } = await client.query<CorrectionRow>(
    `${SELECT_CORRECTION} WHERE k.id = $1 FOR UPDATE OF k, c`,
    [correctionId],
  );
  const row = rows[0];
  if (!row) throw new RefusedError('correction_not_found', `no correction ${correctionId} in this tenant`);
  if (row.status !== 'pending')
    throw new RefusedError(
      'correction_already_decided',
      `correction ${correctionId} was already ${row.status}`,
    );
  return row;
}

/**
 * An admin approves a pending correction: the vendor's routing number, account number (sealed) and
 * account type change as the bank said, in the same transaction that records the decision.
 */
export async function approveCorrection(
  deps: AchDeps,
  tenantId: string,
  admin: User,
  correctionId: string,
): Promise<CorrectionView> {
  requireAdmin(admin, tenantId);
  return deps.db.withTenant(tenantId, async (client) => {
    await confirmStillAllowed(client, admin, ['admin']);
    const row = await lockPending(client, correctionId);
    if (row.corrected_routing_number && !validRoutingNumber(row.corrected_routing_number)) {
      throw new RefusedError(
        'correction_invalid',
        `the corrected routing number ${row.corrected_routing_number} fails its check digit`,
        'reject it and ask the vendor for their bank details',
      );
    }
    const applied: string[] = [];
    if (row.corrected_routing_number) {
      await client.query('UPDATE counterparties SET ach_routing_number = $2 WHERE id = $1', [
        row.counterparty_id,
        row.corrected_routing_number,
      ]);
      applied.push('routing_number');
    }
    if (row.corrected_account_ciphertext) {
      // Sealed as it came (same key): the plain number never leaves the database's ciphertext.
      await client.query(
        'UPDATE counterparties SET ach_account_ciphertext = $2, ach_account_last4 = $3 WHERE id = $1',
        [row.counterparty_id, row.corrected_account_ciphertext, row.corrected_account_last4],
      );
      applied.push('account_number');
    }
    if (row.corrected_account_type) {
      await client.query('UPDATE counterparties SET ach_account_type = $2 WHERE id = $1', [
        row.counterparty_id,
        row.corrected_account_type,
      ]);
      applied.push('account_type');
    }
    const note = applied.length
      ? `applied: ${applied.join(', ')}`
      : 'acknowledged; nothing paygate applies itself';
    await client.query(
      `UPDATE ach_corrections SET status = 'approved', decided_by = $2, decided_at = now(), decision_note = $3 WHERE id = $1`,
      [correctionId, admin.email, note],
    );
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: admin.email,
      action: 'ach.correction_approved',
      subjectId: correctionId,
      details: {
        vendor_id: row.counterparty_id,
        change_code: row.change_code,
        applied,
        previous_routing_number: row.ach_routing_number,
        previous_account_last4: row.ach_account_last4,
        routing_number: row.corrected_routing_number,
        account_last4: row.corrected_account_last4,
        account_type: row.corrected_account_type,
      },
    });
    const { rows } = await client.query<CorrectionRow>(`${SELECT_CORRECTION} WHERE k.id = $1`, [
      correctionId,
    ]);
    return toView(rows[0]!);
  });
}

export async function rejectCorrection(
  deps: AchDeps,
  tenantId: string,
  admin: User,
  correctionId: string,
  reason?: string,
): Promise<CorrectionView> {
  requireAdmin(admin, tenantId);
  return deps.db.withTenant(tenantId, async (client) => {
    await confirmStillAllowed(client, admin, ['admin']);
    const row = await lockPending(client, correctionId);
    await client.query(
      `UPDATE ach_corrections SET status = 'rejected', decided_by = $2, decided_at = now(), decision_note = $3 WHERE id = $1`,
      [correctionId, admin.email, reason ?? null],
    );
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: admin.email,
      action: 'ach.correction_rejected',
      subjectId: correctionId,
      details: { vendor_id: row.counterparty_id, change_code: row.change_code, reason: reason ?? null },
    });
    const { rows } = await client.query<CorrectionRow>(`${SELECT_CORRECTION} WHERE k.id = $1`, [
      correctionId,
    ]);
    return toView(rows[0]!);
  });
}
