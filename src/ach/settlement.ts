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
 */
import type { Db } from '../db/pool.js';
import { applyPaymentOutcome } from '../payments/payments.js';

export interface SettledPayment {
  tenant_id: string;
  payment_id: string;
  ach_file_id: string;
  trace_number: string | null;
}

export async function settleAchPayments(
  db: Db,
  now: Date = new Date(),
  options: { tenantId?: string } = {},
): Promise<{ settled: SettledPayment[] }> {
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
  return { settled };
}
