/**
 * Recompute every tenant's audit chain from the stored content and report the first entry that does
 * not fit: a changed entry (its hash no longer matches), a removed one (a gap in seq or a broken link),
 * or one whose stored columns disagree with the content that was hashed.
 */
import type { Db } from '../db/pool.js';
import { chainHash, GENESIS_HASH } from './log.js';

export interface BrokenEntry {
  tenantId: string;
  seq: number;
  reason: string;
}

export interface VerifyResult {
  ok: boolean;
  tenantsChecked: number;
  entriesChecked: number;
  firstBroken?: BrokenEntry;
}

interface Row {
  tenant_id: string;
  seq: number;
  at: Date;
  actor_type: string;
  actor_id: string | null;
  action: string;
  subject_id: string | null;
  content: string;
  prev_hash: Buffer;
  hash: Buffer;
}

/** Rows fetched per round trip; the chain is walked in seq order without loading it whole. */
const PAGE = 5000;

function checkEntry(row: Row, expectedSeq: number, prevHash: Buffer): string | undefined {
  if (row.seq !== expectedSeq)
    return `expected entry ${expectedSeq} but found ${row.seq}: entries are missing`;
  if (!row.prev_hash.equals(prevHash)) return 'its previous-hash link does not match the entry before it';
  if (!chainHash(row.prev_hash, row.content).equals(row.hash))
    return 'its content does not match its hash: the entry was altered';
  let parsed: {
    seq?: unknown;
    at?: unknown;
    actorType?: unknown;
    actorId?: unknown;
    action?: unknown;
    subjectId?: unknown;
  };
  try {
    parsed = JSON.parse(row.content);
  } catch {
    return 'its content is not valid JSON';
  }
  // Every column that is also in the hashed content (history is read from the columns, not the content).
  if (
    parsed.seq !== row.seq ||
    parsed.at !== row.at.toISOString() ||
    parsed.actorType !== row.actor_type ||
    (parsed.actorId ?? null) !== row.actor_id ||
    parsed.action !== row.action ||
    (parsed.subjectId ?? null) !== row.subject_id
  ) {
    return 'its columns disagree with its hashed content: the entry was altered';
  }
  return undefined;
}

export async function verifyAuditLog(db: Db, options: { tenantId?: string } = {}): Promise<VerifyResult> {
  return db.withSystem(async (client) => {
    const tenants = options.tenantId
      ? [options.tenantId]
      : (
          await client.query<{ tenant_id: string }>(
            'SELECT DISTINCT tenant_id FROM audit_log ORDER BY tenant_id',
          )
        ).rows.map((r) => r.tenant_id);
    let entriesChecked = 0;
    for (const tenantId of tenants) {
      let expectedSeq = 1;
      let prevHash = GENESIS_HASH;
      for (;;) {
        const { rows } = await client.query<Row>(
          `SELECT tenant_id, seq, at, actor_type, actor_id, action, subject_id, content, prev_hash, hash FROM audit_log
           WHERE tenant_id = $1 AND seq >= $2 ORDER BY seq LIMIT ${PAGE}`,
          [tenantId, expectedSeq],
        );
        for (const row of rows) {
          const reason = checkEntry(row, expectedSeq, prevHash);
          if (reason) {
            return {
              ok: false,
              tenantsChecked: tenants.length,
              entriesChecked,
              firstBroken: { tenantId, seq: row.seq, reason },
            };
          }
          entriesChecked++;
          expectedSeq++;
          prevHash = row.hash;
        }
        if (rows.length < PAGE) break;
      }
    }
    return { ok: true, tenantsChecked: tenants.length, entriesChecked };
  });
}
