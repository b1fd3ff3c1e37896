/**
 * Agent-supplied idempotency keys on money-moving calls. Same key and same parameters replay the first
 * answer; same key with other parameters is refused; a key whose first call has not answered is never run
 * twice (the caller answers with what that call did so far, or "in progress"). Only final answers are
 * stored: an `approval_required` answer releases the key, so the retry that carries the token can use it.
 */
import type { Db, Queryable } from '../db/pool.js';
import { RefusedError, UsageError } from '../errors.js';

/** A first call this old that has not answered stopped (its process died), rather than still running. */
const INTERRUPTED_AFTER_MS = 10 * 60 * 1000;

/** Whether a first call that started at `since` and has not answered has stopped, not still running. */
export function interrupted(since: Date, now = new Date()): boolean {
  return now.getTime() - since.getTime() >= INTERRUPTED_AFTER_MS;
}

/** The answer for a key whose first call has not answered and left nothing to report. */
export function inProgressError(key: string, since: Date, now = new Date()): RefusedError {
  if (!interrupted(since, now)) {
    return new RefusedError(
      'request_in_progress',
      `the request with idempotency_key "${key}" is still in progress`,
      'wait a moment and call again with the same key',
      true,
    );
  }
  return new RefusedError(
    'request_interrupted',
    `the request with idempotency_key "${key}" started at ${since.toISOString()} and never answered (paygate restarted during it)`,
    'call get_payment_status for the invoice or payment to see what it did; call again with a new idempotency_key only if nothing was done',
  );
}

export type IdempotencyClaim =
  | { kind: 'claimed' }
  | { kind: 'replay'; response: unknown }
  /**
   * The first call with this key has not answered: still running, or its process died mid-call.
   * `paymentId`, `refundId` or `scheduledPaymentId`: what it made, once its phase 1 committed
   * (linkIdempotencyKey).
   */
  | {
      kind: 'in_progress';
      since: Date;
      paymentId: string | null;
      refundId: string | null;
      scheduledPaymentId: string | null;
    };

const KEY = /^[A-Za-z0-9._:-]{1,255}$/;

export async function claimIdempotencyKey(
  db: Db,
  scope: { tenantId: string; agentKeyId: string; key: string; action: string; requestDigest: Buffer },
): Promise<IdempotencyClaim> {
  if (!KEY.test(scope.key)) throw new UsageError('idempotency_key must be 1-255 letters, digits, or . _ : -');
  return db.withTenant(scope.tenantId, async (client) => {
    const inserted = await client.query(
      `INSERT INTO idempotency_keys (tenant_id, agent_key_id, key, action, request_digest) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (tenant_id, agent_key_id, key) DO NOTHING`,
      [scope.tenantId, scope.agentKeyId, scope.key, scope.action, scope.requestDigest],
    );
    if (inserted.rowCount === 1) return { kind: 'claimed' };
    const { rows } = await client.query<{
      action: string;
      request_digest: Buffer;
      status: string;
      response: unknown;
      created_at: Date;
      payment_id: string | null;
      refund_id: string | null;
      scheduled_payment_id: string | null;
    }>(
      'SELECT action, request_digest, status, response, created_at, payment_id, refund_id, scheduled_payment_id FROM idempotency_keys WHERE tenant_id = $1 AND agent_key_id = $2 AND key = $3',
      [scope.tenantId, scope.agentKeyId, scope.key],
    );
    const row = rows[0];
    if (!row) return { kind: 'claimed' };
    if (row.action !== scope.action || !row.request_digest.equals(scope.requestDigest)) {
      throw new RefusedError(
        'idempotency_key_reused',
        `idempotency_key "${scope.key}" was already used for a different request`,
        'use a new idempotency_key for a different request',
      );
    }
    if (row.status !== 'completed')
      return {
        kind: 'in_progress',
        since: row.created_at,
        paymentId: row.payment_id,
        refundId: row.refund_id,
        scheduledPaymentId: row.scheduled_payment_id,
      };
    return { kind: 'replay', response: row.response };
  });
}

/**
 * In the call's phase 1 transaction: the payment (pay_invoice), refund (refund_payment) or schedule
 * (schedule_payment) this key's call made (see the claim's paymentId, refundId and scheduledPaymentId).
 * From then on the key is never released.
 */
export async function linkIdempotencyKey(
  client: Queryable,
  scope: { tenantId: string; agentKeyId: string; key: string },
  made: { paymentId: string } | { refundId: string } | { scheduledPaymentId: string },
): Promise<void> {
  await client.query(
    'UPDATE idempotency_keys SET payment_id = $4, refund_id = $5, scheduled_payment_id = $6 WHERE tenant_id = $1 AND agent_key_id = $2 AND key = $3',
    [
      scope.tenantId,
      scope.agentKeyId,
      scope.key,
      'paymentId' in made ? made.paymentId : null,
      'refundId' in made ? made.refundId : null,
      'scheduledPaymentId' in made ? made.scheduledPaymentId : null,
    ],
  );
}

export async function completeIdempotencyKey(
  db: Db,
  scope: { tenantId: string; agentKeyId: string; key: string },
  response: unknown,
): Promise<void> {
  await db.withTenant(scope.tenantId, (client) =>
    client.query(
      `UPDATE idempotency_keys SET status = 'completed', response = $4, completed_at = now()
       WHERE tenant_id = $1 AND agent_key_id = $2 AND key = $3`,
      [scope.tenantId, scope.agentKeyId, scope.key, JSON.stringify(response)],
    ),
  );
}

/**
 * Let the key be claimed afresh: after an approval request, or a call that failed before it made
 * anything. A key linked to a payment, a refund or a schedule is kept (its call failed after phase 1:
 * that row exists and its approval is consumed, and a retry must answer with it, not start another call).
 */
export async function releaseIdempotencyKey(
  db: Db,
  scope: { tenantId: string; agentKeyId: string; key: string },
): Promise<void> {
  await db.withTenant(scope.tenantId, (client) =>
    client.query(
      "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND agent_key_id = $2 AND key = $3 AND status = 'in_progress' AND payment_id IS NULL AND refund_id IS NULL AND scheduled_payment_id IS NULL",
      [scope.tenantId, scope.agentKeyId, scope.key],
    ),
  );
}

/** Keys older than the retention are forgotten (worker job). */
export const IDEMPOTENCY_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;

export async function pruneIdempotencyKeys(db: Db, now = new Date()): Promise<number> {
  const { rowCount } = await db.withSystem((client) =>
    client.query('DELETE FROM idempotency_keys WHERE created_at < $1', [
      new Date(now.getTime() - IDEMPOTENCY_RETENTION_MS),
    ]),
  );
  return rowCount ?? 0;
}
