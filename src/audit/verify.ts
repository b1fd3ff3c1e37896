/**
 * Recompute every tenant's audit chain from the stored content and report the first entry that does
 * not fit: a changed entry (its hash no longer matches), a removed one (a gap in seq or a broken link),
 * or one whose stored columns disagree with the content that was hashed.
 *
 * A chain alone cannot show that its newest entries were removed: what is left is still a valid chain.
 * So the result gives each chain's head (last seq and hash), for the operator to keep outside the
 * database, and a later run given those heads (`anchors`) checks that each is still there, unchanged:
 * entries removed from the end, or rewritten from before it, no longer match.
 */
import type { Db } from '../db/pool.js';
import { chainHash, GENESIS_HASH } from './log.js';

export interface BrokenEntry {
  tenantId: string;
  seq: number;
  reason: string;
}

/** A chain's newest entry, as recorded by an earlier run. */
export interface ChainHead {
  tenantId: string;
  seq: number;
  /** sha256, hex */
  hash: string;
}

export interface VerifyResult {
  ok: boolean;
  tenantsChecked: number;
  entriesChecked: number;
  firstBroken?: BrokenEntry;
  /** Each chain checked, at its newest entry. */
  heads: ChainHead[];
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

export async function verifyAuditLog(
  db: Db,
  options: { tenantId?: string; anchors?: ChainHead[] } = {},
): Promise<VerifyResult> {
  return db.withSystem(async (client) => {
    const anchors = (options.anchors ?? []).filter(
      (a) => !options.tenantId || a.tenantId === options.tenantId,
    );
    const tenants = options.tenantId
      ? [options.tenantId]
      : [
          ...new Set([
            ...(
              await client.query<{ tenant_id: string }>(
                'SELECT DISTINCT tenant_id FROM audit_log ORDER BY tenant_id',
              )
            ).rows.map((r) => r.tenant_id),
            // A chain whose every entry was removed is still checked against its anchor.
            ...anchors.map((a) => a.tenantId),
          ]),
        ].sort();
    let entriesChecked = 0;
    const heads: ChainHead[] = [];
    for (const tenantId of tenants) {
      let expectedSeq = 1;
      let prevHash = GENESIS_HASH;
      const anchored = new Map(anchors.filter((a) => a.tenantId === tenantId).map((a) => [a.seq, a.hash]));
      for (;;) {
        const { rows } = await client.query<Row>(
          `SELECT tenant_id, seq, at, actor_type, actor_id, action, subject_id, content, prev_hash, hash FROM audit_log
           WHERE tenant_id = $1 AND seq >= $2 ORDER BY seq LIMIT ${PAGE}`,
          [tenantId, expectedSeq],
        );
        for (const row of rows) {
          const anchoredHash = anchored.get(row.seq);
          const reason =
            checkEntry(row, expectedSeq, prevHash) ??
            (anchoredHash !== undefined && anchoredHash !== row.hash.toString('hex')
              ? `its hash differs from the one recorded for it (${anchoredHash}): the chain was rewritten`
              : undefined);
          if (reason) {
            return {
              ok: false,
              tenantsChecked: tenants.length,
              entriesChecked,
              firstBroken: { tenantId, seq: row.seq, reason },
              heads,
            };
          }
          entriesChecked++;
          expectedSeq++;
          prevHash = row.hash;
        }
        if (rows.length < PAGE) break;
      }
      const last = expectedSeq - 1;
      const lost = [...anchored.keys()].filter((seq) => seq > last).sort((a, b) => a - b)[0];
      if (lost !== undefined) {
        return {
          ok: false,
          tenantsChecked: tenants.length,
          entriesChecked,
          firstBroken: {
            tenantId,
            seq: last + 1,
            reason:
              last === 0
                ? `the chain has no entries here, but entry ${lost} was recorded: its entries were removed (or the heads are another database's)`
                : `the chain ends at entry ${last}, but entry ${lost} was recorded: entries were removed from its end`,
          },
          heads,
        };
      }
      if (last > 0) heads.push({ tenantId, seq: last, hash: prevHash.toString('hex') });
    }
    return { ok: true, tenantsChecked: tenants.length, entriesChecked, heads };
  });
}
