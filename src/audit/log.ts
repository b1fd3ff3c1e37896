/**
 * The append-only, hash-chained audit log. Each tenant has its own chain: an entry's hash is
 * SHA-256(previous hash || canonical JSON of the entry), so changing, removing or reordering any entry
 * breaks every hash after it. Appends to one tenant's chain are serialized by a transaction-level
 * advisory lock, held only until the caller's transaction commits.
 */
import { createHash } from 'node:crypto';
import canonicalizeModule from 'canonicalize';
import type { Queryable } from '../db/pool.js';

// canonicalize ships CommonJS with a default-export typing that NodeNext resolution cannot call.
const canonicalize = canonicalizeModule as unknown as (value: unknown) => string | undefined;

/** The chain of events that belong to no tenant (e.g. a webhook for a payment we do not know). */
export const SYSTEM_TENANT_ID = '00000000-0000-0000-0000-000000000000';
export const GENESIS_HASH: Buffer = Buffer.alloc(32);

export type ActorType = 'agent' | 'user' | 'system' | 'provider' | 'cli';

export interface AuditEntry {
  tenantId: string;
  actorType: ActorType;
  /** agent key id, user email, provider name, or the system component. */
  actorId?: string | null;
  /** What happened, e.g. `approval.requested`, `payment.succeeded`, `approval_token.refused`. */
  action: string;
  /** The row this is about (approval, payment, refund, ...). */
  subjectId?: string | null;
  details?: Record<string, unknown>;
}

export interface StoredAuditEntry {
  tenant_id: string;
  seq: number;
  at: Date;
  content: string;
  prev_hash: Buffer;
  hash: Buffer;
}

export function canonicalContent(entry: {
  seq: number;
  at: string;
  actorType: string;
  actorId: string | null;
  action: string;
  subjectId: string | null;
  details: Record<string, unknown>;
}): string {
  const text = canonicalize(entry);
  if (text === undefined) throw new Error('audit entry cannot be serialised');
  return text;
}

export function chainHash(prevHash: Buffer, content: string): Buffer {
  return createHash('sha256').update(prevHash).update(content, 'utf8').digest();
}

/** The advisory lock key for one tenant's chain (a stable 64-bit value derived from the tenant id). */
function chainLockKey(tenantId: string): bigint {
  return createHash('sha256').update(`audit:${tenantId}`).digest().readBigInt64BE(0);
}

/**
 * Append one entry inside the caller's transaction. Call it late in the transaction: the tenant's chain
 * stays locked until commit.
 */
export async function appendAudit(
  client: Queryable,
  entry: AuditEntry,
): Promise<{ seq: number; hash: Buffer }> {
  await client.query('SELECT pg_advisory_xact_lock($1)', [chainLockKey(entry.tenantId).toString()]);
  const { rows } = await client.query<{ seq: number; hash: Buffer }>(
    'SELECT seq, hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1',
    [entry.tenantId],
  );
  const prev = rows[0];
  const seq = (prev?.seq ?? 0) + 1;
  const prevHash = prev?.hash ?? GENESIS_HASH;
  const at = new Date().toISOString();
  const content = canonicalContent({
    seq,
    at,
    actorType: entry.actorType,
    actorId: entry.actorId ?? null,
    action: entry.action,
    subjectId: entry.subjectId ?? null,
    details: entry.details ?? {},
  });
  const hash = chainHash(prevHash, content);
  await client.query(
    `INSERT INTO audit_log (tenant_id, seq, at, actor_type, actor_id, action, subject_id, content, prev_hash, hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [
      entry.tenantId,
      seq,
      at,
      entry.actorType,
      entry.actorId ?? null,
      entry.action,
      entry.subjectId ?? null,
      content,
      prevHash,
      hash,
    ],
  );
  return { seq, hash };
}
