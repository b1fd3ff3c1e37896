/**
 * Agent-supplied idempotency keys on money-moving calls. Same key and same parameters replay the first
 * answer; same key with other parameters is refused; a key whose first call is still running answers
 * "in progress" instead of running twice. Only final answers are stored: an `approval_required` answer
 * releases the key, so the retry that carries the token can use it.
 */
import type { Db } from '../db/pool.js';
import { RefusedError, UsageError } from '../errors.js';

export type IdempotencyClaim = { kind: 'claimed' } | { kind: 'replay'; response: unknown };

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
    }>(
      'SELECT action, request_digest, status, response FROM idempotency_keys WHERE tenant_id = $1 AND agent_key_id = $2 AND key = $3',
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
    if (row.status !== 'completed') {
      throw new RefusedError(
        'request_in_progress',
        `the request with idempotency_key "${scope.key}" is still in progress`,
        'wait a moment and call again with the same key',
        true,
      );
    }
    return { kind: 'replay', response: row.response };
  });
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

export async function releaseIdempotencyKey(
  db: Db,
  scope: { tenantId: string; agentKeyId: string; key: string },
): Promise<void> {
  await db.withTenant(scope.tenantId, (client) =>
    client.query(
      "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND agent_key_id = $2 AND key = $3 AND status = 'in_progress'",
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
