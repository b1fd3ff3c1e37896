/**
 * Several entries on one tenant's chain in one go, for the worker's batches: the first is appended by
 * appendAudit (which takes the chain's lock and reads its tail), the others are chained from it here
 * and inserted in one statement, so a batch of n entries costs 4 round trips instead of 3n. The entries
 * and their hashes are exactly what n calls of appendAudit would have written.
 */
import { type AuditEntry, appendAudit, canonicalContent, chainHash } from './log.js';

/** Append `entries`, in order, inside the caller's transaction. Call it last: the chain stays locked until commit. */
export async function appendAuditEntries(
  client: Parameters<typeof appendAudit>[0],
  tenantId: string,
  entries: Omit<AuditEntry, 'tenantId'>[],
): Promise<void> {
  const [first, ...rest] = entries;
  if (!first) return;
  let prev = await appendAudit(client, { ...first, tenantId });
  if (rest.length === 0) return;
  const rows = rest.map((entry) => {
    const seq = prev.seq + 1;
    const at = new Date().toISOString();
    const actorId = entry.actorId ?? null;
    const subjectId = entry.subjectId ?? null;
    const content = canonicalContent({
      seq,
      at,
      actorType: entry.actorType,
      actorId,
      action: entry.action,
      subjectId,
      details: entry.details ?? {},
    });
    const hash = chainHash(prev.hash, content);
    const row = { seq, at, entry, actorId, subjectId, content, prevHash: prev.hash, hash };
    prev = { seq, hash };
    return row;
  });
  await client.query(
    `INSERT INTO audit_log (tenant_id, seq, at, actor_type, actor_id, action, subject_id, content, prev_hash, hash)
     SELECT $1, * FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
                              $8::text[], $9::bytea[], $10::bytea[])`,
    [
      tenantId,
      rows.map((r) => r.seq),
      rows.map((r) => r.at),
      rows.map((r) => r.entry.actorType),
      rows.map((r) => r.actorId),
      rows.map((r) => r.entry.action),
      rows.map((r) => r.subjectId),
      rows.map((r) => r.content),
      rows.map((r) => r.prevHash),
      rows.map((r) => r.hash),
    ],
  );
}
