/**
 * The append-only, hash-chained audit log. Each tenant has its own chain: an entry's hash is
 * SHA-256(previous hash || canonical JSON of the entry), so changing, removing or reordering any entry
 * breaks every hash after it. Appends to one tenant's chain are serialized by a transaction-level
 * advisory lock, taken while the caller's transaction commits and held until it has.
 */
import { createHash } from 'node:crypto';
import canonicalizeModule from 'canonicalize';
import { openTransactionOf, type Queryable } from '../db/pool.js';

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

export function chainHash(prevHash: Buffer, content: string): Buffer {
  return createHash('sha256').update(prevHash).update(content, 'utf8').digest();
}

const json = (value: unknown): string => {
  const text = canonicalize(value);
  if (text === undefined) throw new Error('audit entry cannot be serialised');
  return text;
};

/**
 * An entry's canonical content around the two values the database assigns when it appends (its time and
 * its seq, so both follow the chain's order): the RFC 8785 text of
 * `{action, actorId, actorType, at, details, seq, subjectId}` (keys in that, sorted, order) is
 * `beforeAt + JSON(at) + betweenAtAndSeq + seq + afterSeq` (test/audit.test.ts holds this against the
 * canonicalize library).
 */
export function contentAround(entry: {
  actorType: string;
  actorId: string | null;
  action: string;
  subjectId: string | null;
  details: Record<string, unknown>;
}): { beforeAt: string; betweenAtAndSeq: string; afterSeq: string } {
  return {
    beforeAt: `{"action":${json(entry.action)},"actorId":${json(entry.actorId)},"actorType":${json(entry.actorType)},"at":`,
    betweenAtAndSeq: `,"details":${json(entry.details)},"seq":`,
    afterSeq: `,"subjectId":${json(entry.subjectId)}}`,
  };
}

interface PendingEntry {
  actorType: ActorType;
  actorId: string | null;
  action: string;
  subjectId: string | null;
  beforeAt: string;
  betweenAtAndSeq: string;
  afterSeq: string;
}

const PENDING = Symbol('audit entries to append at commit');

const entryArrays = (tenantId: string, entries: PendingEntry[]) => [
  tenantId,
  entries.map((e) => e.actorType),
  entries.map((e) => e.actorId),
  entries.map((e) => e.action),
  entries.map((e) => e.subjectId),
  entries.map((e) => e.beforeAt),
  entries.map((e) => e.betweenAtAndSeq),
  entries.map((e) => e.afterSeq),
];

/** Append entries of one tenant's chain now, in one round trip (migrations/012_audit_append.sql). */
async function appendNow(client: Queryable, tenantId: string, entries: PendingEntry[]): Promise<void> {
  await client.query(
    'SELECT paygate_audit_append($1, $2, $3, $4, $5, $6, $7, $8)',
    entryArrays(tenantId, entries),
  );
}

/**
 * Ask for entries of one tenant's chain to be appended when the transaction commits: a deferred trigger
 * makes the append inside COMMIT, so the chain's lock is never held across a round trip to this process
 * (migrations/015_audit_append_at_commit.sql).
 */
async function appendAtCommit(client: Queryable, tenantId: string, entries: PendingEntry[]): Promise<void> {
  await client.query(
    `INSERT INTO audit_append_requests (tenant_id, actor_type, actor_id, action, subject_id, content_before_at,
                                        content_between_at_and_seq, content_after_seq)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    entryArrays(tenantId, entries),
  );
}

/**
 * Append one entry in the caller's transaction. Inside withTenant/withSystem the entry is written by its
 * COMMIT, with the transaction's other entries, so the tenant's chain is locked only while the commit
 * runs; if the transaction fails, nothing is written. Entries are chained in the
 * order they were appended and timestamped when written, so time never runs backwards along a chain.
 */
export async function appendAudit(client: Queryable, entry: AuditEntry): Promise<void> {
  const fields = {
    actorType: entry.actorType,
    actorId: entry.actorId ?? null,
    action: entry.action,
    subjectId: entry.subjectId ?? null,
    details: entry.details ?? {},
  };
  const pendingEntry: PendingEntry = { ...fields, ...contentAround(fields) };
  const transaction = openTransactionOf(client);
  if (!transaction) return appendNow(client, entry.tenantId, [pendingEntry]);
  if (!transaction.waitsForDisk) {
    // An entry a crash could take back would be a hole in the record: never in such a transaction.
    throw new Error(`audit entry ${entry.action} in a transaction opened with waitForDisk: false`);
  }
  let byTenant = transaction.locals.get(PENDING) as Map<string, PendingEntry[]> | undefined;
  if (!byTenant) {
    const pending = new Map<string, PendingEntry[]>();
    byTenant = pending;
    transaction.locals.set(PENDING, pending);
    transaction.beforeCommit.push(async () => {
      // Entries appended from here on (by a later beforeCommit hook) start a new batch with a hook of
      // their own, which runs after this one, instead of landing in a map already written.
      transaction.locals.delete(PENDING);
      // Chains in one order everywhere (a transaction may touch a tenant's and the system's), so two
      // transactions never wait on each other's chain locks in opposite orders.
      for (const tenantId of [...pending.keys()].sort())
        await appendAtCommit(client, tenantId, pending.get(tenantId)!);
    });
  }
  const entries = byTenant.get(entry.tenantId);
  if (entries) entries.push(pendingEntry);
  else byTenant.set(entry.tenantId, [pendingEntry]);
}
