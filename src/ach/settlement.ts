/**
 * Settlement by silence: the bank never says "paid" for an ACH credit, it only returns the ones that
 * failed. A payment whose file's return window has ended (the file's effective date plus the tenant's
 * `settlementDays` banking days, over by the end of that day in the tenant's time zone) with no return
 * becomes succeeded, and its invoice paid. A return that arrives later is handled as a return after
 * settlement (src/ach/import-returns.ts).
 *
 * For the worker: `settleAchPayments(db, now)` goes across tenants (it finds due payments as the
 * system, then settles each tenant's in that tenant's own transaction). It is safe to run from several
 * processes at once: each payment row is locked and moved only from processing.
 *
 * Only a file that was written to disk settles. An export records its file and commits before writing
 * it; a process that stops in between leaves payments in a file no bank ever saw, and silence about a
 * file the bank never had is not settlement. Such a file waits for `paygate ach files write ID` (which
 * also moves its return window if it is written late), and once it is overdue the same pass raises one
 * critical alert for it, so the payments do not wait unseen.
 */
import type { Db, Queryable } from '../db/pool.js';
import { formatMoney } from '../money.js';
import { createAlert } from '../payments/alerts.js';
import type { FailureNotice } from '../payments/context.js';
import { applyPaymentOutcome } from '../payments/payments.js';

/**
 * How long after its export a recorded file may stay unwritten before a human is alerted. An export
 * writes its file seconds after the commit; anything past this is a crash or a failed write, not a file
 * still on its way, and a same-day rewrite still reaches the ODFI's window.
 */
export const UNWRITTEN_FILE_ALERT_AFTER_MS = 30 * 60_000;

export interface UnwrittenFileAlert {
  tenant_id: string;
  ach_file_id: string;
  alert_id: string;
}

export interface SettledPayment {
  tenant_id: string;
  payment_id: string;
  ach_file_id: string;
  trace_number: string | null;
}

export async function settleAchPayments(
  db: Db,
  now: Date = new Date(),
  options: { tenantId?: string; onAlert?: (notice: FailureNotice) => void } = {},
): Promise<{ settled: SettledPayment[]; unwritten: UnwrittenFileAlert[] }> {
  const due = await db.withSystem(async (client) => {
    const { rows } = await client.query<{
      id: string;
      tenant_id: string;
      ach_file_id: string;
      provider_reference: string | null;
    }>(
      `SELECT p.id, p.tenant_id, p.ach_file_id, p.provider_reference
       FROM payments p JOIN ach_files f ON f.id = p.ach_file_id JOIN tenants t ON t.id = p.tenant_id
       WHERE p.provider = 'nacha' AND p.status = 'processing'
         AND ($2::uuid IS NULL OR p.tenant_id = $2)
         AND f.written_at IS NOT NULL
         AND ($1::timestamptz AT TIME ZONE t.timezone)::date > f.return_window_ends
       ORDER BY p.tenant_id, f.created_at, p.id`,
      [now, options.tenantId ?? null],
    );
    return rows;
  });
  const byTenant = new Map<string, typeof due>();
  for (const row of due) byTenant.set(row.tenant_id, [...(byTenant.get(row.tenant_id) ?? []), row]);
  const settled: SettledPayment[] = [];
  for (const [tenantId, rows] of byTenant) {
    await db.withTenant(tenantId, async (client) => {
      for (const row of rows) {
        const applied = await applyPaymentOutcome(
          client,
          row.id,
          { status: 'succeeded' },
          {
            actorType: 'system',
            actorId: 'ach-settlement',
            note: `no ACH return by the end of the return window of file ${row.ach_file_id}`,
          },
        );
        if (applied.changed)
          settled.push({
            tenant_id: tenantId,
            payment_id: row.id,
            ach_file_id: row.ach_file_id,
            trace_number: row.provider_reference,
          });
      }
    });
  }
  const unwritten = await alertUnwrittenFiles(db, now, options);
  return { settled, unwritten };
}

/** One critical alert per recorded file still not written well after its export (see the header). */
async function alertUnwrittenFiles(
  db: Db,
  now: Date,
  options: { tenantId?: string; onAlert?: (notice: FailureNotice) => void },
): Promise<UnwrittenFileAlert[]> {
  const overdue = await db.withSystem(async (client) => {
    const { rows } = await client.query<{ id: string; tenant_id: string }>(
      `SELECT id, tenant_id FROM ach_files
       WHERE written_at IS NULL AND unwritten_alert_id IS NULL
         AND created_at <= $1::timestamptz - make_interval(secs => $2)
         AND ($3::uuid IS NULL OR tenant_id = $3)
       ORDER BY created_at, id`,
      [now, UNWRITTEN_FILE_ALERT_AFTER_MS / 1000, options.tenantId ?? null],
    );
    return rows;
  });
  const alerted: UnwrittenFileAlert[] = [];
  for (const file of overdue) {
    const notice = await db.withTenant(file.tenant_id, (client) =>
      alertUnwrittenFile(client, file.tenant_id, file.id),
    );
    if (!notice) continue;
    alerted.push({ tenant_id: file.tenant_id, ach_file_id: file.id, alert_id: notice.alertId });
    options.onAlert?.(notice);
  }
  return alerted;
}

async function alertUnwrittenFile(
  client: Queryable,
  tenantId: string,
  fileId: string,
): Promise<FailureNotice | null> {
  // Locked and re-checked: another worker may have alerted, or an admin written the file, meanwhile.
  const { rows } = await client.query<{ entry_count: number; total_credit_minor: number; created_at: Date }>(
    `SELECT entry_count, total_credit_minor, created_at FROM ach_files
     WHERE id = $1 AND written_at IS NULL AND unwritten_alert_id IS NULL FOR UPDATE`,
    [fileId],
  );
  const file = rows[0];
  if (!file) return null;
  const code = 'ach_file_unwritten';
  const message = `ACH file ${fileId} (${file.entry_count} payments, ${formatMoney(file.total_credit_minor, 'USD')}), recorded at ${file.created_at.toISOString()}, was never written to disk, so the bank has not received it; its payments stay processing until it is`;
  const alertId = await createAlert(client, {
    tenantId,
    kind: code,
    code,
    message,
    nextStep: `an admin writes it and hands it to the bank: paygate ach files write ${fileId} --tenant SLUG [--out DIR] (the same bytes, which already hold these payments: nothing to export again)`,
    severity: 'critical',
  });
  await client.query('UPDATE ach_files SET unwritten_alert_id = $2 WHERE id = $1', [fileId, alertId]);
  return { tenantId, alertId, code, message };
}
