/**
 * Many rows at once for the benches that need thousands of payments in a given state (webhook
 * ingestion, the worker): invoices with their consumed approvals, then either payments `processing`
 * at the provider or schedules due today. Written with set-based SQL as the database owner, because
 * minting 10,000 approvals through the engine would take longer than the bench itself; the rows satisfy
 * every constraint the engine's own rows do (they carry no audit entries of their creation).
 */
import type { Db } from '../../src/db/pool.js';
import { INVOICE_AMOUNT_MINOR } from './seed.js';

export interface BulkContext {
  tenantId: string;
  agentKeyId: string;
}

async function scope(db: Db, tenantId: string) {
  const { rows } = await db.withSystem((client) =>
    client.query<{ counterparty_id: string; payment_method_id: string }>(
      `SELECT (SELECT id FROM counterparties WHERE tenant_id = $1 LIMIT 1) AS counterparty_id,
              (SELECT id FROM payment_methods WHERE tenant_id = $1 AND rail = 'stripe' LIMIT 1) AS payment_method_id`,
      [tenantId],
    ),
  );
  return rows[0]!;
}

const INVOICES_AND_APPROVALS = `
  inv AS (
    INSERT INTO invoices (tenant_id, number, counterparty_id, amount_minor, currency, status)
    SELECT $1, $3 || '-' || g, $4, $6, 'USD', $7 FROM generate_series(1, $8) g
    RETURNING id),
  ap AS (
    INSERT INTO approvals (tenant_id, action, params, params_digest, agent_key_id, summary, amount_minor,
                           currency, status, token_hash, expires_at, decided_at, consumed_at)
    SELECT $1, $9, jsonb_build_object('invoice_id', inv.id, 'amount_minor', $6, 'currency', 'USD', 'method', 'stripe'),
           sha256(convert_to(inv.id::text, 'UTF8')), $2, 'bench', $6, 'USD', 'consumed',
           sha256(convert_to('token:' || inv.id::text, 'UTF8')), now() + interval '1 day', now(), now()
    FROM inv
    RETURNING id, (params->>'invoice_id')::uuid AS invoice_id)`;

/** `count` stripe payments, `processing` with provider reference `pi_<prefix>_<n>`; returns their ids in order. */
export async function bulkProcessingPayments(
  db: Db,
  ctx: BulkContext,
  prefix: string,
  count: number,
): Promise<{ id: string; providerReference: string }[]> {
  const s = await scope(db, ctx.tenantId);
  const { rows } = await db.withSystem((client) =>
    client.query<{ id: string; provider_reference: string }>(
      `WITH ${INVOICES_AND_APPROVALS}
       INSERT INTO payments (tenant_id, invoice_id, agent_key_id, approval_id, amount_minor, currency, rail,
                             provider, payment_method_id, status, recovery_point, provider_reference,
                             confirmation_number, approved_by, next_check_at)
       SELECT $1, ap.invoice_id, $2, ap.id, $6, 'USD', 'stripe', 'stripe', $5, 'processing', 'provider_called',
              'pi_' || $3 || '_' || row_number() OVER (), 'PG-' || upper(substr(md5(ap.id::text), 1, 10)),
              ARRAY['admin@example.com'], now() + interval '1 day'
       FROM ap
       RETURNING id, provider_reference`,
      [
        ctx.tenantId,
        ctx.agentKeyId,
        prefix,
        s.counterparty_id,
        s.payment_method_id,
        INVOICE_AMOUNT_MINOR,
        'processing',
        count,
        'pay_invoice',
      ],
    ),
  );
  return rows.map((r) => ({ id: r.id, providerReference: r.provider_reference }));
}

/** `count` schedules due yesterday (so due in any time zone), invoices `scheduled`. */
export async function bulkDueSchedules(
  db: Db,
  ctx: BulkContext,
  prefix: string,
  count: number,
): Promise<void> {
  const s = await scope(db, ctx.tenantId);
  await db.withSystem((client) =>
    client.query(
      `WITH ${INVOICES_AND_APPROVALS}
       INSERT INTO scheduled_payments (tenant_id, invoice_id, agent_key_id, approval_id, amount_minor, currency,
                                       rail, payment_method_id, scheduled_date, approved_by)
       SELECT $1, ap.invoice_id, $2, ap.id, $6, 'USD', 'stripe', $5, current_date - 1, ARRAY['admin@example.com']
       FROM ap`,
      [
        ctx.tenantId,
        ctx.agentKeyId,
        prefix,
        s.counterparty_id,
        s.payment_method_id,
        INVOICE_AMOUNT_MINOR,
        'scheduled',
        count,
        'schedule_payment',
      ],
    ),
  );
}
